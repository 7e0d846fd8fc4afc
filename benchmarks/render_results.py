"""Render the benchmark tables of the README and the docs from ``benchmarks/results/*.json``.

Every figure in those tables is read from a results file here, never typed by hand. A table sits
between two marker comments in a Markdown file::

    <!-- results:start -->        (the README's headline rows)
    <!-- results:start full -->   (every row: docs/benchmarks.md)
    <!-- results:start batch -->  (the engine table of docs/scale.md)
    ...
    <!-- results:end -->

Run ``python benchmarks/render_results.py`` to rewrite the tables in place after a benchmark wrote a
new results file; ``--check`` only reports files whose tables differ (``tests/test_docs.py`` fails
then). Each row: the figure, the peer or target it is read against, and the date, commit and
machine as far as the results file records them (a file without them shows a dash).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MARKERS = re.compile(
    r"(<!-- results:start(?: (?P<kind>[a-z]+))? -->\n)(?P<body>.*?)(<!-- results:end -->)", re.DOTALL
)
MISSING = "-"

Json = dict[str, Any]


@dataclass(frozen=True)
class Row:
    """One benchmark row: what was measured, and what it is read against."""

    file: str
    figure: Callable[[Json], str]
    peer: Callable[[Json], str]
    headline: bool = False
    short: Callable[[Json], tuple[str, str]] | None = None  # the README's shorter (figure, peer)


def _pct(value: float, digits: int = 1) -> str:
    return f"{100 * value:.{digits}f}%"


def _training(d: Json) -> str:
    rows = f"{d['snapshot_rows'] / 1e6:.2f}M rows"
    drift = ", drifting funnel" if d["drift"] else ""
    return f"Training ({rows}{drift}): ROC AUC **{d['test_roc_auc']:.4f}**, ECE {d['test_ece']:.4f}"


def _training_peer(d: Json) -> str:
    auc = d["baselines_roc_auc"]
    return (
        f"logistic {auc['logistic']:.4f}, points {auc['rule_points']:.4f}; "
        f"point-in-time oracle {d['oracle_roc_auc']:.4f}"
    )


def _olist(d: Json) -> str:
    test = d["runs"]["horizon90_purged"]["test"]["lightgbm"]
    return (
        f"Olist (real leads, 90-day purge): ROC AUC **{test['roc_auc']:.3f}**, "
        f"lift@20% {test['lift_top20']:.2f}x, ECE {test['ece']:.3f}"
    )


def _olist_peer(d: Json) -> str:
    test = d["runs"]["horizon90_purged"]["test"]
    return (
        f"logistic {test['logistic']['roc_auc']:.3f} / {test['logistic']['lift_top20']:.2f}x; "
        "targets AUC >= 0.72, lift@20% >= 2.3x, ECE <= 0.03"
    )


def _xeducation(d: Json) -> str:
    auc, ece = d["summary"]["lightgbm_roc_auc"], d["summary"]["lightgbm_ece"]
    seeds = len(d["runs"])
    return (
        f"X Education ({seeds} seeds): ROC AUC **{auc['mean']:.3f} +- {auc['sd']:.3f}**, "
        f"ECE {ece['mean']:.3f}"
    )


def _xeducation_peer(d: Json) -> str:
    summary = d["summary"]
    logistic, points = summary["logistic_roc_auc"]["mean"], summary["rule_points_roc_auc"]["mean"]
    return f"logistic {logistic:.3f}, points {points:.3f}"


def _serving(d: Json) -> str:
    single = d["single_lead"]["ours_single_reasons"]
    loaded = d["single_lead_under_batch_load"]
    return (
        f"Serving one lead with reasons: p50 **{single['p50_ms']:.1f} ms**; under 8 batch clients "
        f"p99 {loaded['p99_ms']:.1f} ms; {d['batch_reasons']['ours']['leads_per_s']:,.0f} leads/s in batches"
    )


def _serving_peer(d: Json) -> str:
    peer = d["single_lead"]["peer_single_reasons"]
    met = sum(bool(v) for v in d["targets"].values())
    rate = d["batch_reasons"]["peer"]["leads_per_s"]
    targets = f"targets met {met} of {len(d['targets'])}"
    return f"`mlflow models serve`: p50 {peer['p50_ms']:.1f} ms, {rate:,.0f} leads/s; {targets}"


def _batch(d: Json) -> str:
    runs = d["runs"]
    pandas, spark = runs["pandas"]["seconds"], runs["spark"]["seconds"]
    leads = f"{d['leads'] / 1e6:.0f}M leads"
    return f"Batch scoring with reasons, {leads}: pandas **{pandas:.0f} s**, Spark local[2] **{spark:.0f} s**"


def _batch_peer(d: Json) -> str:
    same = d["agreement"]["same_leads"] and d["agreement"]["tier_and_grade_equal"]
    return (
        f"pandas vs Spark: max probability difference {d['agreement']['max_abs_probability_difference']}"
        + (", tiers and grades equal" if same else "")
    )


def _trust(d: Json) -> str:
    return (
        f"Per-lead 90% ranges hold the oracle rate for **{_pct(d['interval_coverage_vs_oracle_rate'])}** of "
        f"{d['test_rows']:,} test snapshots; top decile predicted {_pct(d['top_decile']['predicted'])} "
        f"vs observed {_pct(d['top_decile']['observed'])}"
    )


def _trust_peer(d: Json) -> str:
    width = d["interval_mean_width_points"]
    return f"target {_pct(d['interval_level'], 0)}; mean range width {width:.2f} points"


def _features(d: Json) -> str:
    return (
        f"Training table, {d['leads'] / 1e6:.0f}M leads -> {d['snapshot_rows'] / 1e6:.2f}M rows x "
        f"{d['feature_columns']} features: **{d['build_training_table_seconds']:.1f} s**, "
        f"peak {d['build_training_table_peak_rss_mb'] / 1000:.1f} GB"
    )


def _features_peer(d: Json) -> str:
    columns = d["activity_features_compared"]
    threads = d["duckdb_threads"]
    return f"DuckDB SQL, {threads} threads, the same {columns} activity features: {d['duckdb_seconds']:.1f} s"


def _simulator(d: Json) -> str:
    return (
        f"CRM simulator, {d['leads'] / 1e6:.0f}M leads: {d['activities'] / 1e6:.2f}M activities in "
        f"**{d['simulate_seconds']:.1f} s** (+{d['write_parquet_seconds']:.1f} s Parquet), "
        f"peak {d['peak_rss_mb'] / 1000:.1f} GB"
    )


def _explain(d: Json) -> str:
    default = next(s for s in d["settings"] if s["max_depth"] == 4 and s["num_leaves"] == 15)
    return (
        f"Reasons for {d['explain_rows']:,} leads, default trees (depth 4 / 15 leaves): "
        f"**{default['explain_10k_seconds']:.1f} s**, ROC AUC {default['test_roc_auc']:.3f}"
    )


def _explain_peer(d: Json) -> str:
    return "; ".join(
        f"depth {s['max_depth']}/{s['num_leaves']}: {s['explain_10k_seconds']:.1f} s, "
        f"AUC {s['test_roc_auc']:.3f}"
        for s in d["settings"]
        if (s["max_depth"], s["num_leaves"]) != (4, 15)
    )


def _crm_shapes(d: Json) -> str:
    auc = d["results"]
    return f"The same {d['leads']:,} leads as native / Salesforce / HubSpot exports: ROC AUC " + " / ".join(
        f"{auc[shape]['roc_auc']:.4f}" for shape in ("native", "salesforce", "hubspot")
    )


def _crm_shapes_peer(d: Json) -> str:
    return "target: within 0.005 of native" + (" (met)" if d["within_0_005"] else " (missed)")


def _uplift(d: Json) -> str:
    truth = d["against_truth"]
    return (
        f"Uplift of a sales follow-up ({d['leads']:,} leads): DR-learner Qini "
        f"**{truth['dr_learner']['qini']:.2f}** against the simulator's true effect"
    )


def _uplift_peer(d: Json) -> str:
    truth = d["against_truth"]
    what_if, score = truth["what_if"]["qini"], truth["score"]["qini"]
    return f"what-if re-scoring {what_if:.2f}; highest scores first {score:.2f}"


def _advice(d: Json) -> str:
    policies = d["policies"]
    ours, before = policies["advice"], policies["previous_rule"]
    harmed = "none advised" if ours["share_harmed"] is None else f"{_pct(ours['share_harmed'])} harmed"
    return (
        f"Follow-up advice, {d['leads']:,} simulated leads: **{ours['leads']}** uncontacted open leads told "
        f'"reach out now" ({harmed}); before, {before["leads"]} were told "reach out today", '
        f"{_pct(before['share_harmed'])} of them harmed by the call"
    )


def _advice_peer(d: Json) -> str:
    ceiling = d["policies"]["oracle_of_observables"].get("same_leads_as_score_first", {})
    share = ceiling.get("share_harmed")
    return "target <= 5% harmed; " + (
        f"ceiling (the true expected effect given the features) {_pct(share)} harmed"
        if share is not None
        else MISSING
    )


def _funnel(d: Json) -> str:
    touches, won = d["touches"], d["closed_won"]
    return (
        f"Funnel, {d['leads']:,} simulated leads: touch range **{touches['range']}** from "
        f"{touches['learned_from_touched_opportunities']} touched opportunities; {won['won']:,} won of "
        f"{won['opportunities']:,} ({_pct(won['win_rate'])})"
    )


def _funnel_peer(d: Json) -> str:
    past = d["touches"]["past_range"]
    overall = _pct(d["touches"]["base_rate"])
    return f"past the range {_pct(past['rate'])} became opportunities vs {overall} overall"


def _review(d: Json) -> str:
    review = d["review"]
    return (
        f"Monthly review of {review['leads']:,} simulated leads: **{review['review_seconds']:.1f} s**, peak "
        f"{review['peak_rss_gb']:.1f} GB; Kaplan-Meier share by day 90 within "
        f"{review['kaplan_meier_by_90d_max_gap_points']:.2f} points of the truth in every channel"
    )


def _review_peer(d: Json) -> str:
    review = d["review"]
    channels, campaigns = review["channels"], review["campaigns"]
    return (
        f"target <= {review['target']['seconds']:.0f} s, <= {review['target']['gb']:.0f} GB; "
        f"true rate inside the interval: {channels['inside_interval']}/{channels['groups_with_500_matured']} "
        f"channels, {campaigns['inside_interval']}/{campaigns['groups_with_500_matured']} campaigns"
    )


def _lifecycle(d: Json) -> str:
    added = d["added_vs_no_ledger"]
    return (
        "Single-lead /score with reasons, in process: the ledger adds "
        f"**{added['ledger']['p99_ms']:+.2f} ms** p99, with a shadow challenger "
        f"**{added['ledger_and_shadow']['p99_ms']:+.2f} ms** (p50 {added['ledger']['p50_ms']:+.2f} / "
        f"{added['ledger_and_shadow']['p50_ms']:+.2f} ms)"
    )


def _lifecycle_peer(d: Json) -> str:
    held = d["ledger"]
    low, high = d["added_vs_no_ledger"]["ledger_and_shadow"].get("p99_ms_interval", [float("nan")] * 2)
    return (
        f"target <= {d['target_ms_p99']:g} ms p99 each ({'met' if d['met'] else 'missed'}; shadow p99 "
        f"difference 95% CI {low:+.2f} to {high:+.2f} ms); the ledger held "
        f"{held['scores']:,} of {held['expected_scores']:,} scores, {held['shadow_scores']:,} of "
        f"{held['expected_shadow_scores']:,} shadow scores"
    )


def _open_leads(d: Json) -> str:
    every, young = d["by_age_band"]["all"], d["by_age_band"].get("0-30", {})
    ready = d["by_tier"].get("sales_ready", {})
    young_text = (
        f"; 0-30 days {_pct(young['mean_predicted'])} vs {_pct(young['mean_oracle'])}, ranges hold "
        f"{_pct(young['range_holds_oracle'])}"
        if young
        else ""
    )
    ready_text = (
        f"; sales-ready {_pct(ready['mean_predicted'])} vs {_pct(ready['mean_oracle'])}" if ready else ""
    )
    return (
        f"Every open lead ({every['leads']:,}) at the export's end: mean predicted "
        f"{_pct(every['mean_predicted'], 2)} vs oracle {_pct(every['mean_oracle'], 2)}, ranges hold the "
        f"oracle for {_pct(every['range_holds_oracle'])}{young_text}{ready_text}"
    )


def _open_leads_peer(d: Json) -> str:
    return "target: within 20% of the oracle in every age band and tier; ranges hold it for >= 85% per band"


def _short_open_leads(d: Json) -> tuple[str, str]:
    every, young = d["by_age_band"]["all"], d["by_age_band"]["0-30"]
    return (
        f"Every open lead, any age: mean predicted **{_pct(every['mean_predicted'], 2)}** "
        f"(0-30 days {_pct(young['mean_predicted'])})",
        f"oracle {_pct(every['mean_oracle'], 2)} ({_pct(young['mean_oracle'])})",
    )


def _short_training(d: Json) -> tuple[str, str]:
    auc = d["baselines_roc_auc"]
    return (
        f"1M-row training: ROC AUC **{d['test_roc_auc']:.4f}**, ECE {d['test_ece']:.4f}",
        f"logistic {auc['logistic']:.4f}; oracle {d['oracle_roc_auc']:.4f}",
    )


def _short_olist(d: Json) -> tuple[str, str]:
    test = d["runs"]["horizon90_purged"]["test"]
    return (
        f"Olist, real leads: ROC AUC **{test['lightgbm']['roc_auc']:.3f}**, "
        f"lift@20% {test['lightgbm']['lift_top20']:.2f}x",
        f"logistic {test['logistic']['roc_auc']:.3f}; target lift 2.3x",
    )


def _short_xeducation(d: Json) -> tuple[str, str]:
    auc = d["summary"]["lightgbm_roc_auc"]
    return (
        f"X Education: ROC AUC **{auc['mean']:.3f} +- {auc['sd']:.3f}**",
        f"logistic {d['summary']['logistic_roc_auc']['mean']:.3f}",
    )


def _short_trust(d: Json) -> tuple[str, str]:
    return (
        f"90% ranges hold the true rate: **{_pct(d['interval_coverage_vs_oracle_rate'])}**",
        f"target {_pct(d['interval_level'], 0)}",
    )


def _short_serving(d: Json) -> tuple[str, str]:
    ours, peer = d["single_lead"]["ours_single_reasons"], d["single_lead"]["peer_single_reasons"]
    return (
        f"One lead with reasons over HTTP: p50 **{ours['p50_ms']:.1f} ms**",
        f"`mlflow models serve` {peer['p50_ms']:.1f} ms",
    )


def _short_batch(d: Json) -> tuple[str, str]:
    runs = d["runs"]
    return (
        f"1M leads with reasons: pandas **{runs['pandas']['seconds']:.0f} s**, "
        f"Spark **{runs['spark']['seconds']:.0f} s**",
        "same results both engines" if d["agreement"]["tier_and_grade_equal"] else MISSING,
    )


def _drift_level(d: Json) -> str:
    prior = d.get("base_rate_without_labels", {})
    return (
        f"Drifting funnel, {d['leads']:,} simulated leads ({d['learner']}): newest 20% ECE "
        f"**{d['test_ece']:.4f}** as scored, {prior.get('ece_at_em_estimate', float('nan')):.4f} at the EM "
        f"base-rate estimate; ROC AUC {d['test_roc_auc']:.4f}"
    )


def _drift_level_peer(d: Json) -> str:
    oracle, gap = d["oracle_roc_auc"], d["oracle_gap"]
    return f"target ECE <= 0.02; oracle ROC AUC {oracle:.4f} (gap {gap:.4f}, target 0.01)"


def _backtest(d: Json) -> str:
    chosen = d["candidates"].get("chosen", {})
    drift = ", drifting funnel" if d["drift"] else ""
    auc, ece = chosen.get("mean_roc_auc", float("nan")), chosen.get("pooled_ece", float("nan"))
    return (
        f"Monthly backtest at its defaults ({d['leads']:,} simulated leads{drift}, {d['periods']} periods): "
        f"**{d['seconds']:.0f} s**; the deployed choice: mean ROC AUC {auc:.3f}, pooled ECE {ece:.3f}"
    )


def _backtest_peer(d: Json) -> str:
    moved = d["candidates"].get("chosen_prior", {})
    return (
        f"target <= {d['target_seconds']} s on 2 cores; moved to the EM base-rate estimate: pooled ECE "
        f"{moved.get('pooled_ece', float('nan')):.3f}"
    )


ROWS = (
    Row("training.json", _training, _training_peer, headline=True, short=_short_training),
    Row("training_drift.json", _training, _training_peer),
    Row("olist.json", _olist, _olist_peer, headline=True, short=_short_olist),
    Row("xeducation.json", _xeducation, _xeducation_peer, headline=True, short=_short_xeducation),
    Row("trust.json", _trust, _trust_peer, headline=True, short=_short_trust),
    Row("open_leads.json", _open_leads, _open_leads_peer, headline=True, short=_short_open_leads),
    Row("serving.json", _serving, _serving_peer, headline=True, short=_short_serving),
    Row("batch.json", _batch, _batch_peer, headline=True, short=_short_batch),
    Row("features.json", _features, _features_peer),
    Row("simulator.json", _simulator, lambda d: MISSING),
    Row("explain.json", _explain, _explain_peer),
    Row("crm_shapes.json", _crm_shapes, _crm_shapes_peer),
    Row("uplift.json", _uplift, _uplift_peer),
    Row("advice.json", _advice, _advice_peer),
    Row("funnel.json", _funnel, _funnel_peer),
    Row("funnel.json", _review, _review_peer),
    Row("lifecycle.json", _lifecycle, _lifecycle_peer),
    Row("drift_level.json", _drift_level, _drift_level_peer),
    Row("backtest.json", _backtest, _backtest_peer),
    Row("backtest_drift.json", _backtest, _backtest_peer),
)


def _date(d: Json) -> str:
    for key in ("run_at", "date", "measured_at"):
        if isinstance(d.get(key), str):
            return d[key][:10]
    return MISSING


def _commit(d: Json) -> str:
    code = d.get("code")
    commit = code.get("commit") if isinstance(code, dict) else d.get("commit")
    if not isinstance(commit, str):
        return MISSING
    return f"`{commit[:7]}`" + (" (dirty)" if isinstance(code, dict) and code.get("dirty") else "")


def _machine(d: Json) -> str:
    machine = d.get("machine")
    if not isinstance(machine, dict):
        return MISSING
    cores = machine.get("cores", machine.get("cpus", machine.get("cpu_count_logical")))
    memory = machine.get("memory_gb", machine.get("memory_total_gb"))
    parts = [f"{cores} cores" if cores else "", f"{memory:g} GB" if memory else ""]
    return ", ".join(p for p in parts if p) or MISSING


def load(name: str) -> Json:
    return json.loads((RESULTS / name).read_text())


def batch_table() -> str:
    """The engine table of ``docs/scale.md``, from ``batch.json``."""
    d = load("batch.json")
    lines = [
        "| engine | wall time | leads/s | CPU time | CPU per lead | peak RSS (process tree) |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in (("pandas", "pandas, chunks of 50,000"), ("spark", "Spark `local[2]`")):
        run = d["runs"][name]
        start = f", incl. {run['spark_start_seconds']:.1f} s start" if "spark_start_seconds" in run else ""
        lines.append(
            f"| {label} | **{run['seconds']:.1f} s** ({run['seconds'] / 60:.1f} min{start}) "
            f"| {run['leads_per_second']:,} | {run['cpu_seconds']:.1f} s | {run['cpu_ms_per_lead']:.3f} ms "
            f"| {run['peak_rss_mb_process_tree'] / 1000:.1f} GB |"
        )
    lines += [
        "",
        f"Rendered from `batch.json` (commit {_commit(d)}, {_machine(d)}) by `benchmarks/render_results.py`.",
    ]
    return "\n".join(lines) + "\n"


def table(kind: str) -> str:
    """The Markdown table for a marker kind: ``headline`` (README), ``full`` (docs) or ``batch``."""
    if kind == "batch":
        return batch_table()
    rows = [r for r in ROWS if (kind == "full" or r.headline) and (RESULTS / r.file).exists()]
    lines = ["| figure | peer or target | date | commit | machine | file |", "|---|---|---|---|---|---|"]
    for row in rows:
        d = load(row.file)
        figure, peer = row.short(d) if kind == "headline" and row.short else (row.figure(d), row.peer(d))
        cells = (figure, peer, _date(d), _commit(d), _machine(d), f"`{row.file}`")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"{MISSING}: not recorded in the results file. Rendered from `benchmarks/results/*.json` by "
        "`benchmarks/render_results.py`;\nsingle runs on a shared machine (expect +-30% on times)."
    )
    return "\n".join(lines) + "\n"


def render(text: str) -> str:
    """``text`` with every results table between markers rendered afresh."""

    def replace(match: re.Match[str]) -> str:
        kind = match.group("kind") or "headline"
        if kind not in ("headline", "full", "batch"):
            raise ValueError(f"unknown results table kind {kind!r}")
        return match.group(1) + table(kind) + match.group(4)

    return MARKERS.sub(replace, text)


def targets() -> list[Path]:
    """The README and every docs page."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def stale() -> list[Path]:
    """Files whose committed tables differ from what the results files render."""
    return [p for p in targets() if render(p.read_text()) != p.read_text()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale tables, write nothing")
    args = parser.parse_args(argv)
    if args.check:
        found = stale()
        for path in found:
            print(f"stale results table: {path.relative_to(ROOT)} (run python benchmarks/render_results.py)")
        return 1 if found else 0
    for path in targets():
        if (new := render(path.read_text())) != path.read_text():
            path.write_text(new)
            print(f"rendered {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

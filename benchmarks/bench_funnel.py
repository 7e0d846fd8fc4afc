"""Benchmark: the funnel past the score — sales touches learned from the export, and lead to revenue.

    python benchmarks/bench_funnel.py --leads 20000 --seed 7 --review-leads 1000000

The monthly review (``leadscore review``) of ``--review-leads`` simulated leads: its time and peak
memory (target <= 60 s and <= 8 GB for 1M leads), channel and campaign rates against their true rates,
Kaplan-Meier shares converted by day 90 against the simulator's truth beside the naive shares, and
whether the parts of a rate change add up.

Simulates an export (the defaults of ``leadscore simulate`` + ``leadscore build-features``: snapshots
at 3/14/30/60 days, 90-day horizon), then reads its lead ledger as ``leadscore touches`` and
``leadscore channels`` do:

* touches: opportunities (ended horizons), the share with no sales touch before converting, the
  learned range and what it was learned from, and the rate of leads past the range vs all leads;
* closed-won: won deals, win rate (95% interval) and revenue; with a made-up spend on paid search,
  that channel's revenue per unit of spend;
* the cost of the ledger's touch count (one feature computation per lead, at its outcome) next to
  the training table's own feature computation.

The simulator is a test fixture: these numbers show the code paths work and what they report, not
what a real business would see. Neither shared real export has sales activity or a won stage.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pandas as pd
from _measure import machine, write_results

from leadscore.features.build import simulate_and_build
from leadscore.features.loading import load_crm_tables
from leadscore.features.pipeline import compute_features
from leadscore.features.training_table import (
    SnapshotPolicy,
    build_training_table,
    lead_ledger_path,
    observed_until,
    sales_touches_at_outcome,
)
from leadscore.training.channels import ALL_CHANNELS, channel_report
from leadscore.training.touches import touch_report

PAID_SEARCH_SPEND = 120_000.0
#: the monthly review's budget for a 1M-lead export (issue 28)
REVIEW_TARGET_SECONDS, REVIEW_TARGET_GB = 60.0, 8.0


def review_benchmark(*, n_leads: int, seed: int, out: Path) -> dict[str, object]:
    """The monthly review of ``n_leads`` simulated leads: its time and memory, and its numbers vs the truth.

    The simulator knows each lead's true chance of an opportunity within the horizon and whether it
    converts by day 90 even when the export has not seen it yet, so the review's rates, Kaplan-Meier
    shares and naive shares can be checked. Lead quality is the simulator's true probability (the best
    model there could be) and open leads' probabilities its point-in-time version: the review's cost does
    not depend on which model gave them.
    """
    import psutil

    from leadscore.features.simulator import CONVERSION_DELAY, simulate_crm
    from leadscore.features.training_table import first_campaigns, lead_ledger
    from leadscore.training.review import funnel_table, monthly_review, review_frame, write_review

    policy = SnapshotPolicy()
    horizon = policy.horizon_days
    crm = simulate_crm(n_leads=n_leads, seed=seed)
    until = crm.exported_at
    started = time.perf_counter()
    ledger = lead_ledger(
        leads=crm.leads,
        outcomes=crm.outcomes,
        policy=policy,
        until=until,
        campaigns=first_campaigns(leads=crm.leads, activities=crm.activities),
    )
    ledger_seconds = time.perf_counter() - started
    truth = crm.truth.set_index("lead_id").reindex(ledger["lead_id"])
    del crm  # the review reads the ledger only
    p_true = truth["true_probability"].to_numpy()
    age = (until - pd.to_datetime(ledger["created_at"])).dt.total_seconds().to_numpy() / 86_400
    f_now, f_end = CONVERSION_DELAY.cdf(age), CONVERSION_DELAY.cdf(age + horizon)
    open_ = (
        ledger["converted_at"].isna().to_numpy() | (pd.to_datetime(ledger["converted_at"]) > until).to_numpy()
    )
    open_probability = pd.Series(
        (p_true * (f_end - f_now) / (1 - p_true * f_now))[open_], index=ledger["lead_id"].to_numpy()[open_]
    )
    started = time.perf_counter()
    frame = review_frame(ledger, until=until)
    quality = pd.Series(p_true * CONVERSION_DELAY.cdf(horizon), index=frame.index)
    report = monthly_review(frame, quality=quality, open_probability=open_probability)
    write_review(report, out)
    review_seconds = time.perf_counter() - started
    peak_gb = psutil.Process().memory_info().rss / 1e9
    try:
        import resource

        peak_gb = max(peak_gb, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6)
    except ImportError:  # not on this platform
        pass

    expected = pd.Series(p_true * CONVERSION_DELAY.cdf(horizon), index=frame.index)
    converts_by_90 = pd.Series(
        (truth["converts"].astype(bool) & (truth["conversion_delay_days"] <= 90)).to_numpy(),
        index=frame.index,
    )

    def coverage(by: str) -> dict[str, object]:
        table = funnel_table(frame, by=[by]).set_index(by)
        big = table[table["matured"] >= 500]
        true_rate = (
            expected[frame["matured"]].groupby(frame.loc[frame["matured"], by]).mean().reindex(big.index)
        )
        inside = (big["rate_low"] <= true_rate) & (true_rate <= big["rate_high"])
        return {"groups_with_500_matured": len(big), "inside_interval": int(inside.sum())}

    km = report.time_by_channel.set_index("channel")
    true_by_90 = converts_by_90.groupby(frame["channel"]).mean().reindex(km.index)
    km_gap = (km["share_by_90d"] - true_by_90).abs()
    cohorts = report.time_by_cohort.set_index("cohort")
    true_cohort = converts_by_90.groupby(frame["cohort"]).mean().reindex(cohorts.index)
    recent = cohorts.index[-4:-1]  # the last full cohorts: their leads have not all had 90 days
    change = report.change
    return {
        "leads": n_leads,
        "seed": seed,
        "ledger_seconds": round(ledger_seconds, 1),
        "review_seconds": round(review_seconds, 1),
        "peak_rss_gb": round(peak_gb, 2),
        "target": {"seconds": REVIEW_TARGET_SECONDS, "gb": REVIEW_TARGET_GB},
        "met": review_seconds <= REVIEW_TARGET_SECONDS and peak_gb <= REVIEW_TARGET_GB,
        "channels": coverage("channel"),
        "campaigns": coverage("campaign"),
        "kaplan_meier_by_90d_max_gap_points": round(100 * float(km_gap.max()), 2),
        "recent_cohorts_by_90d": {
            str(c): {
                "true": round(float(true_cohort[c]), 4),
                "kaplan_meier": round(float(cohorts.loc[c, "share_by_90d"]), 4),
                "naive": round(float(cohorts.loc[c, "naive_by_90d"]), 4),
            }
            for c in recent
        },
        "conversion_change": None
        if change is None
        else {
            "before": change.before,
            "after": change.after,
            "change_points": round(100 * change.change, 3),
            "mix_points": round(100 * change.mix, 3),
            "quality_points": round(100 * float(change.quality or 0.0), 3),
            "beyond_score_points": round(100 * float(change.beyond_score or 0.0), 3),
            "parts_minus_change_points": abs(100 * (change.mix + change.within - change.change)),
        },
        "expected_pipeline": None
        if report.pipeline is None
        else {
            "open_leads": int(report.pipeline["open_leads"].sum()),
            "expected_opportunities": round(float(report.pipeline["expected_opportunities"].sum()), 1),
            "expected_pipeline": round(float(report.pipeline["expected_pipeline"].sum()), 0),
        },
    }


def best_of(runs: int, work: object) -> float:
    """Fastest of ``runs`` timings of ``work()`` in seconds."""
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        work()  # type: ignore[operator]
        timings.append(time.perf_counter() - start)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--review-leads", type=int, default=1_000_000, help="0: skip the review benchmark")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "funnel.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        export = simulate_and_build(n_leads=args.leads, seed=args.seed, out_dir=Path(folder))
        ledger = pd.read_parquet(lead_ledger_path(export.training_table))
        table = pd.read_parquet(export.training_table)
        touches = touch_report(ledger)
        spend = pd.DataFrame({"channel": ["paid_search"], "spend": [PAID_SEARCH_SPEND]})
        channels = channel_report(table=table, ledger=ledger, channel_column="channel", spend=spend)
        tables = load_crm_tables(
            leads=export.paths["leads"],
            activities=export.paths["activities"],
            outcomes=export.paths["outcomes"],
        )
    until = observed_until(leads=tables.leads, activities=tables.activities, outcomes=tables.outcomes)
    policy = SnapshotPolicy()
    table_seconds = best_of(
        3,
        lambda: build_training_table(
            leads=tables.leads,
            activities=tables.activities,
            outcomes=tables.outcomes,
            policy=policy,
            until=until,
        ),
    )
    touches_seconds = best_of(
        3,
        lambda: sales_touches_at_outcome(
            leads=tables.leads,
            outcomes=tables.outcomes,
            policy=policy,
            until=until,
            features_at=lambda s: compute_features(
                leads=tables.leads, activities=tables.activities, snapshots=s
            ),
        ),
    )
    after = touches.after.set_index("touches")
    cadence = touches.cadence
    by_channel = channels.channels.set_index("channel")
    total, paid = by_channel.loc[ALL_CHANNELS], by_channel.loc["paid_search"]
    known = int(after.loc[0, "leads_reaching"])
    opportunities = int(after.loc[0, "opportunities"])
    past = after.loc[cadence.most + 1] if cadence is not None and cadence.most + 1 in after.index else None
    payload: dict[str, object] = {
        "machine": machine(),
        "leads": args.leads,
        "seed": args.seed,
        "horizon_days": policy.horizon_days,
        "touches": {
            "leads_with_ended_horizon": known,
            "opportunities": opportunities,
            "base_rate": round(opportunities / known, 4),
            "opportunities_before_any_touch": int(touches.distribution.loc[0, "opportunities"]),
            "range": None if cadence is None else cadence.span,
            "learned_from_touched_opportunities": None if cadence is None else cadence.opportunities,
            "past_range": None
            if past is None
            else {
                "leads": int(past["leads_reaching"]),
                "rate": round(float(past["rate"]), 4),
                "interval": [round(float(past["rate_low"]), 4), round(float(past["rate_high"]), 4)],
            },
        },
        "closed_won": {
            "won": int(total["won"]),
            "opportunities": int(total["opportunities"]),
            "win_rate": round(float(total["win_rate"]), 4),
            "win_interval": [round(float(total["win_low"]), 4), round(float(total["win_high"]), 4)],
            "revenue": float(total["revenue"]),
            "paid_search": {
                "spend": PAID_SEARCH_SPEND,
                "revenue": float(paid["revenue"]),
                "revenue_per_spend": round(float(paid["revenue_per_spend"]), 2),
            },
        },
        "seconds": {
            "training_table_features": round(table_seconds, 3),
            "ledger_touch_count": round(touches_seconds, 3),
        },
    }
    if args.review_leads:
        with tempfile.TemporaryDirectory() as folder:
            payload["review"] = review_benchmark(n_leads=args.review_leads, seed=args.seed, out=Path(folder))
    write_results(args.out, payload)
    print(payload)


if __name__ == "__main__":
    main()

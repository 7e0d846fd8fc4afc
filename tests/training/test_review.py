"""The monthly review: funnel rates inside their intervals, Kaplan-Meier time to opportunity against the
simulator's truth, a rate change split into parts that add up, the expected pipeline, the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.features.simulator import CONVERSION_DELAY
from leadscore.features.training_table import lead_ledger_path, open_leads_path
from leadscore.settings import PROJECT_ROOT, datasets_dir
from leadscore.training.review import (
    NO_CAMPAIGN,
    conversion_change,
    expected_pipeline,
    funnel_table,
    monthly_review,
    review_frame,
    time_to_opportunity,
    write_review,
)

from ..conftest import Trained

OLIST = datasets_dir() / "olist"


@pytest.fixture(scope="module")
def frame(trained: Trained) -> pd.DataFrame:
    ledger = pd.read_parquet(lead_ledger_path(trained.table_path))
    return review_frame(ledger, until=trained.crm.exported_at)


def true_share_by(trained: Trained, frame: pd.DataFrame, days: float) -> pd.Series:
    """Per lead, the simulator's realised truth: it converts within ``days`` of creation (seen or not yet)."""
    truth = trained.crm.truth.set_index("lead_id").reindex(frame["lead_id"])
    within = truth["converts"].astype(bool) & (truth["conversion_delay_days"] <= days)
    return pd.Series(within.to_numpy(), index=frame.index)


def test_the_ledger_names_each_lead_s_first_campaign(trained: Trained, frame: pd.DataFrame) -> None:
    acts = trained.crm.activities
    created = trained.crm.leads.set_index("lead_id")["created_at"]
    acts = acts[acts["timestamp"] <= acts["lead_id"].map(created) + pd.Timedelta(days=1)]
    named = acts[acts["campaign"].notna()].sort_values("timestamp", kind="stable").drop_duplicates("lead_id")
    expected = named.set_index("lead_id")["campaign"].astype(str)
    got = frame.set_index("lead_id")["campaign"]
    some = expected.index[:200]
    assert (got.reindex(some) == expected.reindex(some)).all()
    assert (got[~got.index.isin(expected.index)] == NO_CAMPAIGN).all()


def test_channel_and_campaign_rates_hold_the_simulator_s_true_rate(
    trained: Trained, frame: pd.DataFrame
) -> None:
    horizon = 90
    truth = trained.crm.truth.set_index("lead_id").reindex(frame["lead_id"])
    # the true chance of an opportunity within the horizon: P(converts) x P(delay <= horizon)
    expected = pd.Series(
        truth["true_probability"].to_numpy() * CONVERSION_DELAY.cdf(horizon), index=frame.index
    )
    matured = frame["matured"]
    for by, enough in (("channel", 500), ("campaign", 40)):  # 12,000 leads: campaigns are small
        table = funnel_table(frame, by=[by]).set_index(by)
        big = table[table["matured"] >= enough]
        assert len(big) >= 3
        true_rate = expected[matured].groupby(frame.loc[matured, by]).mean().reindex(big.index)
        inside = (big["rate_low"] <= true_rate) & (true_rate <= big["rate_high"])
        assert inside.mean() >= 0.8, f"{by}: {inside.to_dict()}"  # 95% intervals: a miss is chance


def test_kaplan_meier_recovers_the_share_converted_by_day_90_where_the_naive_rate_reads_low(
    trained: Trained, frame: pd.DataFrame
) -> None:
    table, curves = time_to_opportunity(frame.assign(all="all"), by="all")
    truth = true_share_by(trained, frame, 90).mean()
    row = table.iloc[0]
    assert abs(row["share_by_90d"] - truth) < 0.01
    assert row["share_by_90d_low"] <= truth <= row["share_by_90d_high"]
    assert "all" in curves and curves["all"]["share"].is_monotonic_increasing
    by_cohort, _ = time_to_opportunity(frame, by="cohort")
    by_cohort = by_cohort[by_cohort["leads"] >= 200].sort_values("cohort")
    by_90, by_30 = true_share_by(trained, frame, 90), true_share_by(trained, frame, 30)
    # the newest cohort: few of its leads had 90 days, so the naive share reads low
    newest = by_cohort.iloc[-1]
    in_newest = frame["cohort"] == newest["cohort"]
    assert newest["naive_by_90d"] < by_90[in_newest].mean() - 0.03
    # where its leads were followed 30 days, Kaplan-Meier reads the share by then; day 90 is left unknown
    if not np.isnan(newest["share_by_30d"]):
        assert abs(newest["share_by_30d"] - by_30[in_newest].mean()) < 0.03
    # the newest cohort with a day-90 estimate: Kaplan-Meier recovers it
    known = by_cohort[by_cohort["share_by_90d"].notna()].iloc[-1]
    truth_known = by_90[frame["cohort"] == known["cohort"]].mean()
    assert abs(known["share_by_90d"] - truth_known) < 0.03
    assert known["share_by_90d_low"] <= truth_known <= known["share_by_90d_high"]


def test_a_rate_change_splits_into_mix_and_rates_that_add_up(frame: pd.DataFrame) -> None:
    cohorts = sorted(frame.loc[frame["matured"], "cohort"].unique())
    rng = np.random.default_rng(0)
    quality = pd.Series(rng.uniform(0.05, 0.3, len(frame)), index=frame.index)
    change = conversion_change(frame, before=cohorts[1], after=cohorts[-1], quality=quality)
    rows = frame[frame["matured"]]
    rate = {c: rows.loc[rows["cohort"] == c, "opportunity"].mean() for c in (cohorts[1], cohorts[-1])}
    assert change.rate_before == pytest.approx(rate[cohorts[1]], abs=1e-12)
    assert change.rate_after == pytest.approx(rate[cohorts[-1]], abs=1e-12)
    assert change.mix + change.within == pytest.approx(change.change, abs=1e-12)
    assert change.quality is not None and change.beyond_score is not None
    assert change.quality + change.beyond_score == pytest.approx(change.within, abs=1e-12)
    assert "points = channel mix" in change.sentence()


def test_a_channel_only_in_one_period_moves_the_mix_not_the_rates() -> None:
    frame = pd.DataFrame(
        {
            "lead_id": [str(i) for i in range(8)],
            "cohort": ["a"] * 4 + ["b"] * 4,
            "channel": ["web", "web", "web", "web", "web", "web", "fair", "fair"],
            "matured": True,
            "opportunity": [1, 0, 0, 0, 1, 0, 1, 1],
        }
    )
    change = conversion_change(frame, before="a", after="b")
    assert change.rate_before == 0.25 and change.rate_after == 0.75
    by = change.by_channel.set_index("channel")
    assert by.loc["fair", "within"] == 0.0 and by.loc["fair", "mix"] == pytest.approx(0.5)
    assert change.mix + change.within == pytest.approx(0.5)


def test_small_groups_are_flagged_never_dropped() -> None:
    frame = pd.DataFrame(
        {
            "lead_id": [str(i) for i in range(104)],
            "channel": ["web"] * 100 + ["trade show"] * 4,
            "matured": True,
            "opportunity": [True] * 20 + [False] * 80 + [True, False, False, False],
        }
    )
    table = funnel_table(frame, by=["channel"]).set_index("channel")
    assert table.loc["trade show", "leads"] == 4
    assert table.loc["trade show", "note"] == "4 with a known outcome: too few to judge"
    assert table.loc["web", "note"] == ""


def test_the_expected_pipeline_is_probability_times_the_channel_s_amount() -> None:
    frame = pd.DataFrame(
        {
            "lead_id": [f"w{i}" for i in range(40)] + ["o1", "o2"],
            "channel": ["web"] * 40 + ["web", "web"],
            "opportunity": [True] * 40 + [False, False],
            "amount": [1000.0] * 20 + [3000.0] * 20 + [np.nan, np.nan],
        }
    )
    table = expected_pipeline(frame, open_probability=pd.Series([0.5, 0.25], index=["o1", "o2"]))
    row = table.set_index("channel").loc["web"]
    assert row["expected_opportunities"] == pytest.approx(0.75)
    assert row["mean_amount"] == pytest.approx(2000.0) and row["amount_from"] == "channel"
    assert row["expected_pipeline"] == pytest.approx(1500.0)
    assert row["pipeline_low"] < 1500.0 < row["pipeline_high"]


def test_the_review_writes_its_report_and_tables(frame: pd.DataFrame, tmp_path: Path) -> None:
    report = monthly_review(frame)
    paths = write_review(report, tmp_path / "review")
    names = {p.name for p in paths}
    assert {"review.html", "channels.csv", "campaigns.parquet", "time_to_opportunity_by_cohort.csv"} <= names
    text = (tmp_path / "review" / "review.html").read_text()
    assert text.count("data:image/png;base64,") >= 3 and "Kaplan-Meier" in text
    assert report.change is not None and "No expected pipeline" in " ".join(report.notes)


def test_the_review_command_reads_the_registered_model(trained: Trained, tmp_path: Path) -> None:
    assert open_leads_path(trained.table_path).exists()
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            *("review", "--table", str(trained.table_path), "--model-name", "leadscore-test"),
            *("--alias", str(trained.result.model_version), "--out", str(out)),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "MQLs and SQLs: the model's score of each lead's first snapshot" in result.output
    pipeline = pd.read_csv(out / "expected_pipeline.csv")
    assert len(pipeline) >= 5 and (pipeline["expected_pipeline"] > 0).all()
    channels = pd.read_csv(out / "channels.csv")
    assert {"mqls", "sqls"} <= set(channels.columns) and (channels["sqls"] <= channels["mqls"]).all()
    change = pd.read_csv(out / "conversion_change.csv")
    assert {"quality", "beyond_score"} <= set(change.columns)


def test_the_review_command_errors_readably(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["review", "--table", str(tmp_path / "none.parquet")])
    assert result.exit_code == 2 and "no lead ledger beside" in result.output
    result = CliRunner().invoke(app, ["review", "--period", "Q"])
    assert result.exit_code == 2 and "--period 'Q': use M or W" in result.output


def test_the_review_renders_in_headless_chromium(frame: pd.DataFrame, tmp_path: Path) -> None:
    from tests.training.test_html_card import _near, _require_browser, _screenshot

    browser = _require_browser()
    page = write_review(monthly_review(frame), tmp_path / "review")[0]
    pixels = _screenshot(browser, page, tmp_path / "review.png", tmp_path)
    ink = sum(1 for r, g, b in pixels if r + g + b < 600)
    assert ink > 0.01 * len(pixels), "the screenshot is (nearly) blank"
    assert _near(pixels, (0x4C, 0x72, 0xB0)) > 50, "no rate bars drawn"


@pytest.mark.dataset
@pytest.mark.skipif(
    not OLIST.exists(), reason=f"Olist data not found at {OLIST} (set LEADSCORE_DATASETS_DIR)"
)
def test_the_olist_review_runs_from_its_mapping(tmp_path: Path) -> None:
    from leadscore.features.build import EventBuildJob

    table = tmp_path / "olist.parquet"
    EventBuildJob(mapping_path=PROJECT_ROOT / "examples" / "olist.yaml", output=table).run()
    out = tmp_path / "review"
    result = CliRunner().invoke(
        app,
        [
            "review",
            "--table",
            str(table),
            "--campaign-column",
            "landing_page_id",
            "--no-model",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    channels = pd.read_csv(out / "channels.csv")
    assert "organic_search" in set(channels["channel"]) and channels["leads"].sum() == 8_000
    campaigns = pd.read_csv(out / "campaigns.csv")
    assert len(campaigns) > 50 and campaigns["note"].fillna("").str.contains("too few to judge").any()

"""The channel report: funnel counts, intervals, open leads, spend and the model's expected opportunities."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.features.simulator import SimulatedCRM
from leadscore.features.training_table import SnapshotPolicy, lead_ledger_path
from leadscore.training.channels import (
    ALL_CHANNELS,
    MISSING_CHANNEL,
    WITH_SPEND,
    SpendFileError,
    channel_plot,
    channel_report,
    lead_rows,
    read_spend,
    wilson_interval,
)
from leadscore.training.split import TimeAxis

from ..conftest import Trained, build_from_csv


def funnel_table() -> pd.DataFrame:
    """Three channels over two months; lead 'w3' has a later snapshot whose label must be ignored."""
    rows = [
        # lead, channel, as_of, age, label, amount
        ("w1", "web", "2024-01-05", 0, 1, 1000.0),
        ("w2", "web", "2024-01-09", 0, 0, 0.0),
        ("w3", "web", "2024-02-02", 0, 0, 0.0),
        ("w3", "web", "2024-02-09", 7, 1, 500.0),  # later snapshot of w3: not the lead's row
        ("w4", "web", "2024-02-20", 0, 1, 3000.0),
        ("e1", "Events", "2024-01-15", 0, 1, 10000.0),
        ("e2", "Events", "2024-02-15", 0, None, None),  # open: horizon not ended
        ("p1", "paid", "2024-01-20", 0, 0, 0.0),
        ("p2", "paid", "2024-02-21", 0, 0, 0.0),
        ("n1", None, "2024-02-22", 0, 0, 0.0),
    ]
    table = pd.DataFrame(
        rows, columns=["lead_id", "source", "as_of", "snapshot_age_days", "label", "label_amount"]
    )
    table["as_of"] = pd.to_datetime(table["as_of"])
    table["label"] = table["label"].astype("Int8")
    table["score_input"] = np.arange(len(table), dtype=float)
    return table.sample(frac=1.0, random_state=3).reset_index(drop=True)  # order must not matter


class ConstantModel:
    feature_names = ("score_input",)

    def __init__(self, probability: float) -> None:
        self.probability = probability

    def predict_proba_features(self, features: pd.DataFrame) -> np.ndarray:
        return np.full(len(features), self.probability)


def by_channel(report_frame: pd.DataFrame) -> pd.DataFrame:
    return report_frame.set_index("channel")


def test_one_row_per_lead_its_earliest_snapshot() -> None:
    leads = lead_rows(funnel_table())
    assert len(leads) == 9 and leads["lead_id"].is_unique
    assert leads.set_index("lead_id").loc["w3", "label"] == 0  # the later, positive snapshot is not used


def test_funnel_counts_rates_and_value_per_channel() -> None:
    report = channel_report(table=funnel_table(), channel_column="source")
    channels = by_channel(report.channels)
    assert list(report.channels["channel"]) == ["web", "Events", "paid", MISSING_CHANNEL, ALL_CHANNELS]
    web = channels.loc["web"]
    assert (web["leads"], web["outcome_known"], web["opportunities"]) == (4, 4, 2)
    assert web["opportunity_rate"] == pytest.approx(0.5)
    assert web["rate_low"] < 0.5 < web["rate_high"]
    assert web["pipeline_value"] == pytest.approx(4000.0)
    assert web["value_per_lead"] == pytest.approx(1000.0)
    events = channels.loc["Events"]  # the open lead is a lead, not a lost one
    assert (events["leads"], events["outcome_known"], events["open_leads"]) == (2, 1, 1)
    assert events["opportunity_rate"] == pytest.approx(1.0)
    total = channels.loc[ALL_CHANNELS]
    assert (total["leads"], total["opportunities"]) == (9, 3)
    assert channels["share_of_opportunities"].iloc[:-1].sum() == pytest.approx(1.0)
    assert any(note.startswith("1 lead is open") for note in report.notes)
    assert any("fewer than 100 leads" in note for note in report.notes)
    months = report.months.set_index(["month", "channel"])
    assert months.loc[(pd.Period("2024-02", "M"), "web"), "leads"] == 2
    assert months.loc[(pd.Period("2024-01", "M"), "web"), "opportunities"] == 1


def test_wilson_interval_matches_the_textbook_and_narrows_with_leads() -> None:
    low, high = wilson_interval(np.array([5, 500]), np.array([10, 1000]))
    assert low[0] == pytest.approx(0.2366, abs=1e-4) and high[0] == pytest.approx(0.7634, abs=1e-4)
    assert high[1] - low[1] < (high[0] - low[0]) / 5
    empty_low, _ = wilson_interval(np.array([0]), np.array([0]))
    assert np.isnan(empty_low[0])


def test_spend_gives_cost_per_lead_and_opportunity_and_return(tmp_path: Path) -> None:
    path = tmp_path / "spend.csv"
    path.write_text('channel,spend\n Web ,800\nevents,"5,000"\nradio,300\n')
    report = channel_report(table=funnel_table(), channel_column="source", spend=read_spend(path))
    channels = by_channel(report.channels)
    assert channels.loc["web", "cost_per_lead"] == pytest.approx(200.0)  # matched across case and spaces
    assert channels.loc["web", "cost_per_opportunity"] == pytest.approx(400.0)
    assert channels.loc["web", "pipeline_per_spend"] == pytest.approx(4000.0 / 800.0)
    assert channels.loc["Events", "pipeline_per_spend"] == pytest.approx(2.0)
    assert channels["spend"].isna()["paid"]  # no spend given: unknown, not free
    assert channels["spend"].isna()[ALL_CHANNELS]  # organic channels would make its cost read low
    paid = channels.loc[WITH_SPEND]  # web + Events: 6 leads, 3 known opportunities, 14,000 pipeline
    assert (paid["leads"], paid["opportunities"], paid["spend"]) == (6, 3, 5800.0)
    assert paid["cost_per_opportunity"] == pytest.approx(5800.0 / 3)
    assert paid["pipeline_per_spend"] == pytest.approx(14000.0 / 5800.0)
    assert any("'radio' matches no lead's channel" in note and "300.00" in note for note in report.notes)


def test_monthly_spend_counts_only_months_with_leads(tmp_path: Path) -> None:
    path = tmp_path / "spend.csv"
    path.write_text(
        "channel,month,spend\nweb,2024-01,100\nweb,2024-02,300\nweb,2023-12,999\npaid,2024-01,50\n"
    )
    report = channel_report(table=funnel_table(), channel_column="source", spend=read_spend(path))
    channels = by_channel(report.channels)
    assert channels.loc["web", "spend"] == pytest.approx(400.0)
    assert any("2023-12" in note for note in report.notes)
    assert any(note.startswith("paid: spend missing for some months") for note in report.notes)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("channel,spend\nweb,-5\n", "line 2, spend: '-5' is not an amount >= 0"),
        ("channel,spend\n,5\nweb,lots\n", "line 2, channel: empty"),
        ("channel,spend\nweb,lots\n", "line 2, spend: 'lots'"),
        ("channel,month,spend\nweb,March,5\n", "line 2, month: 'March' is not a month like 2024-03"),
        ('channel,spend\nweb,"1.200,50"\n', "line 2, spend: '1.200,50' is not an amount"),  # no guessing
        ('channel,spend\nweb,"1200,5"\n', "line 2, spend: '1200,5'"),
        ("source,cost\nweb,5\n", "missing column(s) channel, spend"),
    ],
)
def test_a_bad_spend_file_names_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "spend.csv"
    path.write_text(text)
    with pytest.raises(SpendFileError, match="spend file") as error:
        read_spend(path)
    assert expected in str(error.value)


def test_the_model_expected_opportunities_for_known_and_open_leads() -> None:
    report = channel_report(table=funnel_table(), channel_column="source", model=ConstantModel(0.25))
    channels = by_channel(report.channels)
    assert channels.loc["web", "expected_opportunities"] == pytest.approx(1.0)
    assert channels.loc["web", "observed_to_expected"] == pytest.approx(2.0)
    assert channels.loc["Events", "expected_from_open"] == pytest.approx(0.25)
    assert channels.loc[ALL_CHANNELS, "expected_opportunities"] == pytest.approx(8 * 0.25)
    assert "sql_share" not in channels.columns  # a model without thresholds gives no tiers


def test_errors_name_the_missing_column_or_features() -> None:
    with pytest.raises(ValueError, match="channel column 'origin' is not in the table; text columns there"):
        channel_report(table=funnel_table(), channel_column="origin")

    class OtherModel(ConstantModel):
        feature_names = ("engagement_30d",)

    with pytest.raises(ValueError, match="engagement_30d"):
        channel_report(table=funnel_table(), channel_column="source", model=OtherModel(0.1))


def test_without_timestamps_there_are_no_months_and_monthly_spend_is_refused(tmp_path: Path) -> None:
    report = channel_report(table=funnel_table(), channel_column="source", time_axis=TimeAxis.NONE)
    assert report.months.empty and not report.channels.empty
    path = tmp_path / "spend.csv"
    path.write_text("channel,month,spend\nweb,2024-01,100\n")
    with pytest.raises(ValueError, match="no timestamps"):
        channel_report(
            table=funnel_table(), channel_column="source", time_axis=TimeAxis.NONE, spend=read_spend(path)
        )
    assert channel_plot(report).axes  # a plot without months still draws the rates


def test_channels_command_writes_the_report_and_refuses_bad_spend_readably(tmp_path: Path) -> None:
    table_path = tmp_path / "table.parquet"
    funnel_table().to_parquet(table_path)
    spend = tmp_path / "spend.csv"
    spend.write_text("channel,spend\nweb,800\n")
    out = tmp_path / "reports"
    runner = CliRunner()
    arguments = ["channels", "--table", str(table_path), "--channel", "source", "--spend", str(spend)]
    result = runner.invoke(app, [*arguments, "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "web" in result.output and "50.0 (" in result.output
    written = pd.read_csv(out / "channels.csv")
    assert written.loc[written["channel"] == "web", "cost_per_opportunity"].item() == pytest.approx(400.0)
    assert (out / "channels.png").stat().st_size > 10_000
    assert (out / "channel_months.csv").exists()
    spend.write_text("channel,spend\nweb,-1\n")
    result = runner.invoke(app, [*arguments, "--output", str(out)])
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)  # a message, not a traceback
    assert "line 2, spend" in result.output


def test_thousands_commas_and_a_bom_are_read(tmp_path: Path) -> None:
    path = tmp_path / "spend.csv"
    path.write_bytes('\ufeffChannel,Spend\nweb,"12,500.50"\n'.encode())
    assert read_spend(path)["spend"].tolist() == [12500.5]


def test_spellings_that_differ_in_case_are_one_channel_shown_by_its_commonest_spelling(
    tmp_path: Path,
) -> None:
    table = funnel_table()
    table.loc[table["lead_id"] == "w4", "source"] = " WEB"
    path = tmp_path / "spend.csv"
    path.write_text("channel,spend\nWeb,800\n")
    report = channel_report(table=table, channel_column="source", spend=read_spend(path))
    channels = by_channel(report.channels)
    assert "WEB" not in channels.index and channels.loc["web", "leads"] == 4
    assert channels.loc["web", "spend"] == 800.0 and channels.loc[WITH_SPEND, "spend"] == 800.0


def test_a_numeric_channel_column_matches_spend_written_as_whole_numbers(tmp_path: Path) -> None:
    table = funnel_table()
    table["campaign"] = np.where(table["source"] == "web", 7.0, np.nan)
    path = tmp_path / "spend.csv"
    path.write_text("channel,spend\n7,400\n")
    channels = by_channel(
        channel_report(table=table, channel_column="campaign", spend=read_spend(path)).channels
    )
    assert channels.loc["7", "cost_per_lead"] == pytest.approx(100.0)
    assert channels.loc[MISSING_CHANNEL, "leads"] == 5


def test_an_empty_table_is_a_readable_error() -> None:
    with pytest.raises(ValueError, match="no leads"):
        channel_report(table=funnel_table().head(0), channel_column="source")


def test_without_a_ledger_a_table_whose_first_snapshot_is_late_says_what_it_leaves_out() -> None:
    table = funnel_table().assign(snapshot_age_days=lambda t: t["snapshot_age_days"] + 3)
    report = channel_report(table=table, channel_column="source")
    assert any("leads that became opportunities before it are left out" in note for note in report.notes)


def test_the_build_writes_a_ledger_holding_leads_the_table_leaves_out(
    small_crm: SimulatedCRM, tmp_path: Path
) -> None:
    output = build_from_csv(
        tmp_path,
        leads=small_crm.leads,
        activities=small_crm.activities,
        outcomes=small_crm.outcomes,
        policy=SnapshotPolicy(ages_days=(3, 14), horizon_days=60),
    )
    ledger = pd.read_parquet(lead_ledger_path(output))
    table = pd.read_parquet(output)
    assert len(ledger) == len(small_crm.leads) and ledger["lead_id"].is_unique
    assert not {"email", "first_name", "last_name", "phone"} & set(ledger.columns)
    fast = ledger[(ledger["converted_at"] - ledger["created_at"]) <= pd.Timedelta(days=3)]
    assert len(fast) and not set(fast["lead_id"]) & set(table["lead_id"])  # converted before day 3
    assert (fast["label"] == 1).all()
    report = channel_report(table=table, ledger=ledger, channel_column="channel")
    total = by_channel(report.channels).loc[ALL_CHANNELS]
    assert total["leads"] == len(small_crm.leads)
    assert total["opportunities"] == int(((ledger["label"] == 1) & ledger["horizon_complete"]).sum())
    within = small_crm.outcomes.merge(small_crm.leads[["lead_id", "created_at"]], on="lead_id")
    created = pd.to_datetime(within["created_at"])
    waited = pd.to_datetime(within["converted_at"]) - created
    until = max(  # the export's end: only leads whose 60 days have passed by then are counted
        pd.to_datetime(small_crm.leads["created_at"]).max(),
        pd.to_datetime(small_crm.activities["timestamp"]).max(),
        pd.to_datetime(small_crm.outcomes["converted_at"]).max(),
    )
    ended = created + pd.Timedelta(days=60) <= until
    assert total["opportunities"] == int(((waited <= pd.Timedelta(days=60)) & ended).sum())
    assert total["opportunities"] < int((waited <= pd.Timedelta(days=60)).sum())  # recent ones are open


def test_months_without_any_opportunity_are_named() -> None:
    table = funnel_table()
    early = pd.DataFrame(
        {
            "lead_id": [f"old{i}" for i in range(60)],
            "source": "web",
            "as_of": pd.Timestamp("2023-11-10"),
            "snapshot_age_days": 0,
            "label": pd.array([0] * 60, dtype="Int8"),
            "label_amount": 0.0,
            "score_input": 0.0,
        }
    )
    report = channel_report(table=pd.concat([table, early], ignore_index=True), channel_column="source")
    assert any("no opportunity at all (2023-11)" in note for note in report.notes)
    assert not any(
        "no opportunity at all" in note for note in channel_report(table=table, channel_column="source").notes
    )


def test_a_calibrated_model_expects_about_the_opportunities_each_large_channel_had(trained: Trained) -> None:
    report = channel_report(table=trained.table, channel_column="channel", model=trained.result.model)
    channels = report.channels.set_index("channel")
    total = channels.loc[ALL_CHANNELS]
    assert total["scored_leads"] > 5_000
    assert 0.85 < total["observed_to_expected"] < 1.15
    large = channels[(channels["scored_opportunities"] >= 100) & ~channels.index.isin([ALL_CHANNELS])]
    assert len(large) >= 2
    assert ((large["observed_to_expected"] > 0.7) & (large["observed_to_expected"] < 1.3)).all(), large
    # tiers at first snapshot, per channel: SQL is within MQL, and SQL leads convert above the channel's rate
    assert (channels["sql_share"] <= channels["mql_share"]).all()
    rows = lead_rows(trained.table)
    probability = trained.result.model.predict_proba_features(rows)
    assert total["sql_share"] == pytest.approx(np.mean(probability >= trained.result.model.thresholds.sql))
    assert total["sql_precision"] > total["scored_opportunities"] / total["scored_leads"]
    # the registered model was fitted on every labelled row here: the report says agreement proves little
    fitted_note = [note for note in report.notes if "from its training period" in note]
    assert len(fitted_note) == 1 and "not a check" in fitted_note[0]
    assert "0 of" not in fitted_note[0]


def test_channels_command_adds_the_registered_model_s_view(trained: Trained, tmp_path: Path) -> None:
    assert trained.result.model_version is not None
    out = tmp_path / "reports"
    arguments = ["channels", "--table", str(trained.table_path), "--model-name", "leadscore-test"]
    result = CliRunner().invoke(
        app,
        [*arguments, "--alias", trained.result.model_version, "--output", str(out)],
        env={"COLUMNS": "160"},
    )
    assert result.exit_code == 0, result.output
    assert "the model's view (leadscore-test" in result.output and "at SQL" in result.output
    written = pd.read_csv(out / "channels.csv").set_index("channel")
    assert 0.85 < written.loc[ALL_CHANNELS, "observed_to_expected"] < 1.15
    assert lead_ledger_path(trained.table_path).exists()  # the native build wrote it: every lead counted
    assert written.loc[ALL_CHANNELS, "leads"] == len(trained.crm.leads)
    result = CliRunner().invoke(app, [*arguments, "--alias", "nonexistent", "--output", str(out)])
    assert result.exit_code != 0 and "has no 'nonexistent' alias yet" in result.output


def test_the_command_in_a_fresh_process_prints_no_third_party_noise(tmp_path: Path) -> None:
    table_path = tmp_path / "table.parquet"
    funnel_table().to_parquet(table_path)
    arguments = ["--table", str(table_path), "--channel", "source", "--output", str(tmp_path / "out")]
    done = subprocess.run(
        [sys.executable, "-m", "leadscore", "channels", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LEADSCORE_HOME": str(tmp_path / "home"), "COLUMNS": "120"},
    )
    assert done.returncode == 0, done.stderr
    assert (
        "PySpark does not yet fully support" not in done.stderr
    )  # cli.run filters it (pandera imports pyspark.pandas)
    assert "Warning" not in done.stderr, done.stderr


def won_ledger() -> pd.DataFrame:
    rows = [
        # lead, channel, label, horizon complete, won_at, won amount
        ("a1", "web", 1, True, "2024-03-01", 1000.0),
        ("a2", "web", 1, True, None, None),
        (
            "a3",
            "web",
            0,
            True,
            "2024-06-01",
            700.0,
        ),  # an opportunity after the horizon, won: not this funnel's
        ("a4", "web", 1, False, "2024-04-01", 300.0),  # converted, horizon still open: open, not in the rates
        ("b1", "events", 1, True, "2024-03-09", 5000.0),
        ("b2", "events", 0, True, None, None),
    ]
    ledger = pd.DataFrame(
        rows, columns=["lead_id", "channel", "label", "horizon_complete", "won_at", "won_amount"]
    )
    ledger["created_at"] = pd.Timestamp("2024-01-15")
    ledger["label"] = ledger["label"].astype("Int8")
    ledger["won_at"] = pd.to_datetime(ledger["won_at"])
    ledger["label_amount"] = np.where(ledger["label"] == 1, 2000.0, 0.0)
    return ledger


def test_won_deals_and_revenue_follow_each_channel_to_its_return_on_spend(tmp_path: Path) -> None:
    path = tmp_path / "spend.csv"
    path.write_text("channel,spend\nweb,100\nevents,1000\n")
    report = channel_report(
        table=funnel_table(), ledger=won_ledger(), channel_column="channel", spend=read_spend(path)
    )
    channels = by_channel(report.channels)
    web, events = channels.loc["web"], channels.loc["events"]
    assert (web["leads"], web["outcome_known"], web["opportunities"], web["won"]) == (4, 3, 2, 1)
    assert web["win_rate"] == pytest.approx(0.5) and web["win_low"] < 0.5 < web["win_high"]
    assert web["revenue"] == pytest.approx(1000.0)  # a3's win came after the horizon, a4 is open
    assert web["cost_per_win"] == pytest.approx(100.0) and web["revenue_per_spend"] == pytest.approx(10.0)
    assert (events["won"], events["revenue"], events["cost_per_win"]) == (1, 5000.0, 1000.0)
    total, paid = channels.loc[ALL_CHANNELS], channels.loc[WITH_SPEND]
    assert (total["won"], total["revenue"]) == (2, 6000.0)
    assert paid["revenue_per_spend"] == pytest.approx(6000.0 / 1100.0)
    assert any(note.startswith("won: opportunities within the horizon") for note in report.notes)
    assert any("1 of them already became an opportunity" in note for note in report.notes)


def test_without_won_dates_there_are_no_won_columns() -> None:
    ledger = won_ledger().assign(won_at=pd.NaT)
    report = channel_report(table=funnel_table(), ledger=ledger, channel_column="channel")
    assert not {"won", "win_rate", "revenue"} & set(report.channels.columns)


def test_a_bad_won_date_or_amount_in_a_native_export_loses_no_opportunity(
    small_crm: SimulatedCRM, tmp_path: Path
) -> None:
    outcomes = small_crm.outcomes.copy()
    outcomes["won_at"] = outcomes["won_at"].astype(object)
    won = outcomes.index[outcomes["won_at"].notna()]
    outcomes.loc[won[0], "won_at"] = "TBD"  # unreadable: missing, with a warning
    outcomes.loc[won[1], "won_amount"] = -5.0  # a refund: missing, with a warning
    outcomes.loc[won[2], "won_at"] = "2100-01-01"  # a planned close date after the export: not a win
    output = build_from_csv(
        tmp_path,
        leads=small_crm.leads,
        activities=small_crm.activities,
        outcomes=outcomes,
        policy=SnapshotPolicy(ages_days=(3, 14), horizon_days=60),
    )
    ledger = pd.read_parquet(lead_ledger_path(output)).set_index("lead_id")
    assert int(ledger["converted_at"].notna().sum()) == len(outcomes)  # every opportunity is still there
    ids = outcomes.loc[won[:3], "lead_id"].astype(str).tolist()
    assert pd.isna(ledger.loc[ids[0], "won_at"]) and pd.isna(ledger.loc[ids[2], "won_at"])
    assert pd.notna(ledger.loc[ids[1], "won_at"]) and np.isnan(ledger.loc[ids[1], "won_amount"])
    assert int(ledger["won_at"].notna().sum()) == len(won) - 2
    expected = small_crm.outcomes.loc[won[3:], ["lead_id", "won_at"]].set_index("lead_id")["won_at"]
    got = ledger.loc[expected.index.astype(str), "won_at"]
    as_us = pd.to_datetime(expected).to_numpy().astype("datetime64[us]")  # the ledger keeps microseconds
    assert (pd.to_datetime(got).to_numpy().astype("datetime64[us]") == as_us).all()

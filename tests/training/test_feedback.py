"""Rep feedback against matured outcomes: who was right, with intervals; and the command end to end."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.ledger.store import Ledger, LedgerError, ScoreEntry
from leadscore.training.feedback import feedback_report

T0 = pd.Timestamp("2025-03-01")


def verdicts(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    """(lead_id, tier, verdict, reason) feedback on scores as of T0."""
    return pd.DataFrame(
        {
            "lead_id": [r[0] for r in rows],
            "tier": [r[1] for r in rows],
            "verdict": [r[2] for r in rows],
            "reason": [r[3] for r in rows],
            "score_as_of": T0,
            "probability": [0.6 if r[1] == "sales_ready" else 0.05 for r in rows],
        }
    )


def test_who_was_right_follows_the_outcome() -> None:
    rows = [(f"r{i}", "sales_ready", "disagree", "no_budget") for i in range(40)]  # reps say "not worth it"
    rows += [(f"a{i}", "sales_ready", "agree", "engaged_now") for i in range(40)]
    rows += [("late", "nurture", "agree", "other"), ("elsewhere", "nurture", "agree", "other")]
    converted = {f"r{i}": T0 + pd.Timedelta(days=10) for i in range(10)}  # 10 of 40 converted anyway
    converted |= {f"a{i}": T0 + pd.Timedelta(days=5) for i in range(30)}
    converted["late"] = T0 + pd.Timedelta(days=200)  # after the horizon: not an opportunity of this score
    ledger = pd.DataFrame(
        {
            "lead_id": [r[0] for r in rows if r[0] != "elsewhere"],
            "converted_at": [converted.get(r[0], pd.NaT) for r in rows if r[0] != "elsewhere"],
        }
    )
    report = feedback_report(
        verdicts(rows), ledger=ledger, until=T0 + pd.Timedelta(days=300), horizon_days=90
    )
    table = report.table.set_index(["verdict", "reason"])
    disagree = table.loc[("disagree", "no_budget")]
    assert disagree["matured"] == 40 and disagree["converted"] == 10
    assert disagree["rep_right"] == pytest.approx(0.75) and disagree["model_right"] == pytest.approx(0.25)
    assert disagree["rep_right_low"] < 0.75 < disagree["rep_right_high"]
    agree = table.loc[("agree", "engaged_now")]
    assert agree["rate"] == pytest.approx(0.75) and agree["rep_right"] == pytest.approx(0.75)
    late = table.loc[("agree", "other")]
    assert late["matured"] == 1 and late["converted"] == 0 and late["note"] == "too few to judge"
    assert any("1 verdicts are on leads this export does not hold" in n for n in report.notes)
    assert table.loc[("(all)", "(all)"), "feedback"] == len(rows)
    assert "| verdict | reason |" in report.markdown()


def test_verdicts_whose_horizon_is_open_wait() -> None:
    rows = [("x", "sales_ready", "agree", "good_fit")]
    ledger = pd.DataFrame({"lead_id": ["x"], "converted_at": [pd.NaT]})
    report = feedback_report(verdicts(rows), ledger=ledger, until=T0 + pd.Timedelta(days=30), horizon_days=90)
    assert report.table.set_index(["verdict", "reason"]).loc[("agree", "good_fit"), "matured"] == 0
    assert any("wait for their horizon" in n for n in report.notes)


def test_feedback_needs_a_score_and_good_values(tmp_path: Path) -> None:
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        with pytest.raises(LedgerError, match="lead_id: the ledger holds no score of this lead"):
            ledger.add_feedback(lead_id="nobody", verdict="agree", reason="other")
        entry = ScoreEntry(
            lead_id="L1", as_of=datetime(2025, 3, 1), scored_at=datetime(2025, 3, 1, 1),
            model_name="m", model_version="3", probability=0.4, score=40.0, feature_hash="h",
            source="score", tier="sales_ready",
        )  # fmt: skip
        ledger.append([entry])
        with pytest.raises(LedgerError, match="reason: 'vibes' is not one of"):
            ledger.add_feedback(lead_id="L1", verdict="agree", reason="vibes")
        with pytest.raises(LedgerError, match="note: must be text of at most 500"):
            ledger.add_feedback(lead_id="L1", verdict="agree", reason="other", note="x" * 501)
        given = ledger.add_feedback(lead_id="L1", verdict="disagree", reason="bad_timing")
        assert given.model_version == "3" and given.score == 40.0 and given.tier == "sales_ready"
        assert ledger.forget(lead_id="L1") == 2
    finally:
        ledger.close()


def test_the_feedback_command_reads_the_ledger_against_the_export(tmp_path: Path) -> None:
    from leadscore.features.training_table import lead_ledger_path

    table = tmp_path / "table.parquet"
    pd.DataFrame({"lead_id": ["L1"]}).to_parquet(table)
    pd.DataFrame(
        {"lead_id": ["L1"], "created_at": [T0], "converted_at": [T0 + pd.Timedelta(days=3)]}
    ).to_parquet(lead_ledger_path(table))
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger.open(url)
    entry = ScoreEntry(
        lead_id="L1", as_of=T0.to_pydatetime(), scored_at=T0.to_pydatetime(), model_name="m",
        model_version="1", probability=0.1, score=10.0, feature_hash="h", source="score", tier="nurture",
    )  # fmt: skip
    ledger.append([entry])
    ledger.add_feedback(lead_id="L1", verdict="disagree", reason="engaged_now")
    ledger.close()
    out = tmp_path / "report"
    arguments = ["feedback", "--table", str(table), "--ledger-url", url, "--out", str(out)]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    written = pd.read_csv(out / "feedback.csv").set_index(["verdict", "reason"])
    assert written.loc[("disagree", "engaged_now"), "rep_right"] == 1.0  # the rep saw it; it converted
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    result = CliRunner().invoke(app, ["feedback", "--table", str(table), "--ledger-url", empty])
    assert result.exit_code == 2 and "no rep feedback yet" in result.output

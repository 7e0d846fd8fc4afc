"""The ledger store on SQLite: migrations from nothing, append, history with trend, forget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from leadscore.ledger.store import (
    LEDGER_URL_ENV,
    TREND_POINTS,
    VERSION_TABLE,
    Ledger,
    LedgerError,
    ScoreEntry,
    ledger_url,
    trend_of,
)

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def entry(lead_id: str = "L-1", *, score: float = 40.0, days: int = 0, **extra: object) -> ScoreEntry:
    values: dict[str, object] = {
        "lead_id": lead_id,
        "as_of": T0 + timedelta(days=days),
        "scored_at": T0 + timedelta(days=days, minutes=1),
        "model_name": "leadscore",
        "model_version": "3",
        "probability": score / 100,
        "probability_low": max(score / 100 - 0.05, 0),
        "probability_high": min(score / 100 + 0.05, 1),
        "score": score,
        "tier": "nurture",
        "grade": "B2",
        "reasons": [{"concept": "page_pricing", "sentence": "2 pricing visits", "impact": 9.0}],
        "feature_hash": "ab" * 32,
        "source": "score",
    }
    values.update(extra)
    return ScoreEntry(**values)  # type: ignore[arg-type]


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    store = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield store
    store.close()


def test_migrations_create_the_schema_from_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "ledger.db"
    Ledger.open(f"sqlite:///{path}").close()
    engine = sa.create_engine(f"sqlite:///{path}")
    inspector = sa.inspect(engine)
    assert {"ledger_scores", "ledger_feedback", VERSION_TABLE} <= set(inspector.get_table_names())
    assert "alembic_version" not in inspector.get_table_names()  # MLflow's own stays free
    columns = {c["name"] for c in inspector.get_columns("ledger_scores")}
    assert {"lead_id", "as_of", "scored_at", "model_name", "model_version", "probability"} <= columns
    assert {"probability_low", "probability_high", "score", "tier", "grade", "reasons"} <= columns
    assert {"feature_hash", "source"} <= columns
    feedback = {c["name"] for c in inspector.get_columns("ledger_feedback")}
    assert {"lead_id", "verdict", "reason", "note", "score_as_of", "model_version", "score"} <= feedback
    with engine.connect() as connection:
        assert connection.execute(sa.text(f"select version_num from {VERSION_TABLE}")).scalar_one() == "0002"
    engine.dispose()
    again = Ledger.open(f"sqlite:///{path}")  # upgrading an up-to-date ledger changes nothing
    assert again.count() == 0
    again.close()


def test_default_is_sqlite_under_leadscore_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LEDGER_URL_ENV, raising=False)
    monkeypatch.setenv("LEADSCORE_HOME", str(tmp_path))
    assert ledger_url() == f"sqlite:///{tmp_path.resolve() / 'ledger.db'}"
    store = Ledger.open()
    store.append([entry()])
    store.close()
    assert (tmp_path / "ledger.db").is_file()
    monkeypatch.setenv(LEDGER_URL_ENV, f"sqlite:///{tmp_path / 'other.db'}")
    assert ledger_url().endswith("other.db")


def test_history_in_time_order_with_previous_change_and_trend(ledger: Ledger) -> None:
    # appended out of order: history sorts by as-of time
    ledger.append([entry(score=86.0, days=3), entry(score=40.0, days=0), entry(score=42.0, days=1)])
    ledger.append([entry(score=30.0, days=5), entry("L-2", score=10.0)])
    history = ledger.history(lead_id="L-1")
    assert [h.entry.score for h in history] == [40.0, 42.0, 86.0, 30.0]
    assert [h.previous_score for h in history] == [None, 40.0, 42.0, 86.0]
    assert [h.change for h in history] == [None, 2.0, 44.0, -56.0]
    assert [h.trend for h in history] == [None, "steady", "improving", "declining"]
    first = history[0]
    assert first.entry.as_of == T0.replace(tzinfo=None)  # stored as naive UTC
    assert first.entry.reasons[0]["concept"] == "page_pricing"
    payload = first.as_dict()
    assert payload["as_of"] == "2025-03-01T09:00:00Z" and payload["trend"] is None
    assert [h.entry.score for h in ledger.history(lead_id="L-1", limit=2)] == [86.0, 30.0]
    assert ledger.history(lead_id="nobody") == []


def test_trend_thresholds() -> None:
    assert trend_of(TREND_POINTS) == "improving"
    assert trend_of(TREND_POINTS - 0.1) == "steady"
    assert trend_of(0) == "steady"
    assert trend_of(-TREND_POINTS + 0.1) == "steady"
    assert trend_of(-TREND_POINTS) == "declining"


def test_forget_deletes_every_row_of_the_lead_only(ledger: Ledger) -> None:
    ledger.append([entry(days=d) for d in range(3)] + [entry("L-2")])
    assert ledger.forget(lead_id="L-1") == 3
    assert ledger.history(lead_id="L-1") == []
    assert ledger.forget(lead_id="L-1") == 0
    assert ledger.count() == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"score": 101.0, "probability": 0.5}, "score"),
        ({"probability": 1.5}, "probability"),
        ({"probability_low": -0.1}, "probability_low"),
        ({"source": "web"}, "source"),
        ({"lead_id": ""}, "lead_id"),
        ({"as_of": "yesterday"}, "as_of"),
        ({"model_version": ""}, "model_version"),
    ],
)
def test_bad_entries_name_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(LedgerError, match=f"^{field}:"):
        entry(**change)


def test_bad_url_names_the_variable() -> None:
    with pytest.raises(LedgerError, match=LEDGER_URL_ENV):
        Ledger.open("not a url")

"""The score ledger's store: one SQLAlchemy 2 code path for SQLite (the default) and PostgreSQL.

Open it with :meth:`Ledger.open`: the URL is the argument, else ``$LEADSCORE_LEDGER_URL``, else a
SQLite file ``ledger.db`` under :func:`leadscore.settings.state_dir`; the Alembic migrations shipped in
``leadscore/ledger/migrations`` bring the schema up to date on every open (their version table is
``ledger_alembic_version``, so a database shared with MLflow keeps both apart).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

from leadscore.settings import state_dir

logger = logging.getLogger("leadscore.ledger")

LEDGER_URL_ENV = "LEADSCORE_LEDGER_URL"
LEDGER_FILE = "ledger.db"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "ledger_alembic_version"
Source = Literal["score", "explain", "batch", "cli", "shadow"]
SOURCES: tuple[str, ...] = ("score", "explain", "batch", "cli", "shadow")
#: a challenger's score of a lead the champion scored, never returned to the caller
SHADOW: Source = "shadow"
Trend = Literal["improving", "steady", "declining"]
#: A change of at least this many score points (0-100 scale) up is "improving", down "declining";
#: anything smaller is "steady" (score noise between two close as-of times stays steady).
TREND_POINTS = 5.0
MAX_LEAD_ID = 200

metadata = sa.MetaData()
_id_type = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER keys only
scores = sa.Table(
    "ledger_scores",
    metadata,
    sa.Column("id", _id_type, primary_key=True, autoincrement=True),
    sa.Column("lead_id", sa.String(MAX_LEAD_ID), nullable=False),
    sa.Column("as_of", sa.DateTime(), nullable=False),
    sa.Column("scored_at", sa.DateTime(), nullable=False),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("probability", sa.Float(), nullable=False),
    sa.Column("probability_low", sa.Float(), nullable=True),
    sa.Column("probability_high", sa.Float(), nullable=True),
    sa.Column("score", sa.Float(), nullable=False),
    sa.Column("tier", sa.String(40), nullable=True),
    sa.Column("grade", sa.String(8), nullable=True),
    sa.Column("reasons", sa.JSON(), nullable=False),
    sa.Column("feature_hash", sa.String(64), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Index("ix_ledger_scores_lead_time", "lead_id", "as_of", "scored_at"),
)
feedback = sa.Table(
    "ledger_feedback",
    metadata,
    sa.Column("id", _id_type, primary_key=True, autoincrement=True),
    sa.Column("lead_id", sa.String(MAX_LEAD_ID), nullable=False),
    sa.Column("given_at", sa.DateTime(), nullable=False),
    sa.Column("verdict", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(40), nullable=False),
    sa.Column("note", sa.String(500), nullable=True),
    sa.Column("score_as_of", sa.DateTime(), nullable=False),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("probability", sa.Float(), nullable=False),
    sa.Column("score", sa.Float(), nullable=False),
    sa.Column("tier", sa.String(40), nullable=True),
    sa.Index("ix_ledger_feedback_lead", "lead_id", "given_at"),
)
Verdict = Literal["agree", "disagree"]
VERDICTS: tuple[str, ...] = ("agree", "disagree")
#: why a rep agrees or disagrees, as a CRM picklist sends it
REASONS: tuple[str, ...] = (
    "engaged_now",  # the lead is talking to us: ready
    "good_fit",
    "not_decision_maker",
    "no_budget",
    "bad_timing",
    "wrong_contact",  # bad data: wrong person or bounced
    "existing_customer",
    "competitor",
    "student_or_job_seeker",
    "other",
)
MAX_NOTE = 500


class LedgerError(ValueError):
    """A ledger entry or argument is unusable; the message names the field and the problem."""


class LedgerUnavailable(RuntimeError):
    """The ledger database cannot be reached or upgraded."""


def ledger_url() -> str:
    """``$LEADSCORE_LEDGER_URL``, else ``sqlite:///<state_dir>/ledger.db``."""
    configured = os.environ.get(LEDGER_URL_ENV, "").strip()
    return configured or f"sqlite:///{state_dir() / LEDGER_FILE}"


def utc_naive(value: datetime | str, *, field_name: str) -> datetime:
    """``value`` (a datetime or ISO 8601 text) as a naive UTC datetime, as the ledger stores times."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError as error:
            raise LedgerError(f"{field_name}: {value!r} is not an ISO 8601 time") from error
    if not isinstance(value, datetime):
        raise LedgerError(f"{field_name}: expected a datetime or ISO 8601 text, got {type(value).__name__}")
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def feature_hash(payload: Any) -> str:
    """SHA-256 (hex) of ``payload`` as canonical JSON: equal inputs give equal hashes."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, kw_only=True)
class ScoreEntry:
    """One score to append: what the model said of one lead, when, by which model, from where."""

    lead_id: str
    as_of: datetime
    scored_at: datetime
    model_name: str
    model_version: str
    probability: float
    score: float
    feature_hash: str
    source: Source
    probability_low: float | None = None
    probability_high: float | None = None
    tier: str | None = None
    grade: str | None = None
    reasons: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.lead_id, str) or not 1 <= len(self.lead_id) <= MAX_LEAD_ID:
            raise LedgerError(f"lead_id: must be text of 1 to {MAX_LEAD_ID} characters")
        if self.source not in SOURCES:
            raise LedgerError(f"source: {self.source!r} is not one of {', '.join(SOURCES)}")
        for name in ("probability", "probability_low", "probability_high"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise LedgerError(f"{name}: {value!r} is not a probability from 0 to 1")
        if not (isinstance(self.score, int | float) and math.isfinite(self.score) and 0 <= self.score <= 100):
            raise LedgerError(f"score: {self.score!r} is not a number from 0 to 100")
        for name in ("model_name", "model_version", "feature_hash"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise LedgerError(f"{name}: must be non-empty text")
        object.__setattr__(self, "as_of", utc_naive(self.as_of, field_name="as_of"))
        object.__setattr__(self, "scored_at", utc_naive(self.scored_at, field_name="scored_at"))

    @classmethod
    def from_scored_lead(
        cls, scored: Any, *, source: Source, features: Any, scored_at: datetime | None = None
    ) -> ScoreEntry:
        """The entry of a :class:`~leadscore.model.records.ScoredLead` (an open, scored lead);
        ``features`` is what was scored (hashed, never stored)."""
        if scored.score is None or scored.probability is None:
            raise LedgerError(f"score: lead is {scored.status}, not scored: nothing to append")
        reasons = [r.model_dump() for r in (*scored.reasons_positive, *scored.reasons_negative)]
        return cls(
            lead_id=scored.lead_id,
            as_of=utc_naive(scored.as_of, field_name="as_of"),
            scored_at=scored_at or datetime.now(UTC),
            model_name=scored.model_name,
            model_version=scored.model_version,
            probability=scored.probability,
            probability_low=scored.probability_low,
            probability_high=scored.probability_high,
            score=scored.score,
            tier=scored.tier,
            grade=scored.grade,
            reasons=reasons,
            feature_hash=feature_hash(features),
            source=source,
        )

    def row(self) -> dict[str, Any]:
        return {column.name: getattr(self, column.name) for column in scores.columns if column.name != "id"}


@dataclass(frozen=True, kw_only=True)
class FeedbackEntry:
    """A rep's verdict on one stored score: agree or disagree, why (:data:`REASONS`), an optional note."""

    lead_id: str
    given_at: datetime
    verdict: Verdict
    reason: str
    score_as_of: datetime
    model_name: str
    model_version: str
    probability: float
    score: float
    tier: str | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.lead_id, str) or not 1 <= len(self.lead_id) <= MAX_LEAD_ID:
            raise LedgerError(f"lead_id: must be text of 1 to {MAX_LEAD_ID} characters")
        if self.verdict not in VERDICTS:
            raise LedgerError(f"verdict: {self.verdict!r} is not one of {', '.join(VERDICTS)}")
        if self.reason not in REASONS:
            raise LedgerError(f"reason: {self.reason!r} is not one of {', '.join(REASONS)}")
        if self.note is not None and (not isinstance(self.note, str) or len(self.note) > MAX_NOTE):
            raise LedgerError(f"note: must be text of at most {MAX_NOTE} characters")
        object.__setattr__(self, "given_at", utc_naive(self.given_at, field_name="given_at"))
        object.__setattr__(self, "score_as_of", utc_naive(self.score_as_of, field_name="score_as_of"))

    def row(self) -> dict[str, Any]:
        return {column.name: getattr(self, column.name) for column in feedback.columns if column.name != "id"}


@dataclass(frozen=True, kw_only=True)
class HistoryEntry:
    """One stored score with what changed since the lead's previous one (None for the first)."""

    entry: ScoreEntry
    previous_score: float | None
    change: float | None
    trend: Trend | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: times as ISO 8601 UTC text."""
        data = self.entry.row()
        data["as_of"] = self.entry.as_of.isoformat() + "Z"
        data["scored_at"] = self.entry.scored_at.isoformat() + "Z"
        data.update(previous_score=self.previous_score, change=self.change, trend=self.trend)
        return data


def trend_of(change: float) -> Trend:
    """improving at ``+TREND_POINTS`` or more, declining at ``-TREND_POINTS`` or less, else steady."""
    if change >= TREND_POINTS:
        return "improving"
    if change <= -TREND_POINTS:
        return "declining"
    return "steady"


def _postgres_driver(parsed: sa.URL) -> sa.URL:
    """A bare ``postgresql://`` URL with the driver that is installed (psycopg 3, else psycopg2)."""
    if parsed.drivername != "postgresql":
        return parsed
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return parsed.set(drivername="postgresql+psycopg2")
    return parsed


def _engine(url: str) -> sa.Engine:
    parsed = _postgres_driver(sa.make_url(url))
    options: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        options["connect_args"] = {"timeout": 5}
    elif parsed.get_driver_name() == "psycopg2":
        options["connect_args"] = {"connect_timeout": 5}
    return sa.create_engine(parsed, **options)


def upgrade(engine: sa.Engine) -> None:
    """Run the shipped Alembic migrations on ``engine`` up to the newest revision."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class Ledger:
    """Append scores, read a lead's history with its trend, forget a lead."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str | None = None, *, migrate: bool = True) -> Ledger:
        """The ledger at ``url`` (default :func:`ledger_url`), its schema upgraded first."""
        target = url or ledger_url()
        try:
            engine = _engine(target)
        except (sa.exc.ArgumentError, ImportError) as error:
            raise LedgerError(f"{LEDGER_URL_ENV}: unusable database URL ({error})") from error
        if migrate:
            try:
                upgrade(engine)
            except sa.exc.SQLAlchemyError as error:
                engine.dispose()
                raise LedgerUnavailable(f"ledger database unreachable or not upgradable: {error}") from error
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    def append(self, entries: Sequence[ScoreEntry]) -> int:
        """Insert ``entries`` in one transaction; returns how many were written."""
        if not entries:
            return 0
        with self.engine.begin() as connection:
            connection.execute(scores.insert(), [entry.row() for entry in entries])
        return len(entries)

    def history(
        self, *, lead_id: str, limit: int | None = None, include_shadow: bool = False
    ) -> list[HistoryEntry]:
        """The lead's scores in time order (as-of, then scored-at), each with the previous score, the
        change in points and its :func:`trend_of`; ``limit`` keeps the newest ones. A challenger's
        shadow scores (never shown to a rep) only with ``include_shadow``."""
        if limit is not None and limit < 1:
            raise LedgerError(f"limit: {limit} must be at least 1")
        query = sa.select(scores).where(scores.c.lead_id == lead_id)
        if not include_shadow:
            query = query.where(scores.c.source != SHADOW)
        query = query.order_by(scores.c.as_of, scores.c.scored_at, scores.c.id)
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        history: list[HistoryEntry] = []
        previous: float | None = None
        for row in rows:
            data = {k: v for k, v in row.items() if k != "id"}
            entry = ScoreEntry(**data)
            change = None if previous is None else round(entry.score - previous, 1)
            history.append(
                HistoryEntry(
                    entry=entry,
                    previous_score=previous,
                    change=change,
                    trend=None if change is None else trend_of(change),
                )
            )
            previous = entry.score
        return history[-limit:] if limit else history

    def scores_frame(
        self, *, model_name: str | None = None, since: datetime | None = None, include_shadow: bool = False
    ) -> Any:
        """Every score (of ``model_name``, as of ``since`` or later) as a pandas frame: lead_id, as_of,
        scored_at, model_name, model_version, probability, score, tier, source. Shadow scores (a
        challenger's, never returned) only with ``include_shadow``."""
        import pandas as pd

        columns = [
            scores.c.lead_id,
            scores.c.as_of,
            scores.c.scored_at,
            scores.c.model_name,
            scores.c.model_version,
            scores.c.probability,
            scores.c.score,
            scores.c.tier,
            scores.c.source,
        ]
        query = sa.select(*columns)
        if model_name is not None:
            query = query.where(scores.c.model_name == model_name)
        if since is not None:
            query = query.where(scores.c.as_of >= since)
        if not include_shadow:
            query = query.where(scores.c.source != SHADOW)
        with self.engine.connect() as connection:
            rows = connection.execute(query.order_by(scores.c.as_of, scores.c.id)).mappings().all()
        return pd.DataFrame(rows, columns=[c.name for c in columns])

    def forget(self, *, lead_id: str) -> int:
        """Delete every row of the lead, scores and feedback; returns how many were deleted."""
        if not isinstance(lead_id, str) or not lead_id:
            raise LedgerError("lead_id: must be non-empty text")
        with self.engine.begin() as connection:
            deleted = connection.execute(scores.delete().where(scores.c.lead_id == lead_id)).rowcount
            deleted += connection.execute(feedback.delete().where(feedback.c.lead_id == lead_id)).rowcount
        return int(deleted or 0)

    def add_feedback(
        self,
        *,
        lead_id: str,
        verdict: str,
        reason: str,
        note: str | None = None,
        score_as_of: datetime | str | None = None,
        given_at: datetime | None = None,
    ) -> FeedbackEntry:
        """Store a rep's verdict on the lead's newest score (or its score as of ``score_as_of``).

        Raises :class:`LedgerError` naming the field when the lead has no such score or a value is bad.
        """
        if not isinstance(lead_id, str) or not 1 <= len(lead_id) <= MAX_LEAD_ID:
            raise LedgerError(f"lead_id: must be text of 1 to {MAX_LEAD_ID} characters")
        query = sa.select(scores).where(scores.c.lead_id == lead_id)
        if score_as_of is not None:
            query = query.where(scores.c.as_of == utc_naive(score_as_of, field_name="score_as_of"))
        query = query.order_by(scores.c.as_of.desc(), scores.c.scored_at.desc(), scores.c.id.desc()).limit(1)
        with self.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        if row is None:
            what = "score" if score_as_of is None else f"score as of {score_as_of}"
            raise LedgerError(f"lead_id: the ledger holds no {what} of this lead to give feedback on")
        entry = FeedbackEntry(
            lead_id=lead_id,
            given_at=given_at or datetime.now(UTC),
            verdict=verdict,  # type: ignore[arg-type]  # checked by FeedbackEntry
            reason=reason,
            note=note or None,
            score_as_of=row["as_of"],
            model_name=row["model_name"],
            model_version=row["model_version"],
            probability=row["probability"],
            score=row["score"],
            tier=row["tier"],
        )
        with self.engine.begin() as connection:
            connection.execute(feedback.insert(), [entry.row()])
        return entry

    def feedback_frame(self, *, model_name: str | None = None) -> Any:
        """Every feedback row (of ``model_name``) as a pandas frame, oldest first."""
        import pandas as pd

        query = sa.select(feedback)
        if model_name is not None:
            query = query.where(feedback.c.model_name == model_name)
        with self.engine.connect() as connection:
            rows = connection.execute(query.order_by(feedback.c.given_at, feedback.c.id)).mappings().all()
        return pd.DataFrame(rows, columns=[c.name for c in feedback.columns])

    def count(self) -> int:
        """Rows in the ledger."""
        with self.engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(scores)).scalar_one())

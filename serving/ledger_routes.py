"""The service's side of the score ledger: record each ``/score`` and ``/explain`` result through the
worker's :class:`~leadscore.ledger.writer.LedgerWriter` (off the request path), and the keyed routes
``GET /leads/{lead_id}/history`` and ``DELETE /leads/{lead_id}`` (erasure), mounted under ``/leads``,
and ``POST /feedback`` (a rep agrees or disagrees with a lead's newest score, with a reason code).

``LEADSCORE_LEDGER`` (default true) switches the ledger on; ``LEADSCORE_LEDGER_URL`` picks the
database (default: SQLite ``ledger.db`` under ``LEADSCORE_HOME``), ``LEADSCORE_LEDGER_BUFFER`` the
rows buffered while it is down or slow (default 10,000; more are dropped and counted in ``/metrics``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from leadscore.serving import metrics, state
from leadscore.serving.errors import error_body

if TYPE_CHECKING:  # SQLAlchemy is imported by the workers only (the supervisor reads this module too)
    from leadscore.ledger.store import ScoreEntry, Source
    from leadscore.ledger.writer import LedgerWriter, Pending
    from leadscore.model.records import RawLead, ScoredLead

logger = logging.getLogger("leadscore.serving")
HISTORY_ROUTE = "/leads/{lead_id}/history"
FORGET_ROUTE = "/leads/{lead_id}"
PREFIX = "/leads/"
FEEDBACK_ROUTE = "/feedback"
MAX_LEAD_ID = 200  # RawLead.lead_id's limit


def route_of(path: str) -> str | None:
    """The ledger route label of ``path`` (never the lead id itself), or None."""
    if path in (FEEDBACK_ROUTE, FEEDBACK_ROUTE + "/"):
        return FEEDBACK_ROUTE
    if not path.startswith(PREFIX) or len(path) <= len(PREFIX):
        return None
    if path.endswith("/history"):
        return HISTORY_ROUTE if len(path) > len(PREFIX) + len("/history") else None
    return FORGET_ROUTE


def start_writer() -> LedgerWriter:
    """The worker's writer; the database is opened (and migrated) on its thread, never at start-up."""
    from leadscore.ledger.store import Ledger
    from leadscore.ledger.writer import LedgerWriter, buffer_capacity

    return LedgerWriter(open_ledger=Ledger.open, capacity=buffer_capacity(), observer=metrics.observe_ledger)


def _hashed(lead: RawLead, as_of: str) -> dict[str, Any]:
    """What the features are computed from: the raw lead (the e-mail as its domain only) and the time."""
    fields = lead.model_dump(mode="json", exclude={"as_of", "email"})
    domain = (lead.email or "").rpartition("@")[2].strip().lower()
    return {"lead": fields, "email_domain": domain, "as_of": as_of}


def record(
    writer: LedgerWriter | None,
    *,
    source: Source,
    pairs: Sequence[tuple[ScoredLead, RawLead]],
    shadow: Any = None,
    settings: Any = None,
) -> None:
    """Hand the scored leads (open ones only) to the writer; entries are made on its thread.

    With ``shadow`` (the holder's challenger, a ``LoadedModel``) each lead is also scored by it as of
    the champion's as-of, on the writer's thread (off the request path), and appended as source
    ``shadow``: never returned. A lead the challenger cannot score is counted as dropped.
    """
    if writer is None:
        return
    from leadscore.ledger.store import ScoreEntry

    now = datetime.now(UTC)
    rows: list[Pending] = []
    kept = [
        (scored, lead)
        for scored, lead in pairs
        if scored.score is not None and scored.lead_id == lead.lead_id
    ]
    batch = _ShadowBatch(shadow, settings, kept, scored_at=now) if shadow is not None and settings else None
    for index, (scored, lead) in enumerate(kept):

        def make(scored: ScoredLead = scored, lead: RawLead = lead) -> ScoreEntry:
            return ScoreEntry.from_scored_lead(
                scored, source=source, features=_hashed(lead, scored.as_of), scored_at=now
            )

        rows.append((scored.lead_id, make))
        if batch is not None:
            rows.append((scored.lead_id, lambda index=index: batch.entry(index)))  # type: ignore[misc]
    writer.submit(rows)


class _ShadowBatch:
    """The challenger's scores of one request's leads, each as of the champion's as-of: computed in one
    model call when the writer thread makes the first of them (lead by lead if that call fails, so one
    lead the challenger cannot score is the only one dropped)."""

    def __init__(
        self, shadow: Any, settings: Any, pairs: Sequence[tuple[ScoredLead, RawLead]], *, scored_at: datetime
    ) -> None:
        self.shadow, self.settings, self.scored_at = shadow, settings, scored_at
        self.leads = [(lead, scored.as_of) for scored, lead in pairs]
        self._results: list[Any] | None = None

    def _score(self, leads: Sequence[tuple[RawLead, str]]) -> list[Any]:
        from leadscore.serving.engine import score_request
        from leadscore.serving.schemas import ScoreRequest

        body = [dict(lead.model_dump(mode="json"), as_of=as_of) for lead, as_of in leads]
        request = ScoreRequest.model_validate({"leads": body, "explain": False})
        return list(score_request(self.shadow, request, self.settings).results)

    def entry(self, index: int) -> ScoreEntry:
        from leadscore.ledger.store import SHADOW, ScoreEntry

        if self._results is None:
            try:
                self._results = self._score(self.leads)
            except Exception:
                self._results = [None] * len(self.leads)
        scored = self._results[index]
        lead, as_of = self.leads[index]
        if scored is None:  # the batch call failed: this lead alone (raises if it cannot be scored)
            scored = self._score([(lead, as_of)])[0]
        return ScoreEntry.from_scored_lead(
            scored, source=SHADOW, features=_hashed(lead, as_of), scored_at=self.scored_at
        )


def _json(status: int, body: bytes) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def _writer_or_error(request: Request) -> tuple[LedgerWriter | None, str, Response | None]:
    lead_id = request.path_params["lead_id"]
    writer = state.LEDGER
    if writer is None:
        return None, lead_id, _json(404, error_body(404, "the score ledger is off (LEADSCORE_LEDGER=false)"))
    if not 1 <= len(lead_id) <= MAX_LEAD_ID:
        return None, lead_id, _json(422, error_body(422, f"lead_id: must be 1 to {MAX_LEAD_ID} characters"))
    return writer, lead_id, None


def history(request: Request) -> Response:
    """``GET /leads/{lead_id}/history``: the lead's scores in time order with change and trend."""
    writer, lead_id, refused = _writer_or_error(request)
    if refused is not None or writer is None:
        return refused or _json(500, error_body(500, "unexpected error; the server logged it"))
    try:
        entries = writer.ledger().history(lead_id=lead_id)
    except Exception as error:
        logger.warning("ledger history unavailable (%s)", type(error).__name__)
        return _json(503, error_body(503, "the score ledger database cannot be reached: retry later"))
    body = {"lead_id": lead_id, "history": [entry.as_dict() for entry in entries]}
    return _json(200, json.dumps(body).encode())


def forget(request: Request) -> Response:
    """``DELETE /leads/{lead_id}``: erase every ledger row of the lead (buffered ones too)."""
    writer, lead_id, refused = _writer_or_error(request)
    if refused is not None or writer is None:
        return refused or _json(500, error_body(500, "unexpected error; the server logged it"))
    try:
        deleted = writer.forget(lead_id=lead_id)
    except Exception as error:
        logger.warning("ledger erasure failed (%s)", type(error).__name__)
        return _json(503, error_body(503, "the score ledger database cannot be reached: retry later"))
    logger.info("ledger: erased %d row(s) of one lead", deleted)  # nothing of the lead in the log
    return _json(200, json.dumps({"lead_id": lead_id, "deleted": deleted}).encode())


_FEEDBACK_FIELDS = {"lead_id", "verdict", "reason", "note", "score_as_of"}


async def give_feedback(request: Request) -> Response:
    """``POST /feedback``: ``{"lead_id", "verdict": agree|disagree, "reason", "note"?, "score_as_of"?}``,
    stored with the score it refers to (the lead's newest, or the one as of ``score_as_of``)."""
    from leadscore.ledger.store import REASONS, VERDICTS, LedgerError
    from leadscore.model.records import Problem

    writer = state.LEDGER
    if writer is None:
        return _json(404, error_body(404, "the score ledger is off (LEADSCORE_LEDGER=false)"))
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        return _json(400, error_body(400, "the body is not JSON"))
    if not isinstance(body, dict):
        return _json(422, error_body(422, "the body must be a JSON object"))
    problems = [Problem(field=k, problem="unknown field") for k in sorted(set(body) - _FEEDBACK_FIELDS)]
    for name, allowed in (("verdict", VERDICTS), ("reason", REASONS)):
        if body.get(name) not in allowed:
            problems.append(
                Problem(field=name, problem=f"{body.get(name)!r} is not one of {', '.join(allowed)}")
            )
    for name in ("lead_id", "note", "score_as_of"):
        value = body.get(name)
        if (name == "lead_id" or value is not None) and not isinstance(value, str):
            problems.append(Problem(field=name, problem="must be text"))
    if problems:
        return _json(422, error_body(422, "the feedback has problems", problems))
    try:
        entry = writer.ledger().add_feedback(
            lead_id=body["lead_id"],
            verdict=body["verdict"],
            reason=body["reason"],
            note=body.get("note"),
            score_as_of=body.get("score_as_of"),
        )
    except LedgerError as error:
        field, _, problem = str(error).partition(": ")
        return _json(422, error_body(422, str(error), [Problem(field=field, problem=problem or str(error))]))
    except Exception as error:
        logger.warning("ledger feedback not stored (%s)", type(error).__name__)
        return _json(503, error_body(503, "the score ledger database cannot be reached: retry later"))
    metrics.observe_feedback(verdict=entry.verdict)
    answer = {
        "lead_id": entry.lead_id,
        "verdict": entry.verdict,
        "reason": entry.reason,
        "score_as_of": entry.score_as_of.isoformat() + "Z",
        "model_version": entry.model_version,
        "score": entry.score,
    }
    return _json(201, json.dumps(answer).encode())


app = Starlette(
    routes=[
        Route("/{lead_id:path}/history", history, methods=["GET", "HEAD"]),
        Route("/{lead_id:path}", forget, methods=["DELETE"]),
    ]
)
feedback_app = Starlette(routes=[Route("/", give_feedback, methods=["POST"])])

"""What ``/score``, ``/score-records`` and ``/explain`` answer for a parsed request, as one function each.

The service calls these on its own threads; the batch process (:mod:`leadscore.serving.batch_process`)
calls the very same functions in a child process. A request's answer is either the response model or
a ready error :class:`~starlette.responses.Response` (413, 422, 503 with the documented JSON body).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from starlette.responses import Response

from leadscore.serving import engine
from leadscore.serving.errors import ModelUnavailable, PayloadTooLarge, RequestInvalid, error_body, lead_hash
from leadscore.serving.schemas import (
    ExplainRequest,
    ExplainResponse,
    Problem,
    RecordsRequest,
    ScoreRequest,
    ScoreResponse,
)
from leadscore.serving.settings import ServingSettings

logger = logging.getLogger("leadscore.serving")
T = TypeVar("T")


def error_response(status: int, message: str, problems: list[Problem] | None = None) -> Response:
    """The documented JSON error body with ``status``."""
    return Response(error_body(status, message, problems), status_code=status, media_type="application/json")


def invalid_response(invalid: RequestInvalid) -> Response:
    """422 naming every problem (lead ids appear in logs only as hashes)."""
    leads = sorted({p.lead_id for p in invalid.problems if p.lead_id is not None})
    logger.info(
        "rejected request: %d problem(s), leads %s",
        len(invalid.problems),
        ", ".join(lead_hash(lead) for lead in leads[:10]) or "-",
    )
    count = len(invalid.problems)
    return error_response(422, f"{count} problem{'s' if count != 1 else ''} in the request", invalid.problems)


def _too_many(count: int, what: str, settings: ServingSettings) -> Response | None:
    if count <= settings.max_batch:
        return None
    return error_response(
        413,
        f"{count} {what} in one request; the limit is {settings.max_batch} (LEADSCORE_MAX_BATCH): "
        "split the batch",
    )


def or_error_response(work: Callable[[], T]) -> T | Response:
    """``work()``, or the documented error response for the request's own problems (413, 422, 503)."""
    try:
        return work()
    except RequestInvalid as invalid:
        return invalid_response(invalid)
    except PayloadTooLarge as large:
        return error_response(413, str(large), large.problems)
    except ModelUnavailable as error:
        return error_response(503, str(error))


def _scored(
    loaded: engine.LoadedModel,
    work: Callable[[], ScoreResponse],
    *,
    count: int,
    what: str,
    settings: ServingSettings,
    detail: str = "",
) -> ScoreResponse | Response:
    """``work()`` for ``count`` leads or records (413 above ``max_batch``), logged, or the error response."""
    started = time.perf_counter()
    refused = _too_many(count, what, settings)
    if refused is not None:
        return refused
    response = or_error_response(work)
    if isinstance(response, ScoreResponse):
        milliseconds = 1000 * (time.perf_counter() - started)
        logger.info(
            "scored %d %s with %s v%s in %.1f ms%s",
            len(response.results),
            what,
            loaded.name,
            loaded.version,
            milliseconds,
            detail,
        )
    return response


def answer_score(
    loaded: engine.LoadedModel, request: ScoreRequest, settings: ServingSettings
) -> ScoreResponse | Response:
    """``/score``: the scored leads, or the error response."""
    return _scored(
        loaded,
        lambda: engine.score_request(loaded, request, settings),
        count=len(request.leads),
        what="leads",
        settings=settings,
        detail=f" (explain={request.explain})",
    )


def answer_records(
    loaded: engine.LoadedModel, request: RecordsRequest, settings: ServingSettings
) -> ScoreResponse | Response:
    """``/score-records``: the scored records, or the error response."""
    return _scored(
        loaded,
        lambda: engine.score_records_request(loaded, request, settings),
        count=len(request.records),
        what="records",
        settings=settings,
    )


def answer_explain(
    loaded: engine.LoadedModel, request: ExplainRequest, settings: ServingSettings
) -> ExplainResponse | Response:
    """``/explain``: the lead's full explanation, or the error response."""
    response = or_error_response(lambda: engine.explain_request(loaded, request, settings))
    if isinstance(response, ExplainResponse):
        logger.info(
            "explained lead %s with %s v%s", lead_hash(request.lead.lead_id), loaded.name, loaded.version
        )
    return response

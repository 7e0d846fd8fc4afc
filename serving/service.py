"""BentoML scoring service for the CRM: fast, validated, authenticated.

Start it (loopback, port 3000 by default; see ``serving/README.md`` for every variable)::

    export LEADSCORE_API_KEYS=<long random key>
    python -m leadscore.serving                 # or:
    bentoml serve leadscore.serving.service:LeadScoringService --host 127.0.0.1 --port 3000

Endpoints: ``POST /score`` (batch), ``POST /explain`` (one lead, every contribution and next best
actions), ``POST /reload`` (check the champion alias now), BentoML's ``/livez``, ``/healthz``,
``/readyz`` and ``/metrics``, and the OpenAPI document at ``/docs.json`` (Swagger UI at ``/``).

The model is the registered MLflow model ``$LEADSCORE_MODEL_NAME`` (default ``leadscore``) at
the ``champion`` alias, or the version pinned by ``$LEADSCORE_MODEL_VERSION``. It is loaded once
per worker, as the :class:`~leadscore.training.model.LeadScoringModel` the pyfunc wraps, and
re-checked every ``$LEADSCORE_RELOAD_SECONDS`` (default 60, 0 = off) or on ``POST /reload``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

from leadscore.settings import apply_environment_defaults

apply_environment_defaults()  # project-local MLflow/BentoML state, telemetry off (unless set)

import bentoml  # noqa: E402
import pydantic  # noqa: E402
from starlette.responses import Response  # noqa: E402

from leadscore.serving import metrics  # noqa: E402
from leadscore.serving.errors import ModelUnavailable, RequestInvalid, error_body, lead_hash  # noqa: E402
from leadscore.serving.middleware import GuardMiddleware  # noqa: E402
from leadscore.serving.schemas import (  # noqa: E402
    ExplainRequest,
    ExplainResponse,
    Problem,
    RecordsRequest,
    ReloadResponse,
    ScoreRequest,
    ScoreResponse,
)
from leadscore.serving.settings import (  # noqa: E402
    ConfigurationError,
    ServingSettings,
    http_config,
    worker_count,
)

logger = logging.getLogger("leadscore.serving")


def _refuse_to_serve_without_keys() -> None:
    """In the ``bentoml serve`` process itself, stop before binding when no keys are configured.

    Each worker checks again in ``__init__``; without this check the server would bind the port
    and keep restarting workers that refuse to start.
    """
    command = sys.argv[:3]
    if command and os.path.basename(command[0]).startswith("bentoml") and "serve" in command[1:]:
        try:
            ServingSettings.from_env().require_auth_configured()
        except ConfigurationError as error:
            raise SystemExit(f"leadscore: {error}") from None


_refuse_to_serve_without_keys()


class _DropClientValidationTracebacks(logging.Filter):
    """BentoML logs a traceback for every request body that fails the request model.

    Those are client errors, answered with 422 and counted in ``leadscore_requests_total``; the
    traceback adds nothing and can be noisy under bad traffic.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, pydantic.ValidationError)


logging.getLogger("bentoml._internal.server.http_app").addFilter(_DropClientValidationTracebacks())
_level = os.environ.get("LEADSCORE_LOG_LEVEL", "").strip().upper()
logging.getLogger("leadscore").setLevel(_level if _level in logging.getLevelNamesMapping() else "INFO")


def _error(status: int, message: str, problems: list[Problem] | None = None) -> Response:
    return Response(error_body(status, message, problems), status_code=status, media_type="application/json")


@bentoml.service(
    name="leadscore",
    http=http_config(),
    workers=worker_count(),
    traffic={"timeout": 120},
)
class LeadScoringService:
    """Lead scoring: calibrated probability, 0-100 score, tier, grade and reasons per lead."""

    def __init__(self) -> None:
        from leadscore.serving import engine  # pandas, LightGBM, MLflow: workers only

        self.settings = ServingSettings.from_env()
        self.settings.require_auth_configured()
        self.engine = engine
        self.holder = engine.ModelHolder(self.settings)
        self.holder.reload()
        metrics.set_model_version(self.holder.current.version)
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        if self.settings.reload_seconds > 0 and not self.holder.pinned:
            self._poller = threading.Thread(target=self._poll, name="leadscore-reload", daemon=True)
            self._poller.start()

    # --- lifecycle ------------------------------------------------------------------------------
    def __is_ready__(self) -> bool:
        return self.holder.ready

    def _poll(self) -> None:
        while not self._stop.wait(self.settings.reload_seconds):
            self._check_for_new_model()

    def _check_for_new_model(self) -> ReloadResponse | None:
        try:
            outcome = self.holder.reload()
        except Exception as error:  # keep serving the current model
            logger.warning(
                "model reload check failed (%s); still serving the current model", type(error).__name__
            )
            return None
        if outcome.reloaded:
            metrics.set_model_version(outcome.model_version)
        return outcome

    @bentoml.on_shutdown
    def _stop_polling(self) -> None:
        self._stop.set()

    # --- API ------------------------------------------------------------------------------------
    @bentoml.api(route="/score")
    def score(self, request: ScoreRequest, /) -> ScoreResponse:
        """Score a batch of raw CRM leads: probability, 0-100 score, tier, grade, top reasons.

        All leads go through one feature computation and one model call. explain=false skips
        the explanation (grade, points and reasons) for speed.
        """
        started = time.perf_counter()
        if len(request.leads) > self.settings.max_batch:
            return _error(  # type: ignore[return-value]  # BentoML sends a Response as is
                413,
                f"{len(request.leads)} leads in one request; the limit is {self.settings.max_batch} "
                "(LEADSCORE_MAX_BATCH): split the batch",
            )
        try:
            loaded = self.holder.current
            response = self.engine.score_request(loaded, request, self.settings)
        except RequestInvalid as invalid:
            return self._invalid(invalid)  # type: ignore[return-value]  # BentoML sends a Response as is
        except ModelUnavailable as error:
            return _error(503, str(error))  # type: ignore[return-value]  # BentoML sends a Response as is
        metrics.observe_scores((r.score for r in response.results), (r.tier for r in response.results))
        logger.info(
            "scored %d lead(s) with %s v%s in %.1f ms (explain=%s)",
            len(response.results),
            loaded.name,
            loaded.version,
            1000 * (time.perf_counter() - started),
            request.explain,
        )
        return response

    @bentoml.api(route="/score-records")
    def score_records(self, request: RecordsRequest, /) -> ScoreResponse:
        """Score leads sent as rows of the flat CRM export a flat model was trained on.

        For models trained from a mapping file (e.g. examples/xeducation.yaml): each record is an
        export row with the export's own column names; reasons read in the export's terms.
        """
        started = time.perf_counter()
        if len(request.records) > self.settings.max_batch:
            return _error(  # type: ignore[return-value]  # BentoML sends a Response as is
                413,
                f"{len(request.records)} records in one request; the limit is {self.settings.max_batch} "
                "(LEADSCORE_MAX_BATCH): split the batch",
            )
        try:
            loaded = self.holder.current
            response = self.engine.score_records_request(loaded, request)
        except RequestInvalid as invalid:
            return self._invalid(invalid)  # type: ignore[return-value]  # BentoML sends a Response as is
        except ModelUnavailable as error:
            return _error(503, str(error))  # type: ignore[return-value]  # BentoML sends a Response as is
        metrics.observe_scores((r.score for r in response.results), (r.tier for r in response.results))
        logger.info(
            "scored %d record(s) with %s v%s in %.1f ms",
            len(response.results),
            loaded.name,
            loaded.version,
            1000 * (time.perf_counter() - started),
        )
        return response

    @bentoml.api(route="/explain")
    def explain(self, request: ExplainRequest, /) -> ExplainResponse:
        """Explain one lead: its score, every grouped contribution, and the next best actions."""
        try:
            loaded = self.holder.current
            response = self.engine.explain_request(loaded, request, self.settings)
        except RequestInvalid as invalid:
            return self._invalid(invalid)  # type: ignore[return-value]  # BentoML sends a Response as is
        except ModelUnavailable as error:
            return _error(503, str(error))  # type: ignore[return-value]  # BentoML sends a Response as is
        metrics.observe_scores([response.score.score], [response.score.tier])
        logger.info(
            "explained lead %s with %s v%s", lead_hash(request.lead.lead_id), loaded.name, loaded.version
        )
        return response

    @bentoml.api(route="/reload")
    def reload(self) -> ReloadResponse:
        """Check the champion alias (or the pinned version) now; load and swap if it changed.

        Reloads the worker that answers; with several workers rely on LEADSCORE_RELOAD_SECONDS.
        """
        try:
            outcome = self.holder.reload()
        except ModelUnavailable as error:
            return _error(503, str(error))  # type: ignore[return-value]  # BentoML sends a Response as is
        if outcome.reloaded:
            metrics.set_model_version(outcome.model_version)
        return outcome

    # --- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _invalid(invalid: RequestInvalid) -> Response:
        leads = sorted({p.lead_id for p in invalid.problems if p.lead_id is not None})
        logger.info(
            "rejected request: %d problem(s), leads %s",
            len(invalid.problems),
            ", ".join(lead_hash(lead) for lead in leads[:10]) or "-",
        )
        count = len(invalid.problems)
        return _error(422, f"{count} problem{'s' if count != 1 else ''} in the request", invalid.problems)


LeadScoringService.add_asgi_middleware(GuardMiddleware)  # type: ignore[attr-defined]  # a bentoml Service

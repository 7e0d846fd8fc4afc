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
per worker, as the :class:`~leadscore.model.scoring_model.LeadScoringModel` the pyfunc wraps, and
re-checked every ``$LEADSCORE_RELOAD_SECONDS`` (default 60, 0 = off) or on ``POST /reload``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from leadscore.settings import apply_environment_defaults

apply_environment_defaults()  # project-local MLflow/BentoML state, telemetry off (unless set)
# a dead tracking server must not hold a registry call for minutes (MLflow retries 7 times)
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")

import bentoml  # noqa: E402
import pydantic  # noqa: E402
from starlette.responses import Response  # noqa: E402

from leadscore.serving import batch_threads, metrics, state  # noqa: E402
from leadscore.serving.batch_threads import parsed_off_the_event_loop  # noqa: E402
from leadscore.serving.errors import (  # noqa: E402
    ModelUnavailable,
    PayloadTooLarge,
    RequestInvalid,
    error_body,
    lead_hash,
)
from leadscore.serving.middleware import GuardMiddleware, put_guard_outermost  # noqa: E402
from leadscore.serving.schemas import (  # noqa: E402
    ExplainRequest,
    ExplainResponse,
    Problem,
    RecordsRequest,
    ReloadAccepted,
    ScoreRequest,
    ScoreResponse,
)
from leadscore.serving.settings import (  # noqa: E402
    ConfigurationError,
    ServingSettings,
    http_config,
    request_timeout,
    worker_count,
)

logger = logging.getLogger("leadscore.serving")


def _check_before_binding() -> None:
    """In the ``bentoml serve`` process itself, stop before binding unless the service can start.

    Keys must be configured and the model must resolve in the tracking store (checked in a
    subprocess, bounded by ``LEADSCORE_STARTUP_TIMEOUT_SECONDS``): otherwise the server would bind
    the port and keep restarting workers that cannot serve. Exits non-zero with the reason.
    """
    command = sys.argv[:3]
    if command and os.path.basename(command[0]).startswith("bentoml") and "serve" in command[1:]:
        try:
            ServingSettings.from_env().require_auth_configured()
        except ConfigurationError as error:
            raise SystemExit(f"leadscore: {error}") from None
        from leadscore.serving.preflight import check_in_subprocess

        problem = check_in_subprocess()
        if problem is not None:
            raise SystemExit(f"leadscore: cannot start: {problem}")


_check_before_binding()

#: Routes anyone may call without an API key. Every other route, present or future, needs one
#: (the middleware denies by default; tests/serving walk the OpenAPI document to prove it).
#: /metrics needs the key too: give Prometheus a bearer token.
OPEN_ROUTES: frozenset[str] = frozenset({"/livez", "/healthz", "/readyz", "/docs.json", "/"})
#: Static files of the Swagger UI under this prefix are open as well (the UI page needs them).
OPEN_PREFIXES: tuple[str, ...] = ("/static_content/",)


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
    traffic={"timeout": request_timeout()},
)
class LeadScoringService:
    """Lead scoring: calibrated probability, 0-100 score, tier, grade and reasons per lead."""

    def __init__(self) -> None:
        from leadscore.serving import engine  # pandas, LightGBM, MLflow: workers only
        from leadscore.serving.connections import install as install_read_deadline

        self.settings = ServingSettings.from_env()
        self.settings.require_auth_configured()
        install_read_deadline(self.settings.read_timeout_seconds)
        self.engine = engine
        self.holder = engine.ModelHolder(self.settings)
        state.HOLDER = self.holder
        # single leads run on the event loop; batches on their own threads, so a single lead
        # never waits behind a batch (only for the GIL, handed over every millisecond)
        sys.setswitchinterval(0.001)
        batch_threads.set_batch_niceness(self.settings.batch_niceness)
        try:
            self.holder.reload()
        except ModelUnavailable as error:  # the pre-flight passed: keep the port, retry in the background
            logger.error("no model loaded yet: %s; retrying in the background", error)
        if self.holder.ready:
            metrics.set_model_version(self.holder.current.version)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._signal = state.ReloadSignal()
        self._loader = threading.Thread(target=self._load_loop, name="leadscore-loader", daemon=True)
        self._loader.start()

    # --- lifecycle ------------------------------------------------------------------------------
    def __is_ready__(self) -> bool:
        return self.holder.ready

    def _load_loop(self) -> None:
        """The background loader: polls the alias, answers /reload (any worker's), retries failures."""
        interval = self.settings.reload_seconds
        polling = interval > 0 and not self.holder.pinned
        last_check = time.monotonic()
        seen_signal = self._signal.read()
        while not self._stop.is_set():
            self._wake.wait(1.0)
            if self._stop.is_set():
                return
            asked = self._wake.is_set()
            self._wake.clear()
            signal_now = self._signal.read()
            if signal_now != seen_signal:
                seen_signal, asked = signal_now, True
            due = polling and time.monotonic() - last_check >= interval
            retry = not self.holder.ready and time.monotonic() - last_check >= 5
            if asked or due or retry:
                last_check = time.monotonic()
                self._check_for_new_model()

    def _check_for_new_model(self) -> None:
        try:
            outcome = self.holder.reload()
        except Exception as error:  # keep serving the current model
            logger.warning("model reload check failed (%s); still serving the current model", error)
            return
        if outcome.reloaded or self.holder.ready:
            metrics.set_model_version(outcome.model_version)

    @bentoml.on_shutdown
    def _stop_loader(self) -> None:
        self._stop.set()
        self._wake.set()

    # --- API ------------------------------------------------------------------------------------
    @bentoml.api(route="/score", input_spec=parsed_off_the_event_loop(ScoreRequest))
    async def score(self, request: ScoreRequest, /) -> ScoreResponse:
        """Score a batch of raw CRM leads: probability, 0-100 score, tier, grade, top reasons.

        All leads go through one feature computation and one model call; a single lead takes a
        lighter path with the same result. explain=false skips the explanation (grade, points and
        reasons) for speed.
        """
        try:
            loaded = self.holder.current
        except ModelUnavailable as error:
            return _error(503, str(error))  # type: ignore[return-value]  # BentoML sends a Response as is
        if self.engine.single_lead_fast_path(loaded, request, self.settings):
            return self.score_sync(request)
        answer: Response = await batch_threads.run_batch_work(self._serialised, self.score_sync, request)
        return answer  # type: ignore[return-value]  # BentoML sends a Response as is

    def score_sync(self, request: ScoreRequest) -> ScoreResponse:
        """``/score`` on the calling thread."""
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
        except PayloadTooLarge as large:
            return _error(413, str(large), large.problems)  # type: ignore[return-value]
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

    @bentoml.api(route="/score-records", input_spec=parsed_off_the_event_loop(RecordsRequest))
    async def score_records(self, request: RecordsRequest, /) -> ScoreResponse:
        """Score leads sent as rows of the CRM export a mapping model was trained on.

        Flat exports (e.g. examples/xeducation.yaml): each record is an export row with the
        export's own column names. Event exports (e.g. examples/salesforce.yaml): each record is the
        lead row with its activities nested as the activities file's rows. Reasons read in the
        export's terms.
        """
        records = self.score_records_sync
        answer: Response = await batch_threads.run_batch_work(self._serialised, records, request)
        return answer  # type: ignore[return-value]  # BentoML sends a Response as is

    def score_records_sync(self, request: RecordsRequest) -> ScoreResponse:
        """``/score-records`` on the calling thread."""
        started = time.perf_counter()
        if len(request.records) > self.settings.max_batch:
            return _error(  # type: ignore[return-value]  # BentoML sends a Response as is
                413,
                f"{len(request.records)} records in one request; the limit is {self.settings.max_batch} "
                "(LEADSCORE_MAX_BATCH): split the batch",
            )
        try:
            loaded = self.holder.current
            response = self.engine.score_records_request(loaded, request, self.settings)
        except RequestInvalid as invalid:
            return self._invalid(invalid)  # type: ignore[return-value]  # BentoML sends a Response as is
        except PayloadTooLarge as large:
            return _error(413, str(large), large.problems)  # type: ignore[return-value]
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

    @bentoml.api(route="/explain", input_spec=parsed_off_the_event_loop(ExplainRequest))
    async def explain(self, request: ExplainRequest, /) -> ExplainResponse:
        """Explain one lead: its score, every grouped contribution, and the next best actions."""
        try:
            loaded = self.holder.current
        except ModelUnavailable as error:
            return _error(503, str(error))  # type: ignore[return-value]  # BentoML sends a Response as is
        single = ScoreRequest.model_construct(leads=[request.lead])
        if self.engine.single_lead_fast_path(loaded, single, self.settings):
            return self.explain_sync(request)
        answer: Response = await batch_threads.run_batch_work(self._serialised, self.explain_sync, request)
        return answer  # type: ignore[return-value]  # BentoML sends a Response as is

    def explain_sync(self, request: ExplainRequest) -> ExplainResponse:
        """``/explain`` on the calling thread."""
        try:
            loaded = self.holder.current
            response = self.engine.explain_request(loaded, request, self.settings)
        except RequestInvalid as invalid:
            return self._invalid(invalid)  # type: ignore[return-value]  # BentoML sends a Response as is
        except PayloadTooLarge as large:
            return _error(413, str(large), large.problems)  # type: ignore[return-value]
        except ModelUnavailable as error:
            return _error(503, str(error))  # type: ignore[return-value]  # BentoML sends a Response as is
        metrics.observe_scores([response.score.score], [response.score.tier])
        logger.info(
            "explained lead %s with %s v%s", lead_hash(request.lead.lead_id), loaded.name, loaded.version
        )
        return response

    @bentoml.api(route="/reload")
    async def reload(self) -> ReloadAccepted:
        """Ask every worker to check the champion alias (or the pinned version) now; answers 202 at once.

        The check and any load run in the background; scoring continues on the current model
        meanwhile. GET /readyz shows the version each answer comes from.
        """
        self._signal.raise_()
        self._wake.set()
        loaded = self.holder._current
        accepted = ReloadAccepted(
            accepted=True,
            model_name=self.settings.model_name,
            serving_version=loaded.version if loaded is not None else None,
            pinned=self.holder.pinned,
            store_reachable=self.holder.store_reachable,
        )
        return Response(  # type: ignore[return-value]  # BentoML sends a Response as is
            accepted.model_dump_json(), status_code=202, media_type="application/json"
        )

    # --- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _serialised(answer: Callable[[Any], Any], request: Any) -> Response:
        """``answer(request)`` as a ready JSON response: run on a batch thread, off the event loop."""
        return batch_threads.as_json_response(answer(request))

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


LeadScoringService.add_asgi_middleware(  # type: ignore[attr-defined]  # a bentoml Service
    GuardMiddleware, open_routes=OPEN_ROUTES, open_prefixes=OPEN_PREFIXES
)


def _guard_outermost_when_the_app_is_built() -> None:
    """Put the guard outermost when BentoML builds the app (in workers), not at import.

    Importing BentoML's app factory imports numpy; the ``bentoml serve`` supervisor, which only
    reads this module's configuration, stays light.
    """
    service_type: Any = type(LeadScoringService)
    if getattr(service_type, "_leadscore_guard_outermost", False):
        return
    original = service_type.to_asgi

    def to_asgi(self: Any, *args: Any, **kwargs: Any) -> Any:
        put_guard_outermost()
        return original(self, *args, **kwargs)

    service_type.to_asgi = to_asgi
    service_type._leadscore_guard_outermost = True


_guard_outermost_when_the_app_is_built()

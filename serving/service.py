"""BentoML scoring service for the CRM: fast, validated, authenticated.

Start it (loopback, port 3000 by default; every variable: ``docs/reference/configuration.md``)::

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

from leadscore.serving import batch_threads, ledger_routes, metrics, state  # noqa: E402
from leadscore.serving.batch_process import BatchProcess, Endpoint  # noqa: E402
from leadscore.serving.batch_threads import RawBody, parsed_off_the_event_loop  # noqa: E402
from leadscore.serving.errors import ModelUnavailable, error_body  # noqa: E402
from leadscore.serving.middleware import GuardMiddleware, put_guard_outermost  # noqa: E402
from leadscore.serving.schemas import (  # noqa: E402
    ExplainRequest,
    ExplainResponse,
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


def _error(status: int, message: str) -> Response:
    return Response(error_body(status, message), status_code=status, media_type="application/json")


@bentoml.service(
    name="leadscore",
    http=http_config(),
    workers=worker_count(),
    traffic={"timeout": request_timeout()},
)
class LeadScoringService:
    """Lead scoring: calibrated probability, 0-100 score, tier, grade and reasons per lead."""

    def __init__(self) -> None:
        from leadscore.serving import answers, engine  # pandas, LightGBM, MLflow: workers only
        from leadscore.serving.connections import install as install_read_deadline

        self.settings = ServingSettings.from_env()
        self.settings.require_auth_configured()
        install_read_deadline(self.settings.read_timeout_seconds)
        self.engine = engine
        self.answers = answers
        self.holder = engine.ModelHolder(self.settings)
        state.HOLDER = self.holder
        # single leads run on the event loop; batches on their own threads, so a single lead
        # never waits behind a batch (only for the GIL, handed over every millisecond)
        sys.setswitchinterval(0.001)
        batch_threads.set_batch_niceness(self.settings.batch_niceness)
        self.batch_process = (
            BatchProcess(niceness=self.settings.batch_niceness) if self.settings.batch_process else None
        )
        batch_threads.keep_large_bodies_raw(self.batch_process is not None)
        state.BATCH_PROCESS = self.batch_process
        self.ledger = ledger_routes.start_writer() if self.settings.ledger else None
        state.LEDGER = self.ledger
        try:
            self.holder.reload()
        except ModelUnavailable as error:  # the pre-flight passed: keep the port, retry in the background
            logger.error("no model loaded yet: %s; retrying in the background", error)
        if self.holder.ready:
            metrics.set_model_version(self.holder.current.version)
            metrics.set_base_rate(self.holder.current.model.metadata)
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
            metrics.set_base_rate(self.holder.current.model.metadata)
        if outcome.reloaded and self.batch_process is not None:
            try:
                self.batch_process.follow(self.holder.current)
            except Exception as error:  # the loader must live on: large requests stay in the worker
                logger.warning("the batch process could not follow the new model (%s)", error)

    @bentoml.on_shutdown
    def _stop_loader(self) -> None:
        self._stop.set()
        self._wake.set()
        if self.batch_process is not None:
            self.batch_process.close()
        if self.ledger is not None:
            self.ledger.close(timeout=5.0)

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
        if isinstance(request, RawBody):  # a large body, for the batch process
            answered = await self._in_batch_process("score", request, loaded)
            if answered is not None:
                return answered  # type: ignore[return-value]  # BentoML sends a Response as is
            request = await request.parsed()
        if self.engine.single_lead_fast_path(loaded, request, self.settings):
            return self.score_sync(request)
        answer: Response = await batch_threads.run_batch_work(self._serialised, self.score_sync, request)
        return answer  # type: ignore[return-value]  # BentoML sends a Response as is

    def score_sync(self, request: ScoreRequest) -> ScoreResponse:
        """``/score`` on the calling thread."""
        try:
            loaded = self.holder.current
        except ModelUnavailable as error:
            return _error(503, str(error))  # type: ignore[return-value]  # BentoML sends a Response as is
        answer = self.answers.answer_score(loaded, request, self.settings)
        if isinstance(answer, ScoreResponse):
            metrics.observe_scores((r.score for r in answer.results), (r.tier for r in answer.results))
            pairs = list(zip(answer.results, request.leads, strict=False))  # results in request order
            ledger_routes.record(
                self.ledger, source="score", pairs=pairs, shadow=self.holder.shadow, settings=self.settings
            )
        return answer  # type: ignore[return-value]  # BentoML sends a Response as is

    @bentoml.api(route="/score-records", input_spec=parsed_off_the_event_loop(RecordsRequest))
    async def score_records(self, request: RecordsRequest, /) -> ScoreResponse:
        """Score leads sent as rows of the CRM export a mapping model was trained on.

        Flat exports (e.g. examples/xeducation.yaml): each record is an export row with the
        export's own column names. Event exports (e.g. examples/salesforce.yaml): each record is the
        lead row with its activities nested as the activities file's rows. Reasons read in the
        export's terms.
        """
        if isinstance(request, RawBody):  # a large body, for the batch process
            try:
                loaded = self.holder.current
            except ModelUnavailable as error:
                return _error(503, str(error))  # type: ignore[return-value]  # BentoML sends a Response as is
            answered = await self._in_batch_process("score-records", request, loaded)
            if answered is not None:
                return answered  # type: ignore[return-value]  # BentoML sends a Response as is
            request = await request.parsed()
        records = self.score_records_sync
        answer: Response = await batch_threads.run_batch_work(self._serialised, records, request)
        return answer  # type: ignore[return-value]  # BentoML sends a Response as is

    def score_records_sync(self, request: RecordsRequest) -> ScoreResponse:
        """``/score-records`` on the calling thread."""
        try:
            loaded = self.holder.current
        except ModelUnavailable as error:
            return _error(503, str(error))  # type: ignore[return-value]  # BentoML sends a Response as is
        answer = self.answers.answer_records(loaded, request, self.settings)
        if isinstance(answer, ScoreResponse):
            metrics.observe_scores((r.score for r in answer.results), (r.tier for r in answer.results))
        return answer  # type: ignore[return-value]  # BentoML sends a Response as is

    @bentoml.api(route="/explain", input_spec=parsed_off_the_event_loop(ExplainRequest))
    async def explain(self, request: ExplainRequest, /) -> ExplainResponse:
        """Explain one lead: its score, every grouped contribution, and the next best actions."""
        try:
            loaded = self.holder.current
        except ModelUnavailable as error:
            return _error(503, str(error))  # type: ignore[return-value]  # BentoML sends a Response as is
        if isinstance(request, RawBody):  # one lead with a long history: validated off the event loop
            request = await request.parsed()
        single = ScoreRequest.model_construct(leads=[request.lead])
        if self.engine.single_lead_fast_path(loaded, single, self.settings):
            return self.explain_sync(request)
        answer: Response = await batch_threads.run_batch_work(self._serialised, self.explain_sync, request)
        return answer  # type: ignore[return-value]  # BentoML sends a Response as is

    def explain_sync(self, request: ExplainRequest) -> ExplainResponse:
        """``/explain`` on the calling thread."""
        try:
            loaded = self.holder.current
        except ModelUnavailable as error:
            return _error(503, str(error))  # type: ignore[return-value]  # BentoML sends a Response as is
        answer = self.answers.answer_explain(loaded, request, self.settings)
        if isinstance(answer, ExplainResponse):
            metrics.observe_scores([answer.score.score], [answer.score.tier])
            ledger_routes.record(self.ledger, source="explain", pairs=[(answer.score, request.lead)])
        return answer  # type: ignore[return-value]  # BentoML sends a Response as is

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

    async def _in_batch_process(self, endpoint: Endpoint, raw: RawBody, loaded: Any) -> Response | None:
        """The batch process's answer to ``raw``; None when this worker must answer it itself."""
        if self.batch_process is None:
            return None
        started = time.perf_counter()
        child = await self.batch_process.answer(endpoint, raw.body, loaded, self.settings)
        if child is None or child.invalid_body:  # parsing here gives the client BentoML's own 400
            return None
        metrics.observe_scores(child.scores, child.tiers)
        logger.debug(  # the batch process logs the request itself, as the worker would have
            "%s: %d result(s) with %s v%s from the batch process, status %d, %.1f ms",
            endpoint,
            len(child.scores),
            loaded.name,
            loaded.version,
            child.status,
            1000 * (time.perf_counter() - started),
        )
        return Response(child.body, status_code=child.status, media_type="application/json")


LeadScoringService.mount_asgi_app(ledger_routes.app, path="/leads")  # type: ignore[attr-defined]
LeadScoringService.mount_asgi_app(ledger_routes.feedback_app, path="/feedback")  # type: ignore[attr-defined]
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

"""Large requests answered in a child process, so single leads never wait for a batch's GIL.

On one worker, single leads are scored on the event loop and batches on a lowered thread
(:mod:`leadscore.serving.batch_threads`). A thread still shares the interpreter lock: a 100-lead batch
holds it for tens of milliseconds of Python (validation, features, reasons, JSON), and a single lead
waits for it at every step. The batch process takes that work out of the worker: the worker passes
the request body's bytes, the child validates, scores and serialises with the very same functions
(:mod:`leadscore.serving.answers`) and sends bytes back.

* **Which requests.** Bodies the worker would otherwise validate off the event loop (above
  :data:`~leadscore.serving.batch_threads.INLINE_PARSE_BYTES`) on ``/score`` and ``/score-records``.
* **Which model.** The one the worker serves: each call names its version and the local file the
  worker loaded it from. A reload has the child read the new file at once (:meth:`BatchProcess.follow`);
  until it has, and for requests begun on the previous model, the worker answers. So every answer
  carries the version the request was given.
* **Start and faults.** The child starts (``spawn``: nothing is forked from a threaded worker) with
  the first large request, which the worker answers itself meanwhile, as it does whenever the child
  is not ready; a child that dies is replaced (at most one start per ``restart_after_seconds``) and
  the request in flight is answered by the worker.
  The child runs at the batch niceness and ends with its worker (Linux: parent-death signal).
* **Cost.** A second copy of the model in memory (about the model's pickled size plus the libraries,
  ~200 MB); ``LEADSCORE_BATCH_PROCESS=false`` turns it off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pydantic

if TYPE_CHECKING:
    from leadscore.serving.engine import LoadedModel
    from leadscore.serving.settings import ServingSettings

logger = logging.getLogger("leadscore.serving")

Endpoint = Literal["score", "score-records"]


@dataclass(frozen=True)
class ModelReference:
    """What the child needs to read exactly the model the worker serves."""

    name: str
    version: str
    identity: str
    model_file: str

    @classmethod
    def of(cls, loaded: LoadedModel) -> ModelReference | None:
        """The reference to ``loaded``; None if it was not read from a file (then the worker answers)."""
        if not loaded.model_file:
            return None
        return cls(
            name=loaded.name, version=loaded.version, identity=loaded.identity, model_file=loaded.model_file
        )


@dataclass(frozen=True)
class ChildAnswer:
    """The child's answer to one request: HTTP status and JSON body, and what the worker's metrics need."""

    status: int
    body: bytes
    scores: tuple[float | None, ...] = ()  # None: a lead that is not open (no score, no tier)
    tiers: tuple[str | None, ...] = ()
    #: The body failed the request model: the worker validates it again to raise BentoML's own 400.
    invalid_body: bool = False


# --- the child's side ----------------------------------------------------------------------------
_child_models: dict[ModelReference, LoadedModel] = {}


def _start_child(niceness: int, parent_pid: int) -> None:
    """Initialiser of the child: lowered priority, ends with its parent, logs like the worker."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the worker died before the signal was armed
            os._exit(0)
        if niceness > 0:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, 0, niceness)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s [batch process] %(message)s")
    level = os.environ.get("LEADSCORE_LOG_LEVEL", "").strip().upper()  # as the worker's (service.py)
    logging.getLogger("leadscore").setLevel(level if level in logging.getLevelNamesMapping() else "INFO")


def _model_in_child(reference: ModelReference) -> LoadedModel:
    loaded = _child_models.get(reference)
    if loaded is None:
        from leadscore.model import store
        from leadscore.serving.engine import freeze_long_lived_objects, prepared_model

        _child_models.clear()  # one model at a time: let the previous one go
        model = store.read_registered_model(reference.model_file, version=reference.version)
        loaded = prepared_model(
            model,
            name=reference.name,
            version=reference.version,
            identity=reference.identity,
            model_file=reference.model_file,
        )
        _child_models[reference] = loaded
        freeze_long_lived_objects()
    return loaded


def load_in_child(reference: ModelReference) -> str:
    """Read ``reference``'s model in the child (run there); returns its version."""
    return _model_in_child(reference).version


def answer_in_child(
    endpoint: Endpoint, body: bytes, reference: ModelReference, settings: ServingSettings
) -> ChildAnswer:
    """Validate, score and serialise one request body (run in the child)."""
    from starlette.responses import Response

    from leadscore.serving import answers
    from leadscore.serving.schemas import RecordsRequest, ScoreRequest

    loaded = _model_in_child(reference)
    try:
        if endpoint == "score":
            request = ScoreRequest.model_validate_json(body)
            answer = answers.answer_score(loaded, request, settings)
        else:
            records = RecordsRequest.model_validate_json(body)
            answer = answers.answer_records(loaded, records, settings)
    except pydantic.ValidationError:
        return ChildAnswer(status=400, body=b"", invalid_body=True)
    if isinstance(answer, Response):
        return ChildAnswer(status=answer.status_code, body=bytes(answer.body))
    return ChildAnswer(
        status=200,
        body=answer.model_dump_json().encode("utf-8"),
        scores=tuple(r.score for r in answer.results),
        tiers=tuple(None if r.tier is None else str(r.tier) for r in answer.results),
    )


# --- the worker's side ---------------------------------------------------------------------------
class BatchProcess:
    """The worker's child process for large requests; :meth:`answer` returns None when it cannot help.

    The child answers a request only with the model it has read, and only when that is the model
    the request was given; otherwise (starting, reading a new model after a reload, a request
    begun before the reload) the worker answers it.
    """

    def __init__(self, *, niceness: int, restart_after_seconds: float = 30.0) -> None:
        self.niceness = niceness
        self.restart_after_seconds = restart_after_seconds  # between two starts (a child that keeps failing)
        self._last_start = -math.inf
        self._executor: ProcessPoolExecutor | None = None
        self._reading: ModelReference | None = None  # the model the child was last asked to read
        self._read: ModelReference | None = None  # the model the child has read: it answers with it
        self._lock = threading.RLock()  # re-entrant: a done callback may run at once, on this thread
        self._closed = False
        self.answered = 0  # requests the child answered (tests and logs)

    @property
    def ready(self) -> bool:
        """Whether the child is up with a model read (until then, the worker answers)."""
        return self._read is not None

    @property
    def child_pid(self) -> int | None:
        """The child's process id, while it runs."""
        executor = self._executor
        processes = getattr(executor, "_processes", None) or {}  # the pool's own table of its processes
        return next(iter(processes), None)

    def status(self) -> dict[str, str | None]:
        """What ``/readyz`` says of the child: its state and the model version it has read."""
        with self._lock:
            self._discard_if_broken()
            if self._executor is None:
                return {"batch_process": "not_started", "batch_process_version": None}
            version = self._read.version if self._read is not None else None
            return {"batch_process": "ready" if version else "starting", "batch_process_version": version}

    def _discard_if_broken(self) -> None:
        """Drop a pool whose child died while idle (caller holds the lock)."""
        if self._executor is not None and getattr(self._executor, "_broken", False):
            logger.warning("the batch process stopped; large requests are answered here until it restarts")
            self._discard()

    def _start(self, reference: ModelReference) -> None:
        """Start the child and have it read ``reference`` (in the background); caller holds the lock."""
        self._last_start = time.monotonic()
        executor = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_child,
            initargs=(self.niceness, os.getpid()),
        )
        self._executor = executor
        if not self._load(reference, started=time.perf_counter()):
            self._discard()

    def _load(self, reference: ModelReference, *, started: float | None = None) -> bool:
        """Have the child read ``reference`` (caller holds the lock); False if it could not be asked."""
        executor = self._executor
        if executor is None:
            return False
        try:
            future = executor.submit(load_in_child, reference)
        except (BrokenProcessPool, RuntimeError, OSError) as error:  # died, shut down, or cannot spawn
            logger.warning("the batch process could not be asked to read the model (%s)", error)
            return False
        self._reading, self._read = reference, None  # the worker answers until this model is read

        def done(finished: Future[str]) -> None:
            if finished.cancelled():  # the pool was shut down first
                return
            error = finished.exception()
            with self._lock:
                if executor is not self._executor or self._reading != reference:
                    return  # a newer pool or a newer model since
                if error is not None:
                    logger.warning(
                        "the batch process could not read the model (%s): large requests stay here", error
                    )
                    self._discard()
                    return
                self._read = reference
            if started is not None:
                logger.info(
                    "batch process up with model version %s in %.1fs",
                    reference.version,
                    time.perf_counter() - started,
                )

        future.add_done_callback(done)
        return True

    def start(self, loaded: LoadedModel) -> None:
        """Start the child now with ``loaded``'s model (otherwise the first large request starts it)."""
        reference = ModelReference.of(loaded)
        with self._lock:
            self._discard_if_broken()
            if self._executor is None and reference is not None and not self._closed:
                self._start(reference)

    def follow(self, loaded: LoadedModel) -> None:
        """After a reload: have a running child read the new model now, not on the next batch."""
        reference = ModelReference.of(loaded)
        with self._lock:
            self._discard_if_broken()
            if reference is None or self._executor is None or reference == self._reading:
                return
            if not self._load(reference):
                self._discard()

    def _discard(self) -> None:
        """Drop the child (caller holds the lock); a later large request starts a new one."""
        executor, self._executor, self._reading, self._read = self._executor, None, None, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    async def answer(
        self, endpoint: Endpoint, body: bytes, loaded: LoadedModel, settings: ServingSettings
    ) -> ChildAnswer | None:
        """The child's answer to ``body`` scored with ``loaded``; None if the worker must answer it."""
        reference = ModelReference.of(loaded)
        if reference is None:
            return None
        with self._lock:
            if self._closed:
                return None
            self._discard_if_broken()
            if self._executor is None:
                if time.monotonic() - self._last_start >= self.restart_after_seconds:
                    self._start(reference)
                return None
            if reference != self._read:  # starting, reading a newer model, or a request begun before
                return None
            executor = self._executor
        try:
            future = executor.submit(answer_in_child, endpoint, body, reference, settings)
        except (BrokenProcessPool, RuntimeError):  # died, or shut down by close() or a discard
            return None
        try:
            result = await asyncio.wrap_future(future)
        except BrokenProcessPool as error:  # the child died; any other error is the request's own
            logger.warning("the batch process stopped (%s); answering here and starting a new one", error)
            with self._lock:
                if executor is self._executor:
                    self._discard()
            return None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if future.cancelled() and (task is None or not task.cancelling()):
                return None  # the pool was discarded with this request queued: the worker answers it
            raise  # this request itself was cancelled (its timeout, or the client went away)
        self.answered += 1
        return result

    def close(self) -> None:
        """Stop the child (worker shutdown)."""
        with self._lock:
            self._closed = True
            self._discard()

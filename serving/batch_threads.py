"""Batch work off the event loop, below single leads.

Single leads are scored on the event loop (a few milliseconds); batches on worker threads. On a
busy worker a single lead can still wait for two things a batch holds: the CPU (LightGBM's threads
for a batch's TreeSHAP) and the event loop itself (BentoML validates a request body there: ~4 ms of
pydantic work for 100 leads). So:

* :func:`run_batch_work` runs batch work on the service's own worker thread, whose OS priority is
  lowered when it starts (Linux: per thread, ``LEADSCORE_BATCH_NICENESS``, default 10; LightGBM's
  threads started from it inherit it). The kernel then gives a waiting single lead the CPU first;
  batches still use every idle cycle.
* :func:`as_json_response` serialises a batch's answer on that same thread (a 100-lead answer is
  ~77 KB of JSON, one pydantic call that holds the GIL), so the event loop only writes bytes.
* :func:`parsed_off_the_event_loop` makes the input spec BentoML would make for a request model,
  except that a body above :data:`INLINE_PARSE_BYTES` is validated on the service's own parse
  thread (not lowered: see :data:`LOWERED_POOLS`). Same model,
  same errors (a 422 naming the field), same OpenAPI document. With :func:`keep_large_bodies_raw`
  such a body reaches the API unparsed, as a :class:`RawBody`, for the batch process
  (:mod:`leadscore.serving.batch_process`); :meth:`RawBody.parsed` validates it here when needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import bentoml
import pydantic
from starlette.responses import Response

T = TypeVar("T")

#: Request bodies above this size are validated on a worker thread; a single lead (~2 KB) is
#: validated in place, without a thread hop.
INLINE_PARSE_BYTES = 16 * 1024

#: Pools whose thread runs at the batch niceness. Scoring is lowered: much of a batch's time is
#: LightGBM's threads, which hold no GIL. Parsing is not: pydantic validates a body in one call that
#: holds the GIL throughout, and a lowered thread descheduled while holding it would stall the
#: event loop (measured: p99 of single leads under batch load got worse with it lowered).
LOWERED_POOLS = frozenset({"score"})

_niceness = [10]
_keep_large_bodies_raw = [False]
_pools: dict[str, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def set_batch_niceness(niceness: int) -> None:
    """How far batch threads are lowered (0 = not at all); the service sets it from its settings."""
    _niceness[0] = niceness


def keep_large_bodies_raw(keep: bool) -> None:
    """Whether bodies above :data:`INLINE_PARSE_BYTES` reach the API as a :class:`RawBody` (the
    service sets it when its batch process is on)."""
    _keep_large_bodies_raw[0] = keep


def lower_this_thread() -> None:
    """Lower the calling thread's OS priority to the batch niceness (Linux only: this thread alone)."""
    if sys.platform == "linux" and _niceness[0] > 0:
        with contextlib.suppress(OSError):  # not permitted here: the normal priority
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _niceness[0])


def batch_pool(name: str) -> ThreadPoolExecutor:
    """The one-thread pool ``name`` (``score``, ``parse``): its own thread (``score``'s lowered).

    Own threads, not anyio's shared ones, so that nothing else (``/readyz``, ``/metrics``) ever
    runs at the lowered priority; one thread each, so that one batch is scored and one body parsed
    at a time (more would only contend for the GIL).
    """
    with _pools_lock:
        if name not in _pools:
            _pools[name] = ThreadPoolExecutor(
                max_workers=1,
                thread_name_prefix=f"leadscore-{name}",
                initializer=lower_this_thread if name in LOWERED_POOLS else None,
            )
        return _pools[name]


async def run_batch_work(work: Callable[..., T], *args: Any, pool: str = "score") -> T:
    """``work(*args)`` on the lowered thread of ``pool``, one call at a time, in the caller's context
    (trace ids in log lines, as ``anyio.to_thread`` would)."""
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(batch_pool(pool), context.run, work, *args)


def as_json_response(answer: pydantic.BaseModel | Response) -> Response:
    """``answer`` as the response BentoML would send for it (the model's JSON), serialised here.

    Called on a batch thread, it spares the event loop the serialisation; a ready ``Response``
    (an error) passes through.
    """
    if isinstance(answer, Response):
        return answer
    return Response(answer.model_dump_json().encode("utf-8"), media_type="application/json")


@dataclass(frozen=True)
class RawBody:
    """A large JSON request body, not validated yet, and the input spec that validates it."""

    body: bytes
    spec: type[pydantic.BaseModel]

    async def parsed(self) -> Any:
        """The body validated on the parse thread, exactly as the input spec would have done it (a
        ``pydantic.ValidationError`` becomes BentoML's 400, which the middleware words as 400/422)."""
        return await run_batch_work(self.spec.model_validate_json, self.body, pool="parse")


class _ParsedOffTheEventLoop(bentoml.IODescriptor):
    """An API input whose large JSON bodies are validated off the event loop."""

    @classmethod
    async def from_http_request(cls, request: Any, serde: Any) -> Any:
        if type(serde).__name__ != "JSONSerde":  # another media type: BentoML's own reading
            return await super().from_http_request(request, serde)
        body = await request.body()
        if len(body) <= INLINE_PARSE_BYTES:
            return cls.model_validate_json(body or b"{}")
        raw = RawBody(body=body, spec=cls)
        return raw if _keep_large_bodies_raw[0] else await raw.parsed()


def parsed_off_the_event_loop(model: type[pydantic.BaseModel]) -> type[bentoml.IODescriptor]:
    """The input spec BentoML makes for ``model`` as an API's one positional argument (same name,
    same schema), validating bodies above :data:`INLINE_PARSE_BYTES` on the service's parse thread."""
    spec = pydantic.create_model(
        f"{model.__name__}IODescriptor", __base__=(_ParsedOffTheEventLoop, model), __module__=__name__
    )
    spec.__root_input__ = True  # type: ignore[attr-defined]  # BentoML passes the model itself
    return spec

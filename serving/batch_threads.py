"""Batch work off the event loop, below single leads.

Single leads are scored on the event loop (a few milliseconds); batches on worker threads. On a
busy worker a single lead can still wait for two things a batch holds: the CPU (LightGBM's threads
for a batch's TreeSHAP) and the event loop itself (BentoML validates a request body there: ~4 ms of
pydantic work for 100 leads). So:

* :func:`run_batch_work` runs batch work on a worker thread whose OS priority is lowered once
  (Linux: per thread, ``LEADSCORE_BATCH_NICENESS``, default 10; LightGBM's threads started from it
  inherit it). The kernel then gives a waiting single lead the CPU first; batches still use every
  idle cycle.
* :func:`parsed_off_the_event_loop` makes the input spec BentoML would make for a request model,
  except that a body above :data:`INLINE_PARSE_BYTES` is validated on such a thread. Same model,
  same errors (a 422 naming the field), same OpenAPI document.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import anyio
import anyio.to_thread
import bentoml
import pydantic

T = TypeVar("T")

#: Request bodies above this size are validated on a worker thread; a single lead (~2 KB) is
#: validated in place, without a thread hop.
INLINE_PARSE_BYTES = 16 * 1024

_lowered: set[int] = set()  # native ids of threads already lowered
_niceness = [10]


def set_batch_niceness(niceness: int) -> None:
    """How far batch threads are lowered (0 = not at all); the service sets it from its settings."""
    _niceness[0] = niceness


def lower_this_thread() -> None:
    """Lower the calling thread's OS priority to the batch niceness (once per thread; Linux only)."""
    thread = threading.get_native_id()
    if thread in _lowered:
        return
    _lowered.add(thread)
    if sys.platform == "linux" and _niceness[0] > 0:
        with contextlib.suppress(OSError):  # not permitted here: the normal priority
            os.setpriority(os.PRIO_PROCESS, thread, _niceness[0])  # Linux: this thread only


def _lowered_call(work: Callable[..., T], *args: Any) -> T:
    lower_this_thread()
    return work(*args)


async def run_batch_work(work: Callable[..., T], *args: Any, limiter: anyio.CapacityLimiter) -> T:
    """``work(*args)`` on a lowered worker thread, at most ``limiter``'s count at a time."""
    return await anyio.to_thread.run_sync(_lowered_call, work, *args, limiter=limiter)


class _ParsedOffTheEventLoop(bentoml.IODescriptor):
    """An API input whose large JSON bodies are validated off the event loop."""

    _limiter: ClassVar[anyio.CapacityLimiter | None] = None

    @classmethod
    async def from_http_request(cls, request: Any, serde: Any) -> Any:
        if type(serde).__name__ != "JSONSerde":  # another media type: BentoML's own reading
            return await super().from_http_request(request, serde)
        body = await request.body()
        if len(body) <= INLINE_PARSE_BYTES:
            return cls.model_validate_json(body or b"{}")
        if _ParsedOffTheEventLoop._limiter is None:
            _ParsedOffTheEventLoop._limiter = anyio.CapacityLimiter(1)
        return await run_batch_work(cls.model_validate_json, body, limiter=_ParsedOffTheEventLoop._limiter)


def parsed_off_the_event_loop(model: type[pydantic.BaseModel]) -> type[bentoml.IODescriptor]:
    """The input spec BentoML makes for ``model`` as an API's one positional argument (same name,
    same schema), validating bodies above :data:`INLINE_PARSE_BYTES` on a lowered worker thread."""
    spec = pydantic.create_model(
        f"{model.__name__}IODescriptor", __base__=(_ParsedOffTheEventLoop, model), __module__=__name__
    )
    spec.__root_input__ = True  # type: ignore[attr-defined]  # BentoML passes the model itself
    return spec

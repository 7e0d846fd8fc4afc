"""A read deadline for every HTTP request, at the connection: slow or silent clients are closed.

uvicorn (which BentoML runs) closes idle keep-alive connections after a response, but not a
connection that never sends a request, sends its headers a byte at a time, or stops half-way
through a body: each holds a descriptor and a task for ever. :func:`install` gives each request
``LEADSCORE_READ_TIMEOUT_SECONDS`` (default 15 s) from its first byte (or from the connection, for
the first request) to the end of its body; a connection still reading when it runs out is closed.
Time spent by the service itself is not counted (``traffic.timeout`` bounds that, with a 504).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

_INSTALLED = "_leadscore_read_deadline"


def _arm(protocol: Any, seconds: float) -> None:
    protocol._leadscore_deadline = protocol.loop.call_later(seconds, _expire, protocol)


def _disarm(protocol: Any) -> None:
    handle: asyncio.TimerHandle | None = getattr(protocol, "_leadscore_deadline", None)
    if handle is not None:
        handle.cancel()
    protocol._leadscore_deadline = None


def _still_reading(protocol: Any) -> bool:
    cycle = protocol.cycle
    return cycle is None or cycle.response_complete or cycle.more_body


def _expire(protocol: Any) -> None:
    protocol._leadscore_deadline = None
    transport = protocol.transport
    if _still_reading(protocol) and transport is not None and not transport.is_closing():
        with contextlib.suppress(Exception):
            transport.close()


def install(seconds: float) -> None:
    """Patch uvicorn's HTTP protocols (idempotent) so each request must arrive within ``seconds``."""
    classes: list[type] = []
    with contextlib.suppress(ImportError):
        from uvicorn.protocols.http.h11_impl import H11Protocol

        classes.append(H11Protocol)
    with contextlib.suppress(ImportError):
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        classes.append(HttpToolsProtocol)
    for cls in classes:
        if getattr(cls, _INSTALLED, None) is not None:
            setattr(cls, _INSTALLED, seconds)
            continue
        made, received, lost = cls.connection_made, cls.data_received, cls.connection_lost  # type: ignore[attr-defined]

        def connection_made(self: Any, transport: Any, _made: Any = made, _cls: type = cls) -> None:
            _made(self, transport)
            _arm(self, getattr(_cls, _INSTALLED))

        def data_received(self: Any, data: bytes, _received: Any = received, _cls: type = cls) -> None:
            if getattr(self, "_leadscore_deadline", None) is None and _still_reading(self):
                _arm(self, getattr(_cls, _INSTALLED))  # the first bytes of the next request
            _received(self, data)
            if not _still_reading(self):
                _disarm(self)  # the whole request is in: the service's own time is not limited here

        def connection_lost(self: Any, exc: Exception | None, _lost: Any = lost) -> None:
            _disarm(self)
            _lost(self, exc)

        cls.connection_made = connection_made  # type: ignore[attr-defined]
        cls.data_received = data_received  # type: ignore[attr-defined]
        cls.connection_lost = connection_lost  # type: ignore[attr-defined]
        setattr(cls, _INSTALLED, seconds)

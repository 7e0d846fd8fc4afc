"""The service's ledger writer: a bounded buffer and one background thread doing batched inserts.

:meth:`LedgerWriter.submit` never blocks and never raises: it appends to an in-memory buffer of at
most ``capacity`` rows and returns. The thread takes up to ``batch_size`` rows at a time and appends
them in one transaction. While the database is down or slow the rows wait in the buffer (the batch
in hand is retried with a growing pause, up to ``max_retry_seconds``); once the buffer is full, new
rows are **dropped and counted** (:attr:`LedgerStats.dropped`, logged at most every
``LOG_EVERY_SECONDS``), so a score is never lost silently and a request never waits for the ledger.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from leadscore.ledger.store import Ledger, ScoreEntry

logger = logging.getLogger("leadscore.ledger")

CAPACITY_ENV = "LEADSCORE_LEDGER_BUFFER"
DEFAULT_CAPACITY = 10_000
DEFAULT_BATCH_SIZE = 500
LOG_EVERY_SECONDS = 60.0

#: A row to write: an entry, or a function making it on the writer thread (hashing stays off the
#: request path). The lead id comes first, so buffered rows of a forgotten lead can be discarded.
Pending = tuple[str, ScoreEntry | Callable[[], ScoreEntry]]
#: Called with ("written" | "dropped", rows) and ("buffered", rows now in the buffer).
Observer = Callable[[str, int], None]


@dataclass(frozen=True)
class LedgerStats:
    """Rows written, dropped (buffer full, unconvertible, or left at close) and buffered now."""

    written: int
    dropped: int
    buffered: int


def buffer_capacity() -> int:
    """``$LEADSCORE_LEDGER_BUFFER`` (rows, at least 1), default 10,000."""
    raw = os.environ.get(CAPACITY_ENV, "").strip()
    if not raw:
        return DEFAULT_CAPACITY
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{CAPACITY_ENV}={raw!r} must be a whole number of rows, at least 1")
    return int(raw)


class LedgerWriter:
    """Buffers scores and writes them in batches on its own thread (started on construction)."""

    def __init__(
        self,
        *,
        open_ledger: Callable[[], Ledger],
        capacity: int = DEFAULT_CAPACITY,
        batch_size: int = DEFAULT_BATCH_SIZE,
        linger_seconds: float = 0.05,
        max_retry_seconds: float = 30.0,
        observer: Observer | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity: {capacity} must be at least 1")
        if batch_size < 1:
            raise ValueError(f"batch_size: {batch_size} must be at least 1")
        self._open_ledger = open_ledger
        self.capacity = capacity
        self.batch_size = batch_size
        self.linger_seconds = linger_seconds
        self.max_retry_seconds = max_retry_seconds
        self._observer = observer
        self._buffer: deque[Pending] = deque()
        self._in_hand: list[Pending] = []  # the batch being written (still counted as buffered)
        self._lock = threading.Condition()
        self._io = threading.Lock()  # one database operation at a time: writes and erasures
        self._ledger: Ledger | None = None
        self._written = 0
        self._dropped = 0
        self._stop = False
        self._stopping = threading.Event()  # wakes a retry pause at close
        self._last_drop_log = 0.0
        self._unlogged_drops = 0
        self._thread = threading.Thread(target=self._run, name="leadscore-ledger", daemon=True)
        self._thread.start()

    # --- the request side ---------------------------------------------------------------------------
    def submit(self, rows: Sequence[Pending]) -> int:
        """Buffer ``rows`` without waiting; returns how many were accepted (the rest are dropped)."""
        if not rows:
            return 0
        with self._lock:
            room = 0 if self._stop else self.capacity - len(self._buffer) - len(self._in_hand)
            accepted = rows[: max(room, 0)]
            self._buffer.extend(accepted)
            dropped = len(rows) - len(accepted)
            buffered = len(self._buffer) + len(self._in_hand)
            if accepted:
                self._lock.notify()
        if dropped:
            self._count_dropped(dropped, "buffer full" if not self._stop else "writer closed")
        self._notify("buffered", buffered)
        return len(accepted)

    def stats(self) -> LedgerStats:
        with self._lock:
            return LedgerStats(self._written, self._dropped, len(self._buffer) + len(self._in_hand))

    # --- reads and erasure (not on the scoring path) -------------------------------------------------
    def ledger(self) -> Ledger:
        """The open ledger (opened here when the writer thread has not opened it yet)."""
        with self._io:
            return self._ensure_open()

    def forget(self, *, lead_id: str) -> int:
        """Delete the lead's stored rows and discard its buffered ones; returns both counted."""
        with self._io:  # no batch of this lead is being written meanwhile
            with self._lock:
                kept = [row for row in self._buffer if row[0] != lead_id]
                in_hand = [row for row in self._in_hand if row[0] != lead_id]
                discarded = len(self._buffer) - len(kept) + len(self._in_hand) - len(in_hand)
                self._buffer, self._in_hand = deque(kept), in_hand
            deleted = self._ensure_open().forget(lead_id=lead_id)
        return deleted + discarded

    # --- lifecycle --------------------------------------------------------------------------------
    def flush(self, *, timeout: float = 10.0) -> bool:
        """Wait until every buffered row is written (or dropped); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._lock.notify()
            while self._buffer or self._in_hand:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.05))
        return True

    def close(self, *, timeout: float = 5.0) -> LedgerStats:
        """Write what is buffered within ``timeout``, stop the thread; rows left are counted dropped."""
        self.flush(timeout=timeout)
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        self._stopping.set()
        self._thread.join(timeout=max(timeout, 0.1))
        with self._lock:
            left = len(self._buffer)
            self._buffer.clear()
        if left:
            self._count_dropped(left, "not written before shutdown")
        if self._ledger is not None and not self._thread.is_alive():
            self._ledger.close()
        return self.stats()

    # --- the writer thread ----------------------------------------------------------------------------
    def _ensure_open(self) -> Ledger:
        if self._ledger is None:
            self._ledger = self._open_ledger()
        return self._ledger

    def _run(self) -> None:
        pause = first_pause = min(0.5, self.max_retry_seconds)
        while True:
            with self._lock:
                while not self._buffer and not self._stop:
                    self._lock.wait()
                if self._stop and not self._buffer:
                    return
            if len(self._buffer) < self.batch_size and self.linger_seconds > 0 and not self._stop:
                time.sleep(self.linger_seconds)  # let a burst gather into one insert
            with self._lock:
                count = min(self.batch_size, len(self._buffer))
                self._in_hand = [self._buffer.popleft() for _ in range(count)]
            if self._write_in_hand():
                pause = first_pause
                continue
            with self._lock:  # keep the batch, in order, and wait before retrying
                self._buffer.extendleft(reversed(self._in_hand))
                self._in_hand = []
                if self._stop:
                    return
            self._stopping.wait(pause)
            pause = min(pause * 2, self.max_retry_seconds)

    def _write_in_hand(self) -> bool:
        try:
            with self._io:  # an erasure waits for this batch, or this batch for the erasure
                usable: list[Pending] = []
                for lead_id, row in self._in_hand:  # made once: a retried batch is not made again
                    try:
                        usable.append((lead_id, row if isinstance(row, ScoreEntry) else row()))
                    except Exception as error:  # a bad row never stops the others
                        self._count_dropped(1, f"unusable score: {type(error).__name__}")
                with self._lock:
                    self._in_hand = usable
                entries = [row for _, row in usable if isinstance(row, ScoreEntry)]
                self._ensure_open().append(entries)
        except Exception as error:
            logger.warning(
                "ledger: writing a batch failed (%s: %s); %d row(s) buffered, retrying",
                type(error).__name__,
                str(error).splitlines()[0][:200] if str(error) else "",
                self.stats().buffered,
            )
            return False
        with self._lock:
            self._in_hand = []
            self._written += len(entries)
            buffered = len(self._buffer)
            self._lock.notify_all()
        self._notify("written", len(entries))
        self._notify("buffered", buffered)
        return True

    def _count_dropped(self, rows: int, why: str) -> None:
        with self._lock:
            self._dropped += rows
            self._unlogged_drops += rows
            now = time.monotonic()
            due = now - self._last_drop_log >= LOG_EVERY_SECONDS
            if due:
                self._last_drop_log, logged, self._unlogged_drops = now, self._unlogged_drops, 0
                total = self._dropped
        if due:
            logger.error("ledger: %d score row(s) dropped (%s); %d dropped since start", logged, why, total)
        self._notify("dropped", rows)

    def _notify(self, what: str, rows: int) -> None:
        if self._observer is not None:
            try:
                self._observer(what, rows)
            except Exception:  # metrics must never break the writer
                logger.debug("ledger observer failed", exc_info=True)

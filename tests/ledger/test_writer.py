"""The ledger writer: batched inserts off the caller's thread; a failing or slow database never
blocks a caller, rows wait in a bounded buffer and the overflow is counted as dropped."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from leadscore.ledger.store import Ledger, ScoreEntry
from leadscore.ledger.writer import CAPACITY_ENV, LedgerWriter, Pending, buffer_capacity
from tests.ledger.test_store import entry


class FlakyLedger:
    """A stand-in ledger: records batches; fails while ``down``; sleeps ``delay`` per batch."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.rows: list[ScoreEntry] = []
        self.down = False
        self.delay = 0.0
        self.gate = threading.Event()
        self.gate.set()

    def append(self, entries: Sequence[ScoreEntry]) -> int:
        self.gate.wait()
        time.sleep(self.delay)
        if self.down:
            raise ConnectionError("database is down")
        self.batches.append(len(entries))
        self.rows.extend(entries)
        return len(entries)

    def forget(self, *, lead_id: str) -> int:
        before = len(self.rows)
        self.rows = [r for r in self.rows if r.lead_id != lead_id]
        return before - len(self.rows)

    def close(self) -> None:
        pass


def rows(count: int, lead: str = "L") -> list[Pending]:
    return [(f"{lead}{i}", entry(f"{lead}{i}")) for i in range(count)]


def writer_on(fake: FlakyLedger, **options: object) -> LedgerWriter:
    seen: list[tuple[str, int]] = []
    writer = LedgerWriter(
        open_ledger=lambda: fake,  # type: ignore[arg-type, return-value]
        max_retry_seconds=0.05,
        observer=lambda what, n: seen.append((what, n)),
        **options,  # type: ignore[arg-type]
    )
    writer.seen = seen  # type: ignore[attr-defined]
    return writer


def test_rows_are_written_in_batches(tmp_path: Path) -> None:
    fake = FlakyLedger()
    fake.gate.clear()  # hold the first insert so the rest gather
    writer = writer_on(fake, batch_size=100, linger_seconds=0.01)
    assert writer.submit(rows(1, "a")) == 1
    time.sleep(0.05)
    assert writer.submit(rows(250)) == 250
    fake.gate.set()
    assert writer.flush(timeout=5)
    assert sum(fake.batches) == 251 and max(fake.batches) == 100 and len(fake.batches) <= 4
    stats = writer.close()
    assert (stats.written, stats.dropped, stats.buffered) == (251, 0, 0)
    assert ("written", 100) in writer.seen  # type: ignore[attr-defined]


def test_a_down_database_never_blocks_and_counts_every_drop() -> None:
    fake = FlakyLedger()
    fake.down = True
    writer = writer_on(fake, capacity=50, batch_size=20, linger_seconds=0)
    started = time.perf_counter()
    accepted = sum(writer.submit(rows(1, f"r{i}-")) for i in range(200))
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5  # 200 submits: no waiting on the database
    stats = writer.stats()
    assert accepted == 50 and stats.buffered == 50 and stats.dropped == 150 and stats.written == 0
    assert ("dropped", 1) in writer.seen  # type: ignore[attr-defined]
    fake.down = False  # the database is back: the buffer drains, nothing else is lost
    assert writer.flush(timeout=5)
    stats = writer.close()
    assert stats.written == 50 and stats.dropped == 150 and len(fake.rows) == 50
    assert stats.written + stats.dropped == 200


def test_a_slow_database_never_blocks_the_caller() -> None:
    fake = FlakyLedger()
    fake.delay = 0.5
    writer = writer_on(fake, capacity=1000, batch_size=10, linger_seconds=0)
    writer.submit(rows(1, "first"))
    time.sleep(0.05)  # the writer thread is now inside the slow insert
    worst = 0.0
    for i in range(100):
        started = time.perf_counter()
        writer.submit(rows(1, f"s{i}-"))
        worst = max(worst, time.perf_counter() - started)
    assert worst < 0.01
    assert writer.stats().buffered >= 100
    fake.delay = 0
    assert writer.flush(timeout=5)
    assert writer.close().written == 101


def test_bounded_buffer_and_close_counts_what_was_left() -> None:
    fake = FlakyLedger()
    fake.down = True
    writer = writer_on(fake, capacity=5, batch_size=5, linger_seconds=0)
    assert writer.submit(rows(8)) == 5
    stats = writer.close(timeout=0.2)
    assert stats.dropped == 8 and stats.written == 0 and stats.buffered == 0
    assert writer.submit(rows(1)) == 0 and writer.stats().dropped == 9  # closed: counted, never raised


def test_unusable_rows_are_dropped_not_fatal() -> None:
    fake = FlakyLedger()
    writer = writer_on(fake, linger_seconds=0)

    def broken() -> ScoreEntry:
        raise ValueError("score: not a number")

    writer.submit([("bad", broken), *rows(2)])
    assert writer.flush(timeout=5)
    stats = writer.close()
    assert (stats.written, stats.dropped) == (2, 1)


def test_forget_removes_buffered_rows_too() -> None:
    fake = FlakyLedger()
    writer = writer_on(fake, linger_seconds=0)
    writer.submit([("x", entry("x")), ("y", entry("y"))])
    assert writer.flush(timeout=5)
    fake.down = True
    writer.submit([("x", entry("x", days=1))])
    assert writer.forget(lead_id="x") == 2  # one stored, one still buffered
    fake.down = False
    assert writer.flush(timeout=5)
    writer.close()
    assert [r.lead_id for r in fake.rows] == ["y"]


def test_writer_on_a_real_sqlite_ledger(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    writer = LedgerWriter(open_ledger=lambda: Ledger.open(url), linger_seconds=0)
    writer.submit([("L-1", lambda: entry(score=40.0)), ("L-1", lambda: entry(score=50.0, days=1))])
    assert writer.flush(timeout=10)
    assert [h.trend for h in writer.ledger().history(lead_id="L-1")] == [None, "improving"]
    assert writer.forget(lead_id="L-1") == 2
    writer.close()


def test_an_unreachable_database_at_start_is_retried() -> None:
    fake = FlakyLedger()
    attempts: list[int] = []

    def open_ledger() -> FlakyLedger:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("no database yet")
        return fake

    writer = LedgerWriter(open_ledger=open_ledger, linger_seconds=0, max_retry_seconds=0.05)  # type: ignore[arg-type]
    writer.submit(rows(3))
    assert writer.flush(timeout=5)
    assert writer.close().written == 3 and len(attempts) == 3


def test_buffer_capacity_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CAPACITY_ENV, raising=False)
    assert buffer_capacity() == 10_000
    monkeypatch.setenv(CAPACITY_ENV, "25")
    assert buffer_capacity() == 25
    monkeypatch.setenv(CAPACITY_ENV, "0")
    with pytest.raises(ValueError, match=CAPACITY_ENV):
        buffer_capacity()

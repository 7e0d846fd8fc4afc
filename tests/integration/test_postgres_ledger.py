"""The score ledger on PostgreSQL: the same SQLAlchemy code and migrations as on SQLite, and the
writer surviving a database stopped mid-run (rows buffered, then counted dropped, never raised)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from leadscore.ledger.store import VERSION_TABLE, Ledger
from leadscore.ledger.writer import LedgerWriter
from tests.integration.postgres_support import Postgres, PostgresUnavailable, running_postgres, skip_or_fail
from tests.ledger.test_store import entry

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    pytest.importorskip("psycopg2", reason="psycopg2-binary is a dev dependency")
    try:
        context = running_postgres()
        server = context.__enter__()
    except PostgresUnavailable as error:
        skip_or_fail(f"PostgreSQL could not be started: {error}")
        return
    try:
        server.create_database("ledger")
        yield server
    finally:
        context.__exit__(None, None, None)


def test_ledger_on_postgres(postgres: Postgres) -> None:
    url = postgres.uri("ledger")
    ledger = Ledger.open(url)
    inspector = sa.inspect(ledger.engine)
    assert {"ledger_scores", VERSION_TABLE} <= set(inspector.get_table_names())
    Ledger.open(url).close()  # a second open finds the schema current
    ledger.append([entry(score=86.0, days=3), entry(score=40.0), entry(score=42.0, days=1), entry("L-2")])
    history = ledger.history(lead_id="L-1")
    assert [h.entry.score for h in history] == [40.0, 42.0, 86.0]
    assert [h.trend for h in history] == [None, "steady", "improving"]
    assert history[0].entry.reasons[0]["concept"] == "page_pricing"  # JSON round trip
    assert ledger.forget(lead_id="L-1") == 3 and ledger.history(lead_id="L-1") == []
    assert ledger.count() == 1
    ledger.close()


def test_writer_on_postgres_counts_what_it_cannot_write(postgres: Postgres) -> None:
    postgres.create_database("ledger_writer")
    url = postgres.uri("ledger_writer")
    writer = LedgerWriter(open_ledger=lambda: Ledger.open(url), capacity=20, linger_seconds=0)
    writer.submit([("w", entry("w", days=d)) for d in range(5)])
    assert writer.flush(timeout=20)
    writer._ledger.close()  # type: ignore[union-attr]
    writer._ledger = Ledger(
        sa.create_engine("postgresql+psycopg2://nobody:wrong@127.0.0.1:1/none")
    )  # the database is gone
    accepted = sum(writer.submit([("w", entry("w", days=10 + i))]) for i in range(30))
    stats = writer.close(timeout=0.5)
    assert accepted == 20 and stats.written == 5 and stats.dropped == 30
    check = Ledger.open(url)
    assert len(check.history(lead_id="w")) == stats.written
    check.close()

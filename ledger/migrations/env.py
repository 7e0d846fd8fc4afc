"""Alembic environment of the score ledger, run by :func:`leadscore.ledger.store.upgrade`.

The caller passes an open connection in ``config.attributes["connection"]``; the version table is
``ledger_alembic_version`` (MLflow keeps its own ``alembic_version``).
"""

from __future__ import annotations

from alembic import context

from leadscore.ledger.store import VERSION_TABLE, metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("no connection given: run the migrations with leadscore.ledger.store.upgrade")
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()

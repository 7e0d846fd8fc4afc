"""Rep feedback on scores: agree / disagree with a reason code and an optional note.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_feedback",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("lead_id", sa.String(200), nullable=False),
        sa.Column("given_at", sa.DateTime(), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("note", sa.String(500), nullable=True),
        sa.Column("score_as_of", sa.DateTime(), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("tier", sa.String(40), nullable=True),
    )
    op.create_index("ix_ledger_feedback_lead", "ledger_feedback", ["lead_id", "given_at"])


def downgrade() -> None:
    op.drop_index("ix_ledger_feedback_lead", table_name="ledger_feedback")
    op.drop_table("ledger_feedback")

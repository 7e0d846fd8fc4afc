"""The score ledger: one row per score.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_scores",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("lead_id", sa.String(200), nullable=False),
        sa.Column("as_of", sa.DateTime(), nullable=False),
        sa.Column("scored_at", sa.DateTime(), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("probability_low", sa.Float(), nullable=True),
        sa.Column("probability_high", sa.Float(), nullable=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("tier", sa.String(40), nullable=True),
        sa.Column("grade", sa.String(8), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("feature_hash", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
    )
    op.create_index("ix_ledger_scores_lead_time", "ledger_scores", ["lead_id", "as_of", "scored_at"])


def downgrade() -> None:
    op.drop_index("ix_ledger_scores_lead_time", table_name="ledger_scores")
    op.drop_table("ledger_scores")

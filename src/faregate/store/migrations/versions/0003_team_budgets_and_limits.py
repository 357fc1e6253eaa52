"""team budgets, and rate limits on keys and teams

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

LIMITS = ("rpm", "tpm", "max_parallel")


def upgrade() -> None:
    with op.batch_alter_table("teams") as batch:
        batch.add_column(sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("budget_usd", sa.Float, nullable=True))
        batch.add_column(sa.Column("budget_period", sa.String(16), nullable=True))
        batch.add_column(sa.Column("spent_usd", sa.Float, nullable=False, server_default="0"))
        batch.add_column(sa.Column("reserved_usd", sa.Float, nullable=False, server_default="0"))
        batch.add_column(sa.Column("period_start", sa.Float, nullable=True))
        for name in LIMITS:
            batch.add_column(sa.Column(name, sa.Integer, nullable=True))
    with op.batch_alter_table("virtual_keys") as batch:
        for name in LIMITS:
            batch.add_column(sa.Column(name, sa.Integer, nullable=True))
    op.create_index("ix_virtual_keys_team_id", "virtual_keys", ["team_id"])


def downgrade() -> None:
    op.drop_index("ix_virtual_keys_team_id", "virtual_keys")
    with op.batch_alter_table("virtual_keys") as batch:
        for name in LIMITS:
            batch.drop_column(name)
    with op.batch_alter_table("teams") as batch:
        for name in (*LIMITS, "period_start", "reserved_usd", "spent_usd", "budget_period", "budget_usd", "enabled"):
            batch.drop_column(name)

"""budgets on virtual keys

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("virtual_keys") as batch:
        batch.add_column(sa.Column("budget_usd", sa.Float, nullable=True))
        batch.add_column(sa.Column("budget_period", sa.String(16), nullable=True))
        batch.add_column(sa.Column("spent_usd", sa.Float, nullable=False, server_default="0"))
        batch.add_column(sa.Column("reserved_usd", sa.Float, nullable=False, server_default="0"))
        batch.add_column(sa.Column("period_start", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("virtual_keys") as batch:
        for name in ("period_start", "reserved_usd", "spent_usd", "budget_period", "budget_usd"):
            batch.drop_column(name)

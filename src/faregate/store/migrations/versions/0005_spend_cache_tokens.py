"""the spend log records cache writes (5-minute and 1-hour) and reasoning tokens

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = ("cache_write_5m_tokens", "cache_write_1h_tokens", "reasoning_tokens")


def upgrade() -> None:
    with op.batch_alter_table("spend_log") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("spend_log") as batch:
        for name in COLUMNS:
            batch.drop_column(name)

"""the spend log records the client's wire format (openai_chat, anthropic)

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("spend_log") as batch:
        batch.add_column(sa.Column("format", sa.String(20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("spend_log") as batch:
        batch.drop_column("format")

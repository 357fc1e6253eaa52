"""teams and virtual keys

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "virtual_keys",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=True),
        sa.Column("team_id", sa.String(40), sa.ForeignKey("teams.id", ondelete="SET NULL"), nullable=True),
        sa.Column("models", sa.JSON, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("previous_hash", sa.String(64), nullable=True),
        sa.Column("previous_valid_until", sa.Float, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
    )
    op.create_index("ix_virtual_keys_previous_hash", "virtual_keys", ["previous_hash"])


def downgrade() -> None:
    op.drop_index("ix_virtual_keys_previous_hash", "virtual_keys")
    op.drop_table("virtual_keys")
    op.drop_table("teams")

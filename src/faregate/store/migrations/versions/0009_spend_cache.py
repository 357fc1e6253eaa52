"""the spend log records the response cache's verdict and what a hit saved

``cache``: hit | miss | no_cache | no_store | uncacheable (NULL: the model has no response cache,
or a row from before 0009); ``saved_usd``: a hit's saved cost, what the cached answer cost when it
was fetched (the hit itself costs 0). Both nullable: old rows, and outbox rows written by an older
faregate, need no value. Plain ALTER TABLE both ways (SQLite has DROP COLUMN since 3.35): a batch
"move and copy" of spend_log would drop 0008's trigger on SQLite with the old table.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("spend_log", sa.Column("cache", sa.String(16), nullable=True))
    op.add_column("spend_log", sa.Column("saved_usd", sa.Float, nullable=True))


def downgrade() -> None:
    for name in ("saved_usd", "cache"):
        op.execute(f"ALTER TABLE spend_log DROP COLUMN {name}")  # constants only

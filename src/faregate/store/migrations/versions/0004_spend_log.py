"""the spend log: one row per proxied request

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_spend_log_ts": ["ts"],
    "ix_spend_log_key_id_ts": ["key_id", "ts"],
    "ix_spend_log_team_id_ts": ["team_id", "ts"],
    "ix_spend_log_model_ts": ["model", "ts"],
}


def upgrade() -> None:
    op.create_table(
        "spend_log",
        sa.Column("request_id", sa.String(40), primary_key=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=True),
        sa.Column("team_id", sa.String(40), nullable=True),
        sa.Column("user_id", sa.String(200), nullable=True),
        sa.Column("endpoint", sa.String(20), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("deployment", sa.String(400), nullable=True),
        sa.Column("provider", sa.String(200), nullable=True),
        sa.Column("upstream_model", sa.String(200), nullable=True),
        sa.Column("credential", sa.String(400), nullable=True),
        sa.Column("stream", sa.Boolean, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=True),
        sa.Column("completion_tokens", sa.Integer, nullable=True),
        sa.Column("cached_tokens", sa.Integer, nullable=True),
        sa.Column("cost_usd", sa.Float, nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("ttfb_ms", sa.Float, nullable=True),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("fallback_from", sa.String(200), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
    )
    for name, columns in INDEXES.items():
        op.create_index(name, "spend_log", columns)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, "spend_log")
    op.drop_table("spend_log")

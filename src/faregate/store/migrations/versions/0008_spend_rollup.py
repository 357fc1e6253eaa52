"""daily spend sums kept by the database (spend_daily), the request story's columns, dashboard indexes

``spend_daily`` holds, per UTC day, the sums of the spend log per key, team, model and deployment
and in total (``dim``: key | team | model | deployment | total; ``value`` '' for none). A trigger
on ``spend_log`` keeps it: per row on SQLite, per statement (one grouped upsert over the inserted
rows, in key order so concurrent writers take row locks in the same order) on PostgreSQL. A row
skipped by ``ON CONFLICT DO NOTHING`` (a replay) fires nothing, so the sums stay exact. Existing
rows are summed in once here. The spend log gains the generation, the failed attempts and the
upstream's request id, for the dashboard's request story.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SUMS = ("requests", "errors", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd", "unpriced_requests")
DIMS = (("total", "''"), ("key", "COALESCE({r}.key_id, '')"), ("team", "COALESCE({r}.team_id, '')"),
        ("model", "COALESCE({r}.model, '')"), ("deployment", "COALESCE({r}.deployment, '')"))  # fmt: skip
INDEXES = {"ix_spend_log_status_ts": ("spend_log", ["status", "ts"]), "ix_spend_daily_dim_value_day": ("spend_daily", ["dim", "value", "day"]),
           "ix_virtual_keys_created_at": ("virtual_keys", ["created_at", "id"])}  # fmt: skip


def _terms(r: str) -> list[str]:
    """Each sum's contribution of one spend row ``r`` (in SUMS order)."""
    return [
        "1",
        f"CASE WHEN {r}.status < 200 OR {r}.status >= 400 THEN 1 ELSE 0 END",
        f"COALESCE({r}.prompt_tokens, 0)",
        f"COALESCE({r}.completion_tokens, 0)",
        f"COALESCE({r}.cached_tokens, 0)",
        f"COALESCE({r}.cost_usd, 0.0)",
        f"CASE WHEN {r}.cost_usd IS NULL THEN 1 ELSE 0 END",
    ]


def _dims(r: str) -> str:
    return ", ".join(f"('{dim}', {value.format(r=r)})" for dim, value in DIMS)


UPSERT = "ON CONFLICT (dim, day, value) DO UPDATE SET " + ", ".join(f"{s} = spend_daily.{s} + excluded.{s}" for s in SUMS)


def _backfill_sql(dialect: str) -> str:
    """The grouped upsert of ``{source}``'s rows (spend_log, or the trigger's transition table).
    Built from this file's constants only: no value from outside goes into the SQL text."""
    sums = ", ".join("COUNT(*)" if t == "1" else f"SUM({t})" for t in _terms("r"))
    if dialect == "postgresql":
        dims = f"CROSS JOIN LATERAL (VALUES {_dims('r')}) AS d(dim, value)"
        body = f"SELECT d.dim, r.day, d.value, {sums} FROM {{source}} r {dims} GROUP BY d.dim, r.day, d.value ORDER BY 1, 2, 3"  # noqa: S608
    else:  # SQLite: no LATERAL; one UNION ALL branch per dim
        branches = [
            f"SELECT '{dim}' AS dim, r.day AS day, {value.format(r='r')} AS value, {sums} FROM {{source}} r GROUP BY 1, 2, 3"  # noqa: S608
            for dim, value in DIMS
        ]
        body = "SELECT * FROM (" + " UNION ALL ".join(branches) + ") WHERE true"  # noqa: S608
    return f"INSERT INTO spend_daily (dim, day, value, {', '.join(SUMS)}) {body} {UPSERT}"


def _sqlite_trigger() -> str:
    values = ", ".join(f"({dim!r}, NEW.day, {value.format(r='NEW')}, {', '.join(_terms('NEW'))})" for dim, value in DIMS)
    return (
        "CREATE TRIGGER spend_daily_sum AFTER INSERT ON spend_log BEGIN "  # noqa: S608 (constants only)
        f"INSERT INTO spend_daily (dim, day, value, {', '.join(SUMS)}) VALUES {values} {UPSERT}; END"
    )


def _postgres_function() -> str:
    insert = _backfill_sql("postgresql").format(source="new_rows")
    return f"CREATE FUNCTION faregate_spend_daily_sum() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {insert}; RETURN NULL; END $$"


POSTGRES_TRIGGER = (
    "CREATE TRIGGER spend_daily_sum AFTER INSERT ON spend_log REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION faregate_spend_daily_sum()"
)


def upgrade() -> None:
    with op.batch_alter_table("spend_log") as batch:
        batch.add_column(sa.Column("generation", sa.String(40), nullable=True))
        batch.add_column(sa.Column("failures", sa.String(1000), nullable=True))
        batch.add_column(sa.Column("upstream_request_id", sa.String(200), nullable=True))
    op.create_table(
        "spend_daily",
        sa.Column("dim", sa.String(12), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("value", sa.String(400), primary_key=True),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("cached_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("unpriced_requests", sa.Integer, nullable=False),
        sqlite_with_rowid=False,  # the primary key is the table: a range of days reads no second b-tree
    )
    for name, (table, columns) in INDEXES.items():
        op.create_index(name, table, columns)
    dialect = op.get_bind().dialect.name
    op.execute(_backfill_sql(dialect).format(source="spend_log"))
    if dialect == "postgresql":
        op.execute(_postgres_function())
        op.execute(POSTGRES_TRIGGER)
    else:
        op.execute(_sqlite_trigger())


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS spend_daily_sum" + (" ON spend_log" if op.get_bind().dialect.name == "postgresql" else ""))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS faregate_spend_daily_sum()")
    for name, (table, _) in INDEXES.items():
        op.drop_index(name, table)
    op.drop_table("spend_daily")
    with op.batch_alter_table("spend_log") as batch:
        for name in ("generation", "failures", "upstream_request_id"):
            batch.drop_column(name)

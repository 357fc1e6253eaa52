"""The database schema: the one place table and column names live (SQLAlchemy Core)."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Column, Float, ForeignKey, Index, Integer, MetaData, String, Table

metadata = MetaData()

teams = Table(
    "teams",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("metadata", JSON, nullable=False, default=dict),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),  # False: every key of the team is refused
    Column("budget_usd", Float, nullable=True),  # applies on top of each key's own budget
    Column("budget_period", String(16), nullable=True),
    Column("spent_usd", Float, nullable=False, default=0.0),
    Column("reserved_usd", Float, nullable=False, default=0.0),
    Column("period_start", Float, nullable=True),
    Column("rpm", Integer, nullable=True),  # requests per minute across all the team's keys
    Column("tpm", Integer, nullable=True),  # tokens per minute
    Column("max_parallel", Integer, nullable=True),  # requests in flight at once
)

virtual_keys = Table(
    "virtual_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),  # sha256 hex of the secret; the secret is never stored
    Column("prefix", String(40), nullable=False),  # what is shown: `sk-fg-abcd…wxyz`
    Column("name", String(200), nullable=False),
    Column("user_id", String(200), nullable=True),
    Column("team_id", String(40), ForeignKey("teams.id", ondelete="SET NULL"), nullable=True),
    Column("models", JSON, nullable=False, default=list),  # allowed public names or globs; empty = all
    Column("expires_at", Float, nullable=True),
    Column("metadata", JSON, nullable=False, default=dict),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("previous_hash", String(64), nullable=True),  # the secret before the last rotation...
    Column("previous_valid_until", Float, nullable=True),  # ...accepted until then (grace period)
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Column("budget_usd", Float, nullable=True),  # None: no budget
    Column("budget_period", String(16), nullable=True),  # daily | weekly | monthly | total
    Column("spent_usd", Float, nullable=False, default=0.0),  # settled spend in the current period
    Column("reserved_usd", Float, nullable=False, default=0.0),  # admitted requests not settled yet
    Column("period_start", Float, nullable=True),
    Column("rpm", Integer, nullable=True),
    Column("tpm", Integer, nullable=True),
    Column("max_parallel", Integer, nullable=True),
)
Index("ix_virtual_keys_previous_hash", virtual_keys.c.previous_hash)
Index("ix_virtual_keys_team_id", virtual_keys.c.team_id)

# One row per proxied request, written in batches off the hot path (faregate.spendlog); never updated.
# No foreign keys: the log is history and outlives deleted keys and teams. `day` is the UTC date of
# `ts`, computed when the row is written so that grouping by day is the same on SQLite and PostgreSQL.
spend_log = Table(
    "spend_log",
    metadata,
    Column("request_id", String(40), primary_key=True),  # the x-faregate-request-id: replays are idempotent by it
    Column("ts", Float, nullable=False),  # unix seconds when the request finished
    Column("day", String(10), nullable=False),  # 'YYYY-MM-DD' (UTC)
    Column("key_id", String(40), nullable=True),  # None: the master key, or a request refused before auth succeeded
    Column("team_id", String(40), nullable=True),
    Column("user_id", String(200), nullable=True),
    Column("endpoint", String(20), nullable=False),
    Column("format", String(20), nullable=True),  # the client's wire format: openai_chat | anthropic (None: before 0006)
    Column("model", String(200), nullable=True),  # the public model name asked for (None: refused before it was read)
    Column("deployment", String(400), nullable=True),  # `<provider>/<upstream model>` that answered (or last tried)
    Column("provider", String(200), nullable=True),
    Column("upstream_model", String(200), nullable=True),
    Column("credential", String(400), nullable=True),  # `<provider>/<id>:<fingerprint>`: never a secret
    Column("stream", Boolean, nullable=False),
    Column("prompt_tokens", Integer, nullable=True),  # None: usage unknown
    Column("completion_tokens", Integer, nullable=True),
    Column("cached_tokens", Integer, nullable=True),  # cache reads, part of prompt_tokens
    Column("cache_write_5m_tokens", Integer, nullable=True),  # 5-minute cache writes, part of prompt_tokens
    Column("cache_write_1h_tokens", Integer, nullable=True),  # 1-hour cache writes, part of prompt_tokens
    Column("reasoning_tokens", Integer, nullable=True),  # part of completion_tokens
    Column("cost_usd", Float, nullable=True),  # None: unpriced or unknown usage (never a silent 0); 0: not answered
    Column("latency_ms", Float, nullable=False),
    Column("ttfb_ms", Float, nullable=True),
    Column("status", Integer, nullable=False),  # 0: the request ended before any status was set (client gone, crash)
    Column("error_code", String(64), nullable=True),
    Column("fallback_from", String(200), nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("generation", String(40), nullable=True),  # the config generation that served it (None: before 0008)
    Column("failures", String(1000), nullable=True),  # the attempts that failed: `<deployment>: <error class>; …`
    Column("upstream_request_id", String(200), nullable=True),  # the upstream's x-request-id of the last reply
    Column("cache", String(16), nullable=True),  # response cache: hit | miss | no_cache | no_store | uncacheable (None: off; before 0009)
    Column("saved_usd", Float, nullable=True),  # a cache hit: what the cached answer cost (the hit cost 0)
)
Index("ix_spend_log_ts", spend_log.c.ts)
Index("ix_spend_log_key_id_ts", spend_log.c.key_id, spend_log.c.ts)
Index("ix_spend_log_team_id_ts", spend_log.c.team_id, spend_log.c.ts)
Index("ix_spend_log_model_ts", spend_log.c.model, spend_log.c.ts)
Index("ix_spend_log_status_ts", spend_log.c.status, spend_log.c.ts)
Index("ix_virtual_keys_created_at", virtual_keys.c.created_at, virtual_keys.c.id)

# The spend log summed per UTC day and per key, team, model, deployment, and in total: kept by a
# trigger on spend_log (migration 0008), read by the dashboard so that no page sums a million rows.
# ``value`` is the key id, team id, model or deployment ('' for none; '' for every ``total`` row).
spend_daily = Table(
    "spend_daily",
    metadata,
    Column("dim", String(12), primary_key=True),  # key | team | model | deployment | total
    Column("day", String(10), primary_key=True),
    Column("value", String(400), primary_key=True),
    Column("requests", Integer, nullable=False),
    Column("errors", Integer, nullable=False),  # status < 200 or >= 400, as spend.aggregate counts them
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("cached_tokens", BigInteger, nullable=False),
    Column("cost_usd", Float, nullable=False),
    Column("unpriced_requests", Integer, nullable=False),
    sqlite_with_rowid=False,
)
Index("ix_spend_daily_dim_value_day", spend_daily.c.dim, spend_daily.c.value, spend_daily.c.day)

# Dashboard sessions (faregate.dashboard): the cookie's value is never stored, only its sha256; a
# row deleted (sign-out) ends the session on every worker at once.
ui_sessions = Table(
    "ui_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),  # sha256 hex of the session cookie's value
    Column("role", String(10), nullable=False),  # admin | key
    Column("principal", String(64), nullable=False),  # admin: the master key's fingerprint; key: the virtual key's id
    Column("created_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("expires_at", Float, nullable=False),  # absolute end (created_at + the session's lifetime)
)
Index("ix_ui_sessions_expires_at", ui_sessions.c.expires_at)

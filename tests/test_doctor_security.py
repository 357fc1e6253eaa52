"""doctor's security checklist (``faregate.doctor.security.findings``) on configs and state databases
written to tmp_path: each finding where the problem really is, "ok" where it is not, and never a
secret (master key, virtual key secrets, upstream keys, URL passwords) in any finding."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
import uuid
from pathlib import Path

import pytest

from faregate.config.schema import CorsConfig
from faregate.credentials.keyring import build
from faregate.credentials.virtual import display_prefix, hash_key, new_secret
from faregate.doctor import security
from faregate.doctor.findings import Finding
from faregate.generation import Generation
from faregate.store import keys as keys_table
from faregate.store import teams as teams_table
from faregate.store.db import make_engine, upgrade
from tests.support.postgres import PostgresServer
from tests.support.procs import free_port, run_cli

STRONG = "sk-NUrKd3W9PaivggyqwZmPK2L_gQ0aSQpoKgFU36f3xu4"  # secrets.token_urlsafe(32), fixed: the test is deterministic
UPSTREAM = "sk-CANARY-upstream-" + uuid.uuid4().hex
MOCK = """
providers:
  local: {type: mock}
models:
  m:
    - {provider: local, model: mock-small}
"""


def _write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "faregate.yaml"
    path.write_text(text)
    path.chmod(mode)
    return path


def _generation(path: Path, master: str | None = STRONG) -> Generation:
    env = {"UPSTREAM_KEY": UPSTREAM}
    if master is not None:
        env["FAREGATE_MASTER_KEY"] = master
    generation, _ = build(path, env)
    return generation


def _check(
    path: Path, master: str | None = STRONG, url: str | None = None, generation: Generation | None = None
) -> dict[str, list[Finding]]:
    """Every finding by code, after checking that none holds a secret."""
    found = security.findings(generation or _generation(path, master), path, url, None)
    text = json.dumps([f.as_dict() for f in found])
    for secret in (STRONG, UPSTREAM, master or STRONG):
        assert secret not in text
    assert all(f.group == "security" for f in found)
    by_code: dict[str, list[Finding]] = {}
    for f in found:
        by_code.setdefault(f.code, []).append(f)
    return by_code


def _one(found: dict[str, list[Finding]], code: str) -> Finding:
    assert len(found[code]) == 1, found[code]
    return found[code][0]


def _config(server: str = "", state: str = "") -> str:
    text = "server:\n  master_key: ${FAREGATE_MASTER_KEY}\n" + server
    if state:
        text += "state:\n" + state
    return text + MOCK


def test_a_safe_config_is_all_ok_and_lists_every_item(tmp_path: Path) -> None:
    found = _check(_write(tmp_path, _config()), url="https://gateway.example.com")
    expected = {
        "master_key_weak",
        "auth_none",
        "admin_exposed",
        "plain_http_url",
        "key_file_readable",
        "config_readable",
        "state_db_readable",
        "redis_no_password",
        "postgres_no_tls",
        "cors_any_origin_credentials",
        "virtual_keys",
    }
    assert set(found) == expected
    assert all(f.severity == "ok" and f.fix == "" for fs in found.values() for f in fs)
    assert not (tmp_path / ".faregate").exists()  # doctor never creates the state database


@pytest.mark.parametrize(
    ("master", "severity", "says"),
    [
        ("sk-faregate-demo", "error", "demo value"),  # the Makefile's and README's key
        ("sk-my-gateway-key", "error", "demo value"),
        ("hunter2hunter2", "error", "shorter than 16"),
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "error", "guessable"),
        ("changeme-changeme-changeme", "error", "guessable"),
        ("Summer2026-password!", "warning", "less than 80"),
        (STRONG, "ok", "not a demo value"),
        ("sk-fg-XTpVpGs2AnkmWMYAzlceHYrWDwDrAkDd", "ok", "not a demo value"),  # a virtual key's shape
    ],
)
def test_master_key_strength(tmp_path: Path, master: str, severity: str, says: str) -> None:
    finding = _one(_check(_write(tmp_path, _config()), master), "master_key_weak")
    assert finding.severity == severity and says in finding.message
    assert finding.subject == "server.master_key"
    if severity != "ok":
        assert "secrets.token_urlsafe" in finding.fix and "${FAREGATE_MASTER_KEY}" in finding.fix
    assert master not in finding.message + finding.fix


def test_auth_none(tmp_path: Path) -> None:
    found = _check(_write(tmp_path, "server: {auth: none, host: 0.0.0.0}\n" + MOCK), master=None)
    assert _one(found, "auth_none").severity == "warning"
    assert _one(found, "master_key_weak").severity == "ok"
    admin = _one(found, "admin_exposed")  # serve binds 127.0.0.1 with auth: none, whatever host says
    assert admin.severity == "ok" and "127.0.0.1" in admin.message
    assert _one(_check(_write(tmp_path, _config())), "auth_none").severity == "ok"


@pytest.mark.parametrize(
    ("host", "severity"),
    [("0.0.0.0", "warning"), ("::", "warning"), ("10.1.2.3", "warning"), ("127.0.0.1", "ok"), ("::1", "ok"), ("localhost", "ok")],
)
def test_admin_routes_reachable_off_loopback(tmp_path: Path, host: str, severity: str) -> None:
    finding = _one(_check(_write(tmp_path, _config(f"  host: '{host}'\n  port: 4123\n"))), "admin_exposed")
    assert finding.severity == severity
    if severity == "warning":
        assert "/admin/" in finding.message and "/cache/" in finding.message
        assert "/(admin|cache)/" in finding.fix and "4123" in finding.fix


@pytest.mark.parametrize(
    ("url", "severity", "subject"),
    [
        ("http://10.0.0.5:4000", "error", "http://10.0.0.5:4000"),
        ("http://gateway.internal", "error", "http://gateway.internal"),
        ("http://user:pa55word@gateway.internal:8080/v1", "error", "http://gateway.internal:8080"),  # the URL's password is not shown
        ("http://127.0.0.1:4000", "ok", "http://127.0.0.1:4000"),
        ("http://[::1]:4000", "ok", "http://[::1]:4000"),
        ("http://localhost:4000", "ok", "http://localhost:4000"),
        ("https://gateway.example.com", "ok", "https://gateway.example.com"),
        (None, "ok", "--url"),
    ],
)
def test_plain_http_url(tmp_path: Path, url: str | None, severity: str, subject: str) -> None:
    found = _check(_write(tmp_path, _config()), url=url)
    finding = _one(found, "plain_http_url")
    assert (finding.severity, finding.subject) == (severity, subject)
    assert "pa55word" not in json.dumps([f.as_dict() for fs in found.values() for f in fs])
    if severity == "error":
        assert "TLS" in finding.fix


def test_key_files_readable_by_others(tmp_path: Path) -> None:
    files = {"open.txt": 0o644, "group.txt": 0o640, "closed.txt": 0o600}
    for name, mode in files.items():
        (tmp_path / name).write_text(UPSTREAM + "\n")
        (tmp_path / name).chmod(mode)
    credentials = ", ".join(f"{{id: c{i}, key_file: {name}}}" for i, name in enumerate(files))
    text = f"""
server: {{master_key: "${{FAREGATE_MASTER_KEY}}"}}
providers:
  up: {{type: openai, base_url: "http://127.0.0.1:9", credentials: [{credentials}]}}
  env: {{type: openai, base_url: "http://127.0.0.1:9", credentials: [{{key: "${{UPSTREAM_KEY}}"}}]}}
models:
  m: [{{provider: up, model: gpt-4o-mini}}]
"""
    found = _check(_write(tmp_path, text))["key_file_readable"]
    by_subject = {f.subject: f for f in found}
    assert set(by_subject) == {f"providers.up.credentials[{i}].key_file" for i in range(3)}  # the env credential has no file
    opened, group, closed = (by_subject[f"providers.up.credentials[{i}].key_file"] for i in range(3))
    assert opened.severity == "error" and "0644" in opened.message and "every user" in opened.message
    assert opened.fix.startswith(f"chmod 600 {tmp_path / 'open.txt'}")
    assert group.severity == "warning" and "its group" in group.message
    assert closed.severity == "ok"


def test_no_key_file_is_ok(tmp_path: Path) -> None:
    assert _one(_check(_write(tmp_path, _config())), "key_file_readable").severity == "ok"


def test_config_readable_by_others(tmp_path: Path) -> None:
    # references only: readable by others, but nothing secret in it
    finding = _one(_check(_write(tmp_path, _config(), 0o644)), "config_readable")
    assert finding.severity == "ok" and "holds no secret" in finding.message
    # a Redis password written literally in the file: that is a secret anyone may read
    literal = _config(state="  redis: redis://:s3cretRedisPass@127.0.0.1:6399/0\n")
    found = _check(_write(tmp_path, literal, 0o644))
    finding = _one(found, "config_readable")
    assert finding.severity == "error" and "state.redis" in finding.message and "chmod 600" in finding.fix
    assert "s3cretRedisPass" not in json.dumps([f.as_dict() for fs in found.values() for f in fs])
    assert _one(_check(_write(tmp_path, literal, 0o600)), "config_readable").severity == "ok"


def _database(tmp_path: Path, mode: int = 0o600) -> str:
    database = f"sqlite:///{tmp_path}/state/state.db"

    async def create() -> None:
        engine = make_engine(database)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(create())
    (tmp_path / "state" / "state.db").chmod(mode)
    return database


def test_state_database_readable_by_others(tmp_path: Path) -> None:
    path = _write(tmp_path, _config(state=f"  database: sqlite:///{tmp_path}/state/state.db\n"))
    absent = _one(_check(path), "state_db_readable")
    assert absent.severity == "ok" and "no SQLite state file yet" in absent.message
    assert not (tmp_path / "state").exists()  # doctor did not create it
    _database(tmp_path, 0o644)
    finding = _one(_check(path), "state_db_readable")
    assert finding.severity == "warning" and "state.db (mode 0644, readable by every user)" in finding.message
    assert finding.fix.startswith(f"chmod 600 {tmp_path}/state/state.db*")
    (tmp_path / "state" / "state.db").chmod(0o600)
    assert _one(_check(path), "state_db_readable").severity == "ok"
    assert sorted(os.listdir(tmp_path / "state")) == ["state.db"]  # read without leaving -wal/-shm behind
    # without Redis, the control bus is a SQLite file beside the database: it counts too
    (tmp_path / "state" / "control.db").write_bytes(b"")
    (tmp_path / "state" / "control.db").chmod(0o640)
    finding = _one(_check(path), "state_db_readable")
    assert finding.severity == "warning" and "control.db (mode 0640, readable by its group)" in finding.message
    assert "state.db (" not in finding.message and f"chmod 600 {tmp_path}/state/control.db*" in finding.fix


@pytest.mark.parametrize(
    ("redis", "severity"),
    [
        ("redis://10.1.2.3:6379/0", "error"),
        ("redis://faregate@redis.internal:6379/0", "error"),  # a user but no password
        ("redis://:Pw-9f8e7d6c@10.1.2.3:6379/0", "ok"),
        ("rediss://faregate:Pw-9f8e7d6c@redis.internal:6380/0", "ok"),
        ("redis://redis.internal:6379/0?password=Pw-9f8e7d6c", "ok"),
        ("redis://127.0.0.1:6379/0", "ok"),
        ("unix:///run/redis/redis.sock", "ok"),
    ],
)
def test_redis_without_a_password_off_loopback(tmp_path: Path, redis: str, severity: str) -> None:
    path = _write(tmp_path, _config(state="  redis: ${REDIS_URL}\n"))
    generation, _ = build(path, {"FAREGATE_MASTER_KEY": STRONG, "REDIS_URL": redis})
    found_by = _check(path, generation=generation)
    finding = _one(found_by, "redis_no_password")
    assert finding.severity == severity
    assert "Pw-9f8e7d6c" not in json.dumps([f.as_dict() for fs in found_by.values() for f in fs])
    if severity == "error":
        assert "requirepass" in finding.fix


def test_no_redis_is_ok(tmp_path: Path) -> None:
    assert _one(_check(_write(tmp_path, _config())), "redis_no_password").severity == "ok"


@pytest.mark.parametrize(
    ("database", "severity"),
    [
        ("postgresql://fg:Pg-5ecret@db.internal:5432/faregate", "warning"),  # asyncpg falls back to plain text
        ("postgresql://fg:Pg-5ecret@db.internal/faregate?ssl=prefer", "warning"),
        ("postgresql://fg:Pg-5ecret@db.internal/faregate?ssl=disable", "error"),
        ("postgresql://fg:Pg-5ecret@db.internal/faregate?sslmode=require", "error"),  # libpq's name: asyncpg ignores it as TLS
        ("postgres://fg:Pg-5ecret@10.0.0.7,db2.internal:5433/faregate?ssl=verify-full", "ok"),
        ("postgresql://fg:Pg-5ecret@db.internal/faregate?ssl=require", "ok"),
        ("postgresql://fg:Pg-5ecret@127.0.0.1:5432/faregate", "ok"),
        ("postgresql://fg@/faregate?host=/var/run/postgresql", "ok"),
        ("sqlite:///tmp/x.db", "ok"),
    ],
)
def test_postgres_without_tls_off_loopback(database: str, severity: str) -> None:
    # the URL path alone: findings() would also connect to read the virtual keys
    finding = security._postgres(database)
    assert (finding.code, finding.severity) == ("postgres_no_tls", severity)
    assert "Pg-5ecret" not in json.dumps(finding.as_dict()) and "fg:" not in finding.subject
    if severity != "ok":
        assert "ssl=verify-full" in finding.fix


def test_cors(tmp_path: Path) -> None:
    cors_found = _one(_check(_write(tmp_path, _config())), "cors_any_origin_credentials")
    assert cors_found.severity == "ok" and "CORS off" in cors_found.message
    listed = _config("  cors: {origins: ['https://app.example.com'], allow_credentials: true}\n")
    assert _one(_check(_write(tmp_path, listed)), "cors_any_origin_credentials").severity == "ok"
    anyone = _config("  cors: {origins: ['*']}\n")
    assert _one(_check(_write(tmp_path, anyone)), "cors_any_origin_credentials").severity == "ok"
    # any origin and no key needed: every page a local browser opens can use the gateway
    no_auth = _write(tmp_path, "server: {auth: none, cors: {origins: ['*']}}\n" + MOCK)
    assert _one(_check(no_auth, master=None), "cors_any_origin_credentials").severity == "error"
    # any origin with credentials: the schema refuses it; a generation built around it is still caught
    generation = _generation(_write(tmp_path, anyone))
    wild = CorsConfig.model_construct(origins=["*"], allow_credentials=True, max_age=600)
    generation = dataclasses.replace(generation, server=generation.server.model_copy(update={"cors": wild}))
    assert _one(_check(tmp_path / "faregate.yaml", generation=generation), "cors_any_origin_credentials").severity == "error"


async def _insert_keys(database: str, rows: list[dict[str, object]], teams: list[dict[str, object]]) -> None:
    engine = make_engine(database)
    try:
        for team in teams:
            await teams_table.insert_team(engine, team)
        for row in rows:
            await keys_table.insert_key(engine, row)
    finally:
        await engine.dispose()


def _key(name: str, secret: str | None = None, **extra: object) -> dict[str, object]:
    secret = secret or new_secret()
    now = time.time()
    row: dict[str, object] = {"id": f"key_{name}", "key_hash": hash_key(secret), "prefix": display_prefix(secret), "name": name}
    row.update(models=[], metadata={}, enabled=True, created_at=now, updated_at=now)
    row.update(extra)
    return row


def _team(team_id: str, **extra: object) -> dict[str, object]:
    now = time.time()
    return {"id": team_id, "name": team_id, "metadata": {}, "created_at": now, "updated_at": now, "enabled": True, **extra}


def _keys_case(tmp_path: Path, database: str, master: str) -> dict[str, list[Finding]]:
    later = time.time() + 86_400
    secrets_made = [new_secret() for _ in range(3)]
    rows = [
        _key("bounded", secrets_made[0], budget_usd=10.0, expires_at=later),
        _key("teamed", secrets_made[1], team_id="t_budget", expires_at=later),  # its team's budget bounds it
        _key("open", secrets_made[2]),  # no budget, no expiry
        _key("revoked", enabled=False),  # refused anyway: not counted
        _key("expired", expires_at=time.time() - 60),
        _key("disabled_team", team_id="t_off"),
    ]
    teams = [_team("t_budget", budget_usd=50.0, budget_period="monthly"), _team("t_off", enabled=False)]
    asyncio.run(_insert_keys(database, rows, teams))
    path = _write(tmp_path, _config(state=f"  database: {database}\n"))
    found = _check(path, master)
    text = json.dumps([f.as_dict() for fs in found.values() for f in fs])
    assert not any(s in text or hash_key(s) in text for s in secrets_made)
    return found


def test_virtual_keys_without_budget_or_expiry(tmp_path: Path) -> None:
    found = _keys_case(tmp_path, _database(tmp_path), STRONG)
    budget = _one(found, "virtual_key_no_budget")
    assert (
        budget.severity == "warning" and budget.message.startswith("1 of 3 active virtual key(s)") and "key_open ('open')" in budget.message
    )
    assert "faregate keys update" in budget.fix
    expiry = _one(found, "virtual_key_no_expiry")
    assert expiry.severity == "warning" and "key_open" in expiry.message and "key_teamed" not in expiry.message
    assert _one(found, "master_key_is_virtual_key").severity == "ok"


def test_bounded_virtual_keys_are_ok(tmp_path: Path) -> None:
    database = _database(tmp_path)
    asyncio.run(_insert_keys(database, [_key("a", budget_usd=1.0, expires_at=time.time() + 3600)], []))
    found = _check(_write(tmp_path, _config(state=f"  database: {database}\n")))
    assert _one(found, "virtual_key_no_budget").severity == "ok" and _one(found, "virtual_key_no_expiry").severity == "ok"


def test_master_key_also_a_virtual_key(tmp_path: Path) -> None:
    master = new_secret()  # the operator pasted a virtual key's secret as the master key
    database = _database(tmp_path)
    asyncio.run(_insert_keys(database, [_key("pasted", master, budget_usd=1.0, expires_at=time.time() + 3600)], []))
    found = _check(_write(tmp_path, _config(state=f"  database: {database}\n")), master)
    finding = _one(found, "master_key_is_virtual_key")
    assert finding.severity == "error" and "key_pasted" in finding.message and "faregate keys rotate key_pasted" in finding.fix
    text = json.dumps([f.as_dict() for fs in found.values() for f in fs])
    assert master not in text and hash_key(master) not in text and display_prefix(master) not in text


def test_master_key_as_a_rotated_virtual_keys_old_secret(tmp_path: Path) -> None:
    master = new_secret()
    database = _database(tmp_path)
    row = _key("rotated", previous_hash=hash_key(master), previous_valid_until=time.time() + 600)
    asyncio.run(_insert_keys(database, [row], []))
    found = _check(_write(tmp_path, _config(state=f"  database: {database}\n")), master)
    assert _one(found, "master_key_is_virtual_key").severity == "error"


def test_an_unreadable_database_is_a_warning_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state.db").write_bytes(b"not a database at all" * 100)
    (tmp_path / "state" / "state.db").chmod(0o600)
    found = _check(_write(tmp_path, _config(state=f"  database: sqlite:///{tmp_path}/state/state.db\n")))
    finding = _one(found, "virtual_keys_unchecked")
    assert finding.severity == "warning" and "cannot be read" in finding.message and "db upgrade" in finding.fix
    assert "master_key_is_virtual_key" not in found


def test_a_database_never_migrated_is_a_warning(tmp_path: Path) -> None:
    import sqlite3

    (tmp_path / "state").mkdir()
    sqlite3.connect(tmp_path / "state" / "state.db").close()
    found = _check(_write(tmp_path, _config(state=f"  database: sqlite:///{tmp_path}/state/state.db\n")))
    assert _one(found, "virtual_keys_unchecked").severity == "warning"


def test_called_from_inside_an_event_loop(tmp_path: Path) -> None:
    database = _database(tmp_path)
    asyncio.run(_insert_keys(database, [_key("open")], []))
    path = _write(tmp_path, _config(state=f"  database: {database}\n"))
    generation = _generation(path)

    async def inside() -> list[Finding]:
        return security.findings(generation, path, None, 2)

    found = asyncio.run(inside())
    assert [f.severity for f in found if f.code == "virtual_key_no_budget"] == ["warning"]


def test_virtual_keys_on_postgres(tmp_path: Path, postgres: PostgresServer) -> None:
    database = postgres.url_of(postgres.new_database("doctor"))

    async def migrate() -> None:
        engine = make_engine(database)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(migrate())
    master = new_secret()
    found = _keys_case(tmp_path, database, master)
    assert _one(found, "virtual_key_no_budget").severity == "warning"
    assert _one(found, "postgres_no_tls").severity == "ok"  # loopback
    assert _one(found, "master_key_is_virtual_key").severity == "ok"


def test_the_cli_shows_the_security_checklist(tmp_path: Path) -> None:
    (tmp_path / "key.txt").write_text(UPSTREAM + "\n")
    (tmp_path / "key.txt").chmod(0o644)
    text = """
server: {master_key: "${FAREGATE_MASTER_KEY}", host: 0.0.0.0}
providers:
  up: {type: openai, base_url: "http://127.0.0.1:9", credentials: [{key_file: key.txt}]}
models:
  m: [{provider: up, model: gpt-4o-mini}]
"""
    path = _write(tmp_path, text)
    env = {"FAREGATE_MASTER_KEY": "sk-faregate-demo"}
    result = run_cli("doctor", "-c", str(path), "--json", "--url", "http://10.9.8.7:4000", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    security_found = {f["code"]: f["severity"] for f in json.loads(result.stdout)["findings"] if f["group"] == "security"}
    assert security_found["master_key_weak"] == "error"
    assert security_found["admin_exposed"] == "warning"
    assert security_found["plain_http_url"] == "error"
    assert security_found["key_file_readable"] == "error"
    assert security_found["auth_none"] == "ok"
    text_result = run_cli("doctor", "-c", str(path), env=env)
    assert "security checklist" in text_result.stdout and "chmod 600" in text_result.stdout
    for output in (result, text_result):
        assert "sk-faregate-demo" not in output.stdout + output.stderr and UPSTREAM not in output.stdout + output.stderr


def test_a_postgres_password_in_a_readable_config(tmp_path: Path) -> None:
    # state.database takes no reference: a PostgreSQL password is written in the file itself
    port = free_port()  # nothing listens there: the connection is refused at once
    path = _write(tmp_path, _config(state=f"  database: postgresql://fg:Pg-5ecret@127.0.0.1:{port}/faregate\n"), 0o644)
    found = _check(path)
    finding = _one(found, "config_readable")
    assert finding.severity == "error" and "state.database" in finding.message and "PGPASSWORD" in finding.fix
    unchecked = _one(found, "virtual_keys_unchecked")  # the database is down: said, not a crash
    assert unchecked.severity == "warning"
    assert "Pg-5ecret" not in json.dumps([f.as_dict() for fs in found.values() for f in fs])
    assert _one(found, "postgres_no_tls").severity == "ok"  # loopback


def test_reads_a_database_a_gateway_has_open(tmp_path: Path) -> None:
    """While a gateway holds the database, new rows may be only in the -wal file: doctor reads them."""
    import sqlalchemy

    from faregate.store.schema import virtual_keys

    database = _database(tmp_path)
    writer = sqlalchemy.create_engine(database)
    try:
        with writer.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            conn.execute(sqlalchemy.insert(virtual_keys).values(**_key("fresh")))
            conn.commit()
            assert (tmp_path / "state" / "state.db-wal").exists()  # not checkpointed while the connection stays open
            found = _check(_write(tmp_path, _config(state=f"  database: {database}\n")))
            assert "key_fresh" in _one(found, "virtual_key_no_budget").message
    finally:
        writer.dispose()

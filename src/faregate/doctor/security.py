"""The pre-launch security checklist (``faregate doctor``, group "security"): one finding per item,
"ok" where the config and the state have no such problem, so the output shows what was checked.

Offline: it reads the config (for key file paths and what is written literally), stats files and
reads the virtual keys and teams from the state database (``security_keys``, read-only).

Never a secret in a finding: the master key and the virtual keys are compared by their hashes and
named by fingerprints; URLs are shown without their user and password.
"""

from __future__ import annotations

import ipaddress
import math
import re
import stat
import string
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from faregate.config.load import read_yaml, validate
from faregate.config.schema import Config
from faregate.config.state import sqlite_path, state_dir
from faregate.doctor import security_keys
from faregate.doctor.findings import Finding, Severity
from faregate.generation import Generation
from faregate.types import Secret

GROUP = "security"
# master keys published in faregate's own docs and Makefile: anyone who read them knows them
DEMO_KEYS = frozenset({"sk-faregate-demo", "sk-my-gateway-key"})
CLASSES = ((string.ascii_lowercase, 26), (string.ascii_uppercase, 26), (string.digits, 10))
WORD_BITS = 12.0  # a word a person picked: about one of 4,096
WEAK_BITS = 56.0  # below: error (a guessable key)
GOOD_BITS = 80.0  # below: warning (80 bits: out of reach of online guessing)
MIN_LENGTH = 16
SHOWN = 5  # key ids named in one finding


def findings(generation: Generation, config_path: Path, url: str | None, workers: int | None) -> list[Finding]:
    """Every checklist item for this generation and its config file; ``url``: the address clients
    use (``--url``), None when not given; ``workers`` does not matter here."""
    del workers
    config = _raw_config(config_path)
    out = [
        _master_key_strength(generation.master_key, config),
        _auth_none(generation),
        _admin_exposed(generation),
        _plain_http(url),
        *_key_files(config, config_path),
        _config_readable(config, config_path),
        _state_db_readable(generation),
        _redis(generation.state.redis),
        _postgres(generation.state.database),
        _cors(generation),
    ]
    out.extend(security_keys.findings(generation))
    return out


def _finding(code: str, severity: Severity, subject: str, message: str, fix: str = "") -> Finding:
    return Finding(GROUP, code, severity, subject, message, fix if severity != "ok" else "")


def _raw_config(path: Path) -> Config | None:
    """The config as written (references not expanded): where key files are, what is literal."""
    try:
        return validate(read_yaml(path))
    except Exception:  # noqa: BLE001 - the caller has built the generation from it; a race is not fatal here
        return None


# --- the master key -------------------------------------------------------------------------------


def estimate_bits(value: str) -> float:
    """A rough entropy estimate: each character worth log2 of the alphabet the key's character classes
    span, but a short ``xx-`` prefix worth nothing (predictable), a run of 4 to 12 letters that may be a
    word (one case, or Capitalised) worth about one word of a 4,096-word list, and a key of few
    distinct characters no more than twice their number. Generous to passphrases written as one run."""
    body = value
    head, sep, rest = value.partition("-")
    if sep and 1 < len(head) <= 5 and head.isalpha() and rest:
        body = rest.removeprefix("fg-")
    pool = sum(size for chars, size in CLASSES if any(c in chars for c in body))
    if any(not c.isalnum() or not c.isascii() for c in body):
        pool += 33
    if not body or pool <= 1:
        return 0.0
    per_char = math.log2(pool)
    bits = 0.0
    for run in re.findall(r"[A-Za-z]+|[^A-Za-z]+", body):
        if _wordlike(run):
            bits += WORD_BITS + (0 if run.islower() else 1)
        else:
            bits += len(run) * per_char
    return min(bits, 2 * len(set(body)) * per_char)


def _wordlike(run: str) -> bool:
    """4 to 12 letters of one case, or Capitalised: maybe a word (a longer run is taken as random)."""
    return run.isalpha() and 4 <= len(run) <= 12 and (run.islower() or run.isupper() or run.istitle())


def _master_key_strength(master: Secret | None, config: Config | None) -> Finding:
    subject = "server.master_key"
    if master is None:
        return _finding("master_key_weak", "ok", subject, "no master key (auth: none): nothing to guess, see auth_none")
    reference = config.server.master_key if config is not None and config.server.master_key else "${FAREGATE_MASTER_KEY}"
    fix = f"generate one: python3 -c 'import secrets; print(secrets.token_urlsafe(32))' and set it where {reference} reads it"
    value = master.reveal()
    name = f"the master key (sha256:{master.fingerprint})"
    if value.lower() in DEMO_KEYS:
        return _finding("master_key_weak", "error", subject, f"{name} is a demo value published in faregate's docs", fix)
    if len(value) < MIN_LENGTH:
        return _finding("master_key_weak", "error", subject, f"{name} is shorter than {MIN_LENGTH} characters", fix)
    bits = estimate_bits(value)
    if bits < WEAK_BITS:
        return _finding("master_key_weak", "error", subject, f"{name} has about {bits:.0f} bits of entropy (estimate): guessable", fix)
    if bits < GOOD_BITS:
        message = f"{name} has about {bits:.0f} bits of entropy (estimate), less than {GOOD_BITS:.0f}"
        return _finding("master_key_weak", "warning", subject, message, fix)
    return _finding("master_key_weak", "ok", subject, f"{name}: about {bits:.0f} bits of entropy (estimate), not a demo value")


# --- the server -----------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _auth_none(generation: Generation) -> Finding:
    if generation.server.auth == "key":
        return _finding("auth_none", "ok", "server.auth", "auth: key: every request needs the master key or a virtual key")
    message = (
        "auth: none: no key is asked for; serve binds 127.0.0.1, but every local process and user, and any web page "
        "a local browser opens when CORS lets it, can spend through your providers' keys and use the admin routes"
    )
    fix = "set server.auth: key (the default) and server.master_key: ${FAREGATE_MASTER_KEY}; give clients virtual keys"
    return _finding("auth_none", "warning", "server.auth", message, fix)


def _admin_exposed(generation: Generation) -> Finding:
    server = generation.server
    subject = "server.host"
    if server.auth == "none":
        return _finding("admin_exposed", "ok", subject, f"auth: none: serve binds 127.0.0.1 whatever server.host ({server.host}) says")
    if is_loopback(server.host):
        return _finding("admin_exposed", "ok", subject, f"bound to loopback ({server.host}): /admin/ and /cache/ answer local clients only")
    message = (
        f"bound to {server.host}, not loopback: the admin routes (/admin/, /cache/) answer on the same address and port "
        "as the proxy routes (there is no separate admin bind), guarded by the master key alone, over plain HTTP"
    )
    fix = (
        f"bind 127.0.0.1 behind a TLS proxy, or let the proxy/firewall refuse /admin/ and /cache/ from outside "
        f"(nginx: location ~ ^/(admin|cache)/ {{ allow 10.0.0.0/8; deny all; }}; or firewall port {server.port} to the clients)"
    )
    return _finding("admin_exposed", "warning", subject, message, fix)


def _plain_http(url: str | None) -> Finding:
    if url is None:
        return _finding("plain_http_url", "ok", "--url", "no --url given: the address clients use was not checked (pass --url to check it)")
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = _port(parts)
    shown = _shown_url(parts.scheme, host, port)
    if parts.scheme == "https":
        return _finding("plain_http_url", "ok", shown, "https: keys travel encrypted to the gateway")
    if parts.scheme == "http" and is_loopback(host):
        return _finding("plain_http_url", "ok", shown, "plain HTTP, but on loopback: keys never leave this host")
    if parts.scheme != "http":
        return _finding(
            "plain_http_url", "warning", shown, f"not an http(s) URL (scheme {parts.scheme or 'none'!r})", "give --url http(s)://HOST:PORT"
        )
    message = f"plain HTTP to {host}, off loopback: the master key and every virtual key cross the network in clear text"
    fix = "put a TLS-terminating proxy (nginx, Caddy, a load balancer) in front of faregate and give clients its https:// URL"
    return _finding("plain_http_url", "error", shown, message, fix)


def _shown_url(scheme: str, host: str, port: int | None) -> str:
    """A URL as findings show it: no user, no password, no path."""
    return f"{scheme}://{f'[{host}]' if ':' in host else host}" + (f":{port}" if port else "")


def _port(parts: Any) -> int | None:
    try:
        return int(parts.port) if parts.port is not None else None
    except ValueError:
        return None


def _cors(generation: Generation) -> Finding:
    cors = generation.server.cors
    subject = "server.cors"
    if cors is None:
        return _finding("cors_any_origin_credentials", "ok", subject, "CORS off: browsers get no access from other origins")
    anyone = cors.origins == ["*"]
    if anyone and cors.allow_credentials:  # refused by the schema; kept for a config built another way
        message = "any origin with credentials: every web page a user opens can call the gateway with the user's cookies"
        return _finding("cors_any_origin_credentials", "error", subject, message, "list the origins: server.cors.origins")
    if anyone and generation.server.auth == "none":
        message = "any origin and auth: none: every web page a local browser opens can use the gateway without a key"
        fix = "list the origins in server.cors.origins, or set auth: key"
        return _finding("cors_any_origin_credentials", "error", subject, message, fix)
    if anyone:
        return _finding("cors_any_origin_credentials", "ok", subject, "any origin, without credentials: a page needs a key of its own")
    shown = ", ".join(cors.origins[:SHOWN]) + (", ..." if len(cors.origins) > SHOWN else "")
    credentials = "with" if cors.allow_credentials else "without"
    return _finding(
        "cors_any_origin_credentials", "ok", subject, f"{len(cors.origins)} listed origin(s) {credentials} credentials: {shown}"
    )


# --- files ----------------------------------------------------------------------------------------


def _mode(path: Path) -> int | None:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None


def _readers(mode: int) -> str:
    if mode & 0o004:
        return "every user"
    return "its group"


def _key_files(config: Config | None, config_path: Path) -> list[Finding]:
    base = config_path.absolute().parent
    out: list[Finding] = []
    for name, provider in (config.providers if config is not None else {}).items():
        for i, cred in enumerate(provider.credentials):
            if cred.key_file is None:
                continue
            subject = f"providers.{name}.credentials[{i}].key_file"
            file = Path(cred.key_file) if Path(cred.key_file).is_absolute() else base / cred.key_file
            mode = _mode(file)
            if mode is None:
                out.append(
                    _finding("key_file_readable", "ok", subject, f"{file} cannot be read now (check reports that): permissions not checked")
                )
            elif mode & 0o044:
                severity: Severity = "error" if mode & 0o004 else "warning"
                message = f"key file {file} (mode {mode:04o}) is readable by {_readers(mode)}: it holds an upstream API key"
                out.append(
                    _finding("key_file_readable", severity, subject, message, f"chmod 600 {file} (owned by the user faregate runs as)")
                )
            else:
                out.append(_finding("key_file_readable", "ok", subject, f"key file {file} (mode {mode:04o}) is readable by its owner only"))
    if not out:
        out.append(_finding("key_file_readable", "ok", "providers", "no key_file: credentials come from the environment"))
    return out


def _inline_password(url: str | None) -> bool:
    """A state URL written with a literal password (not a reference)."""
    if not url or url.startswith(("${", "os.environ/")):
        return False
    parts = urlsplit(url)
    return bool(parts.password) or "password" in parse_qs(parts.query)


def _config_readable(config: Config | None, config_path: Path) -> Finding:
    """The config holds references, not secrets, unless a URL (state, base_url) carries a password."""
    file = config_path.absolute()
    subject = str(config_path)
    mode = _mode(file)
    if mode is None:
        return _finding("config_readable", "ok", subject, f"{file} cannot be stat'ed: permissions not checked")
    literal = _literal_passwords(config)
    if not mode & 0o044:
        return _finding("config_readable", "ok", subject, f"the config (mode {mode:04o}) is readable by its owner only")
    if not literal:
        message = f"the config (mode {mode:04o}) is readable by {_readers(mode)} but holds no secret: only references to them"
        return _finding("config_readable", "ok", subject, message)
    message = f"the config (mode {mode:04o}) is readable by {_readers(mode)} and {', '.join(literal)} holds a password written literally"
    fix = (
        f"chmod 600 {file}; or keep passwords out of it: state.redis as a reference (${{REDIS_URL}}), "
        "the PostgreSQL password as PGPASSWORD in the gateway's environment (state.database takes no reference)"
    )
    return _finding("config_readable", "error", subject, message, fix)


def _literal_passwords(config: Config | None) -> list[str]:
    """The config paths whose URL is written with a literal password."""
    if config is None:
        return []
    urls = {"state.database": config.state.database, "state.redis": config.state.redis}
    urls.update({f"providers.{name}.base_url": p.base_url for name, p in config.providers.items()})
    return [path for path, url in urls.items() if _inline_password(url)]


def _state_db_readable(generation: Generation) -> Finding:
    """The SQLite state database and, without Redis, the SQLite control bus beside it (``control.db``),
    each with its ``-wal`` and ``-shm``."""
    state = generation.state
    path = sqlite_path(state.database)
    bases = [path] if path is not None else []
    if not state.redis:
        bases.append(state_dir(state, generation.source.parent) / "control.db")
    subject = str(path) if path is not None else "state.database"
    present = [base for base in bases if _mode(base) is not None]
    if not present:
        message = "no SQLite state file yet: serve creates them (check again after)" if bases else "not SQLite: file modes do not apply"
        return _finding("state_db_readable", "ok", subject, message)
    files = [f for base in present for f in (base, Path(f"{base}-wal"), Path(f"{base}-shm"))]
    exposed = [(f, m) for f in files if (m := _mode(f)) is not None and m & 0o044]
    names = " and ".join(base.name for base in present)
    if not exposed:
        return _finding("state_db_readable", "ok", subject, f"{names}: readable by the owner only")
    shown = ", ".join(f"{f.name} (mode {m:04o}, readable by {_readers(m)})" for f, m in exposed)
    message = f"{shown}: they hold virtual key hashes, budgets, the spend log with user ids and the workers' credential fingerprints"
    fix = "; ".join(f"chmod 600 {base}*" for base in present) + f"; chmod 700 {present[0].parent}"
    return _finding("state_db_readable", "warning", subject, message, fix)


# --- Redis and PostgreSQL -------------------------------------------------------------------------


def _redis(redis: str | None) -> Finding:
    subject = "state.redis"
    if redis is None:
        return _finding("redis_no_password", "ok", subject, "no Redis (SQLite control bus)")
    parts = urlsplit(redis)
    if parts.scheme == "unix":
        return _finding("redis_no_password", "ok", subject, "a unix socket: local processes only (its file mode decides who)")
    host = parts.hostname or "localhost"
    port = _port(parts)
    shown = _shown_url(parts.scheme, host, port)
    password = bool(parts.password) or bool(parse_qs(parts.query).get("password"))
    if password:
        tls = "" if parts.scheme == "rediss" or is_loopback(host) else " (sent in clear text: rediss:// would encrypt it)"
        return _finding("redis_no_password", "ok", shown, f"a password is set{tls}")
    if is_loopback(host):
        return _finding("redis_no_password", "ok", shown, "no password, but on loopback: only local processes reach it")
    message = (
        f"no password on a Redis off loopback ({host}): anyone who reaches it can read and forge the control bus "
        "(reloads, purges, key changes) and the rate-limit counters"
    )
    fix = "set requirepass (or an ACL user) on the Redis and write state.redis: ${REDIS_URL} with rediss://:PASSWORD@HOST:6379/0"
    return _finding("redis_no_password", "error", shown, message, fix)


def _pg_hosts(parts: Any) -> list[str]:
    query = parse_qs(parts.query)
    netloc = parts.netloc.rpartition("@")[2]
    hosts = [h.rsplit(":", 1)[0] if not h.startswith("[") else h.split("]")[0] + "]" for h in netloc.split(",") if h]
    hosts += query.get("host", [])
    return hosts or ["/var/run/postgresql"]  # no host: libpq's unix socket


def _postgres(database: str) -> Finding:
    subject = "state.database"
    if not database.startswith(("postgresql://", "postgres://")):
        return _finding("postgres_no_tls", "ok", subject, "not PostgreSQL: no network connection to protect")
    parts = urlsplit(database)
    hosts = _pg_hosts(parts)
    remote = [h for h in hosts if not h.startswith("/") and not is_loopback(h)]
    shown = f"postgresql://{','.join(h for h in hosts)}{parts.path}"
    if not remote:
        return _finding("postgres_no_tls", "ok", shown, "on loopback or a unix socket: the connection never leaves this host")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    ssl = query.get("ssl", "").lower()
    fix = f"add ?ssl=verify-full (asyncpg's spelling; give the CA with sslrootcert=) to state.database for {', '.join(remote)}"
    if "sslmode" in query and not ssl:
        message = "sslmode= is libpq's spelling: faregate's driver (asyncpg) refuses it, so no connection is made at all; it takes ssl="
        return _finding("postgres_no_tls", "error", shown, message, fix)
    if ssl in ("verify-full", "verify-ca"):
        return _finding("postgres_no_tls", "ok", shown, f"TLS required and the server's certificate verified (ssl={ssl})")
    if ssl in ("require", "true"):
        return _finding(
            "postgres_no_tls", "ok", shown, f"TLS required (ssl={ssl}); the server's certificate is not verified (verify-full would)"
        )
    if ssl in ("disable", "allow", "false"):
        message = f"ssl={ssl} off loopback: the database password and every key hash can cross the network in clear text"
        return _finding("postgres_no_tls", "error", shown, message, fix)
    message = (
        f"TLS not required off loopback (ssl={ssl or 'not set: asyncpg tries TLS and falls back to plain text'}): "
        "a network attacker can force a plain-text connection"
    )
    return _finding("postgres_no_tls", "warning", shown, message, fix)

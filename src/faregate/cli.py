"""The `faregate` command. Thin: parse arguments, call the modules that do the work."""

from __future__ import annotations

import errno
import ipaddress
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from faregate import __version__, remote
from faregate.cli_doctor import doctor
from faregate.cli_keys import keys_app
from faregate.cli_teams import spend, teams_app
from faregate.config import runtime
from faregate.config.load import per_worker_limits, read_yaml, validate
from faregate.config.state import load_state
from faregate.credentials.keyring import build
from faregate.errors import ConfigError, Problem
from faregate.generation import Generation

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="faregate: a self-hosted AI API gateway",
    context_settings={"help_option_names": ["-h", "--help"]},
)
DEFAULT_URL = "http://127.0.0.1:4000"
ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="config file (YAML)", exists=False)]


def _load(config: Path) -> tuple[Generation, list[Problem]]:
    try:
        return build(config)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        errors = sum(p.severity == "error" for p in exc.problems)
        typer.echo(f"{config}: {errors} error(s); not started", err=True)
        raise typer.Exit(1) from None


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, help="print the version and exit")] = False,
) -> None:
    """faregate: a self-hosted AI API gateway"""


def _cannot_listen(host: str, port: int) -> str | None:
    """Why uvicorn would fail to listen on host:port, as one line, or None. Probed as it binds
    (SO_REUSEADDR, so a port in TIME_WAIT is not "in use"), before anything is started."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        return f"faregate: cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}"
    for family, kind, proto, _, address in addresses:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"faregate: port {port} on {host} is already in use; pick another with --port N (make run PORT=N)"
            return f"faregate: cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def _worker_warnings(path: Path, warnings: list[Problem], generation: Generation, workers: int) -> list[Problem]:
    """serve's warnings for the number of workers that runs (``--workers`` overrides server.workers):
    the file's per-worker rpm/tpm warnings restated for it, and, without Redis, one for virtual keys'
    and teams' limits, which are set through the admin API and so cannot be known at start."""
    if generation.state.redis is not None:
        return warnings
    try:
        config = validate(read_yaml(path))
    except ConfigError:  # changed since it was loaded; the next reload reports it
        return warnings
    stale = per_worker_limits(config, generation.server.workers)
    out = [w for w in warnings if w not in stale] + per_worker_limits(config, workers)
    if workers > 1:
        out.append(
            Problem(
                "state.redis",
                f"not set: virtual keys' and teams' rpm/tpm/max_parallel are counted per worker process too: "
                f"with {workers} workers up to {workers}x such a limit can pass (set state.redis for one exact count)",
                "warning",
            )
        )
    return out


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _migrate(database: str) -> None:
    """Apply database migrations once, before any worker starts."""
    import asyncio

    from faregate.store.db import make_engine, upgrade

    async def run() -> None:
        engine = make_engine(database)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    except Exception as exc:  # noqa: BLE001 - reported, then exit 1
        typer.echo(f"database migration failed for state.database: {exc.__class__.__name__}: {str(exc).splitlines()[0][:300]}", err=True)
        raise typer.Exit(1) from None


app.add_typer(keys_app, name="keys")
app.add_typer(teams_app, name="teams")
db_app = typer.Typer(help="the state database")
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption) -> None:
    """Apply every database migration not applied yet (serve does this at start too).

    Reads only the config's `state` section: no provider secret or master key needs to be set."""
    try:
        state = load_state(config)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(1) from None
    _migrate(state.database)
    typer.echo(f"{state.database.split('@')[-1]}: up to date")


@app.command()
def check(config: ConfigOption) -> None:
    """Validate a config offline: print every error and warning with its path; exit 1 on errors."""
    try:
        generation, warnings = build(config)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(str(problem))
        errors = sum(p.severity == "error" for p in exc.problems)
        typer.echo(f"{config}: {errors} error(s), {len(exc.problems) - errors} warning(s)")
        raise typer.Exit(1) from None
    for problem in warnings:
        typer.echo(str(problem))
    typer.echo(
        f"{config}: ok, {len(warnings)} warning(s); generation {generation.id}: "
        f"{len(generation.models)} model(s), {len(generation.providers)} provider(s)"
    )


@app.command()
def serve(
    config: ConfigOption,
    host: Annotated[str | None, typer.Option(help="bind address (default: server.host)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: server.port)")] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes (default: server.workers)")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run the gateway."""
    import uvicorn

    from faregate.observability import logging as logs

    logs.setup(log_level)
    generation, warnings = _load(config)
    server = generation.server
    bind = host or server.host
    n_workers = workers or server.workers
    for problem in _worker_warnings(config, warnings, generation, n_workers):
        typer.echo(str(problem), err=True)
    if server.auth == "none" and not _is_loopback(bind):
        typer.echo(f"auth: none -> binding to 127.0.0.1 instead of {bind}: a gateway without auth is never exposed", err=True)
        bind = "127.0.0.1"
    elif server.auth == "none":
        typer.echo("auth: none -> no key is required; listening on loopback only", err=True)
    cannot_listen = _cannot_listen(bind, port or server.port)
    if cannot_listen is not None:
        typer.echo(cannot_listen, err=True)
        raise typer.Exit(1)
    _migrate(generation.state.database)
    metrics_dir = Path(tempfile.mkdtemp(prefix="faregate-metrics-")) if n_workers > 1 else None
    runtime.export(config.resolve(), metrics_dir, log_level, f"{socket.gethostname()}-{os.getpid()}")
    url = f"http://{bind}:{port or server.port}"
    typer.echo(
        f"faregate {__version__}: serving {url} with {n_workers} worker(s); generation {generation.id}; "
        f"models: {', '.join(sorted(generation.models)) or '(none)'}",
        err=True,
    )
    try:
        uvicorn.run(
            "faregate.server.app:create_app",
            factory=True,
            host=bind,
            port=port or server.port,
            workers=n_workers,
            loop="uvloop",
            http="faregate.server.protocol:GuardedProtocol",  # httptools with connection limits (server.header_timeout...)
            lifespan="on",
            access_log=False,
            log_config=None,
            server_header=False,
            timeout_graceful_shutdown=30,
        )
    except SystemExit as exc:  # uvicorn exits 1 when it cannot bind: taken since the probe above
        cannot_listen = _cannot_listen(bind, port or server.port) if exc.code not in (0, None) else None
        if cannot_listen is None:
            raise
        typer.echo(cannot_listen, err=True)
        raise typer.Exit(1) from None
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


UrlOption = Annotated[str, typer.Option(envvar="FAREGATE_URL", help="a running gateway")]
KeyOption = Annotated[str | None, typer.Option(help="master key (default: $FAREGATE_MASTER_KEY)")]


@app.command()
def reload(
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for every worker's acknowledgement")] = 10.0,
) -> None:
    """Ask a running gateway to load its config now; exit 1 unless every live worker is on the new generation."""
    status, body = remote.call("POST", url, "/admin/reload", key or runtime.master_key_from_env(), {"timeout": timeout}, timeout + 5)
    if status == 422:
        typer.echo(body.get("error", {}).get("message", "invalid config"), err=True)
        for problem in body.get("problems", []):
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(1)
    if "workers" not in body:
        typer.echo(f"reload failed ({status}): {body.get('error', {}).get('message', body)}", err=True)
        raise typer.Exit(1)
    typer.echo(f"generation {body['generation']}")
    for w in body["workers"]:
        mark = "ok " if w.get("on_new_generation") else "OLD"
        typer.echo(f"  {mark} {w['id']:<40} generation {w['generation']}  bus {w['bus']}")
    for line in body.get("laggards", []):
        typer.echo(f"  laggard: {line}", err=True)
    if not body.get("ok"):
        raise typer.Exit(1)


@app.command()
def verify(config: ConfigOption, url: UrlOption = DEFAULT_URL, key: KeyOption = None) -> None:
    """Compare the credential fingerprints the config resolves to with what every live worker uses."""
    generation, _ = _load(config)
    status, body = remote.call("GET", url, "/admin/workers", key or runtime.master_key_from_env(), None, 10)
    if status != 200:
        typer.echo(f"cannot read workers ({status}): {body.get('error', {}).get('message', body)}", err=True)
        raise typer.Exit(1)
    rows, ok = remote.compare(generation, body)
    typer.echo(
        f"config {config}: generation {generation.id}, {sum(len(p.credentials) for p in generation.providers.values())} credential(s)"
    )
    typer.echo(f"{'worker':<40} {'generation':<14} {'state':<12} detail")
    for row in rows:
        typer.echo(f"{row.worker:<40} {row.generation:<14} {row.state:<12} {row.detail}")
    if body.get("bus", "ok") != "ok":
        typer.echo(f"control bus: {body['bus']} (other instances may be missing from this list)")
        ok = False
    typer.echo("all workers match the config" if ok else "MISMATCH: see the rows above")
    if not ok:
        raise typer.Exit(1)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="where to write faregate.yaml and .env")] = Path(),
    database: Annotated[str, typer.Option(help="state.database (relative sqlite paths are relative to the config file)")] = (
        "sqlite:///.faregate/state.db"
    ),
    force: Annotated[bool, typer.Option(help="replace existing files")] = False,
) -> None:
    """Write a starter config (a local mock model, providers commented out) and a .env with a new master key."""
    from faregate.cli_init import InitRefused, write_starter

    try:
        config, env = write_starter(directory, database, force)
    except InitRefused as exc:
        typer.echo(f"faregate init: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {config} and {env} (0600, a new master key: never printed)")
    typer.echo(f"next: set -a; . {env}; set +a; faregate check -c {config} && faregate serve -c {config}")


@app.command("import-litellm")
def import_litellm(
    file: Annotated[Path, typer.Argument(help="a LiteLLM proxy config.yaml")],
    out: Annotated[Path | None, typer.Option("--output", "-o", help="write the faregate config here (default: stdout)")] = None,
) -> None:
    """Convert a LiteLLM proxy config into a faregate config; say on stderr what to set and what was not converted."""
    from faregate.config.litellm import import_file

    try:
        imported = import_file(file)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(1) from None
    text = imported.yaml(str(file))
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out}: {len(imported.config['models'])} model(s), {len(imported.config['providers'])} provider(s)", err=True)
    for note in imported.secrets:
        typer.echo(f"secret: {note}", err=True)
    for note in imported.unconverted:
        typer.echo(f"not converted: {note}", err=True)
    typer.echo(f"next: set the variables above, then faregate check -c {out or 'FILE'}", err=True)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


app.command("spend")(spend)
app.command("doctor")(doctor)


def main() -> None:
    app(prog_name="faregate")


if __name__ == "__main__":
    main()

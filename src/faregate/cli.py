"""The `faregate` command. Thin: parse arguments, call the modules that do the work."""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from faregate import __version__, remote
from faregate.cli_keys import keys_app
from faregate.config import runtime
from faregate.credentials.keyring import build
from faregate.errors import ConfigError, Problem
from faregate.generation import Generation

app = typer.Typer(add_completion=False, no_args_is_help=True, help="faregate: a self-hosted AI API gateway")
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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _migrate(generation: Generation) -> None:
    """Apply database migrations once, before any worker starts."""
    import asyncio

    from faregate.store.db import make_engine, upgrade

    async def run() -> None:
        engine = make_engine(generation.state.database)
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
db_app = typer.Typer(help="the state database")
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption) -> None:
    """Apply every database migration not applied yet (serve does this at start too)."""
    generation, _ = _load(config)
    _migrate(generation)
    typer.echo(f"{generation.state.database.split('@')[-1]}: up to date")


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
    for problem in warnings:
        typer.echo(str(problem), err=True)
    server = generation.server
    bind = host or server.host
    n_workers = workers or server.workers
    if server.auth == "none" and not _is_loopback(bind):
        typer.echo(f"auth: none -> binding to 127.0.0.1 instead of {bind}: a gateway without auth is never exposed", err=True)
        bind = "127.0.0.1"
    elif server.auth == "none":
        typer.echo("auth: none -> no key is required; listening on loopback only", err=True)
    _migrate(generation)
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
            http="httptools",
            lifespan="on",
            access_log=False,
            log_config=None,
            server_header=False,
            timeout_graceful_shutdown=30,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


UrlOption = Annotated[str, typer.Option(help="a running gateway")]
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
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    app(prog_name="faregate")


if __name__ == "__main__":
    main()

"""The `faregate` command. Thin: parse arguments, call the modules that do the work."""

from __future__ import annotations

import ipaddress
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from faregate import __version__
from faregate.config import runtime
from faregate.credentials.keyring import build
from faregate.errors import ConfigError, Problem
from faregate.generation import Generation

app = typer.Typer(add_completion=False, no_args_is_help=True, help="faregate: a self-hosted AI API gateway")
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
    metrics_dir = Path(tempfile.mkdtemp(prefix="faregate-metrics-")) if n_workers > 1 else None
    runtime.export(config.resolve(), metrics_dir, log_level)
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


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    app(prog_name="faregate")


if __name__ == "__main__":
    main()

"""`faregate doctor`: check's problems, the pitfall map and the security checklist (offline), and
with ``--live`` the failure decision tree walked against a running gateway, as one report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from faregate.cli_keys import DEFAULT_URL
from faregate.config import runtime
from faregate.credentials.keyring import build
from faregate.doctor import pitfalls, render
from faregate.doctor.findings import Finding, exit_code
from faregate.errors import ConfigError
from faregate.generation import Generation


def doctor(
    config: Annotated[Path, typer.Option("--config", "-c", help="config file (YAML)")],
    live: Annotated[bool, typer.Option("--live", help="also walk the decision tree against the running gateway at --url")] = False,
    url: Annotated[
        str | None, typer.Option(envvar="FAREGATE_URL", help=f"the gateway as clients reach it, through any proxy (default {DEFAULT_URL})")
    ] = None,
    key: Annotated[str | None, typer.Option("--key", help="master key (default: $FAREGATE_MASTER_KEY)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the findings as JSON (progress still goes to stderr)")] = False,
    timeout: Annotated[float, typer.Option(help="seconds for each live probe")] = 10.0,
    workers: Annotated[int | None, typer.Option(help="worker processes that will run (default: server.workers)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="leave out the ok lines (the summary still counts them)")] = False,
) -> None:
    """Find what is wrong before users do: every finding with its severity and its fix.

    Exit code, for cron and CI: 0 all ok, 1 at least one error, 2 warnings and no error.
    Secrets are never printed, only their fingerprints."""
    found, generation = _offline(config, url, workers)
    if live and generation is None:
        typer.echo("--live skipped: the gateway is compared with the config, and the config has errors", err=True)
    elif live and generation is not None:
        found.extend(_live(generation, url or DEFAULT_URL, key or runtime.master_key_from_env(), timeout))
    if as_json:
        typer.echo(render.as_json(found))
    else:
        colour = sys.stdout.isatty() and not runtime.no_color()
        title = f"faregate doctor: {config}" + (f" (generation {generation.id})" if generation is not None else "")
        typer.echo(render.text(found, colour=colour, quiet=quiet, title=title), color=colour)
    raise typer.Exit(exit_code(found))


def _offline(config: Path, url: str | None, workers: int | None) -> tuple[list[Finding], Generation | None]:
    """check's problems, then (when the config loads) the pitfall map and the security checklist."""
    try:
        generation, warnings = build(config)
    except ConfigError as exc:
        return pitfalls.config_findings(exc.problems, None), None
    found = pitfalls.config_findings(warnings, generation)
    found.extend(pitfalls.findings(generation, config, workers))
    from faregate.doctor import security  # here, not at the top: the other commands never load doctor's checks

    found.extend(security.findings(generation, config, url, workers))
    return found, generation


def _live(generation: Generation, url: str, key: str | None, timeout: float) -> list[Finding]:
    from faregate.doctor import live  # here: only --live needs the HTTP client

    progress = _Progress()
    try:
        return live.findings(generation, url, key, timeout, progress)
    finally:
        progress.done()


class _Progress:
    """Live progress on stderr: one line rewritten in place on a terminal, a line per step otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.shown = False

    def __call__(self, line: str) -> None:
        if self.tty:
            typer.echo(f"\r\x1b[K{line}", err=True, nl=False)
            self.shown = True
        else:
            typer.echo(line, err=True)

    def done(self) -> None:
        if self.shown:
            typer.echo("\r\x1b[K", err=True, nl=False)

"""`faregate teams ...` and `faregate spend`: teams and the spend log through a running gateway's admin API."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import urlencode

import typer

from faregate.cli_keys import (
    CLEARABLE,
    DEFAULT_URL,
    Budget,
    Clear,
    Enabled,
    Key,
    Parallel,
    Period,
    Rpm,
    Tpm,
    Url,
    call,
    cleared,
    fail,
    limits,
    list_page,
    show,
)

teams_app = typer.Typer(help="teams: budgets and limits over several keys (through the admin API)", no_args_is_help=True)


def _limits(row: dict[str, Any]) -> str:
    parts = []
    if row.get("budget_usd") is not None:
        parts.append(f"budget ${row['spent_usd']:.4f} of ${row['budget_usd']:g} {row['budget_period']}")
    parts += [f"{name}={row[name]}" for name in ("rpm", "tpm", "max_parallel") if row.get(name) is not None]
    return "  ".join(parts) or "no budget or limits"


def _row(row: dict[str, Any]) -> str:
    state = "enabled" if row["enabled"] else "disabled"
    return f"{row['id']:<22} {state:<8} {row['keys']:>4} key(s)  {row['name']}  {_limits(row)}"


@teams_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="the team's name (unique)")],
    budget: Budget = None,
    period: Period = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    max_parallel: Parallel = None,
    url: Url = DEFAULT_URL,
    key: Key = None,
) -> None:
    """Create a team; its id is printed (give it to `faregate keys create --team`)."""
    answer = call("POST", url, "/admin/teams", key, {"name": name, **limits(budget, period, rpm, tpm, max_parallel)})
    typer.echo(answer["id"])
    typer.echo(f"team {answer['name']!r} created: {_limits(answer)}", err=True)


@teams_app.command("list")
def list_teams(url: Url = DEFAULT_URL, key: Key = None, limit: int = 50, offset: int = 0) -> None:
    """List teams with their budgets, limits and number of keys."""
    list_page(url, key, "/admin/teams", limit, offset, _row)


@teams_app.command("get")
def get(team_id: str, url: Url = DEFAULT_URL, key: Key = None) -> None:
    """Print one team as JSON."""
    show(url, key, f"/admin/teams/{team_id}")


@teams_app.command("update")
def update(
    team_id: str,
    name: Annotated[str | None, typer.Option(help="a new name (unique)")] = None,
    budget: Budget = None,
    period: Period = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    max_parallel: Parallel = None,
    enabled: Enabled = None,
    clear: Clear = None,
    url: Url = DEFAULT_URL,
    key: Key = None,
) -> None:
    """Change a team's name, budget or limits, or disable it (all its keys are refused at once)."""
    body = {**cleared(clear, CLEARABLE), **({"name": name} if name is not None else {}), **limits(budget, period, rpm, tpm, max_parallel)}
    if enabled is not None:
        body["enabled"] = enabled
    if not body:
        fail("nothing to change: give at least one option (see --help)")
    typer.echo(_row(call("PATCH", url, f"/admin/teams/{team_id}", key, body)))


@teams_app.command("delete")
def delete(team_id: str, url: Url = DEFAULT_URL, key: Key = None) -> None:
    """Delete a team; its keys are kept, without a team."""
    answer = call("DELETE", url, f"/admin/teams/{team_id}", key)
    typer.echo(f"{team_id}: deleted; {answer.get('keys_detached', 0)} key(s) detached")


COLUMNS = {"key": "key_id", "team": "team_id"}  # group_by name -> the row's field, where they differ
SUMS = ("requests", "errors", "prompt_tokens", "completion_tokens", "cost_usd", "unpriced_requests")


def spend(
    group_by: Annotated[str, typer.Option(help="comma list of: key, team, model, day, deployment, format (none: one total)")] = "",
    start: Annotated[str | None, typer.Option(help="YYYY-MM-DD (UTC) or Unix seconds, included")] = None,
    end: Annotated[str | None, typer.Option(help="YYYY-MM-DD (UTC) or Unix seconds, included")] = None,
    key_id: Annotated[str | None, typer.Option(help="only this key")] = None,
    team_id: Annotated[str | None, typer.Option(help="only this team")] = None,
    model: Annotated[str | None, typer.Option(help="only this public model")] = None,
    limit: Annotated[int, typer.Option(help="at most this many groups (up to 1000)")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="print the API's JSON answer")] = False,
    url: Url = DEFAULT_URL,
    key: Key = None,
) -> None:
    """Sums from the spend log (requests, errors, tokens, cost) per group, like GET /admin/spend."""
    params = {"group_by": group_by, "start": start, "end": end, "key_id": key_id, "team_id": team_id, "model": model, "limit": limit}
    query = urlencode({name: value for name, value in params.items() if value not in (None, "")})
    answer = call("GET", url, f"/admin/spend?{query}", key)
    if as_json:
        typer.echo(json.dumps(answer, indent=2))
        return
    groups = [COLUMNS.get(name, name) for name in answer["group_by"]]
    table = [[*groups, *SUMS]]
    for row in answer["data"]:
        shown = ["-" if row[g] is None else str(row[g]) for g in groups]
        table.append([*shown, *(f"{row[s]:.6f}" if s == "cost_usd" else str(row[s]) for s in SUMS)])
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:  # groups left-aligned, sums right-aligned
        cells = [cell.ljust(w) if i < len(groups) else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths, strict=True))]
        typer.echo("  ".join(cells))
    if answer.get("has_more"):
        typer.echo(f"more groups than --limit {limit}: raise it or filter", err=True)

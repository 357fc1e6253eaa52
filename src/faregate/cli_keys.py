"""`faregate keys ...`: virtual keys through a running gateway's admin API.

Also what `faregate teams` and `faregate spend` share with it: the admin call (which prints the
API's warnings), the URL and master-key options, and the budget and limit options.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Annotated, Any, NoReturn

import typer

from faregate import remote
from faregate.config import runtime

keys_app = typer.Typer(help="virtual keys (through the admin API of a running gateway)", no_args_is_help=True)
DEFAULT_URL = "http://127.0.0.1:4000"
Url = Annotated[str, typer.Option(envvar="FAREGATE_URL", help="a running gateway")]
Key = Annotated[str | None, typer.Option("--key", help="master key (default: $FAREGATE_MASTER_KEY)")]
Budget = Annotated[float | None, typer.Option(help="budget in USD")]
Period = Annotated[str | None, typer.Option(help="budget period: daily, weekly, monthly or total (default total)")]
Rpm = Annotated[int | None, typer.Option(help="requests per minute")]
Tpm = Annotated[int | None, typer.Option(help="tokens per minute")]
Parallel = Annotated[int | None, typer.Option(help="requests in flight at once")]
Enabled = Annotated[bool | None, typer.Option("--enable/--disable", help="enable, or disable (refused at once on every worker)")]
CLEARABLE = {"budget": "budget_usd", "rpm": "rpm", "tpm": "tpm", "max-parallel": "max_parallel"}
Clear = Annotated[list[str] | None, typer.Option(help=f"remove a limit (repeat): {', '.join(CLEARABLE)}")]


def call(method: str, url: str, path: str, key: str | None, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One admin API call; its warnings go to stderr; an error answer prints its message and exits 1."""
    status, answer = remote.call(method, url, path, key or runtime.master_key_from_env(), body, 30)
    if status not in (200, 201):
        typer.echo(f"error ({status}): {answer.get('error', {}).get('message', answer)}", err=True)
        raise typer.Exit(1)
    for warning in answer.get("warnings", []):
        typer.echo(f"warning: {warning}", err=True)
    return answer


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def limits(budget: float | None, period: str | None, rpm: int | None, tpm: int | None, max_parallel: int | None) -> dict[str, Any]:
    """The budget and limit fields given (the same names on keys and teams)."""
    given = {"budget_usd": budget, "budget_period": period, "rpm": rpm, "tpm": tpm, "max_parallel": max_parallel}
    return {field: value for field, value in given.items() if value is not None}


def list_page(url: str, key: str | None, path: str, limit: int, offset: int, row: Callable[[dict[str, Any]], str]) -> None:
    """One page of an admin list (``/admin/keys``, ``/admin/teams``): a line a row, the count on stderr."""
    answer = call("GET", url, f"{path}?limit={limit}&offset={offset}", key)
    for item in answer["data"]:
        typer.echo(row(item))
    typer.echo(f"{len(answer['data'])} of {answer['total']}", err=True)


def show(url: str, key: str | None, path: str) -> None:
    """One admin object as JSON."""
    typer.echo(json.dumps(call("GET", url, path, key), indent=2))


def cleared(names: list[str] | None, choices: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names or []:
        if name not in choices:
            fail(f"--clear {name}: not one of {', '.join(choices)}")
        out[choices[name]] = [] if choices[name] == "models" else None
    return out


def future_time(text: str, now: float | None = None) -> float:
    """``--expires-at``: Unix seconds, or an ISO 8601 date or time (UTC unless it says otherwise); never the past."""
    try:
        when = float(text)
    except ValueError:
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            fail(f"--expires-at {text!r}: give Unix seconds or an ISO 8601 time such as 2027-01-31 or 2027-01-31T18:00:00Z")
        when = (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).timestamp()
    now = time.time() if now is None else now
    if when <= now:
        shown = dt.datetime.fromtimestamp(when, dt.UTC).isoformat(timespec="seconds") if 0 <= when < 1e11 else text
        fail(f"--expires-at {text} ({shown}) is in the past: a key that expired at creation could never be used; give a future time")
    return when


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="what the key is for")],
    model: Annotated[list[str] | None, typer.Option("--model", help="allowed model or glob (repeat); default all")] = None,
    user: Annotated[str | None, typer.Option(help="owner")] = None,
    team: Annotated[str | None, typer.Option(help="team id (its budget and limits apply on top of the key's)")] = None,
    expires_at: Annotated[str | None, typer.Option(help="when the key stops working: Unix seconds or ISO 8601 (UTC)")] = None,
    budget: Budget = None,
    period: Period = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    max_parallel: Parallel = None,
    url: Url = DEFAULT_URL,
    key: Key = None,
) -> None:
    """Create a key; its secret is printed once and cannot be read again (the id goes to stderr)."""
    body: dict[str, Any] = {"name": name, "models": model or []}
    optional = {"user_id": user, "team_id": team, "expires_at": future_time(expires_at) if expires_at is not None else None}
    body.update({field: value for field, value in optional.items() if value is not None})
    body.update(limits(budget, period, rpm, tpm, max_parallel))
    answer = call("POST", url, "/admin/keys", key, body)
    typer.echo(answer["key"])
    typer.echo(f"id {answer['id']} ({answer['prefix']}): store the key now, it is not shown again", err=True)


def _row(row: dict[str, Any]) -> str:
    state = "enabled" if row["enabled"] else ("revoked" if row.get("revoked_at") else "disabled")
    return f"{row['id']:<22} {row['prefix']:<20} {state:<8} {row['name']}  models={json.dumps(row['models'])}"


@keys_app.command("list")
def list_keys(url: Url = DEFAULT_URL, key: Key = None, limit: int = 50, offset: int = 0) -> None:
    """List keys (never their secrets)."""
    list_page(url, key, "/admin/keys", limit, offset, _row)


@keys_app.command("get")
def get(key_id: str, url: Url = DEFAULT_URL, key: Key = None) -> None:
    """Print one key as JSON (never its secret)."""
    show(url, key, f"/admin/keys/{key_id}")


@keys_app.command("update")
def update(
    key_id: str,
    name: Annotated[str | None, typer.Option(help="a new name")] = None,
    model: Annotated[list[str] | None, typer.Option("--model", help="allowed model or glob (repeat): replaces the list")] = None,
    expires_at: Annotated[str | None, typer.Option(help="when the key stops working: Unix seconds or ISO 8601 (UTC)")] = None,
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
    """Change a key's name, models, expiry, budget or limits (its owner and team are fixed at creation).

    --clear takes budget, rpm, tpm, max-parallel, expires-at, or models (then every model is allowed)."""
    body = cleared(clear, {**CLEARABLE, "expires-at": "expires_at", "models": "models"})
    optional = {"name": name, "models": model or None, "expires_at": future_time(expires_at) if expires_at is not None else None}
    body.update({field: value for field, value in optional.items() if value is not None})
    body.update(limits(budget, period, rpm, tpm, max_parallel))
    if enabled is not None:
        body["enabled"] = enabled
    if not body:
        fail("nothing to change: give at least one option (see --help)")
    typer.echo(_row(call("PATCH", url, f"/admin/keys/{key_id}", key, body)))


@keys_app.command("revoke")
def revoke(key_id: str, url: Url = DEFAULT_URL, key: Key = None) -> None:
    """Revoke a key on every worker of every instance."""
    call("POST", url, f"/admin/keys/{key_id}/revoke", key)
    typer.echo(f"{key_id}: revoked")


@keys_app.command("rotate")
def rotate(
    key_id: str,
    grace: Annotated[float, typer.Option(help="seconds the old secret keeps working")] = 0,
    url: Url = DEFAULT_URL,
    key: Key = None,
) -> None:
    """Give a key a new secret (printed once); the old one stops at once or after --grace seconds.

    Only one old secret is kept: rotating again ends the grace of the one before (said on stderr)."""
    answer = call("POST", url, f"/admin/keys/{key_id}/rotate", key, {"grace_seconds": grace})
    typer.echo(answer["key"])

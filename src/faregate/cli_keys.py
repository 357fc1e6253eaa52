"""`faregate keys ...`: virtual keys through a running gateway's admin API."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from faregate import remote
from faregate.config import runtime

keys_app = typer.Typer(help="virtual keys (through the admin API of a running gateway)", no_args_is_help=True)
Url = Annotated[str, typer.Option(help="a running gateway")]
Key = Annotated[str | None, typer.Option("--key", help="master key (default: $FAREGATE_MASTER_KEY)")]
DEFAULT_URL = "http://127.0.0.1:4000"


def _call(method: str, url: str, path: str, key: str | None, body: dict[str, Any] | None = None) -> dict[str, Any]:
    status, answer = remote.call(method, url, path, key or runtime.master_key_from_env(), body, 30)
    if status not in (200, 201):
        typer.echo(f"error ({status}): {answer.get('error', {}).get('message', answer)}", err=True)
        raise typer.Exit(1)
    return answer


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="what the key is for")],
    model: Annotated[list[str] | None, typer.Option("--model", help="allowed model or glob (repeat); default all")] = None,
    user: Annotated[str | None, typer.Option(help="owner")] = None,
    team: Annotated[str | None, typer.Option(help="team id (its budget and limits apply on top of the key's)")] = None,
    expires_at: Annotated[float | None, typer.Option(help="Unix time after which the key is refused")] = None,
    budget: Annotated[float | None, typer.Option(help="budget in USD")] = None,
    period: Annotated[str, typer.Option(help="budget period: daily, weekly, monthly or total")] = "total",
    rpm: Annotated[int | None, typer.Option(help="requests per minute")] = None,
    tpm: Annotated[int | None, typer.Option(help="tokens per minute")] = None,
    max_parallel: Annotated[int | None, typer.Option(help="requests in flight at once")] = None,
    url: Url = DEFAULT_URL,
    key: Key = None,
) -> None:
    """Create a key; its secret is printed once and cannot be read again."""
    body: dict[str, Any] = {"name": name, "models": model or []}
    optional = {"user_id": user, "team_id": team, "expires_at": expires_at, "rpm": rpm, "tpm": tpm, "max_parallel": max_parallel}
    body.update({field: value for field, value in optional.items() if value is not None})
    if budget is not None:
        body.update(budget_usd=budget, budget_period=period)
    answer = _call("POST", url, "/admin/keys", key, body)
    typer.echo(answer["key"])
    typer.echo(f"id {answer['id']} ({answer['prefix']}): store the key now, it is not shown again", err=True)


@keys_app.command("list")
def list_keys(url: Url = DEFAULT_URL, key: Key = None, limit: int = 50, offset: int = 0) -> None:
    """List keys (never their secrets)."""
    answer = _call("GET", url, f"/admin/keys?limit={limit}&offset={offset}", key)
    for row in answer["data"]:
        state = "enabled" if row["enabled"] else "revoked"
        typer.echo(f"{row['id']:<22} {row['prefix']:<20} {state:<8} {row['name']}  models={json.dumps(row['models'])}")
    typer.echo(f"{len(answer['data'])} of {answer['total']}", err=True)


@keys_app.command("revoke")
def revoke(key_id: str, url: Url = DEFAULT_URL, key: Key = None) -> None:
    """Revoke a key on every worker of every instance."""
    _call("POST", url, f"/admin/keys/{key_id}/revoke", key)
    typer.echo(f"{key_id}: revoked")


@keys_app.command("rotate")
def rotate(
    key_id: str,
    grace: Annotated[float, typer.Option(help="seconds the old secret keeps working")] = 0,
    url: Url = DEFAULT_URL,
    key: Key = None,
) -> None:
    """Give a key a new secret (printed once); the old one stops at once or after --grace seconds."""
    answer = _call("POST", url, f"/admin/keys/{key_id}/rotate", key, {"grace_seconds": grace})
    typer.echo(answer["key"])

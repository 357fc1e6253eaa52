"""Admin pages on what the gateway runs: Config (the running generation's file with every secret
as its fingerprint, and the last reload error) and Doctor (``faregate doctor``'s offline findings
for the running generation; the live walk on request)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import yaml

from faregate.credentials import refs
from faregate.dashboard.web import Request, Response, render
from faregate.types import fingerprint

SECRET_WORDS = ("key", "secret", "password", "token", "credential")
NOT_SECRET = ("key_file", "id", "keys", "prefix", "token_url")
URL_WORDS = ("url", "database", "redis", "endpoint")
LIVE_TIMEOUT = 10.0


def _fingerprint_of(value: str) -> str:
    """``${NAME}`` -> ``${NAME} (sha256:xxxxxxxx)`` of the value it resolves to here; anything else only as its fingerprint."""
    if refs.is_reference(value.strip()):
        try:
            return f"{value} (sha256:{refs.resolve_env_ref(value.strip()).fingerprint})"
        except refs.RefError:
            return f"{value} (not set)"
    return f"[redacted:{fingerprint(value)}]"


def redact(node: Any, shown: Callable[[str], str], name: str = "") -> Any:
    """The config as a tree with every secret as its fingerprint, every URL without a user,
    password or query, every header value as its fingerprint."""
    lowered = name.lower()
    if isinstance(node, dict):
        if lowered == "headers":
            return {k: f"[redacted:{fingerprint(str(v))}]" for k, v in node.items()}
        return {k: redact(v, shown, str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [redact(v, shown, name) for v in node]
    if isinstance(node, str):
        if any(w in lowered for w in SECRET_WORDS) and lowered not in NOT_SECRET:
            return _fingerprint_of(node)
        if any(w in lowered for w in URL_WORDS) or "://" in node:
            return shown(node) if "://" in node else node
    return node


async def config(request: Request) -> Response:
    from faregate.doctor.live import shown  # here: a worker that never shows this page never loads doctor

    gw = request.gw
    gen = gw.keyring.current.generation
    try:
        raw = yaml.safe_load(gen.source.read_text()) or {}
        text = yaml.safe_dump(redact(raw, shown), sort_keys=False, allow_unicode=True, width=120)
    except (OSError, yaml.YAMLError) as exc:
        text = f"(the config file cannot be read now: {exc.__class__.__name__})"
    text = gen.scrub(text)  # anything that slipped through: every secret of the generation, by fingerprint
    own = gw.control.info()
    return render(
        request,
        "config.html",
        generation=gen.id,
        source=str(gen.source),
        text=text,
        reload_error=own.error or None,
        loaded_at=gen.loaded_at,
    )


async def doctor(request: Request) -> Response:
    """The offline findings for the running generation; POST: the live walk against this gateway too."""
    from faregate.doctor import findings as doctor_findings  # here: a worker that never shows this page never loads doctor
    from faregate.doctor import pitfalls, security

    gen = request.gw.keyring.current.generation
    found = pitfalls.findings(gen, gen.source, None) + security.findings(gen, gen.source, None, None)
    live = request.method == "POST"
    if live:
        from faregate.doctor import live as walk  # only the live walk needs the HTTP client

        server = request.scope.get("server") or ("127.0.0.1", 0)
        host = "127.0.0.1" if server[0] in ("0.0.0.0", "::", None) else server[0]
        url = f"http://{'[' + host + ']' if ':' in host else host}:{server[1]}"
        found += await asyncio.to_thread(walk.findings, gen, url, None, LIVE_TIMEOUT, lambda _line: None)
    ordered = doctor_findings.ordered(found)
    groups: dict[str, list[Any]] = {}
    for f in ordered:
        groups.setdefault(doctor_findings.GROUPS.get(f.group, f.group), []).append(f)
    counts = {s: sum(1 for f in found if f.severity == s) for s in ("error", "warning", "ok")}
    return render(request, "doctor.html", groups=groups, counts=counts, live=live)

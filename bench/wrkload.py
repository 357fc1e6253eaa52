"""Closed-loop load with wrk: a generated Lua script POSTs the body and prints a JSON summary."""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

MARK = "BENCH-WRK-JSON "

_LUA = """\
wrk.method = "POST"
wrk.body = {body}
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{mark}{{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,'
    .. '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def _lua_str(value: str) -> str:
    """A Lua long-bracket string literal that cannot be closed by ``value``."""
    level = 0
    while f"]{'=' * level}]" in value:
        level += 1
    eq = "=" * level
    return f"[{eq}[{value}]{eq}]"


def write_script(path: Path, body: bytes, headers: dict[str, str]) -> Path:
    lines = "\n".join(f"wrk.headers[ {_lua_str(k)} ] = {_lua_str(v)}" for k, v in headers.items())
    path.write_text(_LUA.format(body=_lua_str(body.decode()), headers=lines, mark=MARK))
    return path


@dataclass
class WrkResult:
    """One wrk run. ``requests`` counts completed responses (non-2xx included)."""

    connections: int
    requests: int
    duration_s: float
    rps: float
    errors: int  # socket errors (connect/read/write/timeout) + non-2xx/3xx responses
    non_2xx: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def run_wrk(
    wrk: str,
    url: str,
    script: Path,
    connections: int,
    duration: float,
    threads: int,
    timeout_s: float = 10.0,
) -> WrkResult:
    """Run wrk closed-loop for ``duration`` seconds and parse the script's JSON line."""
    threads = max(1, min(threads, connections))
    cmd = [
        wrk, "-t", str(threads), "-c", str(connections), "-d", f"{duration:g}s",
        "--timeout", f"{timeout_s:g}s", "-s", str(script), url,
    ]  # fmt: skip
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=duration + timeout_s + 30,
        check=False,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout[-800:]}{proc.stderr}")
    d = json.loads(line[len(MARK) :])
    secs = d["duration_us"] / 1e6
    socket_errors = d["connect"] + d["read"] + d["write"] + d["timeout"]
    return WrkResult(
        connections=connections,
        requests=d["requests"],
        duration_s=round(secs, 3),
        rps=round(d["requests"] / secs, 1) if secs > 0 else 0.0,
        errors=socket_errors + d["status"],
        non_2xx=d["status"],
        p50_ms=d["p50_us"] / 1000,
        p99_ms=d["p99_us"] / 1000,
        max_ms=d["max_us"] / 1000,
    )

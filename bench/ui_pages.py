"""Every dashboard page timed over HTTP with 1,000,000 spend rows, on SQLite and on PostgreSQL.

    python -m bench.ui_pages [--rows N] [--repeat R] [--only sqlite|postgresql]

For each database: a fresh state database filled by ``bench.ui_data`` (200 teams, 5,000 keys,
N spend rows over the last 30 days), a real ``faregate serve`` (one worker) on it, an admin session
signed in through the sign-in form, then each page fetched R times in a row (after one warm-up);
the table shows the median and the slowest, in milliseconds, of the whole answer (server time plus
loopback HTTP). PostgreSQL is the tests' own (tests/support/postgres.py: a throwaway cluster on a
free loopback port, run as an unprivileged user). The machine is shared: figures are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.ui_data import END, Sizes, fill_postgres, fill_sqlite
from tests.support.postgres import PostgresServer
from tests.support.procs import MASTER_KEY, GatewayProcess

CONFIG = """
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
state:
  database: "{database}"
providers:
  local: {{type: mock, chunk_delay: 0}}
models:
  gpt-4o: [{{provider: local, model: gpt-4o}}]
  gpt-4o-mini: [{{provider: local, model: gpt-4o-mini}}]
"""


def pages() -> list[tuple[str, str]]:
    """(what, path below /ui/): U1's pages and U2's, with the searches that stress the database."""
    day = time.strftime("%Y-%m-%d", time.gmtime(END - 86_400))
    return [
        ("overview (day)", ""),
        ("overview (month)", "?window=month"),
        ("deployments", "deployments"),
        ("credentials", "credentials"),
        ("config", "config"),
        ("doctor", "doctor"),
        ("keys", "keys"),
        ("keys: search name", "keys?q=service+12"),
        ("keys: page 50", "keys?offset=2500"),
        ("keys: one team", "keys?team=team_000010"),
        ("one key", "vkey?id=key_0000000000000010"),
        ("teams", "teams"),
        ("one team", "team?id=team_000010"),
        ("spend by day (30 d)", "spend"),
        ("spend by key (30 d)", "spend?group=key"),
        ("spend by team", "spend?group=team"),
        ("spend by model", "spend?group=model"),
        ("spend by deployment", "spend?group=deployment"),
        ("spend CSV by key", "spend.csv?group=key"),
        ("requests", "requests"),
        ("requests: status 500", "requests?status=500"),
        ("requests: errors", "requests?status=error"),
        ("requests: model", "requests?model=o3-mini"),
        ("requests: key", "requests?key_id=key_0000000000000010"),
        ("requests: one day", f"requests?start={day}&end={day}"),
        ("requests: by id", "requests?request_id=req_000000000010"),
        ("request story", "request?id=STORY"),
    ]


def sign_in(client: httpx.Client) -> None:
    page = client.get("signin")
    csrf = re.search(r'name="csrf-token" content="([^"]*)"', page.text)
    answer = client.post("signin", data={"key": MASTER_KEY, "csrf": csrf.group(1) if csrf else ""})
    if answer.status_code != 303:
        raise RuntimeError(f"sign-in answered {answer.status_code}")


def time_pages(gw: GatewayProcess, repeat: int) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    with httpx.Client(base_url=gw.url + "/ui/", timeout=120, follow_redirects=False) as client:
        sign_in(client)
        logs = httpx.get(gw.url + "/admin/spend/logs?limit=1", headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=60).json()
        story = logs["data"][0]["request_id"] if logs["data"] else "none"
        for name, path in pages():
            path = path.replace("STORY", story)
            client.get(path)  # warm-up: caches, prepared statements
            took = []
            for _ in range(repeat):
                began = time.perf_counter()
                answer = client.get(path)
                took.append((time.perf_counter() - began) * 1000)
                if answer.status_code != 200:
                    raise RuntimeError(f"{path} answered {answer.status_code}: {answer.text[:200]}")
            out[name] = (statistics.median(took), max(took))
    return out


def run(database: str, tmp: Path, repeat: int) -> dict[str, tuple[float, float]]:
    with GatewayProcess(tmp, CONFIG.format(database=database)) as gw:
        return time_pages(gw, repeat)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ui_pages", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    args = parser.parse_args(argv)
    sizes = Sizes(rows=args.rows)
    results: dict[str, dict[str, tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="faregate-ui-bench-") as raw:
        tmp = Path(raw)
        if args.only in (None, "sqlite"):
            began = time.monotonic()
            path = tmp / "state.db"
            fill_sqlite(str(path), sizes)
            print(f"sqlite: {args.rows} rows filled in {time.monotonic() - began:.0f} s", file=sys.stderr)
            results["SQLite"] = run(f"sqlite:///{path}", tmp, args.repeat)
        if args.only in (None, "postgresql"):
            with PostgresServer() as pg:
                url = pg.url_of(pg.new_database("uibench"))
                began = time.monotonic()
                asyncio.run(fill_postgres(url, sizes))
                print(f"postgresql: {args.rows} rows filled in {time.monotonic() - began:.0f} s", file=sys.stderr)
                results["PostgreSQL"] = run(url, tmp, args.repeat)
    print(render(results, args.rows, args.repeat))
    return 0


def render(results: dict[str, dict[str, tuple[float, float]]], rows: int, repeat: int) -> str:
    names = [name for name, _ in pages()]
    head = f"{'page':<24}" + "".join(f"{db + ' ms (median / max)':>34}" for db in results)
    lines = [f"dashboard pages, {rows:,} spend rows, {repeat} fetches each after a warm-up", head, "-" * len(head)]
    for name in names:
        cells = "".join(f"{f'{r[name][0]:.1f} / {r[name][1]:.1f}':>34}" for r in results.values())
        lines.append(f"{name:<24}{cells}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

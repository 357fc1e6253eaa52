"""RSS of one faregate worker over a load, with the spend log and the access log on (issue 13).

``python -m bench.rss_soak [--prompt CHARS] [--conns N] [--seconds S] [--after S]``: the nginx mock
(bench.mock) and wrk on one core, ``faregate serve`` (one worker, SQLite state: every request is a
spend-log row) on the other; prints the worker's RSS idle, every 10 s of the load, its peak, and
after the load. Two uses:

- memory under big prompts: ``--prompt 150000 --conns 1500 --seconds 120 --after 60``
  (in flight per connection = (peak - idle) / conns; RSS given back = after / idle);
- RSS flat over 100,000 requests: ``--prompt 20 --conns 32 --seconds 300`` (the spend rows written
  are printed: at least 100,000 on this machine; flat = no rise after the first samples' warm-up).

Timing figures here depend on the machine's load; the RSS figures much less so.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

from bench import mock
from bench.procs import ProcGroup, free_port

MASTER = "sk-soak-master"
CONFIG = """server:
  master_key: ${{FAREGATE_MASTER_KEY}}
  port: {port}
  log_requests: true
state:
  database: sqlite:///{tmp}/state.db
providers:
  up:
    type: openai
    base_url: http://127.0.0.1:{mock}/plain/v1
    credentials: [{{id: k, key: "${{SOAK_UPSTREAM_KEY}}"}}]
models:
  m:
    - {{provider: up, model: {model}}}
"""
WRK_SCRIPT = """wrk.method = "POST"
local f = io.open("{body}", "rb"); wrk.body = f:read("*a"); f:close()
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer {key}"
"""


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ProcessLookupError(pid)


def _ready(url: str, body: bytes, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    request = urllib.request.Request(url, data=body, headers={"authorization": f"Bearer {MASTER}", "content-type": "application/json"})
    while True:
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                reply.read()
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.rss_soak")
    p.add_argument("--prompt", type=int, default=150_000, help="characters of the one user message")
    p.add_argument("--conns", type=int, default=1500)
    p.add_argument("--seconds", type=int, default=60)
    p.add_argument("--after", type=int, default=60, help="seconds watched after the load")
    p.add_argument("--nginx", default="/usr/sbin/nginx")
    p.add_argument("--wrk", default="/usr/bin/wrk")
    a = p.parse_args()
    group = ProcGroup()
    with tempfile.TemporaryDirectory(prefix="faregate-soak-") as name:
        tmp = Path(name)
        mock_port, port = free_port(), free_port()
        conf = mock.write_mock(tmp / "mock", mock_port)
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp / "mock" / f"tmp_{kind}").mkdir(exist_ok=True)
        (tmp / "faregate.yaml").write_text(CONFIG.format(port=port, tmp=tmp, mock=mock_port, model=mock.MODEL))
        body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * a.prompt}]})
        (tmp / "body.json").write_bytes(body)
        (tmp / "post.lua").write_text(WRK_SCRIPT.format(body=tmp / "body.json", key=MASTER))
        env = {**os.environ, "FAREGATE_MASTER_KEY": MASTER, "SOAK_UPSTREAM_KEY": "sk-soak-upstream"}  # noqa: TID251 - the bench's own env
        try:
            group.start("mock", ["taskset", "-c", "1", *mock.nginx_cmd(a.nginx, tmp / "mock", conf)], env, tmp / "mock.log")
            serve = [str(Path(sys.executable).with_name("faregate")), "serve", "--config", str(tmp / "faregate.yaml")]
            gateway = group.start("gateway", ["taskset", "-c", "0", *serve, "--log-level", "warning"], env, tmp / "gateway.log")
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            _ready(url, body)
            time.sleep(3)
            idle = rss_mib(gateway.pid)
            print(f"idle RSS {idle:.1f} MiB")
            wrk = [a.wrk, "-t", "1", "-c", str(a.conns), "-d", f"{a.seconds}s", "--timeout", "30s", "-s", str(tmp / "post.lua"), url]
            load = subprocess.Popen(["taskset", "-c", "1", *wrk], stdout=subprocess.PIPE, text=True)
            peak, started = idle, time.monotonic()
            while load.poll() is None:
                time.sleep(1)
                now = rss_mib(gateway.pid)
                peak = max(peak, now)
                if int(time.monotonic() - started) % 10 == 0:
                    print(f"  {time.monotonic() - started:5.0f} s: RSS {now:.1f} MiB", flush=True)
            out = load.stdout.read() if load.stdout is not None else ""
            print("\n".join(line for line in out.splitlines() if "requests in" in line or "Requests/sec" in line or "Socket" in line))
            print(f"peak RSS {peak:.1f} MiB ({(peak - idle) * 1024 / a.conns:.0f} KiB per connection over idle)")
            for second in range(1, a.after + 1):
                time.sleep(1)
                if second in (5, 20, 60) or second == a.after:
                    now = rss_mib(gateway.pid)
                    print(f"  {second} s after: RSS {now:.1f} MiB ({now / idle:.2f}x idle)", flush=True)
        finally:
            group.stop_all()
        rows = sqlite3.connect(tmp / "state.db").execute("SELECT count(*) FROM spend_log").fetchone()[0]
        print(f"spend rows written: {rows}")


if __name__ == "__main__":
    main()

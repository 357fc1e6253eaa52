"""Entry point: ``python -m bench [--compare] [--quick] [--record] ...`` from the repository root.

Results go to ``bench/results/local/`` (untracked) unless ``--record`` is given: then a full run
replaces the tracked record, ``bench/results/latest.*``. A run never changes a tracked file unasked.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from bench import httpcheck, mock
from bench.phases import Settings, measure
from bench.procs import ProcGroup, free_port
from bench.report import machine_info, render
from bench.scenarios import NAMES as SCENARIOS
from bench.scenarios import QUICK as QUICK_SCENARIOS
from bench.scenarios import ScenSettings
from bench.scenrun import run_scenarios
from bench.targets import BENCH_DIR, DIRECT_PATHS, REPO, UPSTREAM_KEY, base_env, build_targets

RECORD_OUT = BENCH_DIR / "results"  # tracked: written only with --record
LOCAL_OUT = RECORD_OUT / "local"  # ignored by git: every other run


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description="faregate benchmark")
    p.add_argument("--compare", action="store_true", help="also measure LiteLLM Proxy")
    p.add_argument("--quick", action="store_true", help="short smoke run (~2-3 s per phase)")
    p.add_argument("--targets", default="", help="comma-separated subset of target names")
    p.add_argument(
        "--scenarios",
        default=None,
        help=f"only these issue-13 scenarios ({','.join(SCENARIOS)}), without the wrk/open-loop phases; 'none': only those phases",
    )
    p.add_argument("--duration", type=float, help="seconds per wrk phase (default 5)")
    p.add_argument("--open-duration", type=float, help="seconds per open-loop phase (5)")
    p.add_argument("--warmup", type=float, help="seconds of wrk warm-up per target (2)")
    p.add_argument("--conns", default="1,32,128", help="wrk connection counts for plain")
    p.add_argument("--stream-conns", type=int, default=32, help="wrk connections for streams")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (capped at conns)")
    p.add_argument("--plain-rate", type=float, default=40.0, help="open-loop plain req/s")
    p.add_argument("--stream-rate", type=float, default=5.0, help="open-loop streams/s")
    p.add_argument("--out", type=Path, default=None, help=f"results folder (default {LOCAL_OUT.relative_to(REPO)}, untracked)")
    p.add_argument("--record", action="store_true", help=f"write the tracked record, {RECORD_OUT.relative_to(REPO)}/latest.*")
    p.add_argument("--keep-tmp", action="store_true", help="keep configs and logs after the run")
    p.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    p.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    a = p.parse_args(argv)
    if a.record and (a.quick or a.out is not None or a.scenarios is not None):
        p.error("--record writes the tracked record of a full run: not with --quick, --out or --scenarios")
    wanted = [n.strip() for n in (a.scenarios or "").split(",") if n.strip() and n.strip() != "none"]
    if set(wanted) - set(SCENARIOS):
        p.error(f"unknown scenario(s): {', '.join(sorted(set(wanted) - set(SCENARIOS)))}")
    a.phases = a.scenarios is None or a.scenarios.strip() == "none"
    a.scenario_list = list(SCENARIOS) if a.scenarios is None else wanted
    return a


def results_dir(a: argparse.Namespace, interrupted: bool) -> Path:
    """``--out``, else the untracked folder; the tracked record only for a complete ``--record`` run."""
    if a.out is not None:
        return Path(a.out)
    return RECORD_OUT if a.record and not interrupted else LOCAL_OUT


def _settings(a: argparse.Namespace) -> Settings:
    quick = a.quick

    def pick(value: float | None, full: float, short: float) -> float:
        return value if value is not None else (short if quick else full)

    return Settings(
        wrk=a.wrk,
        conns=tuple(int(c) for c in a.conns.split(",") if c.strip()),
        stream_conns=a.stream_conns,
        wrk_duration=pick(a.duration, 5.0, 2.0),
        wrk_threads=a.threads,
        warmup=pick(a.warmup, 2.0, 1.0),
        open_duration=pick(a.open_duration, 5.0, 3.0),
        plain_rate=a.plain_rate,
        stream_rate=a.stream_rate,
        settle=0.2 if quick else 0.5,
    )


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _run(
    a: argparse.Namespace,
    s: Settings,
    tmp: Path,
    pg: ProcGroup,
    results: list[dict[str, object]],
    scenarios: dict[str, Any],
) -> None:
    """The wrk/open-loop phases (each target in turn, appending to ``results``), then the issue-13
    scenarios on the C rig (into ``scenarios``)."""
    wanted = {n.strip() for n in a.targets.split(",") if n.strip()}
    if a.phases:
        _run_phases(a, s, tmp, pg, results, wanted)
    if a.scenario_list:
        scen = QUICK_SCENARIOS if a.quick else ScenSettings()
        run_scenarios(a.scenario_list, wanted, a.compare, a.nginx, tmp, pg, scen, scenarios)


def _run_phases(
    a: argparse.Namespace,
    s: Settings,
    tmp: Path,
    pg: ProcGroup,
    results: list[dict[str, object]],
    wanted: set[str],
) -> None:
    prefix = tmp / "mock"
    prefix.mkdir()
    port = free_port()
    conf = mock.write_mock(prefix, port)
    proc = pg.start("mock", mock.nginx_cmd(a.nginx, prefix, conf), base_env(), tmp / "mock.log")
    body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}'
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {UPSTREAM_KEY}",
    }
    ok, why = httpcheck.wait_ready(port, DIRECT_PATHS["plain"], body, headers, 10.0, proc.alive)
    if not ok:
        raise RuntimeError(f"mock upstream did not start: {why}\n{proc.log_tail()}")
    mock_startup = time.monotonic() - proc.started
    targets = build_targets(tmp, port, a.nginx, a.compare)
    if wanted:
        unknown = wanted - {t.name for t in targets}
        if unknown:
            raise SystemExit(f"unknown target(s): {', '.join(sorted(unknown))}")
        targets = [t for t in targets if t.name in wanted]
    for t in targets:
        print(f"[bench] {t.name} ...", file=sys.stderr, flush=True)
        start = time.monotonic()
        res = measure(t, s, pg, tmp, proc, mock_startup)
        results.append(res)
        status = f"error: {str(res['error']).splitlines()[0]}" if res["error"] else "ok"
        print(
            f"[bench] {t.name}: {status} ({time.monotonic() - start:.0f}s)",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    for tool, hint in ((a.nginx, "nginx"), (a.wrk, "wrk")):
        if not Path(tool).exists():
            print(f"missing {tool}: apt-get install -y {hint}", file=sys.stderr)
            return 2
    s = _settings(a)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    tmp = Path(tempfile.mkdtemp(prefix="faregate-bench-"))
    pg = ProcGroup()
    results: list[dict[str, object]] = []
    scenarios: dict[str, Any] = {}
    interrupted = False
    try:
        _run(a, s, tmp, pg, results, scenarios)
    except KeyboardInterrupt:
        interrupted = True
        print("[bench] interrupted; stopping children", file=sys.stderr)
    finally:
        pg.stop_all()
        if a.keep_tmp:
            print(f"[bench] configs and logs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if interrupted and not results and not scenarios:
        return 130
    settings = asdict(s) | {
        "quick": a.quick,
        "compare": a.compare,
        "interrupted": interrupted,
        "scenarios": a.scenario_list,
    }
    md, doc = render(machine_info(a.nginx, a.wrk, a.compare), settings, results, scenarios or None)
    out = results_dir(a, interrupted)
    out.mkdir(parents=True, exist_ok=True)
    stem = "interrupted" if interrupted else "latest"  # a partial run never replaces latest
    (out / f"{stem}.md").write_text(md)
    (out / f"{stem}.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    print(md)
    print(f"[bench] written to {out / stem}.md and .json", file=sys.stderr)
    if interrupted:
        return 130
    return 1 if any(r["error"] for r in results) or scenarios.get("errors") else 0


if __name__ == "__main__":
    raise SystemExit(main())

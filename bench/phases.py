"""Measure one target: start-up, reply checks, wrk phases, open-loop phases, CPU and RSS."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench import httpcheck
from bench.procs import Proc, ProcGroup, cpu_seconds, rss_kb
from bench.targets import REPO, Target, base_env
from bench.wrkload import run_wrk, write_script


@dataclass
class Settings:
    """Durations (s), rates (per s) and connection counts of one run."""

    wrk: str
    conns: tuple[int, ...] = (1, 32, 128)
    stream_conns: int = 32
    wrk_duration: float = 10.0
    wrk_threads: int = 1
    warmup: float = 3.0
    open_duration: float = 15.0
    plain_rate: float = 40.0
    stream_rate: float = 5.0
    settle: float = 0.5  # pause between phases


class TargetFailed(RuntimeError):
    pass


def _url(t: Target, kind: str) -> str:
    return f"http://127.0.0.1:{t.port}{t.paths[kind]}"


def _alive_or_fail(proc: Proc, phase: str) -> None:
    if not proc.alive():
        raise TargetFailed(f"{proc.name} exited during {phase}:\n{proc.log_tail()}")


def _check_replies(t: Target) -> None:
    for kind, check in (
        ("plain", httpcheck.check_plain),
        ("stream", httpcheck.check_stream),
    ):
        status, body = httpcheck.post(t.port, t.paths[kind], t.bodies[kind], t.headers)
        reason = check(status, body, t.client)
        if reason:
            raise TargetFailed(f"{kind} reply check failed: {reason}")


def _openloop(t: Target, kind: str, rate: float, duration: float, tmp: Path) -> dict[str, object]:
    body_file = tmp / f"{t.name}-{kind}.json"
    body_file.write_bytes(t.bodies[kind])
    cmd = [
        sys.executable, "-m", "bench.openloop", "--url", _url(t, kind),
        "--body-file", str(body_file), "--headers", orjson.dumps(t.headers).decode(),
        "--rate", f"{rate:g}", "--duration", f"{duration:g}",
    ]  # fmt: skip
    if kind == "stream":
        cmd.append("--stream")
    if t.client != "openai":
        cmd += ["--client", t.client]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, cwd=REPO, env=base_env(),
        timeout=duration + 60, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise TargetFailed(f"open-loop client failed: {proc.stderr[-1500:]}")
    result: dict[str, object] = orjson.loads(proc.stdout.strip().splitlines()[-1])
    return result


def measure(t: Target, s: Settings, pg: ProcGroup, tmp: Path, mock: Proc, mock_startup: float) -> dict[str, object]:
    """Run every phase against ``t``; on failure the partial result carries ``error``."""
    res: dict[str, object] = {"name": t.name, "workers": t.workers, "error": None}
    proc: Proc | None = None
    try:
        if t.prepare is not None:
            t.prepare()
        if t.cmd is None:
            proc, startup = mock, mock_startup
        else:
            proc = pg.start(t.name, t.cmd, t.env, tmp / f"{t.name}.log")
            ok, why = httpcheck.wait_ready(
                t.port, t.paths["plain"], t.bodies["plain"], t.headers,
                t.startup_timeout, proc.alive, t.client,
            )  # fmt: skip
            startup = time.monotonic() - proc.started
            if not ok:
                raise TargetFailed(f"not ready: {why}\n--- log tail ---\n{proc.log_tail()}")
        res["startup_s"] = round(startup, 3)
        if t.after_start is not None:
            t.after_start(t)
        _check_replies(t)
        res["checks"] = "ok"
        _run_load(t, s, proc, tmp, res)
        sizes = rss_kb(proc.pid)
        res["rss_kb"] = sizes
        res["rss_mb_total"] = round(sum(sizes) / 1024, 1)
        res["rss_mb_max_process"] = round(max(sizes, default=0) / 1024, 1)
        res["rss_mb_per_worker"] = round(sum(sizes) / 1024 / max(1, t.workers), 1)
        res["processes"] = len(sizes)
    except (TargetFailed, OSError, RuntimeError, subprocess.SubprocessError) as exc:
        res["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if proc is not None and proc is not mock:
            pg.stop(proc)
    return res


def _run_load(t: Target, s: Settings, proc: Proc, tmp: Path, res: dict[str, object]) -> None:
    scripts = {kind: write_script(tmp / f"{t.name}-{kind}.lua", t.bodies[kind], t.headers) for kind in ("plain", "stream")}
    if s.warmup > 0:
        run_wrk(s.wrk, _url(t, "plain"), scripts["plain"], 32, s.warmup, s.wrk_threads)
        time.sleep(s.settle)

    def phase(kind: str, conns: int) -> dict[str, object]:
        cpu0 = cpu_seconds(proc.pid)
        r = run_wrk(s.wrk, _url(t, kind), scripts[kind], conns, s.wrk_duration, s.wrk_threads)
        cpu = cpu_seconds(proc.pid) - cpu0
        _alive_or_fail(proc, f"wrk {kind} c={conns}")
        out = r.to_dict() | {"cpu_s": round(cpu, 3)}
        out["cpu_ms_per_req"] = round(cpu * 1000 / r.requests, 4) if r.requests else None
        time.sleep(s.settle)
        return out

    res["wrk_plain"] = [phase("plain", c) for c in s.conns]
    res["wrk_stream"] = phase("stream", s.stream_conns)
    for kind, rate in (("plain", s.plain_rate), ("stream", s.stream_rate)):
        cpu0 = cpu_seconds(proc.pid)
        ol = _openloop(t, kind, rate, s.open_duration, tmp)
        cpu = cpu_seconds(proc.pid) - cpu0
        ok = int(ol["ok"])  # type: ignore[call-overload]
        ol["cpu_s"] = round(cpu, 3)
        ol["cpu_ms_per_req"] = round(cpu * 1000 / ok, 4) if ok else None
        _alive_or_fail(proc, f"open-loop {kind}")
        res[f"open_{kind}"] = ol
        time.sleep(s.settle)

"""The four public-methodology scenarios (issue 13), run against one started target with the C rig.

* c1: added latency at concurrency 1 (``c1_warmup`` s thrown away, then ``c1_duration`` s), plain
  and the time to a stream's first frame, on the mock answering at once (stream frames back to back).
* rate: sustained req/s against the mock answering after 20 ms, connections stepped; the highest
  rate with p99 < 1 s and errors <= 0.1 %.
* streams: N concurrent streams (64 frames of 16 bytes 20 ms apart) for ``stream_duration`` s each;
  held = no gap over 40 ms, errors <= 0.1 %, >= 99.9 % of frames delivered; stepping stops after two
  failures.
* memory: RSS of the target's process tree idle, under ``mem_conns`` connections sending
  ``body_kb`` KB prompts for ``mem_duration`` s (the peak of 1 s samples), and ``mem_after`` s later.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench import rigbuild, rigspec
from bench.procs import Proc, cpu_seconds, rss_kb
from bench.rigrun import Cpus, LoadSpec, RigMock, run_load
from bench.rigstats import LoadRun, Step, best_level, held, parse_run, rate_ok, step_through

NAMES = ("c1", "rate", "streams", "memory")


@dataclass
class ScenSettings:
    c1_warmup: float = 5.0
    c1_duration: float = 20.0
    rate_conns: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024)
    rate_duration: float = 5.0
    rate_warmup: float = 1.0
    stream_counts: tuple[int, ...] = (1, 8, 32, 64, 128, 256, 512, 1024, 2048)
    stream_duration: float = 15.0
    mem_conns: int = 1500
    mem_duration: float = 120.0
    mem_after: float = 60.0
    body_kb: int = 150
    settle: float = 1.0  # pause between steps (sockets in TIME_WAIT, the target's loop quiet again)


QUICK = ScenSettings(
    c1_warmup=1.0, c1_duration=3.0, rate_conns=(16, 64, 256), rate_duration=2.0, rate_warmup=0.5,
    stream_counts=(1, 8, 64), stream_duration=3.0, mem_conns=64, mem_duration=5.0, mem_after=3.0, settle=0.3,
)  # fmt: skip


@dataclass
class Subject:
    """A started target: where its plain and stream requests go, and its process tree's root."""

    name: str
    plain: LoadSpec
    stream: LoadSpec
    proc: Proc


def _timed(subject: Subject, fn: Any) -> tuple[LoadRun, float | None]:
    """Run ``fn()`` (a load run) and return it with the target's CPU over it (% of one core)."""
    cpu0, t0 = cpu_seconds(subject.proc.pid), time.monotonic()
    run: LoadRun = fn()
    wall = time.monotonic() - t0
    return run, round(100 * (cpu_seconds(subject.proc.pid) - cpu0) / wall, 1) if wall > 0 else None


def c1(subject: Subject, mock: RigMock, cpus: Cpus, s: ScenSettings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, spec in (("plain", subject.plain), ("stream", subject.stream)):
        run, cpu = _timed(subject, lambda spec=spec, kind=kind: run_load(
            spec, "latency", cpus, mock, duration=s.c1_duration, warmup=s.c1_warmup, kind=kind))  # fmt: skip
        out[kind] = run.summary() | {"target_cpu_pct": cpu}
        if kind == "stream":
            out[kind]["ttfb_hist"] = list(run.ttfb.buckets)
        out[kind]["latency_hist"] = list(run.latency.buckets)
        time.sleep(s.settle)
    return out


def _steps_doc(steps: list[Step]) -> list[dict[str, Any]]:
    return [{"level": st.level, "ok": st.ok, "why": st.why} | st.figures for st in steps]


def rate(subject: Subject, mock: RigMock, cpus: Cpus, s: ScenSettings) -> dict[str, Any]:
    def measure(conns: int) -> tuple[bool, list[str], dict[str, Any]]:
        run, cpu = _timed(subject, lambda: run_load(
            subject.plain, "rate", cpus, mock, conns=conns, duration=s.rate_duration, warmup=s.rate_warmup))  # fmt: skip
        ok, why = rate_ok(run)
        time.sleep(s.settle)
        return ok, why, run.summary() | {"target_cpu_pct": cpu}

    steps = step_through(s.rate_conns, measure)
    passing = [st for st in steps if st.ok]
    best = max(passing, key=lambda st: st.figures["rps"], default=None)
    return {
        "steps": _steps_doc(steps),
        "best_rps": best.figures["rps"] if best else None,
        "best_conns": best.level if best else None,
        "rig_bound": bool(best and (best.figures.get("rig_cpu_pct") or 0) >= RIG_BOUND_PCT),
    }


RIG_BOUND_PCT = 90.0  # the rig's CPU (mock + load generator, one core) at or over this: its own limit


def streams(subject: Subject, mock: RigMock, cpus: Cpus, s: ScenSettings) -> dict[str, Any]:
    def measure(n: int) -> tuple[bool, list[str], dict[str, Any]]:
        run, cpu = _timed(subject, lambda: run_load(
            subject.stream, "streams", cpus, mock, conns=n, duration=s.stream_duration, timeout=15.0))  # fmt: skip
        ok, why = held(run)
        time.sleep(s.settle)
        return ok, why, run.summary() | {"target_cpu_pct": cpu}

    steps = step_through(s.stream_counts, measure)
    best = best_level(steps)
    first_fail = next((st for st in steps if not st.ok), None)
    return {
        "steps": _steps_doc(steps),
        "held": best,
        "lost": sum(max(0, st.figures.get("frames_expected", 0) - st.figures.get("frames_received", 0)) for st in steps),
        "reordered": sum(st.figures.get("order_errors", 0) for st in steps),
        # rig-bound: the first failing step had the rig's core saturated
        "rig_bound": bool(first_fail and (first_fail.figures.get("rig_cpu_pct") or 0) >= RIG_BOUND_PCT),
    }


def big_body(plain: bytes, size: int) -> bytes:
    """``plain`` (a JSON request) with its first message's content padded so the body is ``size`` bytes."""
    doc = orjson.loads(plain)
    items = doc.get("messages") or doc.get("input")
    if not items:
        raise ValueError("no messages/input in the plain body")
    items[0]["content"] = ""
    pad = size - len(orjson.dumps(doc))
    items[0]["content"] = ("lorem ipsum dolor sit amet " * (pad // 27 + 1))[: max(0, pad)]
    return orjson.dumps(doc)


def _rss_mb(proc: Proc) -> float:
    return round(sum(rss_kb(proc.pid)) / 1024, 1)


def memory(subject: Subject, mock: RigMock, cpus: Cpus, s: ScenSettings, tmp: Path) -> dict[str, Any]:
    size = s.body_kb * 1024
    body = tmp / f"{subject.name}-big.json"
    body.write_bytes(big_body(subject.plain.body_file.read_bytes(), size))
    spec = LoadSpec(subject.plain.port, subject.plain.path, body, subject.plain.headers)
    time.sleep(max(s.settle, 2.0))
    idle = _rss_mb(subject.proc)
    exe = rigbuild.build("load")
    cmd = [
        str(exe), "--port", str(spec.port), "--path", spec.path, "--mode", "memory", "--conns", str(s.mem_conns),
        "--duration", f"{s.mem_duration:g}", "--timeout", "30", "--body-file", str(body), "--frames", str(rigspec.FRAMES),
    ]  # fmt: skip
    for k, v in spec.headers.items():
        cmd += ["--header", f"{k}: {v}"]
    peak = idle
    with subprocess.Popen(cpus.pin(cmd, "rig"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        while p.poll() is None:
            peak = max(peak, _rss_mb(subject.proc))
            time.sleep(1.0)
        out, err = p.communicate()
    if p.returncode != 0:
        raise RuntimeError(f"load generator failed ({p.returncode}): {err[-800:]}")
    run = parse_run(out)
    time.sleep(s.mem_after)
    after = _rss_mb(subject.proc)
    per_req = (peak - idle) * 1024 * 1024 / s.mem_conns if s.mem_conns else None
    return {
        "idle_mb": idle, "load_mb": peak, "after_mb": after, "conns": s.mem_conns, "body_bytes": size, "after_s": s.mem_after,
        "per_request_bytes": round(per_req) if per_req is not None else None,
        "per_request_x_body": round(per_req / size, 2) if per_req is not None else None,
        "after_x_idle": round(after / idle, 2) if idle else None, "run": run.summary(),
    }  # fmt: skip

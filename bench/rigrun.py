"""Start the C rig's processes: the mock upstream (a long-lived child) and load runs (one per step).

CPU pinning: the target goes on ``CPUS.target``, the mock and the load generator on ``CPUS.rig``
(with taskset; on a single-CPU machine nothing is pinned)."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench import rigbuild, rigspec
from bench.procs import Proc, ProcGroup, cpu_seconds
from bench.rigstats import LoadRun, parse_run
from bench.targets import base_env


@dataclass(frozen=True)
class Cpus:
    target: int | None
    rig: int | None

    def pin(self, cmd: list[str], which: str) -> list[str]:
        cpu = self.target if which == "target" else self.rig
        taskset = shutil.which("taskset")
        return cmd if cpu is None or taskset is None else [taskset, "-c", str(cpu), *cmd]


def pick_cpus() -> Cpus:
    """The first allowed CPU for the target, the second for the rig (None: no pinning)."""
    cpus = sorted(os.sched_getaffinity(0))
    return Cpus(cpus[0], cpus[1]) if len(cpus) >= 2 else Cpus(None, None)


@dataclass
class RigMock:
    proc: Proc
    port: int
    delay_ms: int
    interval_ms: int


def start_mock(pg: ProcGroup, folder: Path, delay_ms: int, interval_ms: int, cpus: Cpus) -> RigMock:
    """Write the routes, start the C mock pinned to the rig CPU, wait for its ready line."""
    exe = rigbuild.build("mock")
    spec = rigspec.write_spec(folder, delay_ms, interval_ms)
    log = folder / "mock.log"
    proc = pg.start(f"rig-mock-{delay_ms}ms", cpus.pin([str(exe), "--port", "0", "--spec", str(spec)], "rig"), base_env(), log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in proc.log_tail(4000).splitlines():
            if line.startswith('{"ready"'):
                return RigMock(proc, int(orjson.loads(line)["port"]), delay_ms, interval_ms)
        if not proc.alive():
            break
        time.sleep(0.02)
    raise RuntimeError(f"rig mock did not start:\n{proc.log_tail()}")


@dataclass
class LoadSpec:
    """What one load run sends: where, which body, which headers."""

    port: int
    path: str
    body_file: Path
    headers: dict[str, str]


def run_load(spec: LoadSpec, mode: str, cpus: Cpus, mock: RigMock, *, conns: int = 1, duration: float = 10.0,
             warmup: float = 0.0, kind: str = "plain", timeout: float = 10.0) -> LoadRun:  # fmt: skip
    """One run of the C load generator; the rig's CPU (mock + load generator) goes in ``extra``."""
    exe = rigbuild.build("load")
    cmd = [
        str(exe), "--port", str(spec.port), "--path", spec.path, "--mode", mode, "--conns", str(conns),
        "--duration", f"{duration:g}", "--warmup", f"{warmup:g}", "--kind", kind, "--timeout", f"{timeout:g}",
        "--frames", str(rigspec.FRAMES), "--body-file", str(spec.body_file),
    ]  # fmt: skip
    for k, v in spec.headers.items():
        cmd += ["--header", f"{k}: {v}"]
    mock_cpu0 = cpu_seconds(mock.proc.pid)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.run(cpus.pin(cmd, "rig"), capture_output=True, text=True, timeout=warmup + duration + timeout + 60, check=False)
    wall = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed ({proc.returncode}): {proc.stderr[-800:]}")
    run = parse_run(proc.stdout)
    load_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    mock_cpu = cpu_seconds(mock.proc.pid) - mock_cpu0
    run.extra["rig_cpu_pct"] = round(100 * (load_cpu + mock_cpu) / wall, 1) if wall > 0 else None
    run.extra["mock_cpu_pct"] = round(100 * mock_cpu / wall, 1) if wall > 0 else None
    return run

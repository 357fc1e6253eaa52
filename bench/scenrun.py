"""Run the issue-13 scenarios (bench/scenarios.py) over the targets: two C mocks (answering at once
for c=1; after 20 ms with 20 ms stream frames for the rest), each target started fresh per scenario,
pinned to its CPU, and stopped after it."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import httpcheck
from bench.procs import Proc, ProcGroup
from bench.rigrun import Cpus, LoadSpec, RigMock, pick_cpus, start_mock
from bench.scenarios import NAMES, ScenSettings, Subject, c1, memory, rate, streams
from bench.targets import MATRIX, Target, build_targets

# Which targets each scenario measures (litellm only exists with --compare).
MAIN = ("direct", "nginx-proxy", "faregate-1w", "litellm")
SCENARIO_TARGETS: dict[str, tuple[str, ...]] = {
    "c1": (*MAIN, *(name for name, *_ in MATRIX)),
    "rate": MAIN,
    "streams": MAIN,
    "memory": ("faregate-1w", "litellm"),
}


def _subject(t: Target, proc: Proc, folder: Path) -> Subject:
    specs = {}
    for kind in ("plain", "stream"):
        body = folder / f"{t.name}-{kind}.json"
        body.write_bytes(t.bodies[kind])
        specs[kind] = LoadSpec(t.port, t.paths[kind], body, t.headers)
    return Subject(t.name, specs["plain"], specs["stream"], proc)


def _start(t: Target, pg: ProcGroup, folder: Path, cpus: Cpus) -> Proc:
    if t.prepare is not None:
        t.prepare()
    assert t.cmd is not None
    proc = pg.start(t.name, cpus.pin(t.cmd, "target"), t.env, folder / f"{t.name}.log")
    ok, why = httpcheck.wait_ready(t.port, t.paths["plain"], t.bodies["plain"], t.headers, t.startup_timeout, proc.alive, t.client)
    if not ok:
        pg.stop(proc)
        raise RuntimeError(f"not ready: {why}\n{proc.log_tail()}")
    if t.after_start is not None:
        t.after_start(t)
    return proc


def _scenario(scen: str, subject: Subject, mock: RigMock, cpus: Cpus, s: ScenSettings, folder: Path) -> dict[str, Any]:
    if scen == "c1":
        return c1(subject, mock, cpus, s)
    if scen == "rate":
        return rate(subject, mock, cpus, s)
    if scen == "streams":
        return streams(subject, mock, cpus, s)
    return memory(subject, mock, cpus, s, folder)


def run_scenarios(
    names: list[str], wanted: set[str], compare: bool, nginx: str, tmp: Path, pg: ProcGroup, s: ScenSettings, doc: dict[str, Any]
) -> None:
    """Every scenario in ``names`` over its targets (those in ``wanted`` if not empty), into ``doc``
    as they finish (an interrupted run keeps what was measured)."""
    cpus = pick_cpus()
    doc |= {"cpus": {"target": cpus.target, "rig": cpus.rig}, "settings": asdict(s), "errors": {}}
    root = tmp / "scenarios"
    root.mkdir(exist_ok=True)
    mocks: dict[str, RigMock] = {}
    for scen in (n for n in NAMES if n in names):
        key = "fast" if scen == "c1" else "slow"
        if key not in mocks:
            delay = 0 if key == "fast" else 20
            mocks[key] = start_mock(pg, root / f"mock-{key}", delay, delay, cpus)
        mock = mocks[key]
        folder = root / scen
        folder.mkdir()
        targets = [t for t in build_targets(folder, mock.port, nginx, compare) if t.name in SCENARIO_TARGETS[scen]]
        doc[scen] = {}
        for t in targets:
            if wanted and t.name not in wanted:
                continue
            print(f"[bench] scenario {scen}: {t.name} ...", file=sys.stderr, flush=True)
            start = time.monotonic()
            proc: Proc | None = None
            try:
                proc = mock.proc if t.cmd is None else _start(t, pg, folder, cpus)
                doc[scen][t.name] = _scenario(scen, _subject(t, proc, folder), mock, cpus, s, folder)
                status = "ok"
            except (RuntimeError, OSError, ValueError) as exc:
                doc["errors"][f"{scen}/{t.name}"] = f"{type(exc).__name__}: {exc}"
                status = f"error: {str(exc).splitlines()[0][:200]}"
            finally:
                if proc is not None and proc is not mock.proc:
                    pg.stop(proc)
            print(f"[bench] scenario {scen}: {t.name}: {status} ({time.monotonic() - start:.0f}s)", file=sys.stderr, flush=True)
    for m in mocks.values():
        pg.stop(m.proc)

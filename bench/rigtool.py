"""Run the C rig by hand: ``python -m bench.rigtool build|mock|load|config ...`` (see bench/README.md).

``mock`` and ``load`` build the binary if needed and exec it in this process's place (so its PID,
CPU and affinity are the tool's own: prefix ``taskset -c 1`` to pin it)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from bench import rigbuild, rigspec, targets


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["load"]:  # every further argument goes to the load generator as it is
        exe = rigbuild.build("load")
        os.execv(exe, [str(exe), *args[1:]])  # noqa: S606  (the tool takes this process's place)
    p = argparse.ArgumentParser(prog="python -m bench.rigtool")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="compile the rig into bench/.build/ and print the binaries' paths")
    m = sub.add_parser("mock", help="run the C mock upstream in the foreground")
    m.add_argument("--port", type=int, default=0, help="0: any free port (printed on stdout)")
    m.add_argument("--delay-ms", type=int, default=20, help="plain reply delay (0 or 20 in the scenarios)")
    m.add_argument("--interval-ms", type=int, default=20, help="time between stream frames (0: back to back)")
    m.add_argument("--frames", type=int, default=rigspec.FRAMES)
    c = sub.add_parser("config", help="print a faregate config (variant 'protocols') pointing at a mock")
    c.add_argument("--mock-port", type=int, required=True)
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--state-dir", type=Path, default=None)
    sub.add_parser("load", help="the load generator; run `python -m bench.rigtool load` for its usage")
    a = p.parse_args(args)
    if a.cmd == "build":
        for tool, path in rigbuild.build_all().items():
            print(f"{tool}: {path}")
        return 0
    if a.cmd == "config":
        sys.stdout.write(targets.faregate_config("protocols", a.port, a.mock_port, a.state_dir))
        return 0
    exe = rigbuild.build("mock")
    spec = rigspec.write_spec(Path(tempfile.mkdtemp(prefix="faregate-rig-")), a.delay_ms, a.interval_ms, a.frames)
    os.execv(exe, [str(exe), "--port", str(a.port), "--spec", str(spec)])  # noqa: S606  (does not return)


if __name__ == "__main__":
    raise SystemExit(main())

"""Build the C rig (bench/rig/*.c) with the machine's gcc into bench/.build/ (untracked), on demand.

A binary's name carries a hash of its sources and flags, so an edited source is rebuilt and a
stale binary is never used."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

RIG_DIR = Path(__file__).resolve().parent / "rig"
BUILD_DIR = Path(__file__).resolve().parent / ".build"
CFLAGS = ("-O2", "-Wall", "-Wextra", "-std=gnu11")
TOOLS = ("mock", "load")


class BuildError(RuntimeError):
    pass


def _digest(tool: str, cc: str) -> str:
    h = hashlib.sha256(" ".join((cc, *CFLAGS)).encode())
    for src in (RIG_DIR / f"{tool}.c", RIG_DIR / "common.h"):
        h.update(src.read_bytes())
    return h.hexdigest()[:12]


def build(tool: str, cc: str | None = None, out_dir: Path = BUILD_DIR) -> Path:
    """Path of ``tool``'s binary, compiling it first if this source has not been built yet."""
    if tool not in TOOLS:
        raise ValueError(f"unknown rig tool {tool!r}")
    compiler = cc or shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise BuildError("no C compiler: apt-get install -y gcc libc6-dev (make system-deps)")
    exe = out_dir / f"{tool}-{_digest(tool, compiler)}"
    if exe.exists():
        return exe
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{exe.name}.{os.getpid()}.tmp"  # concurrent builds never share a file
    cmd = [compiler, *CFLAGS, "-o", str(tmp), str(RIG_DIR / f"{tool}.c")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    tmp.replace(exe)
    for old in out_dir.glob(f"{tool}-*"):  # binaries of older sources (a running one keeps its inode)
        if old != exe:
            old.unlink(missing_ok=True)
    return exe


def build_all(cc: str | None = None) -> dict[str, Path]:
    return {tool: build(tool, cc) for tool in TOOLS}

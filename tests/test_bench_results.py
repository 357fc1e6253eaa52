"""`make bench ARGS=--quick` as the README writes it, and a bench run never writing a tracked file
unless `--record` asks for it (the results folders are checked against git itself)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.run import RECORD_OUT, parse, results_dir
from tests.support.procs import ROOT


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False, timeout=30)


@pytest.fixture
def git() -> None:
    if shutil.which("git") is None or _git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("not a git checkout")


@pytest.mark.usefixtures("git")
def test_only_record_writes_tracked_files() -> None:
    for argv, interrupted in ((["--quick"], False), ([], False), (["--compare", "--targets", "direct"], False), (["--record"], True)):
        folder = results_dir(parse(argv), interrupted)
        for name in ("latest.md", "latest.json", "interrupted.md", "interrupted.json"):
            relative = (folder / name).relative_to(ROOT)
            assert _git("check-ignore", "-q", str(relative)).returncode == 0, (argv, relative)  # ignored: never tracked
    recorded = results_dir(parse(["--record"]), interrupted=False)
    assert recorded == RECORD_OUT
    assert _git("ls-files", "--error-unmatch", str((recorded / "latest.md").relative_to(ROOT))).returncode == 0
    for wrong in (["--record", "--quick"], ["--record", "--out", "/tmp/x"]):
        with pytest.raises(SystemExit):
            parse(wrong)
    assert results_dir(parse(["--out", "/tmp/elsewhere"]), interrupted=False) == Path("/tmp/elsewhere")


def test_make_bench_passes_args_as_the_readme_writes_them() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "`make bench ARGS=--quick`" in readme
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "-o", ".venv/.installed-stamp", "-o", "system-deps", "bench", "ARGS=--quick"],
        env={k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")},  # also under `make test`
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.strip().splitlines()[-1] == ".venv/bin/python -m bench --quick"

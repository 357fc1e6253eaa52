"""Real processes for tests: a `faregate serve` subprocess on a free loopback port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

MASTER_KEY = "sk-fg-test-master-0123456789"
ROOT = Path(__file__).resolve().parents[2]
FAREGATE = str(Path(sys.executable).parent / "faregate")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


class GatewayProcess:
    """`faregate serve -c CONFIG` as a child process; stderr (the logs) goes to a file."""

    def __init__(
        self,
        tmp: Path,
        config: str,
        *,
        env: dict[str, str] | None = None,
        workers: int = 1,
        extra_args: tuple[str, ...] = (),
        cwd: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = tmp / f"faregate-{self.port}.yaml"
        self.config_path.write_text(config)
        self.log_path = tmp / f"faregate-{self.port}.log"
        self.env = {**os.environ, "FAREGATE_MASTER_KEY": MASTER_KEY, **(env or {})}
        self.workers = workers
        self.args = [FAREGATE, "serve", "-c", str(self.config_path), "--port", str(self.port), "--workers", str(workers), *extra_args]
        self.proc: subprocess.Popen[bytes] | None = None
        self.cwd = cwd or tmp  # the working directory `serve` runs in (default: the config's folder)

    def start(self, timeout: float = 40.0) -> GatewayProcess:
        """Start the process (once: ``with GatewayProcess(...).start() as gw`` does not start a second
        one, which would fail on the port while the first, no longer referenced, was never stopped)."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.cwd)
        log.close()
        try:
            wait_http(self.url + "/healthz", timeout, self.proc)
            if self.workers > 1:
                self._wait_for_workers(timeout)
        except Exception:
            self.stop()
            raise RuntimeError(f"gateway did not start:\n{self.logs()}") from None
        return self

    def _wait_for_workers(self, timeout: float) -> None:
        """/healthz answers as soon as one worker is up; multi-worker tests need every one."""
        deadline = time.monotonic() + timeout
        request = urllib.request.Request(self.url + "/admin/workers", headers={"authorization": f"Bearer {MASTER_KEY}"})
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(request, timeout=2) as r:
                    workers = json.loads(r.read())["workers"]
                if sum(1 for w in workers if w["live"]) >= self.workers:
                    return
            except (urllib.error.URLError, OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"not all {self.workers} workers registered within {timeout}s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FAREGATE, *args], env={**os.environ, **(env or {})}, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )

"""A real Redis (Debian's redis-server, installed by `make test`) on a free loopback port.

No persistence (``--save ''``, no AOF): a restart on the same port comes back empty, as a Redis
that lost its memory would, which is what the control bus must survive::

    with RedisServer(tmp) as redis:
        ...  # state.redis: {redis.url}
        redis.stop()
        redis.start()  # same port, empty
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis as redis_client

from tests.support.procs import free_port


def redis_binary() -> str:
    found = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)
    if found is None:
        raise RuntimeError("redis-server is not installed: `make test` installs it (apt-get install redis-server)")
    return found


class RedisServer:
    """`redis-server` as a child process; ``stop()`` then ``start()`` restarts it on the same port."""

    def __init__(self, tmp: Path | None = None, port: int | None = None) -> None:
        self._own_dir = tmp is None
        base = Path(tempfile.mkdtemp(prefix="faregate-redis-")) if tmp is None else tmp
        self.port = port or free_port()
        self.dir = base / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> RedisServer:
        if self.running:
            return self
        args = [
            redis_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.dir),
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        client = redis_client.Redis(host="127.0.0.1", port=self.port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n{self.logs()}")
                try:
                    if client.ping():
                        return self
                except redis_client.RedisError:
                    pass
                time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        raise TimeoutError(f"redis-server on port {self.port} did not answer PING within {timeout}s:\n{self.logs()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir.parent, ignore_errors=True)

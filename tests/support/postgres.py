"""A real PostgreSQL (Debian's postgresql, installed by `make test`) on a free loopback port.

The server binaries live in /usr/lib/postgresql/VERSION/bin (not on PATH on Debian); the newest
version found there (or an `initdb` on PATH, e.g. /usr/local/bin/initdb) is used. PostgreSQL
refuses to run as root, so as root the cluster belongs to an unprivileged account (`postgres`,
created by the Debian package, else `nobody`) and every server binary is run as that account.
The data is kept across ``stop()``/``start()`` (same port), as a database that went down and came
back would have it::

    with PostgresServer() as pg:
        ...  # state.database: {pg.url}
        pg.psql("SELECT 1")
        pg.stop()
        pg.start()  # same port, same data

Made for tests: fsync off, trust authentication for the user `faregate`, loopback only.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.procs import free_port

USER = "faregate"
DATABASE = "faregate"
NOT_FOUND = "PostgreSQL server binaries not found: `make test` installs them (apt-get install postgresql)"
_UNPRIVILEGED = ("postgres", "nobody")
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes, with "/.s.PGSQL.NNNNN" to come


@dataclass(frozen=True)
class PgBinaries:
    """The directory holding initdb and postgres, and the client tools next to them."""

    bindir: Path
    version: tuple[int, ...]

    def tool(self, name: str) -> str:
        path = self.bindir / name
        if path.exists():
            return str(path)
        found = shutil.which(name)
        if found is None:
            raise RuntimeError(f"{name} not found next to {self.bindir} nor on PATH: `make test` installs it (apt-get install postgresql)")
        return found


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:2]) or (0,)


def _server_dir(bindir: Path) -> bool:
    return (bindir / "initdb").exists() and (bindir / "postgres").exists()


def find_binaries() -> PgBinaries:
    """The newest PostgreSQL whose initdb and postgres sit side by side; RuntimeError if there is none."""
    found: dict[Path, tuple[int, ...]] = {}
    for initdb in Path("/usr/lib/postgresql").glob("*/bin/initdb"):
        bindir = initdb.parent.resolve()
        if _server_dir(bindir):
            found[bindir] = _version(initdb.parent.parent.name)
    for name in ("initdb", "postgres", "pg_ctl"):
        on_path = shutil.which(name)
        if on_path is None:
            continue
        bindir = Path(on_path).resolve().parent
        if bindir in found or not _server_dir(bindir):
            continue
        try:
            out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        found[bindir] = _version(out.rsplit(")", 1)[-1])
    if not found:
        raise RuntimeError(NOT_FOUND)
    bindir = max(found, key=lambda d: (found[d], str(d)))
    return PgBinaries(bindir, found[bindir])


def _unprivileged_account() -> pwd.struct_passwd:
    for name in _UNPRIVILEGED:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError(f"running as root and none of the accounts {_UNPRIVILEGED} exists to own the PostgreSQL cluster")


def _traversable_tmp() -> str:
    """The temp dir, if every directory above it lets another account through (a root-only TMPDIR would not); else /tmp."""
    tmp = Path(tempfile.gettempdir()).resolve()
    if all(path.stat().st_mode & 0o001 for path in (tmp, *tmp.parents)):
        return str(tmp)
    return "/tmp"


class PostgresServer:
    """`postgres` as a child process on a free loopback port; ``stop()`` then ``start()`` keeps the data."""

    def __init__(self, port: int | None = None) -> None:
        self.bin = find_binaries()
        self.account: pwd.struct_passwd | None = _unprivileged_account() if os.geteuid() == 0 else None
        self.port = port or free_port()
        self.base = Path(tempfile.mkdtemp(prefix="faregate-pg-", dir=None if self.account is None else _traversable_tmp()))
        self.data_dir = self.base / "data"
        self.socket_dir = self.base / "sock"
        self.log_path = self.base / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.timings: dict[str, float] = {}
        self._initialised = False
        self._created = False
        self.socket_dir.mkdir()
        if self.account is not None:
            for path in (self.base, self.socket_dir):
                os.chown(path, self.account.pw_uid, self.account.pw_gid)

    @property
    def url(self) -> str:
        return self.url_of(DATABASE)

    @property
    def user(self) -> str:
        """The OS account the server runs as."""
        return self.account.pw_name if self.account is not None else pwd.getpwuid(os.geteuid()).pw_name

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- running binaries as the cluster's owner --------------------------------------------

    def _env(self) -> dict[str, str]:
        # a clean environment: no PG* variables of the caller, no HOME the account cannot read, a locale that exists
        return {"PATH": f"{self.bin.bindir}:/usr/local/bin:/usr/bin:/bin", "HOME": str(self.base), "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}

    def _cmd(self, args: list[str]) -> list[str]:
        if self.account is None:
            return args
        setpriv = shutil.which("setpriv")
        if setpriv is not None:  # exec()s in place: the child's pid is the server's, so signals reach it directly
            return [setpriv, f"--reuid={self.account.pw_uid}", f"--regid={self.account.pw_gid}", "--init-groups", "--", *args]
        runuser = shutil.which("runuser")
        if runuser is not None:
            return [runuser, "-u", self.account.pw_name, "--", *args]
        raise RuntimeError("running as root and neither setpriv nor runuser (util-linux) is installed to drop privileges")

    def run(self, args: list[str], *, timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run one of the PostgreSQL binaries (by name, from the server's bin dir) as the cluster's owner."""
        argv = [self.bin.tool(args[0]), *args[1:]]
        done = subprocess.run(self._cmd(argv), env=self._env(), cwd=self.base, capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:1])} exited with {done.returncode}:\n{done.stdout}{done.stderr}")
        return done

    def url_of(self, database: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str) -> str:
        """A new empty database (its name: ``prefix`` + random): tests share the session's server."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.psql(f"CREATE DATABASE {name}", database="postgres")
        return name

    def psql(self, sql: str, *, database: str = DATABASE, timeout: float = 15.0) -> str:
        """Run SQL through the server's own psql over TCP; the rows, unaligned, without headers."""
        where = ["-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", database]
        return self.run(["psql", "-XqAt", "-v", "ON_ERROR_STOP=1", *where, "-c", sql], timeout=timeout).stdout

    # -- lifecycle ---------------------------------------------------------------------------

    def _initdb(self) -> None:
        began = time.monotonic()
        self.run(["initdb", "-D", str(self.data_dir), "-A", "trust", "-U", USER, "--no-sync", "-E", "UTF8", "--no-locale"], timeout=120)
        self.timings["initdb"] = time.monotonic() - began
        self._initialised = True

    def _ready(self) -> bool:
        # postmaster.pid's 8th line is "ready" once it accepts connections (not while starting or recovering)
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        if len(lines) < 8 or lines[7].strip() != "ready":
            return False
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def start(self, timeout: float = 20.0) -> PostgresServer:
        if self.running:
            return self
        if not self._initialised:
            self._initdb()
        sockets = str(self.socket_dir) if len(str(self.socket_dir)) <= _SOCKET_PATH_MAX else ""
        args = [
            self.bin.tool("postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={sockets}",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]
        began = time.monotonic()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self._cmd(args), env=self._env(), cwd=self.base, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = began + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code, self.proc = self.proc.returncode, None
                raise RuntimeError(f"postgres exited with {code}:\n{self.logs()}")
            if self._ready():
                break
            time.sleep(0.05)
        else:
            self.stop()
            raise TimeoutError(f"postgres on port {self.port} did not accept connections within {timeout}s:\n{self.logs()}")
        self.timings["start"] = time.monotonic() - began
        if not self._created:
            self.psql(f"CREATE DATABASE {DATABASE}", database="postgres")
            self._created = True
        return self

    def _postmaster_pid(self, fallback: int) -> int:
        # under runuser the child is runuser, which does not pass SIGINT on: signal the postmaster itself
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return fallback

    def stop(self, timeout: float = 10.0) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, close sessions); SIGQUIT, then SIGKILL to the group, if it hangs."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        pid = self._postmaster_pid(proc.pid)
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0)):
            if proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        # backends left behind by a killed postmaster would hold the port and the shared memory
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.close()

"""A real nginx (Debian's package, installed by `make test`) as a reverse proxy on a free loopback port."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.support.procs import free_port
from tests.support.raw_http import LoopbackCA

EXAMPLE_SITE = Path(__file__).resolve().parents[2] / "examples" / "nginx" / "faregate.conf"

# nginx.conf around the site (every path inside the test's folder): {site} is one site's upstream and server blocks
MAIN_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
{site}
}}
"""
# the tests' own site: nginx's defaults (response buffering on) but for what each test sets
DEFAULT_SITE = """
  upstream faregate {{ server 127.0.0.1:{upstream_port}; keepalive 8; }}
  server {{
    listen 127.0.0.1:{port}{listen_tls};{tls}
    location / {{
      proxy_pass http://faregate;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_read_timeout {read_timeout}s;  # nginx cuts a response silent for this long (default 60s)
      # nginx's defaults: response buffering ON. faregate's X-Accel-Buffering: no must turn it off.
      {directives}
    }}
  }}"""


def example_site(port: int, upstream_port: int, tls: LoopbackCA | None) -> str:
    """examples/nginx/faregate.conf as a user installs it, with only what a user is told to change
    changed: the listen address, the upstream's address and the certificates (dropped without TLS)."""
    site = EXAMPLE_SITE.read_text()
    edits = {
        "server 127.0.0.1:4000;": f"server 127.0.0.1:{upstream_port};",
        "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;" if tls else f"listen 127.0.0.1:{port};",
        "ssl_certificate /etc/ssl/certs/gateway.example.com.pem;": f"ssl_certificate {tls.cert};" if tls else "",
        "ssl_certificate_key /etc/ssl/private/gateway.example.com.key;": f"ssl_certificate_key {tls.key};" if tls else "",
        "ssl_protocols TLSv1.2 TLSv1.3;": "ssl_protocols TLSv1.2 TLSv1.3;" if tls else "",
    }
    for old, new in edits.items():
        assert site.count(old) == 1, f"{EXAMPLE_SITE} no longer has {old!r} once: update example_site()"
        site = site.replace(old, new)
    return site


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        raise RuntimeError("nginx is not installed: `make test` installs it (apt-get install nginx)")
    return found


class Nginx:
    def __init__(
        self,
        tmp: Path,
        upstream_port: int,
        read_timeout: float = 60,
        directives: str = "",
        name: str = "",
        tls: LoopbackCA | None = None,
        site: bool = False,
    ) -> None:
        """``directives``: more lines for the location that proxies faregate (e.g. to make it buffer);
        ``name``: tells apart two proxies of the same upstream; ``tls``: serve HTTPS with this CA's
        server certificate (clients trust ``tls.ca``); ``site``: the shipped examples/nginx/faregate.conf
        instead of nginx's defaults (then ``read_timeout`` and ``directives`` are the example's own)."""
        self.dir = tmp / f"nginx-{upstream_port}{name}{'-site' if site else ''}"
        self.dir.mkdir()
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        certificate = f"\n    ssl_certificate {tls.cert};\n    ssl_certificate_key {tls.key};" if tls else ""
        if site:
            text = example_site(self.port, upstream_port, tls)
        else:
            text = DEFAULT_SITE.format(
                port=self.port,
                upstream_port=upstream_port,
                read_timeout=read_timeout,
                directives=directives,
                listen_tls=" ssl" if tls else "",
                tls=certificate,
            )
        (self.dir / "nginx.conf").write_text(MAIN_CONF.format(dir=self.dir, site=text))
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Nginx:
        conf = str(self.dir / "nginx.conf")
        self.proc = subprocess.Popen([nginx_binary(), "-c", conf, "-p", str(self.dir)], stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.proc.stderr.read().decode() if self.proc.stderr else ''}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise TimeoutError("nginx did not start")

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

"""Key rotation on one instance with two workers and no Redis: file watch, `faregate reload`, and
headers that always name the key the upstream really saw."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from faregate.types import fingerprint
from tests.fakes.openai_upstream import Behaviour, FakeOpenAI
from tests.support.configs import key_file_config, write_key
from tests.support.procs import MASTER_KEY, GatewayProcess, run_cli

OLD_KEY = "sk-rotation-old-1111"
NEW_KEY = "sk-rotation-new-2222"


@dataclass
class Sent:
    id: str
    t_send: float
    status: int
    credential: str
    generation: str


class Load:
    """`clients` threads sending requests back to back until stopped; each request carries a unique id."""

    def __init__(self, url: str, clients: int = 8) -> None:
        self.url = url
        self.clients = clients
        self.sent: list[Sent] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=30) as http:
            deadline = time.monotonic() + 60
            while not self._stop.is_set() and time.monotonic() < deadline:
                rid = uuid.uuid4().hex
                t_send = time.time()
                try:
                    r = http.post("/v1/chat/completions", json={"model": "m", "user": rid, "messages": [{"role": "user", "content": "Hi"}]})
                except httpx.TransportError:  # e.g. the worker serving it was killed
                    sent = Sent(rid, t_send, 0, "", "")
                else:
                    sent = Sent(
                        rid, t_send, r.status_code, r.headers.get("x-faregate-credential", ""), r.headers.get("x-faregate-generation", "")
                    )
                with self._lock:
                    self.sent.append(sent)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


def upstream_keys(fake: FakeOpenAI) -> dict[str, tuple[str | None, float]]:
    return {r.json["user"]: (r.api_key, r.time) for r in fake.requests if isinstance(r.json, dict) and "user" in r.json}


def test_rotation_under_load_file_watch_and_reload(fake: FakeOpenAI, tmp_path: Path) -> None:
    write_key(tmp_path, OLD_KEY)
    gw = GatewayProcess(tmp_path, key_file_config(fake.url), workers=2)
    with gw, Load(gw.url) as load:
        time.sleep(1.5)
        t_change = time.time()
        write_key(tmp_path, NEW_KEY)
        time.sleep(2.5)
        t_reload = time.time()
        result = run_cli("reload", "--url", gw.url, env={"FAREGATE_MASTER_KEY": MASTER_KEY})
        t_ack = time.time()
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count(" ok ") == 2  # both workers confirmed
        time.sleep(1.0)
    seen = upstream_keys(fake)
    assert all(s.status == 200 for s in load.sent)
    assert len(load.sent) > 200, len(load.sent)
    # every worker serves the new key within 2 s of the change, with no command
    late_old = [s for s in load.sent if seen[s.id][0] == OLD_KEY and seen[s.id][1] > t_change + 2.0]
    assert late_old == [], f"{len(late_old)} requests reached the upstream with the old key more than 2 s after the change"
    first_new = min(seen[s.id][1] for s in load.sent if seen[s.id][0] == NEW_KEY)
    assert first_new - t_change < 2.0
    # zero requests start with the old key after `faregate reload` returned
    stale = [s for s in load.sent if s.t_send > t_ack and seen[s.id][0] != NEW_KEY]
    after = [s for s in load.sent if s.t_send > t_ack]
    assert after and stale == [], f"{len(stale)} of {len(after)} requests sent after the ack used the old key"
    # truthful headers: the credential header names the key the upstream saw, for every request
    wrong = [s for s in load.sent if s.credential != f"up/main:{fingerprint(seen[s.id][0] or '')}"]
    assert wrong == [], f"{len(wrong)} of {len(load.sent)} responses named another credential than the one used"
    last_old = max((seen[s.id][1] for s in load.sent if seen[s.id][0] == OLD_KEY), default=t_change)
    print(
        f"MEASURED file-watch propagation: first new key {first_new - t_change:.3f}s, last old key {last_old - t_change:.3f}s after the change; "
        f"`faregate reload` took {t_ack - t_reload:.3f}s; {len(after)} requests after the ack, {len(stale)} stale; {len(load.sent)} requests, {len(wrong)} wrong headers"
    )
    generations = {s.credential: s.generation for s in load.sent}
    assert len(set(generations.values())) == 2  # two generations, each tied to its one key


def test_truthful_headers_over_a_thousand_requests_spanning_rotations(fake: FakeOpenAI, tmp_path: Path) -> None:
    write_key(tmp_path, OLD_KEY)
    keys = [OLD_KEY, NEW_KEY, "sk-rotation-third-3333"]
    gw = GatewayProcess(tmp_path, key_file_config(fake.url), workers=2)
    with gw, Load(gw.url) as load:
        for key in keys[1:]:
            time.sleep(1.2)
            write_key(tmp_path, key)
        time.sleep(2.0)  # the last key reaches every worker (file watch: < 2 s)
        deadline = time.monotonic() + 30
        while len(load.sent) < 1200 and time.monotonic() < deadline:
            time.sleep(0.1)
    seen = upstream_keys(fake)
    by_generation: dict[str, set[str]] = {}
    mismatched = 0
    for s in load.sent:
        key = seen[s.id][0] or ""
        if s.credential != f"up/main:{fingerprint(key)}":
            mismatched += 1
        by_generation.setdefault(s.generation, set()).add(key)
    assert len(load.sent) >= 1000
    assert mismatched == 0, f"{mismatched} of {len(load.sent)} headers did not name the key the upstream saw"
    assert all(len(v) == 1 for v in by_generation.values()), by_generation  # one generation, one key
    assert {k for v in by_generation.values() for k in v} == set(keys)


def test_generation_header_is_the_one_that_served(fake: FakeOpenAI, gateways: Callable[..., GatewayProcess], tmp_path: Path) -> None:
    write_key(tmp_path, OLD_KEY)
    gw = GatewayProcess(tmp_path, key_file_config(fake.url)).start()
    try:
        before = httpx.get(gw.url + "/readyz").json()["generation"]
        write_key(tmp_path, NEW_KEY)
        reload = httpx.post(gw.url + "/admin/reload", headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=20)
        assert reload.status_code == 200, reload.text
        after = reload.json()["generation"]
        assert after != before
        r = httpx.post(
            gw.url + "/v1/chat/completions",
            headers={"authorization": f"Bearer {MASTER_KEY}"},
            json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
        )
        assert r.headers["x-faregate-generation"] == after
        assert r.headers["x-faregate-credential"] == f"up/main:{fingerprint(NEW_KEY)}"
        assert fake.requests[-1].api_key == NEW_KEY
    finally:
        gw.stop()


def test_sighup_reloads(fake: FakeOpenAI, tmp_path: Path) -> None:
    write_key(tmp_path, OLD_KEY)
    gw = GatewayProcess(tmp_path, key_file_config(fake.url))
    with gw, httpx.Client(base_url=gw.url, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=20) as http:
        before = http.get("/readyz").json()["generation"]
        # nothing changed on disk, so the reload keeps the generation id; it is logged, and it
        # rebuilds the credential pools (a key rejected with 401 comes back into rotation)
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "loaded (unchanged)" not in gw.logs() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert http.get("/readyz").json()["generation"] == before
        assert gw.proc.poll() is None  # SIGHUP reloads; it does not stop the server
        r = http.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 200
    assert "loaded (unchanged)" in gw.logs()


def test_kubernetes_style_symlink_swap_is_seen(fake: FakeOpenAI, tmp_path: Path) -> None:
    """A secret volume: key.txt -> ..data/key.txt, ..data -> ..v1; the update swaps ..data to ..v2
    atomically and (for a while) leaves ..v1 in place."""
    for version, key in (("..v1", OLD_KEY), ("..v2", NEW_KEY)):
        (tmp_path / version).mkdir()
        (tmp_path / version / "key.txt").write_text(key)
    (tmp_path / "..data").symlink_to("..v1")
    (tmp_path / "key.txt").symlink_to("..data/key.txt")
    gw = GatewayProcess(tmp_path, key_file_config(fake.url))
    with gw, httpx.Client(base_url=gw.url, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=20) as http:
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        assert http.post("/v1/chat/completions", json=body).headers["x-faregate-credential"] == f"up/main:{fingerprint(OLD_KEY)}"
        (tmp_path / "..data_tmp").symlink_to("..v2")
        os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
        t_swap = time.monotonic()
        while time.monotonic() - t_swap < 3:
            if http.post("/v1/chat/completions", json=body).headers["x-faregate-credential"] == f"up/main:{fingerprint(NEW_KEY)}":
                break
            time.sleep(0.05)
        assert time.monotonic() - t_swap < 2.0, "the symlink swap was not picked up within 2 s"
        assert fake.requests[-1].api_key == NEW_KEY


def test_in_flight_stream_finishes_on_its_generation(fake: FakeOpenAI, tmp_path: Path) -> None:
    """A stream that started before a reload keeps its generation and key to the end; the next
    request uses the new ones."""
    write_key(tmp_path, OLD_KEY)
    fake.set_rule("gpt-4o-mini", Behaviour(chunks=6, chunk_delay=0.25))
    gw = GatewayProcess(tmp_path, key_file_config(fake.url))
    auth = {"authorization": f"Bearer {MASTER_KEY}"}
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    with gw, httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, headers=auth, timeout=30) as r:
        lines = r.iter_lines()
        next(lines)
        write_key(tmp_path, NEW_KEY)
        reload = httpx.post(gw.url + "/admin/reload", headers=auth, timeout=20)
        assert reload.status_code == 200 and reload.json()["generation"] != r.headers["x-faregate-generation"]
        rest = list(lines)
        assert any(line == "data: [DONE]" for line in rest)  # the old stream was not cut
        assert r.headers["x-faregate-credential"] == f"up/main:{fingerprint(OLD_KEY)}"
        after = httpx.post(gw.url + "/v1/chat/completions", json={**body, "stream": False}, headers=auth, timeout=30)
        assert after.headers["x-faregate-generation"] == reload.json()["generation"]
        assert after.headers["x-faregate-credential"] == f"up/main:{fingerprint(NEW_KEY)}"
    assert [req.api_key for req in fake.requests] == [OLD_KEY, NEW_KEY]
    assert fake.requests[0].peer != fake.requests[1].peer  # the old generation's connection was retired with it

"""`faregate doctor -c FILE --live --url URL`: the failure decision tree walked against real gateway
processes, through a real nginx (one that streams, one that buffers), against fake upstreams that
really have each problem; each finding where the live state has the problem, absent where it does
not; exit codes; and never a secret in any output."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_client

from faregate.doctor.stream import BALANCER_FIX, CLOUDFLARE_FIX, NGINX_FIX, proxies
from faregate.doctor.stream import fix_for as stream_fix
from tests.fakes.openai_upstream import Behaviour, FakeOpenAI, errors
from tests.support.configs import UPSTREAM_ENV, UPSTREAM_KEY, config, provider
from tests.support.nginx import Nginx
from tests.support.postgres import PostgresServer
from tests.support.procs import MASTER_KEY, GatewayProcess, free_port, run_cli
from tests.support.raw_http import make_ca
from tests.support.redis import RedisServer

LIVE = ("gateway", "workers", "state", "deployments", "stream")
# the codes of doctor.live's findings (the offline checks may add findings to the same groups)
LIVE_CODES = (
    "gateway_", "admin_", "no_master_key", "workers_", "generation_", "credentials_", "worker_", "reload_", "no_live_",
    "database_", "bus_", "redis_", "limiter_", "state_", "deployment_", "stream_", "not_walked",
)  # fmt: skip
# what makes nginx deliver a stream in one burst: faregate's X-Accel-Buffering: no ignored, and
# the stream gzip-compressed for a client that accepts it (plain proxy_buffering alone still
# passes each event on as it is read: nginx writes a non-cacheable response as it comes)
BUFFERING = "proxy_buffering on; proxy_ignore_headers X-Accel-Buffering; gzip on; gzip_types text/event-stream; gzip_min_length 0;"
MOCK = "\n  local:\n    type: mock"


def doctor(
    config_path: Path, url: str, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    result = run_cli(
        "doctor",
        "-c",
        str(config_path),
        "--live",
        "--url",
        url,
        "--json",
        *args,
        env={"FAREGATE_MASTER_KEY": MASTER_KEY, **UPSTREAM_ENV, **(env or {})},
        timeout=120,
    )
    for secret in (UPSTREAM_KEY, MASTER_KEY):
        assert secret not in result.stdout and secret not in result.stderr
    assert result.stdout.strip(), result.stderr
    report = json.loads(result.stdout)
    assert result.returncode == report["exit_code"], result.stderr
    return result, report


def live(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {g: [] for g in LIVE}
    for f in report["findings"]:
        if f["group"] in groups and f["code"].startswith(LIVE_CODES):
            groups[f["group"]].append(f)
    return groups


def codes(report: dict[str, Any], group: str) -> dict[str, str]:
    """subject -> code, for one group."""
    return {f["subject"]: f["code"] for f in live(report)[group]}


def by_code(report: dict[str, Any], code: str) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["code"] == code]


def config_file(tmp: Path, text: str, name: str) -> Path:
    path = tmp / name
    path.write_text(text)
    path.chmod(0o600)
    return path


# -- gateway up, down, key refused -----------------------------------------------------------


def test_a_healthy_gateway_is_ok_in_every_live_group(gateways: Callable[..., GatewayProcess], fake: FakeOpenAI) -> None:
    gw = gateways(config(provider("up", fake.url), "\n  m:\n    - {provider: up, model: gpt-4o-mini}"), env=UPSTREAM_ENV)
    result, report = doctor(gw.config_path, gw.url)
    groups = live(report)
    for group in LIVE:
        assert groups[group] and all(f["severity"] == "ok" for f in groups[group]), (group, groups[group])
    assert {f["code"] for g in LIVE for f in groups[g]} == {
        "gateway_ready",
        "workers_match",
        "database_ok",
        "bus_ok",
        "deployment_ok",
        "stream_ok",
    }
    assert "probing up/gpt-4o-mini (1/1)" in result.stderr  # the progress line, on stderr only
    assert "probing" not in result.stdout


def test_a_gateway_that_is_down_is_an_error_and_the_rest_is_not_walked(tmp_path: Path) -> None:
    path = config_file(tmp_path, config(MOCK, "\n  m:\n    - {provider: local, model: echo}"), "down.yaml")
    url = f"http://127.0.0.1:{free_port()}"
    result, report = doctor(path, url)
    assert result.returncode == 1
    groups = live(report)
    assert [f["code"] for f in groups["gateway"]] == ["gateway_unreachable"]
    assert groups["gateway"][0]["severity"] == "error" and "faregate serve" in groups["gateway"][0]["fix"]
    for group in LIVE[1:]:
        assert [(f["code"], f["severity"]) for f in groups[group]] == [("not_walked", "warning")], group


def test_a_refused_master_key_stops_the_walk_and_is_never_printed(gateways: Callable[..., GatewayProcess]) -> None:
    gw = gateways(config(MOCK, "\n  m:\n    - {provider: local, model: echo}"))
    wrong = "sk-fg-not-the-master-key-42"
    result, report = doctor(gw.config_path, gw.url, "--key", wrong)
    assert wrong not in result.stdout + result.stderr
    assert result.returncode == 1
    assert {f["code"]: f["severity"] for f in live(report)["gateway"]} == {"gateway_ready": "ok", "admin_unreachable": "error"}
    assert "master key was refused" in by_code(report, "admin_unreachable")[0]["message"]
    assert all(f["code"] == "not_walked" for g in LIVE[1:] for f in live(report)[g])


def test_proxies_are_named_from_the_headers_and_get_their_own_fix() -> None:
    nginx, cloudflare = proxies({"server": "nginx/1.22.1"}), proxies({"server": "cloudflare", "cf-ray": "8c1f-AMS"})
    assert nginx == ["nginx"] and cloudflare == ["Cloudflare"]
    assert proxies({"server": "awselb/2.0"}) == ["AWS load balancer"] and proxies({}) == []
    assert proxies({"via": "1.1 varnish"}) == ["Varnish"]
    assert proxies({"via": "1.1 some-box"}) == ["a proxy (1.1 some-box)"]
    assert NGINX_FIX in stream_fix(nginx, False) and CLOUDFLARE_FIX not in stream_fix(nginx, False)
    assert CLOUDFLARE_FIX in stream_fix(cloudflare, True) and NGINX_FIX not in stream_fix(cloudflare, True)
    assert "compressing" in stream_fix(cloudflare, True)
    for unknown in ([], ["AWS load balancer"], ["nginx", "AWS load balancer"]):  # anyone else: every usual suspect
        assert all(fix in stream_fix(unknown, False) for fix in (NGINX_FIX, CLOUDFLARE_FIX, BALANCER_FIX))


def test_with_auth_none_the_walk_needs_no_master_key(gateways: Callable[..., GatewayProcess]) -> None:
    open_config = "\nserver:\n  auth: none\nproviders:" + MOCK + "\nmodels:\n  m:\n    - {provider: local, model: echo}\n"
    gw = gateways(open_config)
    _, report = doctor(gw.config_path, gw.url, env={"FAREGATE_MASTER_KEY": ""})
    assert all(f["severity"] == "ok" for g in LIVE for f in live(report)[g]), report
    assert [f["code"] for f in live(report)["stream"]] == ["stream_ok"]


# -- workers: generation and credentials -----------------------------------------------------


def test_workers_on_another_generation_or_other_credentials_are_named(
    gateways: Callable[..., GatewayProcess], fake: FakeOpenAI, tmp_path: Path
) -> None:
    models = "\n  m:\n    - {provider: up, model: gpt-4o-mini}"
    gw = gateways(config(provider("up", fake.url), models), env=UPSTREAM_ENV, workers=2)
    _, report = doctor(gw.config_path, gw.url)
    assert [f["code"] for f in live(report)["workers"]] == ["workers_match"]
    assert "2 live worker(s)" in live(report)["workers"][0]["message"]

    # the file was edited after the workers loaded it: another generation, the same credentials
    edited = config_file(tmp_path, config(provider("up", fake.url), models + "\n  n:\n    - {provider: up, model: gpt-4o}"), "edited.yaml")
    _, report = doctor(edited, gw.url)
    found = live(report)["workers"]
    assert {f["code"] for f in found} == {"generation_mismatch"} and len(found) == 2
    assert all(f["severity"] == "error" and "faregate reload" in f["fix"] for f in found)

    # the shell resolves another key than the gateway did: named by fingerprint, never by value
    other = "sk-CANARY-other-key-0a1b2c3d4e5f"
    result, report = doctor(gw.config_path, gw.url, env={"UPSTREAM_KEY": other})
    assert other not in result.stdout + result.stderr
    found = live(report)["workers"]
    assert {f["code"] for f in found} == {"generation_mismatch", "credentials_mismatch"}
    mismatch = [f for f in found if f["code"] == "credentials_mismatch"]
    assert len(mismatch) == 2 and all("missing up/main:" in f["message"] and "still using up/main:" in f["message"] for f in mismatch)


# -- state: database, bus, Redis ---------------------------------------------------------------


def test_redis_down_is_named_with_the_bus_and_its_password_is_never_printed(
    gateways: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    password = "redis-pass-CANARY-5f4e3d"
    with RedisServer(tmp_path) as redis:
        admin = redis_client.Redis(host="127.0.0.1", port=redis.port)
        admin.config_set("requirepass", password)
        admin.close()
        url = redis.url.replace("redis://", f"redis://:{password}@")
        gw = gateways(config(MOCK, "\n  m:\n    - {provider: local, model: echo}") + f"state:\n  redis: {url}\n")
        result, report = doctor(gw.config_path, gw.url)
        assert password not in result.stdout + result.stderr
        assert {f["code"]: f["severity"] for f in live(report)["state"]} == {"database_ok": "ok", "bus_ok": "ok", "redis_ok": "ok"}
        redis.stop()
        result, report = doctor(gw.config_path, gw.url)
    assert password not in result.stdout + result.stderr
    assert result.returncode == 1
    state = {f["code"]: f for f in live(report)["state"]}
    assert state["database_ok"]["severity"] == "ok"
    assert state["redis_unreachable"]["severity"] == "error" and "state.redis" in state["redis_unreachable"]["fix"]
    assert state["redis_unreachable"]["subject"] == f"redis (redis at 127.0.0.1:{redis.port}/0)"
    assert state["bus_unreachable"]["severity"] == "error"


def test_a_database_that_is_gone_is_named_and_its_password_is_never_printed(
    gateways: Callable[..., GatewayProcess], postgres: PostgresServer
) -> None:
    password = "pg-pass-CANARY-7c6b5a4d"
    name = postgres.new_database("doctor")
    url = postgres.url_of(name).replace("@", f":{password}@", 1)
    gw = gateways(config(MOCK, "\n  m:\n    - {provider: local, model: echo}") + f"state:\n  database: {url}\n")
    result, report = doctor(gw.config_path, gw.url)
    assert password not in result.stdout + result.stderr
    assert by_code(report, "database_ok")[0]["subject"] == f"database (postgresql at 127.0.0.1:{postgres.port}/{name})"
    postgres.psql(f"DROP DATABASE {name} WITH (FORCE)", database="postgres")
    result, report = doctor(gw.config_path, gw.url)
    assert password not in result.stdout + result.stderr
    assert result.returncode == 1
    state = {f["code"]: f for f in live(report)["state"]}
    assert set(state) == {"database_unreachable", "bus_ok"}
    assert name in state["database_unreachable"]["message"] and "state.database" in state["database_unreachable"]["fix"]


# -- deployments: one probe each ---------------------------------------------------------------


@pytest.fixture
def fakes() -> Iterator[dict[str, FakeOpenAI]]:
    names = ("rejecting", "stalling", "broke", "limited")
    started = {name: FakeOpenAI().start() for name in names}
    try:
        yield started
    finally:
        for upstream in started.values():
            upstream.stop()


def test_each_deployment_is_probed_once_and_each_failure_is_named(
    gateways: Callable[..., GatewayProcess], fake: FakeOpenAI, fakes: dict[str, FakeOpenAI]
) -> None:
    fake.known_models = frozenset({"gpt-4o-mini", "gpt-4o"})
    fakes["rejecting"].set_rule("", errors.echo_key(401))  # "" is the listing's rule (it names no model)
    fakes["rejecting"].set_rule("gpt-4o-mini", errors.echo_key(401))
    fakes["stalling"].set_rule("", Behaviour(stall=8))
    fakes["stalling"].set_rule("gpt-4o-mini", Behaviour(stall=8))
    fakes["broke"].set_rule("", errors.insufficient_quota())
    fakes["broke"].set_rule("gpt-4o-mini", errors.insufficient_quota())
    fakes["limited"].set_rule("", errors.rate_limited(retry_after=20))
    fakes["limited"].set_rule("gpt-4o-mini", errors.rate_limited(retry_after=20))
    closed = f"http://127.0.0.1:{free_port()}/v1"
    providers = provider("up", fake.url) + provider("gone", closed) + "".join(provider(n, f.url) for n, f in fakes.items())
    models = """
  m:
    - {provider: up, model: gpt-4o-mini}
    - {provider: rejecting, model: gpt-4o-mini}
    - {provider: stalling, model: gpt-4o-mini}
    - {provider: gone, model: gpt-4o-mini}
    - {provider: broke, model: gpt-4o-mini}
    - {provider: limited, model: gpt-4o-mini}
  misnamed:
    - {provider: up, model: gpt4o-mini}
  also:
    - {provider: up, model: gpt-4o-mini}"""
    gw = gateways(config(providers, models), env=UPSTREAM_ENV)
    result, report = doctor(gw.config_path, gw.url, "--timeout", "1")
    assert result.returncode == 1
    found = {f["subject"]: f for f in live(report)["deployments"]}
    assert {s: f["code"] for s, f in found.items()} == {
        "up/gpt-4o-mini": "deployment_ok",
        "rejecting/gpt-4o-mini": "deployment_credential_rejected",
        "stalling/gpt-4o-mini": "deployment_timeout",
        "gone/gpt-4o-mini": "deployment_unreachable",
        "broke/gpt-4o-mini": "deployment_quota_exhausted",
        "limited/gpt-4o-mini": "deployment_rate_limited",
        "up/gpt4o-mini": "deployment_model_not_found",
    }
    assert found["up/gpt-4o-mini"]["severity"] == "ok" and "models.m[0], models.also[0]" in found["up/gpt-4o-mini"]["message"]
    assert found["limited/gpt-4o-mini"]["severity"] == "warning"
    misnamed = found["up/gpt4o-mini"]
    assert misnamed["severity"] == "error" and "upstream model 'gpt4o-mini'" in misnamed["message"]
    assert re.search(r"closest names[^:;]*: gpt-4o-mini", misnamed["message"]) and "models.misnamed[0].model" in misnamed["fix"]
    assert "gpt-4o-mini" in misnamed["fix"]
    rejected = found["rejecting/gpt-4o-mini"]
    assert "rejecting/main:" in rejected["fix"]  # the credential by its fingerprint
    assert "1s" in found["stalling/gpt-4o-mini"]["message"]
    assert closed.removesuffix("/v1") in found["gone/gpt-4o-mini"]["fix"]
    # one probe per deployment label (the label served for two models is probed once), each at
    # most a listing and one 1-token request
    for line in range(1, 8):
        assert f"({line}/7)" in result.stderr
    listings = [r for r in fake.requests if r.method == "GET"]
    completions = [r for r in fake.requests if r.method == "POST"]
    assert len(listings) == 2 and len(completions) <= 1
    assert all(r.json["max_tokens"] == 1 for r in completions if isinstance(r.json, dict) and "max_tokens" in r.json)
    for upstream in fakes.values():
        assert len(upstream.requests) <= 2


# -- stream: through nginx that streams, and nginx that buffers --------------------------------


def arrivals(url: str) -> tuple[list[float], list[float], list[int]]:
    """The self-test stream read as an SDK would (gzip accepted), independently of doctor: each
    tick's arrival time, its send time at the gateway, and the index of the read that brought it."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"authorization": f"Bearer {MASTER_KEY}", "accept-encoding": "gzip"}
    start = time.monotonic()
    connection.request("GET", "/admin/selftest/stream?events=6&interval=0.5", headers=headers)
    response = connection.getresponse()
    assert response.status == 200
    gzip = response.getheader("content-encoding") == "gzip"
    inflate = zlib.decompressobj(wbits=31)
    text, arrived, sent, reads = b"", [], [], []
    index = 0
    while chunk := response.read1(65536):
        now = time.monotonic() - start
        text += inflate.decompress(chunk) if gzip else chunk
        while b"\n\n" in text:
            event, text = text.split(b"\n\n", 1)
            if event.startswith(b"event: tick"):
                arrived.append(now)
                sent.append(json.loads(event.split(b"data: ", 1)[1])["sent_ms"] / 1000)
                reads.append(index)
        index += 1
    connection.close()
    assert len(sent) == 6
    return arrived, sent, reads


def test_streaming_self_test_through_nginx_that_streams_and_nginx_that_buffers(
    gateways: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    gw = gateways(config(MOCK, "\n  m:\n    - {provider: local, model: echo}"))
    with Nginx(tmp_path, gw.port) as streaming, Nginx(tmp_path, gw.port, directives=BUFFERING, name="-buffering") as buffering:
        # the experiment: through the first nginx the events arrive spread out as they were sent,
        # through the second every one of them in the same read, at the end
        arrived, sent, _ = arrivals(streaming.url)
        assert arrived[-1] - arrived[0] >= (sent[-1] - sent[0]) / 2
        _, _, reads = arrivals(buffering.url)
        assert len(set(reads)) == 1, reads

        _, report = doctor(gw.config_path, streaming.url)
        stream = live(report)["stream"]
        assert [(f["code"], f["severity"]) for f in stream] == [("stream_ok", "ok")]
        assert "in front: nginx" in stream[0]["message"]

        result, report = doctor(gw.config_path, buffering.url)
        stream = live(report)["stream"]
        assert [(f["code"], f["severity"]) for f in stream] == [("stream_buffered", "error")]
        assert result.returncode == 1
        assert "in one burst" in stream[0]["message"] and "gzip" in stream[0]["message"]
        fix = stream[0]["fix"]
        assert "proxy_buffering off" in fix and "X-Accel-Buffering" in fix and "gzip off" in fix
        assert "Cloudflare" not in fix  # the Server header says nginx: its fix, not everyone's
        # every other group is as good through the buffering proxy as directly
        assert all(f["severity"] == "ok" for g in LIVE[:-1] for f in live(report)[g])

    _, report = doctor(gw.config_path, gw.url)  # no proxy: nothing in front is named
    stream = live(report)["stream"]
    assert [f["code"] for f in stream] == ["stream_ok"] and "in front" not in stream[0]["message"]


def test_the_walk_reads_the_stream_over_https_through_a_tls_proxy(gateways: Callable[..., GatewayProcess], tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    assert ca is not None, "openssl is not installed"
    gw = gateways(config(MOCK, "\n  m:\n    - {provider: local, model: echo}"))
    with Nginx(tmp_path, gw.port, tls=ca) as proxy:
        assert proxy.url.startswith("https://")
        _, report = doctor(gw.config_path, proxy.url, env={"SSL_CERT_FILE": str(ca.ca)})
        assert [f["code"] for f in live(report)["gateway"]] == ["gateway_ready"]
        assert [f["code"] for f in live(report)["stream"]] == ["stream_ok"]
        with Nginx(tmp_path, gw.port, tls=ca, directives=BUFFERING, name="-buffering") as buffering:
            _, report = doctor(gw.config_path, buffering.url, env={"SSL_CERT_FILE": str(ca.ca)})
        assert [f["code"] for f in live(report)["stream"]] == ["stream_buffered"]


def test_the_self_test_route_needs_the_master_key_and_checks_its_parameters(gateways: Callable[..., GatewayProcess]) -> None:
    gw = gateways(config(MOCK, "\n  m:\n    - {provider: local, model: echo}"))
    host, port = gw.url.removeprefix("http://").split(":")
    for path, key, status, param in (
        ("/admin/selftest/stream", None, 401, None),
        ("/admin/selftest/stream", "sk-fg-wrong", 401, None),
        ("/admin/selftest/stream?events=0", MASTER_KEY, 400, "events"),
        ("/admin/selftest/stream?events=many", MASTER_KEY, 400, "events"),
        ("/admin/selftest/stream?interval=nan", MASTER_KEY, 400, "interval"),
        ("/admin/selftest/stream?events=50&interval=5", MASTER_KEY, 400, "events"),
        ("/admin/status", None, 401, None),
        ("/admin/status?timeout=99", MASTER_KEY, 400, "timeout"),
    ):
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.request("GET", path, headers={"authorization": f"Bearer {key}"} if key else {})
        response = connection.getresponse()
        body = json.loads(response.read())
        connection.close()
        assert response.status == status, path
        assert set(body["error"]) == {"message", "type", "param", "code"} and body["error"]["param"] == param, path
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("GET", "/admin/selftest/stream?events=2&interval=0.05", headers={"authorization": f"Bearer {MASTER_KEY}"})
    response = connection.getresponse()
    assert response.getheader("content-type") == "text/event-stream; charset=utf-8"
    assert response.getheader("cache-control") == "no-cache, no-transform" and response.getheader("x-accel-buffering") == "no"
    raw = response.read()
    connection.close()
    assert raw.count(b"event: tick\n") == 2 and raw.endswith(b"\n\n") and b"event: end\n" in raw

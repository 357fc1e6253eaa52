"""The issue-13 bench's own logic: percentiles from the C rig's histograms, the streams-held and
sustained-rate verdicts, the stepping rule, the rig's JSON, the report's targets; and the C rig
itself, built with gcc (in the Makefile's APT_PACKAGES) and run for a few streams (frame counts and
order only, never timing)."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench import rigbuild, rigspec, scenreport
from bench.rigstats import Hist, LoadRun, best_level, held, parse_run, rate_ok, step_through
from bench.run import parse
from bench.scenarios import big_body


def _run(**kw: Any) -> LoadRun:
    base = LoadRun(
        mode="streams", conns=8, duration_s=1.0, requests=1000, started=1000, rps=1000.0, errors=0,
        error_kinds={}, cpu_pct=1.0, frames_per_stream=64, frames_received=64_000, frames_expected=64_000,
        order_errors=0, streams_short=0, gaps_over=0, latency=Hist(((900_000_000, 1000),), 900_000_000),
        ttfb=Hist(), gaps=Hist(((20_000_000, 10),), 20_000_000),
    )  # fmt: skip
    return replace(base, **kw)


def test_nearest_rank_percentiles_over_the_buckets() -> None:
    h = Hist(((1_000, 50), (2_000, 40), (5_000, 9), (9_000, 1)), 9_500)
    assert h.count == 100
    assert h.percentile_ms(0.5) == 0.001  # the 50th sample is the last of the first bucket
    assert h.percentile_ms(0.51) == 0.002
    assert h.percentile_ms(0.99) == 0.005
    assert h.percentile_ms(0.999) == 0.009  # rank ceil(99.9) = 100: the last bucket
    assert h.percentile_ms(0.0) == 0.001
    assert Hist().percentile_ms(0.5) is None


def test_held_needs_no_long_gap_few_errors_and_the_frames() -> None:
    assert held(_run()) == (True, [])
    assert not held(_run(gaps_over=1))[0]
    assert not held(_run(errors=2, requests=998))[0]  # 0.2 %
    assert held(_run(errors=1, requests=999))[0]  # 0.1 % is allowed
    assert not held(_run(frames_received=63_935))[0]  # 99.898 % < 99.9 %
    assert held(_run(frames_received=63_936))[0]  # exactly 99.9 %
    assert not held(_run(started=0, requests=0, frames_expected=0, frames_received=0))[0]


def test_a_rate_step_passes_with_p99_under_one_second_and_few_errors() -> None:
    assert rate_ok(_run())[0]
    slow = Hist(((900_000_000, 98), (1_000_000_000, 2)), 1_000_000_000)
    assert rate_ok(_run(latency=slow)) == (False, ["p99 1000 ms"])
    assert not rate_ok(_run(errors=5))[0]
    assert not rate_ok(_run(latency=Hist()))[0]


def test_stepping_stops_after_two_failures_and_keeps_the_highest_pass() -> None:
    seen: list[int] = []

    def measure(n: int) -> tuple[bool, list[str], dict[str, Any]]:
        seen.append(n)
        return n in (1, 8, 64), [] if n in (1, 8, 64) else ["stall"], {}

    steps = step_through((1, 8, 32, 64, 128, 256, 512), measure)
    assert seen == [1, 8, 32, 64, 128]  # 32 and 128 failed: no more steps
    assert best_level(steps) == 64
    assert best_level(step_through((1, 2), lambda n: (False, ["x"], {}))) is None


def test_the_rig_json_is_parsed_and_a_line_without_json_is_refused() -> None:
    line = {
        "mode": "rate", "conns": 2, "duration_s": 1.0, "requests": 3, "started": 3, "rps": 3.0, "errors": 1,
        "error_kinds": {"status": 1}, "cpu_pct": 0.5, "frames_per_stream": 0, "frames_received": 0,
        "frames_expected": 0, "order_errors": 0, "streams_short": 0, "gaps_over": 0,
        "latency": {"max_us": 2.5, "hist": [[1000, 2], [2000, 1]]}, "ttfb": {"hist": []}, "gaps": {"hist": []},
    }  # fmt: skip
    run = parse_run("noise\n" + orjson.dumps(line).decode() + "\n")
    assert run.latency == Hist(((1000, 2), (2000, 1)), 2500)
    assert run.error_rate == 0.25
    assert run.summary()["latency"]["p99_ms"] == 0.002
    with pytest.raises(ValueError, match="no JSON"):
        parse_run("load: usage\n")
    del line["gaps"]
    with pytest.raises(ValueError, match="gaps"):
        parse_run(orjson.dumps(line).decode())


def test_big_body_has_the_exact_size_and_stays_a_request() -> None:
    body = big_body(b'{"model":"bench-plain","messages":[{"role":"user","content":"Say hello"}]}', 150 * 1024)
    assert len(body) == 150 * 1024
    assert orjson.loads(body)["model"] == "bench-plain"


def _doc(fg_held: int, direct_held: int, fg_p50: float) -> dict[str, Any]:
    def c1(p50: float) -> dict[str, Any]:
        return {"plain": {"latency": {"p50_ms": p50, "p99_ms": p50 + 0.1, "p999_ms": p50 + 1}},
                "stream": {"ttfb": {"p50_ms": p50, "p99_ms": p50 + 0.1}}}  # fmt: skip

    step = {"level": 8, "ok": True, "why": [], "frames_expected": 10, "frames_received": 10, "order_errors": 0, "errors": 0, "rps": 1}
    return {
        "c1": {"direct": c1(0.05), "faregate-1w": c1(fg_p50)},
        "streams": {"direct": {"held": direct_held, "steps": [step]}, "faregate-1w": {"held": fg_held, "steps": [step]}},
        "rate": {"faregate-1w": {"best_rps": 7000.0, "best_conns": 256, "steps": []}},
        "memory": {"faregate-1w": {"idle_mb": 50.0, "load_mb": 500.0, "after_mb": 70.0, "per_request_x_body": 2.0, "after_x_idle": 1.4}},
    }


def test_the_targets_table_judges_faregate_against_direct_and_the_limits() -> None:
    _, good = scenreport.targets(_doc(1024, 1024, 0.15))
    assert {g["goal"]: g["result"] for g in good} == dict.fromkeys((g["goal"] for g in good), "PASS")
    _, bad = scenreport.targets(_doc(128, 1024, 0.5))
    verdicts = {g["goal"]: g["result"] for g in bad}
    assert verdicts["streams held (N)"] == "FAIL"
    assert verdicts["added latency c=1 p50 (ms)"] == "FAIL"
    assert verdicts["sustained req/s (20 ms mock)"] == "PASS"
    lines, _ = scenreport.render(_doc(128, 1024, 0.5) | {"cpus": {"target": 0, "rig": 1}, "errors": {}})
    assert any(line.startswith("| added latency at c=1") and "+0.450" in line for line in lines)


# -- the C rig, built and run -------------------------------------------------------------------


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("rig-build")
    return {tool: rigbuild.build(tool, out_dir=out) for tool in rigbuild.TOOLS}


@pytest.fixture
def mock_port(rig: dict[str, Path], tmp_path: Path) -> Iterator[int]:
    spec = rigspec.write_spec(tmp_path / "spec", delay_ms=0, interval_ms=1, frames=5)
    with subprocess.Popen([str(rig["mock"]), "--port", "0", "--spec", str(spec)], stdout=subprocess.PIPE, text=True) as p:
        try:
            assert p.stdout is not None
            yield int(orjson.loads(p.stdout.readline())["port"])
        finally:
            p.terminate()


def _load(rig: dict[str, Path], port: int, path: str, *args: str) -> LoadRun:
    cmd = [str(rig["load"]), "--port", str(port), "--path", path, "--duration", "0.3", "--body", "{}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    return parse_run(proc.stdout)


@pytest.mark.parametrize("path", [p for p, _ in rigspec.STREAM_ROUTES])
def test_streams_through_the_c_mock_arrive_whole_and_in_order(rig: dict[str, Path], mock_port: int, path: str) -> None:
    run = _load(rig, mock_port, path, "--mode", "streams", "--conns", "2", "--frames", "5")
    assert run.started >= 2
    assert run.errors == 0
    assert run.requests == run.started
    assert run.frames_expected == 5 * run.started
    assert run.frames_received == run.frames_expected
    assert run.order_errors == 0
    assert run.streams_short == 0
    assert run.ttfb.count == run.started
    assert run.gaps.count == 4 * run.started


def test_plain_replies_and_the_rigs_own_percentiles_agree_with_pythons(rig: dict[str, Path], mock_port: int) -> None:
    proc = subprocess.run(
        [str(rig["load"]), "--port", str(mock_port), "--path", "/plain/v1/chat/completions", "--mode", "rate",
         "--conns", "3", "--duration", "0.3", "--body-file", "/dev/null"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    raw = orjson.loads(proc.stdout)
    run = parse_run(proc.stdout)
    assert run.requests > 0
    assert run.errors == 0
    assert run.latency.count == run.requests
    for tag, q in (("p50_us", 0.5), ("p99_us", 0.99), ("p999_us", 0.999)):
        assert raw["latency"][tag] == pytest.approx(1000 * (run.latency.percentile_ms(q) or 0), abs=0.06)


def test_an_unknown_route_is_a_counted_error(rig: dict[str, Path], mock_port: int) -> None:
    run = _load(rig, mock_port, "/nowhere", "--mode", "rate", "--conns", "1")
    assert run.requests == 0
    assert run.errors > 0
    assert run.error_kinds["status"] == run.errors


class _Shuffled(threading.Thread):
    """A one-connection server answering every request with frames tagged 0, 2, 1 (out of order)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def run(self) -> None:
        conn, _ = self.sock.accept()
        body = b"".join(b"data: #%06d:abcdefgh\n\n" % i for i in (0, 2, 1))
        reply = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        buf = b""
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:  # bodyless requests (--body "")
                    buf = buf.split(b"\r\n\r\n", 1)[1]
                    conn.sendall(reply)


def test_frames_out_of_order_are_counted(rig: dict[str, Path]) -> None:
    server = _Shuffled()
    server.start()
    cmd = [str(rig["load"]), "--port", str(server.port), "--path", "/s", "--mode", "streams", "--conns", "1",
           "--duration", "0.2", "--frames", "3"]  # fmt: skip
    run = parse_run(subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout)
    server.sock.close()
    assert run.started > 0
    assert run.frames_received == run.frames_expected == 3 * run.started
    assert run.order_errors == 2 * run.started  # 2 after 0, then 1 after 2


def test_scenarios_flag_selects_the_scenarios_and_drops_the_old_phases() -> None:
    every = parse([])
    assert every.phases and every.scenario_list == ["c1", "rate", "streams", "memory"]
    only = parse(["--scenarios", "streams,c1"])
    assert not only.phases and only.scenario_list == ["streams", "c1"]
    none = parse(["--scenarios", "none"])
    assert none.phases and none.scenario_list == []
    with pytest.raises(SystemExit):
        parse(["--scenarios", "c2"])

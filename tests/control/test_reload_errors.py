"""A reload whose new config is invalid changes nothing: the old generation keeps serving, the
error is logged and returned, and `faregate check` reports the same problem."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.support.configs import key_file_config
from tests.support.procs import MASTER_KEY, GatewayProcess, run_cli

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}


def _yaml_syntax(text: str, d: Path) -> str:
    return text.replace("models:", "models: [")


def _unknown_provider(text: str, d: Path) -> str:
    return text.replace("{provider: up,", "{provider: upp,")


def _missing_env(text: str, d: Path) -> str:
    return text.replace("[{id: main, key_file: key.txt}]", '[{id: main, key: "${FAREGATE_TEST_UNSET_VAR}"}]')


def _empty_key_file(text: str, d: Path) -> str:
    (d / "key.txt").write_text("")
    return text


def _truncated(text: str, d: Path) -> str:
    return text[: text.index("models:") + 12]


CASES: list[tuple[str, Callable[[str, Path], str], str]] = [
    ("yaml-syntax", _yaml_syntax, "YAML syntax error"),
    ("unknown-provider", _unknown_provider, "models.m[0].provider: unknown provider 'upp' (did you mean 'up'?)"),
    ("missing-env", _missing_env, "environment variable FAREGATE_TEST_UNSET_VAR is not set"),
    ("empty-key-file", _empty_key_file, "is empty"),
    ("truncated", _truncated, "models"),
]


@pytest.mark.parametrize(("name", "breaks", "problem"), CASES, ids=[c[0] for c in CASES])
def test_invalid_reload_keeps_the_old_generation(
    fake: FakeOpenAI, tmp_path: Path, name: str, breaks: Callable[[str, Path], str], problem: str
) -> None:
    (tmp_path / "key.txt").write_text("sk-good-key-1234\n")
    gw = GatewayProcess(tmp_path, key_file_config(fake.url))
    with gw, httpx.Client(base_url=gw.url, headers=AUTH, timeout=20) as http:
        before = http.get("/readyz").json()["generation"]
        broken = breaks(gw.config_path.read_text(), tmp_path)
        tmp = gw.config_path.with_suffix(".tmp")
        tmp.write_text(broken)
        os.replace(tmp, gw.config_path)
        reload = http.post("/admin/reload")
        assert reload.status_code == 422, reload.text
        body = reload.json()
        assert body["error"]["code"] == "invalid_config"
        assert before in body["error"]["message"]  # it names the generation that keeps serving
        assert any(problem in p for p in body["problems"]), body["problems"]
        time.sleep(1.2)  # the file watch sees the same change: it must not replace the generation either
        r = http.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "Hi"}]})
        assert r.status_code == 200
        assert r.headers["x-faregate-generation"] == before
        assert fake.requests[-1].api_key == "sk-good-key-1234"
    check = run_cli("check", "-c", str(gw.config_path), cwd=tmp_path)
    assert check.returncode == 1
    assert problem in check.stdout, check.stdout
    logs = gw.logs()
    assert "reload failed, generation " + before + " keeps serving" in logs
    assert "sk-good-key-1234" not in logs

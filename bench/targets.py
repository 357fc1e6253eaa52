"""What gets measured: one ``Target`` per system under test, and their config files.

Adding a target is one more entry in ``build_targets`` plus, if needed, one more
branch in ``faregate_config`` (as "faregate-embedded": virtual key, SQLite spend
log, access log and metrics).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bench import httpcheck, mock
from bench.procs import free_port

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "bench"
LITELLM_VENV = BENCH_DIR / ".venv-litellm"
MASTER_KEY = "sk-bench-master-key-0123456789"
UPSTREAM_KEY = "sk-bench-upstream"
KINDS = ("plain", "stream")


@dataclass
class Target:
    """A system under test. ``cmd`` None means "no process of its own" (direct)."""

    name: str
    port: int
    paths: dict[str, str]
    bodies: dict[str, bytes]
    headers: dict[str, str]
    cmd: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    workers: int = 1
    startup_timeout: float = 30.0
    prepare: Callable[[], None] | None = None  # e.g. build a venv; may raise
    after_start: Callable[[Target], None] | None = None  # once it answers: e.g. create a virtual key, swap headers
    client: str = "openai"  # the client's format: "openai" (Chat Completions), "anthropic" (Messages) or "responses"


def base_env() -> dict[str, str]:
    """The parent's environment without proxy settings; loopback never goes via a proxy."""
    # The bench hands its environment on to the processes it starts.
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}  # noqa: TID251
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def _gateway_bodies(plain_model: str, stream_model: str) -> dict[str, bytes]:
    msgs = [{"role": "user", "content": "Say hello"}]
    return {
        "plain": orjson.dumps({"model": plain_model, "messages": msgs}),
        "stream": orjson.dumps({"model": stream_model, "messages": msgs, "stream": True}),
    }


def _anthropic_bodies(plain_model: str, stream_model: str) -> dict[str, bytes]:
    """Anthropic Messages requests (max_tokens is required there)."""
    msgs = [{"role": "user", "content": "Say hello"}]
    return {
        "plain": orjson.dumps({"model": plain_model, "max_tokens": 256, "messages": msgs}),
        "stream": orjson.dumps({"model": stream_model, "max_tokens": 256, "messages": msgs, "stream": True}),
    }


def _responses_bodies(plain_model: str, stream_model: str) -> dict[str, bytes]:
    """OpenAI Responses requests: the same conversation as ``input`` items."""
    items = [{"role": "user", "content": "Say hello"}]
    return {
        "plain": orjson.dumps({"model": plain_model, "input": items}),
        "stream": orjson.dumps({"model": stream_model, "input": items, "stream": True}),
    }


def _anthropic_headers(key: str) -> dict[str, str]:
    """As the anthropic SDK sends them: the key in x-api-key, and anthropic-version."""
    return {"Content-Type": "application/json", "x-api-key": key, "anthropic-version": "2023-06-01"}


def _headers(key: str | None) -> dict[str, str]:
    out = {"Content-Type": "application/json"}
    if key:
        out["Authorization"] = f"Bearer {key}"
    return out


DIRECT_PATHS = {k: f"/{k}/v1/chat/completions" for k in KINDS}
GATEWAY_PATHS = {k: "/v1/chat/completions" for k in KINDS}
MESSAGES_PATHS = {k: "/v1/messages" for k in KINDS}
RESPONSES_PATHS = {k: "/v1/responses" for k in KINDS}


def faregate_config(variant: str, port: int, mock_port: int, state_dir: Path | None = None) -> str:
    """faregate YAML config for ``variant``; secrets come from the environment."""
    base = f"http://127.0.0.1:{mock_port}"
    cred = '[{id: bench, key: "${BENCH_UPSTREAM_KEY}"}]'
    text = (
        # Block style: a bare ${...} inside a YAML flow mapping is a syntax error.
        f"server:\n  host: 127.0.0.1\n  port: {port}\n  master_key: ${{FAREGATE_MASTER_KEY}}\n"
        "providers:\n"
        f'  plain-upstream: {{type: openai, base_url: "{base}/plain/v1", credentials: {cred}}}\n'
        f'  stream-upstream: {{type: openai, base_url: "{base}/stream/v1", credentials: {cred}}}\n'
        "models:\n"
        "  bench-plain: [{provider: plain-upstream, model: gpt-4o-mini}]\n"
        "  bench-stream: [{provider: stream-upstream, model: gpt-4o-mini}]\n"
        "prices:\n"
        "  gpt-4o-mini: {input: 0.15, output: 0.6}\n"
    )
    if state_dir is not None:  # the run's own state (keys, spend log), deleted with it; never the repository's .faregate/
        text += f"state:\n  database: sqlite:///{state_dir}/state.db\n"
    if variant in ("basic", "embedded"):  # embedded: the same config, requests made with a virtual key (after_start)
        return text
    if variant == "protocols":  # basic plus two anthropic providers on the mock's Anthropic files
        providers = (
            f'  anthropic-plain-upstream: {{type: anthropic, base_url: "{base}/anthropic-plain", credentials: {cred}}}\n'
            f'  anthropic-stream-upstream: {{type: anthropic, base_url: "{base}/anthropic-stream", credentials: {cred}}}\n'
            f'  gemini-plain-upstream: {{type: gemini, base_url: "{base}/gemini-plain", credentials: {cred}}}\n'
            f'  gemini-stream-upstream: {{type: gemini, base_url: "{base}/gemini-stream", credentials: {cred}}}\n'
            f'  responses-plain-upstream: {{type: openai, responses: true, base_url: "{base}/responses-plain/v1", credentials: {cred}}}\n'
            f'  responses-stream-upstream: {{type: openai, responses: true, base_url: "{base}/responses-stream/v1", credentials: {cred}}}\n'
        )
        models = (
            f"  bench-anthropic-plain: [{{provider: anthropic-plain-upstream, model: {mock.ANTHROPIC_MODEL}}}]\n"
            f"  bench-anthropic-stream: [{{provider: anthropic-stream-upstream, model: {mock.ANTHROPIC_MODEL}}}]\n"
            f"  bench-gemini-plain: [{{provider: gemini-plain-upstream, model: {mock.GEMINI_MODEL}}}]\n"
            f"  bench-gemini-stream: [{{provider: gemini-stream-upstream, model: {mock.GEMINI_MODEL}}}]\n"
            f"  bench-responses-plain: [{{provider: responses-plain-upstream, model: {mock.MODEL}}}]\n"
            f"  bench-responses-stream: [{{provider: responses-stream-upstream, model: {mock.MODEL}}}]\n"
        )
        text = text.replace("models:\n", providers + "models:\n").replace("prices:\n", models + "prices:\n")
        prices = f"prices:\n  {mock.ANTHROPIC_MODEL}: {{input: 3, output: 15}}\n  {mock.GEMINI_MODEL}: {{input: 0.3, output: 2.5}}\n"
        return text.replace("prices:\n", prices)
    raise ValueError(f"unknown faregate config variant {variant!r}")


def use_virtual_key(t: Target) -> None:
    """Create a virtual key through the admin API (master key) and send every request with it."""
    status, body = httpcheck.post(t.port, "/admin/keys", b'{"name": "bench"}', _headers(MASTER_KEY))
    if status != 201:
        raise RuntimeError(f"cannot create a virtual key: {status} {body[:300]!r}")
    t.headers = _headers(str(orjson.loads(body)["key"]))


# The protocol matrix (variant "protocols"): (target name, client format, plain model, stream model).
MATRIX = (
    ("faregate-anthropic", "anthropic", "bench-anthropic-plain", "bench-anthropic-stream"),  # the Anthropic diagonal
    ("faregate-openai-to-anthropic", "openai", "bench-anthropic-plain", "bench-anthropic-stream"),  # translated
    ("faregate-anthropic-to-openai", "anthropic", "bench-plain", "bench-stream"),  # translated
    ("faregate-openai-to-gemini", "openai", "bench-gemini-plain", "bench-gemini-stream"),  # translated (no client speaks Gemini)
    ("faregate-responses", "responses", "bench-responses-plain", "bench-responses-stream"),  # the Responses diagonal (responses: true)
    ("faregate-responses-to-chat", "responses", "bench-plain", "bench-stream"),  # translated: Responses client, Chat upstream
)


def matrix_target(name: str, tmp: Path, mock_port: int, client: str, plain: str, stream: str) -> Target:
    """One worker, config variant "protocols"; the client speaks ``client``'s format."""
    t = faregate_target(name, tmp, mock_port, 1, "protocols")
    if client == "anthropic":
        t.paths, t.bodies, t.headers = MESSAGES_PATHS, _anthropic_bodies(plain, stream), _anthropic_headers(MASTER_KEY)
    elif client == "responses":
        t.paths, t.bodies = RESPONSES_PATHS, _responses_bodies(plain, stream)
    else:
        t.bodies = _gateway_bodies(plain, stream)
    t.client = client
    return t


def faregate_target(name: str, tmp: Path, mock_port: int, workers: int, variant: str) -> Target:
    port = free_port()
    conf = tmp / f"{name}.yaml"
    state = tmp / f"{name}-state"
    conf.write_text(faregate_config(variant, port, mock_port, state))
    exe = Path(sys.executable).parent / "faregate"
    env = base_env() | {
        "FAREGATE_MASTER_KEY": MASTER_KEY,
        "BENCH_UPSTREAM_KEY": UPSTREAM_KEY,
    }
    cmd = [
        str(exe),
        "serve",
        "-c",
        str(conf),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return Target(
        name=name,
        port=port,
        paths=GATEWAY_PATHS,
        bodies=_gateway_bodies("bench-plain", "bench-stream"),
        headers=_headers(MASTER_KEY),
        cmd=[*cmd, "--workers", str(workers)],
        env=env,
        workers=workers,
        after_start=use_virtual_key if variant == "embedded" else None,
    )


def litellm_config(mock_port: int) -> str:
    """LiteLLM proxy config (JSON is valid YAML): two models, master key, no database."""
    base = f"http://127.0.0.1:{mock_port}"

    def model(name: str, kind: str) -> dict[str, object]:
        params = {"model": "openai/gpt-4o-mini", "api_base": f"{base}/{kind}/v1"}
        return {
            "model_name": name,
            "litellm_params": params | {"api_key": UPSTREAM_KEY},
        }

    doc = {
        "model_list": [model("bench-plain", "plain"), model("bench-stream", "stream")],
        "general_settings": {"master_key": MASTER_KEY},
        "litellm_settings": {"telemetry": False, "set_verbose": False},
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()


def ensure_litellm_venv(log: Path) -> None:
    """Create bench/.venv-litellm with ``litellm[proxy]`` from PyPI on first use."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists():
        return
    python = getattr(sys, "_base_executable", None) or shutil.which("python3") or "python3"
    with log.open("ab") as fh:
        for cmd in (
            [python, "-m", "venv", str(LITELLM_VENV)],
            [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"],
        ):
            subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=True, timeout=1800)


# Keep LiteLLM offline and quiet: local cost map, no telemetry, no admin UI/docs.
LITELLM_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_TELEMETRY": "False",
    "LITELLM_TELEMETRY_DISABLED": "True",
    "DISABLE_ADMIN_UI": "True",
    "NO_DOCS": "True",
    "LITELLM_LOG": "ERROR",
    "LITELLM_MODE": "PRODUCTION",
    "DISABLE_SCHEMA_UPDATE": "True",
}


def litellm_target(tmp: Path, mock_port: int) -> Target:
    port = free_port()
    conf = tmp / "litellm.yaml"
    conf.write_text(litellm_config(mock_port))
    env = base_env() | LITELLM_ENV
    env.pop("DATABASE_URL", None)
    cmd = [str(LITELLM_VENV / "bin" / "litellm"), "--config", str(conf)]
    return Target(
        name="litellm",
        port=port,
        paths=GATEWAY_PATHS,
        bodies=_gateway_bodies("bench-plain", "bench-stream"),
        headers=_headers(MASTER_KEY),
        cmd=[*cmd, "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
        env=env,
        startup_timeout=120.0,
        prepare=lambda: ensure_litellm_venv(tmp / "litellm-install.log"),
    )


def build_targets(tmp: Path, mock_port: int, nginx: str, compare: bool) -> list[Target]:
    """All targets of one run, in measurement order (direct first: it is the baseline)."""
    direct = Target(
        name="direct",
        port=mock_port,
        paths=DIRECT_PATHS,
        bodies=_gateway_bodies("gpt-4o-mini", "gpt-4o-mini"),
        headers=_headers(UPSTREAM_KEY),
    )
    proxy_port = free_port()
    prefix = tmp / "nginx-proxy"
    prefix.mkdir()
    proxy_conf = mock.write_proxy(prefix, proxy_port, mock_port)
    proxy = Target(
        name="nginx-proxy",
        port=proxy_port,
        paths=DIRECT_PATHS,
        bodies=direct.bodies,
        headers=direct.headers,
        cmd=mock.nginx_cmd(nginx, prefix, proxy_conf),
        env=base_env(),
        startup_timeout=10.0,
    )
    targets = [
        direct,
        proxy,
        faregate_target("faregate-1w", tmp, mock_port, 1, "basic"),
        faregate_target("faregate-2w", tmp, mock_port, 2, "basic"),
        faregate_target("faregate-embedded", tmp, mock_port, 1, "embedded"),
        *(matrix_target(name, tmp, mock_port, client, plain, stream) for name, client, plain, stream in MATRIX),
    ]
    if compare:
        targets.append(litellm_target(tmp, mock_port))
    return targets

"""The README's protocol matrix, cell by cell: every client format (the official openai SDK's
``chat.completions.create`` and ``responses.create``, the anthropic SDK's ``messages.create``) x
every provider kind (openai, openai with ``responses: true``, azure, anthropic, gemini, vertex
Gemini, vertex Claude, bedrock, mock), plain and streamed, through one real gateway process in front
of the fake upstreams (each speaking its provider's wire format). Each cell: a non-empty answer
(the fake's own text), the deployment's provider in ``x-faregate-provider``, the client's usage
equal to the tokens on the access line and priced from the config, the access line's
``translated`` as the matrix says (= or T), and on the diagonal the upstream got the client's
bytes, only ``model`` replaced. The deeper cases of each kind live in its own file (tests/test_azure.py,
tests/test_gemini.py, tests/test_vertex.py, tests/test_bedrock.py, tests/test_responses_*.py,
tests/translation/)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import orjson
import pytest

from tests.fakes import anthropic_wire, gemini_wire, openai_wire
from tests.fakes import bedrock_wire as bwire
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.azure_upstream import FakeAzure
from tests.fakes.bedrock_upstream import FakeBedrock
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.vertex_upstream import FakeVertex
from tests.support.configs import UPSTREAM_ENV
from tests.support.procs import MASTER_KEY, GatewayProcess

CLIENTS = ("chat", "responses", "messages")
# kind -> (provider, upstream model, the fake's answer); the public model is named after the kind
KINDS: dict[str, tuple[str, str, str]] = {
    "openai": ("oa", "gpt-4o-mini", openai_wire.DEFAULT_REPLY),
    "openai-responses": ("oar", "gpt-4.1-mini", openai_wire.DEFAULT_REPLY),
    "azure": ("az", "chat4o", openai_wire.DEFAULT_REPLY),
    "anthropic": ("an", "claude-sonnet-4-5", anthropic_wire.DEFAULT_REPLY),
    "gemini": ("gm", "gemini-2.5-flash", gemini_wire.DEFAULT_REPLY),
    "vertex-gemini": ("vx", "gemini-2.5-pro", "Hello from Gemini on the fake Vertex."),
    "vertex-claude": ("vx", "claude-sonnet-4-5@20250929", "Hello from Claude on the fake Vertex."),
    "bedrock": ("br", "us.anthropic.claude-sonnet-4-20250514-v1:0", bwire.Script().text),
    "mock": ("local", "mock-small", ""),  # the mock's answer depends on the request: checked non-empty
}
# The README's = cells: the upstream speaks the client's format and gets its bytes, only `model` replaced
DIAGONAL = {
    ("chat", "openai"),
    ("chat", "openai-responses"),
    ("chat", "azure"),
    ("responses", "openai-responses"),
    ("messages", "anthropic"),
}
# Cells answered without the neutral model although not a byte diagonal: the mock speaks Chat and
# Messages; Claude on Vertex gets the client's Messages body without `model` (in the URL) and with
# Vertex's `anthropic_version`
UNTRANSLATED = DIAGONAL | {("chat", "mock"), ("messages", "mock"), ("messages", "vertex-claude")}
PRICE = (2.0, 8.0)  # USD per million input / output tokens, for every upstream model below
ANTHROPIC_KEY = "sk-ant-CANARY-matrix-0a1b2c3d4e5f6071"
AZURE_KEY = "azure-CANARY-matrix-8f7e6d5c4b3a2910"
GEMINI_KEY = "AIza-CANARY-matrix-9e8d7c6b5a"
AZURE_VERSION = "2024-10-21"
PROMPT = "Say hello"


def config(oa: str, az: str, an: str, gm: str, vx: str, vx_key: Path, br: str) -> str:
    key = '    credentials: [{{id: main, key: "${{{0}}}"}}]\n    timeout: 20\n'
    aws = '    credentials: [{id: main, access_key_id: "${BR_KEY_ID}", secret_access_key: "${BR_SECRET}"}]\n    timeout: 20\n'
    providers = (
        f"  oa:\n    type: openai\n    base_url: {oa}\n" + key.format("UPSTREAM_KEY")
        + f"  oar:\n    type: openai\n    responses: true\n    base_url: {oa}\n" + key.format("UPSTREAM_KEY")
        + f'  az:\n    type: azure\n    base_url: {az}\n    api_version: "{AZURE_VERSION}"\n' + key.format("AZURE_KEY")
        + f"  an:\n    type: anthropic\n    base_url: {an}\n" + key.format("ANTHROPIC_KEY")
        + f"  gm:\n    type: gemini\n    base_url: {gm}\n" + key.format("GEMINI_KEY")
        + f"  vx:\n    type: vertex\n    base_url: {vx}\n    project: fake-project\n    location: us-east5\n"
        + f"    credentials: [{{id: sa, key_file: {vx_key}}}]\n    timeout: 20\n"
        + f"  br:\n    type: bedrock\n    region: {bwire.REGION}\n    base_url: {br}\n" + aws
        + "  local: {type: mock, chunk_delay: 0, stream_chunks: 4}\n"
    )  # fmt: skip
    models = "".join(f'  {kind}:\n    - {{provider: {p}, model: "{m}"}}\n' for kind, (p, m, _) in KINDS.items())
    prices = "".join(f'  "{m}": {{input: {PRICE[0]}, output: {PRICE[1]}}}\n' for _, m, _ in KINDS.values())
    return (
        "server:\n  master_key: ${FAREGATE_MASTER_KEY}\nproviders:\n" + providers + "models:\n" + models + "prices:\n" + prices
        + "routing:\n  retries: 0\n  cooldown: {failures: 1000, seconds: 1}\n"
    )  # fmt: skip


@dataclass
class Answer:
    """What a client got, in one shape whatever its format."""

    text: str
    input_tokens: int | None
    output_tokens: int | None
    headers: Any


@dataclass
class World:
    gateway: GatewayProcess
    openai_fake: FakeOpenAI
    azure: FakeAzure
    anthropic_fake: FakeAnthropic
    gemini: FakeGemini
    vertex: FakeVertex
    bedrock: FakeBedrock
    sent: list[bytes] = field(default_factory=list)  # the bodies the SDK clients wrote
    http: httpx2.Client = field(init=False)

    def __post_init__(self) -> None:
        def keep(request: httpx2.Request) -> None:
            self.sent.append(request.read())

        self.http = httpx2.Client(event_hooks={"request": [keep]}, timeout=60)

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.url + "/v1", api_key=MASTER_KEY, max_retries=0, http_client=self.http)

    def anthropic(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.gateway.url, api_key=MASTER_KEY, max_retries=0, http_client=self.http)

    def clear(self) -> None:
        for fake in (self.openai_fake, self.azure, self.anthropic_fake, self.gemini, self.bedrock):
            fake.clear()
        self.sent.clear()

    def access_line(self, request_id: str, timeout: float = 15.0) -> dict[str, Any]:
        """The access line of a request (written after its last byte: waited for, with a bound)."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.gateway.logs().splitlines():
                if f'"request_id":"{request_id}"' in line and '"logger":"faregate.access"' in line:
                    return dict(json.loads(line))
            assert time.monotonic() < deadline, f"no access line for {request_id}"
            time.sleep(0.02)

    def upstream_bodies(self, kind: str) -> list[bytes]:
        """The bodies the fake behind ``kind`` received (for the diagonal cells)."""
        fake: Any = {"openai": self.openai_fake, "openai-responses": self.openai_fake, "azure": self.azure}.get(kind, self.anthropic_fake)
        return [r.body for r in fake.requests]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("matrix")
    with (
        FakeOpenAI() as oa,
        FakeAzure({"chat4o": "gpt-4o-2024-08-06"}, keys=frozenset({AZURE_KEY})) as az,
        FakeAnthropic() as an,
        FakeGemini() as gm,
        FakeVertex() as vx,
        FakeBedrock() as br,
    ):
        vx_key = vx.key_file(tmp / "sa.json")
        env = {
            **UPSTREAM_ENV,
            "ANTHROPIC_KEY": ANTHROPIC_KEY,
            "AZURE_KEY": AZURE_KEY,
            "GEMINI_KEY": GEMINI_KEY,
            "BR_KEY_ID": bwire.ACCESS_KEY_ID,
            "BR_SECRET": bwire.SECRET_ACCESS_KEY,
        }
        text = config(oa.url, az.url, an.url, gm.url, vx.url, vx_key, br.url)
        with GatewayProcess(tmp, text, env=env) as gateway:
            started = World(gateway, oa, az, an, gm, vx, br)
            yield started
            started.http.close()


@pytest.fixture
def w(world: World) -> World:
    world.clear()
    return world


def ask(w: World, client: str, model: str, stream: bool) -> Answer:
    """One request of ``client``'s format through its official SDK; the answer as the SDK parsed it."""
    if client == "chat":
        messages: Any = [{"role": "user", "content": PROMPT}]
        chat = w.openai().chat.completions
        if not stream:
            raw = chat.with_raw_response.create(model=model, messages=messages)
            reply = raw.parse()
            used = reply.usage
            return Answer(reply.choices[0].message.content or "", used and used.prompt_tokens, used and used.completion_tokens, raw.headers)
        raw_stream = chat.with_raw_response.create(model=model, messages=messages, stream=True, stream_options={"include_usage": True})
        chunks = list(raw_stream.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        last = chunks[-1].usage
        return Answer(text, last and last.prompt_tokens, last and last.completion_tokens, raw_stream.headers)
    if client == "responses":
        responses = w.openai().responses
        if not stream:
            raw_reply = responses.with_raw_response.create(model=model, input=PROMPT)
            response = raw_reply.parse()
            usage = response.usage
            return Answer(response.output_text, usage and usage.input_tokens, usage and usage.output_tokens, raw_reply.headers)
        raw_events = responses.with_raw_response.create(model=model, input=PROMPT, stream=True)
        events = list(raw_events.parse())
        deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        done = events[-1]
        assert done.type == "response.completed", [e.type for e in events]
        assert done.response.output_text == deltas
        usage = done.response.usage
        return Answer(deltas, usage and usage.input_tokens, usage and usage.output_tokens, raw_events.headers)
    messages = [{"role": "user", "content": PROMPT}]
    api = w.anthropic().messages
    if not stream:
        raw_message = api.with_raw_response.create(model=model, max_tokens=64, messages=messages)
        message = raw_message.parse()
        text = "".join(b.text for b in message.content if b.type == "text")
        return Answer(text, message.usage.input_tokens, message.usage.output_tokens, raw_message.headers)
    raw_sse = api.with_raw_response.create(model=model, max_tokens=64, messages=messages, stream=True)
    sse = list(raw_sse.parse())
    text = "".join(e.delta.text for e in sse if e.type == "content_block_delta" and e.delta.type == "text_delta")
    assert sse[0].type == "message_start" and sse[-1].type == "message_stop"
    start = next(e for e in sse if e.type == "message_start")
    delta = [e for e in sse if e.type == "message_delta"][-1]
    # the input count is message_delta's (cumulative) when the upstream told it only at the end, as the SDK's accumulator reads it
    told = delta.usage.input_tokens if delta.usage.input_tokens is not None else start.message.usage.input_tokens
    return Answer(text, told, delta.usage.output_tokens, raw_sse.headers)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("client", CLIENTS)
def test_every_cell_answers_plain_and_streamed_priced_and_as_the_matrix_says(w: World, client: str, kind: str, stream: bool) -> None:
    provider, upstream_model, expected = KINDS[kind]
    answer = ask(w, client, kind, stream)
    assert (answer.text == expected) if expected else ("mock provider" in answer.text), answer.text
    assert answer.headers["x-faregate-provider"] == provider and answer.headers["x-faregate-model"] == upstream_model
    line = w.access_line(answer.headers["x-faregate-request-id"])
    assert line["status"] == 200 and line["stream"] is stream and line["error"] is None
    assert line["translated"] is ((client, kind) not in UNTRANSLATED), line
    assert answer.input_tokens and answer.output_tokens, answer
    assert (line["prompt_tokens"], line["completion_tokens"]) == (answer.input_tokens, answer.output_tokens)
    assert line["cost_usd"] == pytest.approx((answer.input_tokens * PRICE[0] + answer.output_tokens * PRICE[1]) / 1e6)
    if not stream:
        assert float(answer.headers["x-faregate-cost-usd"]) == pytest.approx(line["cost_usd"], abs=1e-8)
    if (client, kind) in DIAGONAL:
        [client_body] = w.sent
        [upstream_body] = w.upstream_bodies(kind)
        assert upstream_body == orjson.dumps({**orjson.loads(client_body), "model": upstream_model})  # as sent but for `model`
    if (client, kind) == ("messages", "vertex-claude"):
        [client_body] = w.sent
        sent = {k: v for k, v in orjson.loads(client_body).items() if k != "model"}
        assert w.vertex.requests[-1].json == {**sent, "anthropic_version": "vertex-2023-10-16"}


@pytest.mark.parametrize("client", CLIENTS)
def test_each_cell_reaches_the_upstream_on_the_providers_own_route(w: World, client: str) -> None:
    """Where each cell's (streamed) request went: the provider's own route, the client's only on the diagonal."""
    for kind in ("openai", "openai-responses", "azure", "anthropic", "gemini", "vertex-gemini", "vertex-claude", "bedrock"):
        ask(w, client, kind, stream=True)
    chat_paths = [r.path for r in w.openai_fake.requests]
    expected_chat = {"chat": ["/v1/chat/completions"] * 2, "responses": ["/v1/chat/completions", "/v1/responses"]}
    assert chat_paths == expected_chat.get(client, ["/v1/chat/completions"] * 2)
    assert [r.path for r in w.azure.requests] == [f"/openai/deployments/chat4o/chat/completions?api-version={AZURE_VERSION}"]
    assert [r.path for r in w.anthropic_fake.requests] == ["/v1/messages"]
    assert [(r.model, r.action) for r in w.gemini.requests] == [("gemini-2.5-flash", "streamGenerateContent")]
    vertex = [(r.publisher, r.model, r.method) for r in w.vertex.requests[-2:]]
    assert vertex == [
        ("google", "gemini-2.5-pro", "streamGenerateContent"),
        ("anthropic", "claude-sonnet-4-5@20250929", "streamRawPredict"),
    ]
    assert [(r.model, r.stream) for r in w.bedrock.requests] == [("us.anthropic.claude-sonnet-4-20250514-v1:0", True)]


# The "other routes" column: what each kind serves besides the conversation (= relayed, T translated,
# count_tokens estimated where the kind cannot count), everything else a 400 naming the deployment
ROUTES: dict[str, Any] = {
    "completions": lambda c, m: c.completions.with_raw_response.create(model=m, prompt="hi", max_tokens=5),
    "embeddings": lambda c, m: c.embeddings.with_raw_response.create(model=m, input="hi"),
    "moderations": lambda c, m: c.moderations.with_raw_response.create(model=m, input="hi"),
    "images_generations": lambda c, m: c.images.with_raw_response.generate(model=m, prompt="a cat"),
    "audio_transcriptions": lambda c, m: c.audio.transcriptions.with_raw_response.create(model=m, file=("a.wav", b"RIFF")),
    "audio_speech": lambda c, m: c.audio.speech.with_raw_response.create(model=m, voice="alloy", input="hi"),
}
MEDIA = {"moderations", "images_generations", "audio_transcriptions", "audio_speech"}
SERVED: dict[str, set[str]] = {
    "openai": set(ROUTES),
    "openai-responses": set(ROUTES),
    "azure": {"completions", "embeddings"},
    "anthropic": set(),
    "gemini": {"embeddings"},
    "vertex-gemini": set(),
    "vertex-claude": set(),
    "bedrock": set(),
    "mock": {"completions", "embeddings", "moderations"},
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_other_routes_of_each_kind(w: World, kind: str) -> None:
    provider, upstream_model, _ = KINDS[kind]
    for route, call in ROUTES.items():
        if route in SERVED[kind]:
            raw = call(w.openai(), kind)
            assert raw.http_response.status_code == 200 and raw.http_response.content, route
            assert raw.headers["x-faregate-provider"] == provider and raw.headers["x-faregate-model"] == upstream_model, route
            continue
        with pytest.raises(openai.BadRequestError) as caught:
            call(w.openai(), kind)
        error = caught.value
        assert error.code == "unsupported_endpoint" and error.param == "model", (route, error)
        assert f"{provider}/{upstream_model}: provider type " in error.message, error.message
        assert f"has no {route} endpoint" in error.message, error.message
    counted = w.anthropic().messages.with_raw_response.count_tokens(model=kind, messages=[{"role": "user", "content": PROMPT}])
    assert counted.parse().input_tokens > 0 and counted.headers["x-faregate-provider"] == provider
    assert ("x-faregate-estimated" in counted.headers) is (kind != "anthropic")  # only Anthropic counts them itself
    upstream = [r.path for r in w.anthropic_fake.requests]
    assert upstream == (["/v1/messages/count_tokens"] if kind == "anthropic" else [])

"""OpenAI's moderations, images, transcription and speech endpoints end to end: the official openai
SDK -> a real gateway process -> the fake OpenAI upstream on loopback (its wire format:
tests/fakes/openai_media_wire.py). The diagonal only: JSON bodies go up with the deployment's model,
a transcription's multipart form goes up byte for byte but for the model's value, speech comes back
as the upstream's audio bytes, streamed; a model whose deployments cannot serve a route gets a 400
naming the route; upstream errors are classified as for chat."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import httpx2
import openai
import pytest

from tests.fakes import openai_media_wire as media
from tests.fakes.openai_upstream import Behaviour, FakeOpenAI, Recorded, errors
from tests.support.procs import MASTER_KEY, GatewayProcess

CONFIG = """
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
  max_body_bytes: 65536
providers:
  oa:
    type: openai
    base_url: {url}
    credentials: [{{key: "${{UPSTREAM_KEY}}"}}]
    timeout: 10
  an:
    type: anthropic
    base_url: http://127.0.0.1:9
    credentials: [{{key: "${{UPSTREAM_KEY}}"}}]
  local: {{type: mock, chunk_delay: 0}}
models:
  omni-moderation-latest:
    - {{provider: oa, model: omni-moderation-latest}}
  moderation:
    - {{provider: oa, model: omni-moderation-2024-09-26}}
  mock-moderation:
    - {{provider: local, model: mock-small}}
  dall-e-3:
    - {{provider: oa, model: dall-e-3}}
  image:
    - {{provider: oa, model: gpt-image-1}}
  whisper-1:
    - {{provider: oa, model: whisper-1}}
  transcribe:
    - {{provider: oa, model: gpt-4o-transcribe}}
  tts:
    - {{provider: oa, model: gpt-4o-mini-tts}}
  # each its own deployment, for the upstream-error cases (a 429 rests the deployment it came from)
  image-errors:
    - {{provider: oa, model: gpt-image-1-errors}}
  transcribe-errors:
    - {{provider: oa, model: gpt-4o-transcribe-errors}}
  tts-errors:
    - {{provider: oa, model: gpt-4o-mini-tts-errors}}
  moderation-errors:
    - {{provider: oa, model: omni-moderation-errors}}
  claude-sonnet-4-6:
    - {{provider: an, model: claude-sonnet-4-6}}
prices:
  gpt-image-1: {{input: 5.0, output: 40.0}}
  gpt-4o-transcribe: {{input: 6.0, output: 10.0}}
routing:
  retries: 0
  cooldown: {{failures: 1000, seconds: 1}}
"""
UPSTREAM_KEY = "sk-upstream-extra-0001"
Call = Callable[[openai.OpenAI], object]
AUDIO = bytes(range(256)) * 80  # 20 KB "audio": every byte value, CR and LF and "--" included


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with GatewayProcess(tmp_path_factory.mktemp("gw"), CONFIG.format(url=upstream.url), env={"UPSTREAM_KEY": UPSTREAM_KEY}) as gw:
        yield gw


@pytest.fixture(autouse=True)
def fresh(upstream: FakeOpenAI) -> Iterator[None]:
    upstream.clear()
    yield
    upstream.clear()


def client(gw: GatewayProcess, key: str = MASTER_KEY, http: httpx2.Client | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, http_client=http)


def only(upstream: FakeOpenAI) -> Recorded:
    (request,) = upstream.requests
    return request


def test_models_retrieve_names_a_configured_model(gateway: GatewayProcess) -> None:
    model = client(gateway).models.retrieve("tts")
    assert (model.id, model.object) == ("tts", "model")
    with pytest.raises(openai.NotFoundError):
        client(gateway).models.retrieve("no-such-model")


def test_moderations_go_up_with_the_deployments_model_and_are_free(gateway: GatewayProcess, upstream: FakeOpenAI) -> None:
    raw = client(gateway).moderations.with_raw_response.create(model="moderation", input=["a kind word", "FLAGME now"])
    result = raw.parse()
    assert [r.flagged for r in result.results] == [False, True]
    assert result.results[1].categories.violence is True
    assert raw.headers["x-faregate-cost-usd"] == "0.00000000"  # moderations cost nothing
    sent = only(upstream)
    assert (sent.path, sent.json) == ("/v1/moderations", {"model": "omni-moderation-2024-09-26", "input": ["a kind word", "FLAGME now"]})
    assert sent.api_key == "sk-upstream-extra-0001"


def test_a_moderation_without_a_model_goes_to_openais_default_model(gateway: GatewayProcess, upstream: FakeOpenAI) -> None:
    result = client(gateway).moderations.create(input="hello")
    assert result.model == "omni-moderation-latest"
    assert only(upstream).json == {"model": "omni-moderation-latest", "input": "hello"}


def test_the_mock_provider_answers_moderations(gateway: GatewayProcess, upstream: FakeOpenAI) -> None:
    result = client(gateway).moderations.create(model="mock-moderation", input=["one", "two"])
    assert [r.flagged for r in result.results] == [False, False]
    assert upstream.requests == []


def test_images_are_relayed_and_priced_by_their_token_usage(gateway: GatewayProcess, upstream: FakeOpenAI) -> None:
    raw = client(gateway).images.with_raw_response.generate(model="image", prompt="a red fox in the snow", n=2)
    images = raw.parse()
    assert images.data is not None and len(images.data) == 2 and images.data[0].b64_json
    assert images.usage is not None and (images.usage.input_tokens, images.usage.output_tokens) == (6, 544)
    assert float(raw.headers["x-faregate-cost-usd"]) == pytest.approx((6 * 5.0 + 544 * 40.0) / 1e6)  # prices: in the config
    assert only(upstream).json == {"model": "gpt-image-1", "prompt": "a red fox in the snow", "n": 2}


def test_images_without_usage_have_an_unknown_cost_never_zero(gateway: GatewayProcess) -> None:
    raw = client(gateway).images.with_raw_response.generate(model="dall-e-3", prompt="a lighthouse")
    images = raw.parse()
    assert images.data is not None and images.data[0].url and images.data[0].revised_prompt == "a lighthouse"
    assert "x-faregate-cost-usd" not in raw.headers  # the table has no price per image: unknown, not $0


def test_a_transcription_form_goes_up_byte_for_byte_but_for_the_model(gateway: GatewayProcess, upstream: FakeOpenAI) -> None:
    sent: list[httpx2.Request] = []

    def keep(request: httpx2.Request) -> None:
        request.read()
        sent.append(request)

    with httpx2.Client(event_hooks={"request": [keep]}, timeout=30) as http:
        raw = client(gateway, http=http).audio.transcriptions.with_raw_response.create(
            model="transcribe", file=("clip.wav", AUDIO, "audio/wav"), language="en"
        )
    result = raw.parse()
    assert result.text == media.transcript_of(AUDIO)
    received = only(upstream)
    assert received.form is not None and received.form["file"] == AUDIO and received.form["language"] == b"en"
    assert received.headers["content-type"] == sent[0].headers["content-type"]  # the same boundary
    field = b'name="model"\r\n\r\n'
    assert received.body == sent[0].content.replace(field + b"transcribe\r\n", field + b"gpt-4o-transcribe\r\n")
    assert result.usage is not None and result.usage.type == "tokens"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (20, 5)
    assert float(raw.headers["x-faregate-cost-usd"]) == pytest.approx((20 * 6.0 + 5 * 10.0) / 1e6)  # usage in tokens


def test_a_text_transcription_and_one_billed_by_the_second(gateway: GatewayProcess) -> None:
    text = client(gateway).audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("a.mp3", b"ID3abc"), response_format="text"
    )
    assert text.headers["content-type"].startswith("text/plain")
    assert text.parse() == media.transcript_of(b"ID3abc") + "\n"
    raw = client(gateway).audio.transcriptions.with_raw_response.create(model="whisper-1", file=("a.mp3", b"ID3abc"))
    assert raw.parse().text == media.transcript_of(b"ID3abc")
    assert "x-faregate-cost-usd" not in raw.headers  # whisper-1 reports seconds: no price per second in the table


def test_speech_is_streamed_back_byte_for_byte(gateway: GatewayProcess, upstream: FakeOpenAI) -> None:
    with client(gateway).audio.speech.with_streaming_response.create(model="tts", voice="alloy", input="Hello there") as reply:
        assert reply.headers["content-type"] == "audio/mpeg"
        audio = b"".join(reply.iter_bytes())
    assert audio == media.speech_audio("Hello there")
    assert only(upstream).json == {"model": "gpt-4o-mini-tts", "voice": "alloy", "input": "Hello there"}


def test_speech_cut_by_the_upstream_reaches_the_client_as_cut(gateway: GatewayProcess, upstream: FakeOpenAI) -> None:
    upstream.enqueue(Behaviour(stream_drop_after=2))
    body = {"model": "tts", "voice": "alloy", "input": "Hello there"}
    with httpx.stream("POST", gateway.url + "/v1/audio/speech", json=body, headers={"authorization": f"Bearer {MASTER_KEY}"}) as reply:
        assert reply.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):  # never a complete-looking body
            reply.read()


@pytest.mark.parametrize(
    ("route", "call"),
    [
        ("POST /v1/audio/speech", lambda c: c.audio.speech.create(model="claude-sonnet-4-6", voice="alloy", input="hi")),
        ("POST /v1/audio/transcriptions", lambda c: c.audio.transcriptions.create(model="claude-sonnet-4-6", file=("a.wav", b"RIFF"))),
        ("POST /v1/images/generations", lambda c: c.images.generate(model="claude-sonnet-4-6", prompt="a cat")),
        ("POST /v1/moderations", lambda c: c.moderations.create(model="claude-sonnet-4-6", input="hi")),
        ("POST /v1/embeddings", lambda c: c.embeddings.create(model="claude-sonnet-4-6", input="hi")),
    ],
)
def test_a_model_whose_deployments_cannot_serve_the_route_gets_a_400_naming_it(gateway: GatewayProcess, route: str, call: Call) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        call(client(gateway))
    endpoint = {"POST /v1/audio/speech": "audio_speech", "POST /v1/audio/transcriptions": "audio_transcriptions"}
    error = caught.value
    assert error.code == "unsupported_endpoint" and error.param == "model"
    assert f"model 'claude-sonnet-4-6' cannot serve {route}" in error.message
    name = endpoint.get(route, route.rsplit("/", 1)[1].replace("generations", "images_generations"))
    assert f"an/claude-sonnet-4-6: provider type anthropic has no {name} endpoint" in error.message


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.moderations.create(model="moderation", input="hi"),
        lambda c: c.images.generate(model="image", prompt="a cat"),
        lambda c: c.audio.transcriptions.create(model="transcribe", file=("a.wav", b"RIFF")),
        lambda c: c.audio.speech.create(model="tts", voice="alloy", input="hi"),
    ],
)
def test_a_bad_key_is_a_401_on_every_route(gateway: GatewayProcess, upstream: FakeOpenAI, call: Call) -> None:
    with pytest.raises(openai.AuthenticationError):
        call(client(gateway, key="sk-not-a-faregate-key"))
    assert upstream.requests == []


CALLS: dict[str, Call] = {
    "images": lambda c: c.images.generate(model="image-errors", prompt="a cat"),
    "transcriptions": lambda c: c.audio.transcriptions.create(model="transcribe-errors", file=("a.wav", b"RIFF")),
    "speech": lambda c: c.audio.speech.create(model="tts-errors", voice="alloy", input="hi"),
    "moderations": lambda c: c.moderations.create(model="moderation-errors", input="hi"),
}


@pytest.mark.parametrize("route", sorted(CALLS))
def test_upstream_errors_are_classified_as_for_chat(gateway: GatewayProcess, upstream: FakeOpenAI, route: str) -> None:
    call = CALLS[route]
    upstream.enqueue(errors.bad_request("Invalid value for 'size'.", param="size"))
    with pytest.raises(openai.BadRequestError) as rejected:  # the request's fault: passed through, naming the deployment
        call(client(gateway))
    assert "Invalid value for 'size'." in rejected.value.message and "upstream oa/" in rejected.value.message
    upstream.enqueue(errors.server_error())
    with pytest.raises(openai.InternalServerError) as failed:  # the provider's outage: no deployment answered
        call(client(gateway))
    assert failed.value.status_code == 503 and failed.value.code == "no_deployment_available"
    upstream.enqueue(errors.rate_limited(retry_after=7))
    with pytest.raises(openai.RateLimitError) as limited:  # the provider's limit (last: the deployment rests 7 s)
        call(client(gateway))
    assert limited.value.code == "upstream_rate_limited"


def test_missing_form_fields_and_wrong_bodies_are_clear_400s(gateway: GatewayProcess) -> None:
    auth = {"authorization": f"Bearer {MASTER_KEY}"}
    url = gateway.url + "/v1/audio/transcriptions"
    no_file = httpx.post(url, headers=auth, data={"model": "transcribe"}, files={"other": ("x", b"1")})
    assert no_file.status_code == 400 and no_file.json()["error"]["param"] == "file"
    twice = httpx.post(url, headers=auth, data={"model": ["transcribe", "whisper-1"]}, files={"file": ("a.wav", b"RIFF")})
    assert twice.status_code == 400 and "more than one 'model'" in twice.json()["error"]["message"]
    as_json = httpx.post(url, headers=auth, json={"model": "transcribe"})
    assert as_json.status_code == 400 and as_json.json()["error"]["code"] == "invalid_content_type"
    speech = httpx.post(gateway.url + "/v1/audio/speech", headers=auth, json={"model": "tts", "voice": "alloy"})
    assert speech.status_code == 400 and speech.json()["error"]["param"] == "input"


def test_a_body_over_max_body_bytes_is_a_413(gateway: GatewayProcess, upstream: FakeOpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client(gateway).audio.transcriptions.create(model="transcribe", file=("long.wav", b"\0" * 70_000))
    assert caught.value.status_code == 413 and caught.value.code == "request_too_large"
    assert upstream.requests == []


def test_a_key_with_a_budget_may_moderate_with_an_unpriced_model(gateway: GatewayProcess, upstream: FakeOpenAI) -> None:
    created = httpx.post(
        gateway.url + "/admin/keys", headers={"authorization": f"Bearer {MASTER_KEY}"}, json={"name": "m", "budget_usd": 1}
    )
    key = created.json()["key"]
    raw = client(gateway, key=key).moderations.with_raw_response.create(model="moderation", input="hi")
    assert raw.headers["x-faregate-cost-usd"] == "0.00000000"  # free: nothing to reserve, so no price needed
    with pytest.raises(openai.PermissionDeniedError) as caught:  # an image costs money: a budget needs a priced model
        client(gateway, key=key).images.generate(model="dall-e-3", prompt="a cat")
    assert caught.value.code == "model_unpriced"

"""The fake Bedrock checked against the official SDK: boto3's bedrock-runtime client signs with
SigV4 (the fake verifies it with botocore), reads Converse replies, parses the fake's binary
event-stream frames with botocore's parser, and raises Bedrock's exceptions by name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import ClientError, EventStreamError

from tests.fakes import bedrock_wire as wire
from tests.fakes.bedrock_upstream import FakeBedrock, Script

MODEL = "us.anthropic.claude-sonnet-4-20250514-v1:0"  # a cross-region inference profile id


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeBedrock]:
    with FakeBedrock() as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(fake: FakeBedrock) -> None:
    fake.clear()


def client(fake: FakeBedrock, secret: str = wire.SECRET_ACCESS_KEY, key_id: str = wire.ACCESS_KEY_ID, token: str | None = None) -> Any:
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=fake.url,
        region_name=wire.REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


MESSAGES = [{"role": "user", "content": [{"text": "hi"}]}]


def test_converse_is_signed_verified_and_read_by_boto3(fake: FakeBedrock) -> None:
    fake.enqueue(Script(usage={"inputTokens": 3, "outputTokens": 4, "cacheReadInputTokens": 100, "cacheWriteInputTokens": 20}))
    reply = client(fake).converse(modelId=MODEL, messages=MESSAGES, inferenceConfig={"maxTokens": 10})
    assert reply["output"]["message"]["content"] == [{"text": "Hello from Bedrock."}]
    assert reply["stopReason"] == "end_turn"
    assert reply["usage"]["cacheReadInputTokens"] == 100 and reply["usage"]["totalTokens"] == 127
    (rec,) = fake.requests
    assert rec.model == MODEL and not rec.stream and rec.access_key_id == wire.ACCESS_KEY_ID
    assert "%3A" in rec.path  # the SDK percent-encodes the model id in the path, as faregate does


def test_session_token_is_signed(fake: FakeBedrock) -> None:
    client(fake, token=wire.SESSION_TOKEN).converse(modelId=MODEL, messages=MESSAGES)
    assert fake.requests[0].session_token == wire.SESSION_TOKEN


def test_wrong_secret_is_an_invalid_signature_and_unknown_key_unrecognised(fake: FakeBedrock) -> None:
    with pytest.raises(ClientError) as bad:
        client(fake, secret="not-the-secret").converse(modelId=MODEL, messages=MESSAGES)
    assert bad.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert bad.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as unknown:
        client(fake, key_id="AKIAUNKNOWN000000000").converse(modelId=MODEL, messages=MESSAGES)
    assert unknown.value.response["Error"]["Code"] == "UnrecognizedClientException"


@pytest.mark.parametrize(
    "name", ["ThrottlingException", "ValidationException", "AccessDeniedException", "ServiceUnavailableException", "ModelNotReadyException"]
)
def test_errors_are_raised_by_name(fake: FakeBedrock, name: str) -> None:
    fake.enqueue(Script(error=(name, f"a {name}")))
    with pytest.raises(ClientError) as raised:
        client(fake).converse(modelId=MODEL, messages=MESSAGES)
    assert raised.value.response["Error"]["Code"] == name
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == wire.STATUS[name]


def test_unknown_model_is_bedrocks_validation_message(fake: FakeBedrock) -> None:
    fake.known_models = frozenset({"anthropic.claude-3-haiku-20240307-v1:0"})
    with pytest.raises(ClientError) as raised:
        client(fake).converse(modelId=MODEL, messages=MESSAGES)
    assert raised.value.response["Error"] == {"Code": "ValidationException", "Message": wire.INVALID_MODEL}


def test_converse_stream_frames_parse_with_boto3(fake: FakeBedrock) -> None:
    fake.enqueue(Script(text="Hi there", tool_calls=[("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})]))
    reply = client(fake).converse_stream(modelId=MODEL, messages=MESSAGES)
    events = list(reply["stream"])
    names = [next(iter(e)) for e in events]
    assert names[0] == "messageStart" and names[-2:] == ["messageStop", "metadata"]
    text = "".join(e["contentBlockDelta"]["delta"].get("text", "") for e in events if "contentBlockDelta" in e)
    assert text == "Hi there"
    starts = [e["contentBlockStart"]["start"]["toolUse"]["name"] for e in events if "contentBlockStart" in e]
    assert starts == ["get_weather", "get_time"]
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 5
    assert fake.requests[0].stream


def test_stream_exception_frame_is_raised_by_boto3(fake: FakeBedrock) -> None:
    fake.enqueue(Script(stream_exception=("ModelStreamErrorException", "the model broke")))
    reply = client(fake).converse_stream(modelId=MODEL, messages=MESSAGES)
    with pytest.raises(EventStreamError) as raised:
        list(reply["stream"])
    assert raised.value.response["Error"] == {"Code": "modelStreamErrorException", "Message": "the model broke"}


def test_frames_parse_with_botocores_buffer() -> None:
    data = b"".join(wire.stream_frames(Script(text="ab")))
    buffer = EventStreamBuffer()
    for i in range(0, len(data), 7):  # any split of the bytes
        buffer.add_data(data[i : i + 7])
    messages = list(buffer)
    assert messages[0].headers[":event-type"] == "messageStart"
    assert len(messages) == len(wire.stream_frames(Script(text="ab")))

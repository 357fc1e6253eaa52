"""The bedrock_converse codec: requests from both client formats are valid Converse requests by
botocore's own service model (its ParamValidator, the check boto3 runs before sending), cache marks
become cachePoint blocks, what Converse cannot carry is named, and replies (whole and streamed,
from real event-stream frames through the transport's framing) read into the same neutral reply."""

from __future__ import annotations

import base64
import copy
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

from faregate.formats import anthropic, bedrock_converse, neutral, openai_chat
from faregate.formats.bedrock_converse_reply import StreamDecoder, decode_reply
from faregate.providers import bedrock
from faregate.translate import StreamTranslator
from tests.fakes import bedrock_wire as wire

_MODEL = botocore.session.get_session().get_service_model("bedrock-runtime")
PNG = base64.b64encode(b"\x89PNG fake image").decode()


def valid(payload: dict[str, Any], operation: str = "Converse") -> None:
    """As boto3 checks its parameters: blobs are bytes there (base64 text on the JSON wire)."""
    params = copy.deepcopy({k: v for k, v in payload.items() if k != "stream"})
    for message in params["messages"]:
        for block in message["content"]:
            image = block.get("image") or {}
            if "source" in image:
                image["source"]["bytes"] = base64.b64decode(image["source"]["bytes"])
            for inner in (block.get("toolResult") or {}).get("content", ()):
                if "image" in inner:
                    inner["image"]["source"]["bytes"] = base64.b64decode(inner["image"]["source"]["bytes"])
    report = ParamValidator().validate({"modelId": "m", **params}, _MODEL.operation_model(operation).input_shape)
    assert not report.has_errors(), report.generate_report()


ANTHROPIC_BODY: dict[str, Any] = {
    "model": "claude",
    "max_tokens": 300,
    "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
    "tools": [
        {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}
    ],
    "tool_choice": {"type": "tool", "name": "get_weather"},
    "stop_sequences": ["END"],
    "temperature": 0.2,
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Let me check.", "signature": "sig-1"},
                {"type": "tool_use", "id": "tu_1", "name": "get_weather", "input": {"city": "Oslo"}},
                {"type": "tool_use", "id": "tu_2", "name": "get_weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Here:", "cache_control": {"type": "ephemeral"}},
                {"type": "tool_result", "tool_use_id": "tu_1", "content": "12C"},
                {"type": "tool_result", "tool_use_id": "tu_2", "content": [{"type": "text", "text": "20C"}], "is_error": True},
            ],
        },
    ],
    "thinking": {"type": "enabled", "budget_tokens": 1024},
}


def test_an_anthropic_request_is_a_valid_converse_request_with_cache_points() -> None:
    payload, dropped = bedrock_converse.encode_request(anthropic.decode_request(ANTHROPIC_BODY), "m")
    assert dropped == ()
    valid(payload)
    assert payload["system"] == [{"text": "Be brief."}, {"cachePoint": {"type": "default", "ttl": "1h"}}]
    assert payload["toolConfig"]["tools"][1] == {"cachePoint": {"type": "default"}}
    assert payload["toolConfig"]["toolChoice"] == {"tool": {"name": "get_weather"}}
    assert payload["inferenceConfig"] == {"maxTokens": 1324, "temperature": 0.2, "stopSequences": ["END"]}  # budget added
    assert payload["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    user, assistant, results = payload["messages"]
    assert user["content"][1] == {"image": {"format": "png", "source": {"bytes": PNG}}}
    assert assistant["content"][0] == {"reasoningContent": {"reasoningText": {"text": "Let me check.", "signature": "sig-1"}}}
    assert [b["toolUse"]["input"] for b in assistant["content"][1:]] == [{"city": "Oslo"}, {"city": "Rome"}]
    # tool results first; the cache point stays right after the text it marks
    assert results["content"] == [
        {"toolResult": {"toolUseId": "tu_1", "content": [{"text": "12C"}]}},
        {"toolResult": {"toolUseId": "tu_2", "content": [{"text": "20C"}], "status": "error"}},
        {"text": "Here:"},
        {"cachePoint": {"type": "default"}},
    ]


def test_an_openai_request_with_json_schema_is_structured_output() -> None:
    body = {
        "model": "x",
        "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}},
        "user": "u-1",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    payload, dropped = bedrock_converse.encode_request(openai_chat.decode_request(body), "m")
    assert dropped == () and payload["stream"] is True  # for the transport: it chooses /converse-stream
    valid(payload, "ConverseStream")
    assert payload["outputConfig"]["textFormat"]["structure"]["jsonSchema"] == {"schema": '{"type":"object"}', "name": "a"}
    assert payload["requestMetadata"] == {"user": "u-1"} and payload["system"] == [{"text": "S"}]


@pytest.mark.parametrize(
    ("extra", "name"),
    [
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"tool_choice": "none", "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tool_choice"),
        (
            {"parallel_tool_calls": False, "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
            "parallel_tool_calls",
        ),
        ({"top_k": 5}, "top_k"),
        ({"seed": 7}, "seed"),
    ],
)
def test_what_converse_cannot_carry_is_named(extra: dict[str, Any], name: str) -> None:
    body = {"model": "x", "messages": [{"role": "user", "content": "Q"}], **extra}
    _, dropped = bedrock_converse.encode_request(openai_chat.decode_request(body), "m")
    assert name in dropped


def test_a_url_image_is_named_and_a_data_url_is_carried() -> None:
    def image(url: str) -> Any:
        return {"model": "x", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}

    _, dropped = bedrock_converse.encode_request(openai_chat.decode_request(image("https://example.com/a.png")), "m")
    assert dropped == ("image_url",)
    payload, dropped = bedrock_converse.encode_request(openai_chat.decode_request(image(f"data:image/jpeg;base64,{PNG}")), "m")
    assert dropped == () and payload["messages"][0]["content"] == [{"image": {"format": "jpeg", "source": {"bytes": PNG}}}]


def test_a_whole_reply_with_cache_usage_split_by_ttl() -> None:
    data = wire.converse_reply(wire.Script(tool_calls=[("f", {"a": 1})]))
    data["output"]["message"]["content"].insert(0, {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "s"}}})
    data["usage"] = {"inputTokens": 5, "outputTokens": 7, "cacheReadInputTokens": 100, "cacheWriteInputTokens": 30}
    data["usage"]["cacheDetails"] = [{"ttl": "1h", "inputTokens": 10}, {"ttl": "5m", "inputTokens": 20}]
    reply = decode_reply(data)
    assert [b.kind for b in reply.blocks] == ["thinking", "text", "tool_call"]
    assert reply.blocks[0].signature == "s" and reply.blocks[2].text == '{"a":1}' and reply.blocks[2].name == "f"
    assert reply.finish == neutral.Finish("tool_calls")
    assert reply.usage == neutral.Usage(input=5, cache_read=100, cache_write_5m=20, cache_write_1h=10, output=7)
    usage = bedrock.usage_of(data)
    assert usage is not None and (usage.prompt_tokens, usage.cached_tokens, usage.cache_write_1h, usage.cache_write_5m) == (
        135,
        100,
        10,
        20,
    )


def _frames_through_framing(script: wire.Script, step: int) -> list[dict[str, Any]]:
    import orjson

    data = b"".join(wire.stream_frames(script))
    framing = bedrock.Framing(1 << 20)
    events = [e for i in range(0, len(data), step) for e in framing.feed(data[i : i + step])]
    return [orjson.loads(e[len(b"data: ") :]) for e in events]


@pytest.mark.parametrize("step", [1, 13, 4096])
def test_a_stream_reads_into_the_same_reply_as_the_whole_one(step: int) -> None:
    script = wire.Script(text="Hi there", tool_calls=[("f", {"a": 1}), ("g", {"b": [2]})])
    decoder = StreamDecoder()
    events = [e for data in _frames_through_framing(script, step) for e in decoder.feed(data)]
    assert decoder.done
    streamed, whole = neutral.collect(events), decode_reply(wire.converse_reply(script))
    assert streamed.blocks == whole.blocks and streamed.finish == whole.finish and streamed.usage == whole.usage


def test_an_exception_frame_is_the_error_it_names() -> None:
    frames = _frames_through_framing(wire.Script(stream_exception=("ThrottlingException", "slow down")), 5)
    assert frames[-1] == {":exception-type": "ThrottlingException", "message": "slow down"}
    assert StreamDecoder().feed(frames[-1]) == [neutral.Error("rate_limit", "slow down", "ThrottlingException")]


def test_a_translated_stream_for_an_openai_client() -> None:
    data = b"".join(wire.stream_frames(wire.Script(text="Hello")))
    framing = bedrock.Framing(1 << 20)
    encoder = openai_chat.StreamEncoder("m", "id-1", include_usage=True)
    out = StreamTranslator(bedrock_converse, encoder, bedrock.StreamEvents.end).feed(framing.feed(data))
    assert b'"content":"He"' in out and b'"content":"llo"' in out and b'"total_tokens":17' in out and out.endswith(b"data: [DONE]\n\n")


def test_user_and_metadata_go_to_request_metadata_when_bedrock_can_hold_them() -> None:
    body = {"model": "x", "messages": [{"role": "user", "content": "Q"}], "user": "team-7@example.com", "metadata": {"run": "r1"}}
    payload, dropped = bedrock_converse.encode_request(openai_chat.decode_request(body), "m")
    assert dropped == () and payload["requestMetadata"] == {"run": "r1", "user": "team-7@example.com"}
    valid(payload)
    _, dropped = bedrock_converse.encode_request(openai_chat.decode_request({**body, "user": "<script>"}), "m")
    assert dropped == ("user",)

"""The Gemini codec (formats/gemini*.py), pure: JSON Schema converted to Gemini's subset, neutral
requests encoded as generateContent bodies (and what cannot be carried listed), replies and stream
chunks decoded (usage incl. cached and thinking tokens, finish reasons, safety categories, thought
signatures kept on their parts), and the transport's reading of Google's errors and listings."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from faregate.errors import (
    CredentialRejected,
    InvalidRequest,
    UpstreamModelMissing,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
)
from faregate.formats import gemini, neutral
from faregate.formats.gemini_reply import GENERATED, SIGNATURE_PREFIX, StreamDecoder, call_id, decode_reply, split_call_id
from faregate.formats.gemini_schema import MAX_DEPTH, to_gemini
from faregate.generation import Deployment, Provider
from faregate.providers import gemini as transport
from tests.fakes.gemini_wire import check_generate, errors


def test_schema_keywords_gemini_refuses_are_converted_or_left_out() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "kind": {"const": "point"},
            "size": {"type": "integer", "enum": [1, 2, 3], "exclusiveMinimum": 0},
            "when": {"type": "string", "format": "date-time"},
            "email": {"type": "string", "format": "email", "minLength": 3},
            "tags": {"type": ["array", "null"], "items": {"oneOf": [{"type": "string"}, {"type": "number"}]}, "maxItems": 4},
            "opts": {"type": "object"},
        },
        "required": ["kind", "missing"],
    }
    assert to_gemini(schema) == {
        "type": "OBJECT",
        "properties": {
            "kind": {"type": "STRING", "enum": ["point"], "format": "enum"},
            "size": {"type": "INTEGER", "description": "one of: 1, 2, 3"},
            "when": {"type": "STRING", "format": "date-time"},
            "email": {"type": "STRING", "minLength": 3},
            "tags": {"type": "ARRAY", "nullable": True, "maxItems": 4, "items": {"anyOf": [{"type": "STRING"}, {"type": "NUMBER"}]}},
            "opts": {"type": "OBJECT"},
        },
        "required": ["kind"],
    }
    body = {"contents": [{"role": "user", "parts": [{"text": "x"}]}], "generationConfig": {"responseSchema": to_gemini(schema)}}
    assert check_generate(body) is None  # what the API would accept


def test_refs_are_inlined_all_of_merged_and_recursion_bounded() -> None:
    schema = {
        "$defs": {"node": {"type": "object", "properties": {"name": {"type": "string"}, "child": {"$ref": "#/$defs/node"}}}},
        "allOf": [{"$ref": "#/$defs/node"}, {"properties": {"extra": {"type": "boolean"}}, "required": ["extra"]}],
    }
    out = to_gemini(schema)
    assert out["type"] == "OBJECT" and set(out["properties"]) == {"name", "child", "extra"} and out["required"] == ["extra"]
    depth, node = 0, out
    while "child" in node.get("properties", {}):
        node, depth = node["properties"]["child"], depth + 1
    assert depth <= MAX_DEPTH + 1 and node == {"type": "OBJECT"}
    assert to_gemini({"anyOf": [{"type": "string"}, {"type": "null"}]}) == {"type": "STRING", "nullable": True}


def request(*messages: neutral.Message, **fields: Any) -> neutral.Request:
    return neutral.Request(model="m", messages=messages, **fields)


USER = neutral.Message("user", (neutral.Text("hi"),))


def test_a_conversation_with_tools_and_their_results() -> None:
    sig = "c2lnbmF0dXJlKy8="
    calls = (
        neutral.ToolCall(call_id("fc-1", sig), "get_weather", '{"city": "Paris"}'),
        neutral.ToolCall(call_id(None, None), "get_time", ""),
    )
    results = (
        neutral.ToolResult(calls[1].id, (neutral.Text("14:00"),)),
        neutral.ToolResult(calls[0].id, (neutral.Text("no such city"),), is_error=True),
    )
    tools = (
        neutral.Tool("get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}}}),
        neutral.Tool("get_time", None, {"type": "object"}),
    )
    body, dropped = gemini.encode_request(
        request(
            USER,
            neutral.Message("assistant", calls),
            neutral.Message("user", results),
            system=(neutral.Text("Be brief."),),
            tools=tools,
            tool_choice=neutral.ToolChoice("tool", "get_weather"),
            stream=True,
        ),
        "gemini-x",
    )
    assert dropped == ()
    assert body["contents"][1] == {
        "role": "model",
        "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "fc-1"}, "thoughtSignature": sig},
            {"functionCall": {"name": "get_time", "args": {}}},
        ],
    }
    assert body["contents"][2]["parts"] == [
        {"functionResponse": {"name": "get_time", "response": {"output": "14:00"}}},
        {"functionResponse": {"name": "get_weather", "response": {"error": "no such city"}, "id": "fc-1"}},
    ]
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather",
                    "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}},
                },
                {"name": "get_time"},
            ]
        }
    ]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]} and body["stream"] is True and "model" not in body
    sent = transport.build("chat", _deployment(), None, body)
    assert sent.url.endswith("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse") and b'"stream"' not in sent.body
    assert check_generate(orjson.loads(sent.body)) is None


def test_what_gemini_cannot_carry_is_listed_and_bad_history_refused() -> None:
    foreign = neutral.Message("assistant", (neutral.Thinking("hmm", signature="anthropic-sig"), neutral.Text("ok")))
    body, dropped = gemini.encode_request(
        request(
            USER,
            foreign,
            user="u1",
            tool_choice=neutral.ToolChoice("auto", parallel=False),
            extra={"seed": 7, "logit_bias": {"1": 2}, "n": 1},
        ),
        "m",
    )
    assert dropped == ("logit_bias", "parallel_tool_calls", "thinking")  # not user: a tracking id changes no reply
    assert body["generationConfig"] == {"seed": 7} and body["contents"][1] == {"role": "model", "parts": [{"text": "ok"}]}
    with pytest.raises(InvalidRequest, match="answers no tool call"):
        gemini.encode_request(request(neutral.Message("user", (neutral.ToolResult("call_x", ()),))), "m")
    with pytest.raises(InvalidRequest, match="not a JSON object"):
        gemini.encode_request(request(USER, neutral.Message("assistant", (neutral.ToolCall("c", "f", "[1]"),))), "m")


def test_images_reasoning_and_json_output() -> None:
    images = (
        neutral.Image(media_type="image/png", data="AAAA"),
        neutral.Image(url="data:image/jpeg;base64,BBBB"),
        neutral.Image(url="https://x.test/cat.webp", detail="high"),
    )
    body, dropped = gemini.encode_request(
        request(
            neutral.Message("user", images),
            reasoning=neutral.Reasoning(effort="low"),
            response_format=neutral.ResponseFormat("json_object"),
            max_tokens=9,
        ),
        "m",
    )
    assert body["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
        {"inlineData": {"mimeType": "image/jpeg", "data": "BBBB"}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://x.test/cat.webp"}},
    ]
    assert dropped == ("image.detail",)
    assert body["generationConfig"] == {
        "maxOutputTokens": 9,
        "responseMimeType": "application/json",
        "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": True},
    }


def test_thought_signatures_go_back_on_the_parts_that_carried_them() -> None:
    reply = {
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "Plan.", "thought": True, "thoughtSignature": "dGhvdWdodA=="},
            {"text": "Answer", "thoughtSignature": "dGV4dA=="},
            {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "Y2FsbA=="},
        ]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 3},
    }  # fmt: skip
    decoded = decode_reply(reply)
    assert [b.kind for b in decoded.blocks] == ["thinking", "text", "thinking", "tool_call"]
    assert decoded.blocks[2].signature == SIGNATURE_PREFIX + "dGV4dA==" and decoded.finish == neutral.Finish("tool_calls")
    assert decoded.usage == neutral.Usage(input=10, cache_read=0, output=8, reasoning=3)
    parts: list[neutral.Part] = []
    for block in decoded.blocks:
        if block.kind == "thinking":
            parts.append(neutral.Thinking(block.text, block.signature))
        elif block.kind == "text":
            parts.append(neutral.Text(block.text))
        else:
            parts.append(neutral.ToolCall(block.id or "", block.name or "", block.text))
    body, dropped = gemini.encode_request(request(USER, neutral.Message("assistant", tuple(parts))), "m")
    assert body["contents"][1]["parts"] == reply["candidates"][0]["content"]["parts"] and dropped == ()  # type: ignore[index]


def test_call_ids_carry_signatures_and_made_ids_are_never_sent() -> None:
    sig = "ab+/cd=="
    assert split_call_id(call_id("fc-9", sig)) == ("fc-9", sig)
    made = call_id(None, sig)
    assert made.startswith(GENERATED) and split_call_id(made) == (None, sig)
    assert set(made) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")  # a valid Anthropic tool_use id too
    assert split_call_id("toolu_01A") == ("toolu_01A", None)


@pytest.mark.parametrize(
    ("reason", "ratings", "finish"),
    [
        ("MAX_TOKENS", None, neutral.Finish("length")),
        (
            "SAFETY",
            [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "HIGH", "blocked": True}],
            neutral.Finish("content_filter", detail="SAFETY: HARM_CATEGORY_HARASSMENT"),
        ),
        ("RECITATION", None, neutral.Finish("content_filter", detail="RECITATION")),
        ("PROHIBITED_CONTENT", None, neutral.Finish("content_filter", detail="PROHIBITED_CONTENT")),
        ("SPII", None, neutral.Finish("content_filter", detail="SPII")),
        ("BLOCKLIST", None, neutral.Finish("content_filter", detail="BLOCKLIST")),
        ("MALFORMED_FUNCTION_CALL", None, neutral.Finish("error", detail="MALFORMED_FUNCTION_CALL")),
    ],
)
def test_finish_reasons(reason: str, ratings: Any, finish: neutral.Finish) -> None:
    candidate: dict[str, Any] = {"content": {"parts": []}, "finishReason": reason}
    if ratings:
        candidate["safetyRatings"] = ratings
    assert decode_reply({"candidates": [candidate]}).finish == finish


def test_a_blocked_prompt_and_cached_usage() -> None:
    data = {
        "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "blocked": True}]},
        "usageMetadata": {"promptTokenCount": 50, "cachedContentTokenCount": 40},
    }
    reply = decode_reply(data)
    assert reply.finish == neutral.Finish("content_filter", detail="prompt SAFETY: HARM_CATEGORY_HATE_SPEECH") and reply.blocks == []
    assert reply.usage == neutral.Usage(input=10, cache_read=40, output=0)
    assert transport.usage_of(data) is not None and transport.usage_of(data).cached_tokens == 40  # type: ignore[union-attr]


def test_stream_chunks_make_blocks_and_the_finish_chunk_ends_it() -> None:
    decoder = StreamDecoder()

    def chunk(parts: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
        return {"candidates": [{"content": {"role": "model", "parts": parts}, **more}], "responseId": "r1", "modelVersion": "gemini-x"}

    events = decoder.feed(chunk([{"text": "Thinking", "thought": True}]))
    events += decoder.feed(chunk([{"text": "Hel"}]))
    events += decoder.feed(chunk([{"text": "lo"}]))
    assert not decoder.done
    events += decoder.feed(
        {
            **chunk([{"text": "", "thoughtSignature": "c2ln"}], finishReason="STOP"),
            "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2},
        }
    )
    assert decoder.done
    assert events == [
        neutral.Start("r1", "gemini-x"),
        neutral.ThinkingDelta(0, "Thinking"),
        neutral.BlockStop(0),
        neutral.TextDelta(1, "Hel"),
        neutral.TextDelta(1, "lo"),
        neutral.BlockStop(1),
        neutral.ThinkingDelta(2, "", SIGNATURE_PREFIX + "c2ln"),
        neutral.BlockStop(2),
        neutral.Usage(input=4, cache_read=0, output=2),
        neutral.Finish("stop"),
    ]
    failed = StreamDecoder().feed({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})
    assert failed[-1] == neutral.Error("overloaded", "The model is overloaded.", "UNAVAILABLE")


def _classify(behaviour: Any) -> Any:
    return transport.classify_error(behaviour.status, {}, orjson.dumps({"error": behaviour.error}), b"application/json", 0.0)


def test_google_errors_are_classified() -> None:
    assert isinstance(_classify(errors.invalid_key()), CredentialRejected)
    assert isinstance(_classify(errors.permission_denied()), CredentialRejected)
    limited = _classify(errors.rate_limited("37s"))
    assert isinstance(limited, UpstreamRateLimited) and limited.retry_after == 37.0
    assert isinstance(_classify(errors.model_not_found("gemini-nope")), UpstreamModelMissing)
    assert isinstance(_classify(errors.internal()), UpstreamServerError) and isinstance(
        _classify(errors.unavailable()), UpstreamServerError
    )
    rejected = _classify(errors.bad_request("Invalid value at 'contents'"))
    assert isinstance(rejected, UpstreamRejected) and not isinstance(_classify(errors.not_found()), UpstreamModelMissing)
    assert orjson.loads(rejected.body)["error"]["message"] == "Invalid value at 'contents'"


def test_listing_pages_and_the_key_header() -> None:
    dep = _deployment()
    first = transport.models_request(dep, None)
    assert first.method == "GET" and first.url.endswith("/v1beta/models?pageSize=1000")
    assert transport.models_request(dep, None, "tok/1").url.endswith("&pageToken=tok%2F1")
    page = orjson.dumps({"models": [{"name": "models/gemini-2.5-flash"}, {"name": "models/gemini-2.5-pro"}], "nextPageToken": "n2"})
    assert transport.listed_models(page) == (["gemini-2.5-flash", "gemini-2.5-pro"], "n2")
    assert transport.listed_models(b'{"models": []}') == ([], None) and transport.listed_models(b"<html>") is None


def _deployment() -> Deployment:
    provider = Provider("g", "gemini", "https://generativelanguage.googleapis.com", (), 60, 5, (), "round_robin", 1, 0.0)
    return Deployment("g/gemini-2.5-flash", "m", provider, "gemini-2.5-flash", 1, 0, None)


def test_the_gemini_transport_is_registered_for_conversations_and_embeddings() -> None:
    from faregate.probe import LISTINGS
    from faregate.providers import SUPPORTED, TRANSPORTS, endpoint_for
    from faregate.translate import PROVIDER_CODECS

    assert TRANSPORTS["gemini"] is transport and PROVIDER_CODECS["gemini"] is gemini and LISTINGS["gemini"] is transport
    assert SUPPORTED["gemini"] >= {"chat", "messages", "embeddings", "count_tokens"} and "completions" not in SUPPORTED["gemini"]
    assert endpoint_for(transport, "messages") == "chat" and endpoint_for(transport, "embeddings") == "embeddings"


def test_a_base_url_with_the_api_version_is_refused() -> None:
    from faregate.config.load import base_url_problems

    [problem] = base_url_problems("g", "gemini", "https://generativelanguage.googleapis.com/v1beta/")
    assert "faregate adds /v1beta/models" in problem.message
    assert base_url_problems("g", "gemini", "https://generativelanguage.googleapis.com") == []

"""``providers.base.model_missing``: "this model does not exist here" as each provider says it,
with the bodies those servers really send, told apart from every other 404 or 400 (an unknown
URL, a file, a model that exists but does not fit the endpoint, a context overflow)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from faregate.errors import UpstreamModelMissing, UpstreamRejected
from faregate.providers import anthropic, openai
from faregate.providers.base import model_missing

JSON = b"application/json"


def oa(message: str, type_: str | None = "invalid_request_error", code: Any = None, param: Any = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


# (what, status, body) sent by an OpenAI-compatible server for a model it does not have
OPENAI_MISSING = [
    ("openai", 404, oa("The model `gpt4o-2024-08-06` does not exist or you do not have access to it.", code="model_not_found")),
    ("groq", 404, oa("The model `llama3-70b` does not exist or you do not have access to it.", code="model_not_found")),
    (
        "azure",
        404,
        orjson.dumps(
            {
                "error": {
                    "code": "DeploymentNotFound",
                    "message": "The API deployment for this resource does not exist. If you created the deployment within "
                    "the last 5 minutes, please wait a moment and try again.",
                }
            }
        ),
    ),
    ("vllm", 404, oa("The model `meta-llama/Llama-3-8b` does not exist.", "NotFoundError", 404, "model")),
    (
        "vllm (older: the fields at the top)",
        404,
        orjson.dumps(
            {"object": "error", "message": "The model `llama-3` does not exist.", "type": "NotFoundError", "param": None, "code": 404}
        ),
    ),
    ("ollama", 404, oa('model "llama3.2" not found, try pulling it first', "api_error")),
    ("ollama (native error string)", 404, orjson.dumps({"error": "model 'llama3' not found"})),
    (
        "together",
        404,
        oa(
            "Unable to access model mixtral-8x7b. Please visit https://api.together.ai/models to view the list.", code="model_not_available"
        ),
    ),
    (
        "gemini (OpenAI-compatible endpoint: a list of one error)",
        404,
        orjson.dumps(
            [
                {
                    "error": {
                        "code": 404,
                        "message": "models/gemini-9-pro is not found for API version v1main, or is not supported for generateContent. "
                        "Call ListModels to see the list of available models and their supported methods.",
                        "status": "NOT_FOUND",
                    }
                }
            ]
        ),
    ),
    (
        "litellm proxy",
        400,
        oa(
            "{'error': '/chat/completions: Invalid model name passed in model=gpt-9. Call `/v1/models` to view available models for your key.'}",
            "None",
            "400",
        ),
    ),
    ("openrouter", 400, orjson.dumps({"error": {"message": "openai/gpt-9 is not a valid model ID", "code": 400}})),
    (
        "mistral",
        400,
        orjson.dumps(
            {"object": "error", "message": "Invalid model: mistral-hugest", "type": "invalid_model", "param": None, "code": "1500"}
        ),
    ),
    ("deepseek", 400, oa("Model Not Exist")),
]

# (what, status, body): errors of the same statuses that are not about the model's name
OPENAI_OTHER = [
    ("openai unknown URL", 404, oa("Invalid URL (POST /v1/chat/completionz)")),
    (
        "openai: a model that exists, on the wrong endpoint",
        404,
        oa("This is a chat model and not supported in the v1/completions endpoint. Did you mean to use v1/chat/completions?"),
    ),
    ("openai: a file", 404, oa("No such File object: file-abc123", param="id")),
    ("fastapi not found", 404, orjson.dumps({"detail": "Not Found"})),
    ("ollama unknown route", 404, b"404 page not found"),
    ("nginx", 404, b"<html><head><title>404 Not Found</title></head><body><center><h1>404 Not Found</h1></center></body></html>"),
    ("openai context overflow", 400, oa("This model's maximum context length is 128000 tokens.", code="context_length_exceeded")),
    ("a bad parameter", 400, oa("Unrecognized request argument supplied: foo")),
]


@pytest.mark.parametrize(("what", "status", "body"), OPENAI_MISSING, ids=[c[0] for c in OPENAI_MISSING])
def test_each_openai_compatible_servers_missing_model_is_model_missing(what: str, status: int, body: bytes) -> None:
    err = openai.classify_error(status, {}, body, JSON, 0.0)
    assert type(err) is UpstreamModelMissing, (what, err)
    assert err.upstream_status == status and err.reason.startswith(f"{status} ")


@pytest.mark.parametrize(("what", "status", "body"), OPENAI_OTHER, ids=[c[0] for c in OPENAI_OTHER])
def test_any_other_404_or_400_is_passed_through_as_before(what: str, status: int, body: bytes) -> None:
    err = openai.classify_error(status, {}, body, JSON, 0.0)
    assert type(err) is UpstreamRejected, (what, err)
    assert err.body == body


def test_the_openai_reason_keeps_the_providers_words() -> None:
    body = oa("The model `gpt4o-2024-08-06` does not exist or you do not have access to it.", code="model_not_found")
    err = openai.classify_error(404, {}, body, JSON, 0.0)
    assert err.reason == "404 model_not_found: The model `gpt4o-2024-08-06` does not exist or you do not have access to it."
    assert err.code == "model_not_found"


def test_a_200_carrying_model_not_found_is_model_missing() -> None:
    body = oa("The model `x` does not exist", code="model_not_found")
    err = openai.error_in_reply(orjson.loads(body), {}, body, JSON, 0.0)
    assert type(err) is UpstreamModelMissing


def an(type_: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": type_, "message": message}, "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"})


def test_anthropics_missing_model_and_its_other_404() -> None:
    missing = anthropic.classify_error(404, {}, an("not_found_error", "model: claude-sonet-4-5"), JSON, 0.0)
    assert type(missing) is UpstreamModelMissing and missing.reason == "404 not_found_error: model: claude-sonet-4-5"
    for other in (an("not_found_error", "Not Found"), an("not_found_error", "File not found: file_011CNha8iCJcU1wXNR6q4V8w")):
        assert type(anthropic.classify_error(404, {}, other, JSON, 0.0)) is UpstreamRejected
    # a 400 whose message starts with "model:" is about the request's field, not a missing model
    assert type(anthropic.classify_error(400, {}, an("invalid_request_error", "model: Field required"), JSON, 0.0)) is UpstreamRejected


@pytest.mark.parametrize(
    ("status", "message", "kinds", "expected"),
    [
        # Gemini's own API (a later provider module passes its status word and message)
        (404, "models/gemini-9-pro is not found for API version v1beta, or is not supported for generateContent.", ("NOT_FOUND",), True),
        # Bedrock
        (400, "The provided model identifier is invalid.", ("ValidationException",), True),
        (404, "Could not resolve the foundation model from the provided model identifier.", ("ResourceNotFoundException",), True),
        (404, "Guardrail gr-123 was not found", ("ResourceNotFoundException",), False),
        (404, "Model not found", (None,), True),
        (404, "Route /v1/models not found", (None,), False),
        (429, "The model `x` does not exist", ("model_not_found",), False),  # only 400 and 404 can say it
        (404, None, (None,), False),
    ],
)
def test_the_detector_for_later_provider_types(status: int, message: str | None, kinds: tuple[str | None, ...], expected: bool) -> None:
    assert model_missing(status, message, *kinds) is expected

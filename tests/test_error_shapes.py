"""Faregate's errors in each client format: Anthropic's shape and types by status, the mid-stream
error event, and an upstream's 4xx body carried to a client of either format."""

from __future__ import annotations

import orjson
import pytest

from faregate.errors import (
    AuthenticationFailed,
    BodyTooLarge,
    BudgetExceeded,
    InternalError,
    InvalidRequest,
    KeyStoreUnavailable,
    ModelNotFound,
    NoDeploymentAvailable,
    PermissionDenied,
    RateLimitExceeded,
    UpstreamLimited,
    UpstreamReplyTooLarge,
)
from faregate.translate import cut_event, passthrough_body

SUFFIX = " (upstream p/m answered 400)"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (InvalidRequest("bad"), "invalid_request_error"),
        (AuthenticationFailed("bad"), "authentication_error"),
        (PermissionDenied("bad"), "permission_error"),
        (ModelNotFound("bad"), "not_found_error"),
        (BodyTooLarge("bad"), "request_too_large"),
        (BudgetExceeded("bad"), "rate_limit_error"),
        (RateLimitExceeded("bad"), "rate_limit_error"),
        (UpstreamLimited("bad"), "rate_limit_error"),
        (InternalError("bad"), "api_error"),
        (UpstreamReplyTooLarge("bad"), "api_error"),
        (NoDeploymentAvailable("bad"), "overloaded_error"),
        (KeyStoreUnavailable("bad"), "overloaded_error"),
    ],
)
def test_anthropic_body_has_the_type_of_the_status_and_the_precise_message(error: Exception, kind: str) -> None:
    assert orjson.loads(error.anthropic_body()) == {"type": "error", "error": {"type": kind, "message": "bad"}}  # type: ignore[attr-defined]


def test_stream_error_event_per_format() -> None:
    assert cut_event("anthropic", "cut", "stream_interrupted") == (
        b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"cut"}}\n\n'
    )
    assert cut_event("openai_chat", "cut", "stream_interrupted") == (
        b'data: {"error":{"message":"cut","type":"upstream_error","param":null,"code":"stream_interrupted"}}\n\n'
    )


ANTHROPIC_BODY = b'{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long"},"request_id":"req_1"}'
OPENAI_BODY = b'{"error":{"message":"context too long","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}'


def test_a_body_in_the_clients_shape_is_kept_as_sent_with_the_deployment_named() -> None:
    anthropic = orjson.loads(passthrough_body(ANTHROPIC_BODY, SUFFIX, 400, "anthropic"))
    assert anthropic == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "prompt is too long" + SUFFIX},
        "request_id": "req_1",
    }
    openai = orjson.loads(passthrough_body(OPENAI_BODY, SUFFIX, 400, "openai_chat"))
    assert openai["error"] == {
        "message": "context too long" + SUFFIX,
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }


def test_a_body_in_the_other_shape_is_rewritten_into_the_clients() -> None:
    to_openai = orjson.loads(passthrough_body(ANTHROPIC_BODY, SUFFIX, 400, "openai_chat"))
    assert to_openai == {
        "error": {"message": "prompt is too long" + SUFFIX, "type": "invalid_request_error", "param": None, "code": "upstream_400"}
    }
    to_anthropic = orjson.loads(passthrough_body(OPENAI_BODY, SUFFIX, 404, "anthropic"))
    assert to_anthropic == {"type": "error", "error": {"type": "not_found_error", "message": "context too long" + SUFFIX}}


def test_a_body_of_no_known_shape_is_wrapped_in_the_clients() -> None:
    assert orjson.loads(passthrough_body(b"<html>nope</html>", SUFFIX, 422, "anthropic")) == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "<html>nope</html>" + SUFFIX},
    }
    assert orjson.loads(passthrough_body(b"nope", SUFFIX, 422, "openai_chat"))["error"]["code"] == "upstream_422"

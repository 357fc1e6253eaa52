"""The OpenAI Responses route: ``POST /v1/responses`` (also ``/responses``), with the request life
of every proxied route (``server/proxy.py``) and OpenAI's error shape.

The body is checked as far as faregate must read it whatever answers: a model, ``input`` (a
string or an array of item objects), ``stream`` a boolean, and the fields that need responses
stored by the server, which faregate does not keep: ``previous_response_id`` and
``conversation`` are refused with a 400 naming them (send the whole conversation in ``input``,
as a stateless client does), ``background: true`` too (it needs a stored response to poll).
``store`` is accepted either way and changes nothing here: faregate stores no responses; a
deployment with ``responses: true`` (OpenAI) gets the field as sent, and stores the response by
its own rules. On that diagonal everything else goes upstream as sent; a translated request is
read by the codec (``formats/openai_responses.py``), which refuses what it cannot carry by name.
"""

from __future__ import annotations

from typing import Any

from faregate.errors import InvalidRequest
from faregate.server import validate
from faregate.server.proxy import Front, proxy
from faregate.types import Endpoint

STATEFUL = {
    "previous_response_id": "previous_response_id names a response stored by the server; faregate stores no responses. "
    "Send the earlier turns in 'input' instead (with their function_call and function_call_output items)",
    "conversation": "conversation names a conversation stored by the server; faregate stores none. "
    "Send the earlier turns in 'input' instead",
}


def parse(endpoint: Endpoint, body: bytes) -> dict[str, Any]:
    payload = validate.parse(endpoint, body)
    for name, message in STATEFUL.items():
        if payload.get(name) is not None:
            raise InvalidRequest(message, param=name, code="unsupported_parameter")
    if payload.get("background") is True:
        raise InvalidRequest(
            "background responses are polled from the server's store; faregate stores no responses: use stream instead",
            param="background",
            code="unsupported_parameter",
        )
    items = payload["input"]
    if isinstance(items, list):
        if not items:
            raise InvalidRequest("'input' must hold at least one item", param="input", code="invalid_value")
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise InvalidRequest(f"'input[{i}]' must be an object, not {validate.kind(item)}", param=f"input[{i}]", code="invalid_type")
    elif not isinstance(items, str):
        raise InvalidRequest(
            f"'input' must be a string or an array of items, not {validate.kind(items)}", param="input", code="invalid_type"
        )
    return payload


RESPONSES_FRONT = Front("openai_responses", parse)
RESPONSES = proxy("responses", RESPONSES_FRONT)

"""Azure OpenAI's wire format for the fake upstream: its routes, headers, error bodies and the
content-filter annotations it adds to OpenAI's replies. Pure (no I/O); :mod:`tests.fakes.azure_upstream`
serves it. Bodies that Azure shares with OpenAI come from :mod:`tests.fakes.openai_wire`.

What Azure does that OpenAI does not, as modelled here:
- routes ``/openai/deployments/{deployment}/{chat/completions|completions|embeddings}?api-version=``
  (the deployment in the URL, the body's ``model`` ignored) and ``/openai/v1/...`` (the deployment
  in the body's ``model``); the key in ``api-key``;
- every reply carries ``apim-request-id``, ``x-request-id``, ``x-ms-region``, ``x-ratelimit-remaining-*``;
- replies name the underlying model (``gpt-4o-2024-08-06``), not the deployment, and carry
  ``prompt_filter_results`` and per-choice ``content_filter_results``; a stream starts with an
  annotation chunk (``"object": ""``, ``"choices": []``);
- errors: ``{"error": {"code": "401", ...}}`` for a bad key, ``DeploymentNotFound`` (404),
  ``content_filter`` (400, with ``innererror.content_filter_result``), the 429 whose message says
  "Please retry after N seconds" (with ``retry-after`` and ``retry-after-ms``), "Resource not found"
  (404) for an unknown route or a missing api-version, and a 400 for ``stream_options`` before
  api-version 2024-09-01-preview.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tests.fakes.openai_wire import Behaviour, error_behaviour

REGION = "East US"
ENDPOINTS = {"chat/completions": "chat", "completions": "completions", "embeddings": "embeddings"}
STREAM_OPTIONS_SINCE = "2024-09-01-preview"  # the first api-version that takes stream_options
SAFE = {"filtered": False, "severity": "safe"}
CATEGORIES = ("hate", "self_harm", "sexual", "violence")


@dataclass(frozen=True)
class AzureBehaviour(Behaviour):
    """A Behaviour with Azure's own outcomes."""

    output_filtered: str | None = None  # the category whose filter cuts the reply: 200, finish_reason content_filter


def filter_results(flagged: str | None = None, severity: str = "medium") -> dict[str, Any]:
    results: dict[str, Any] = {name: dict(SAFE) for name in CATEGORIES}
    if flagged is not None:
        results[flagged] = {"filtered": True, "severity": severity}
    return results


def prompt_filter_results() -> list[dict[str, Any]]:
    return [{"prompt_index": 0, "content_filter_results": {**filter_results(), "jailbreak": {"filtered": False, "detected": False}}}]


def headers(deployment: str | None) -> dict[str, str]:
    """The headers Azure sends on every reply."""
    sent = {
        "apim-request-id": str(uuid.uuid4()),
        "x-request-id": str(uuid.uuid4()),
        "x-ms-region": REGION,
        "x-ratelimit-remaining-requests": "119",
        "x-ratelimit-remaining-tokens": "119800",
        "x-ms-rai-invoked": "true",
        "x-content-type-options": "nosniff",
        "strict-transport-security": "max-age=31536000; includeSubDomains; preload",
        "azureml-model-session": "d089-20240910090345",
    }
    if deployment is not None:
        sent["x-ms-deployment-name"] = deployment
    return sent


def route(path: str) -> tuple[str | None, str] | None:
    """(deployment or None for /openai/v1, endpoint) of a POST path Azure serves; None otherwise."""
    if path.startswith("/openai/v1/"):
        endpoint = ENDPOINTS.get(path.removeprefix("/openai/v1/"))
        return (None, endpoint) if endpoint else None
    if not path.startswith("/openai/deployments/"):
        return None
    rest = path.removeprefix("/openai/deployments/")
    deployment, _, tail = rest.partition("/")
    endpoint = ENDPOINTS.get(tail)
    return (deployment, endpoint) if deployment and endpoint else None


def annotate(reply: dict[str, Any], model: str, flagged: str | None = None) -> dict[str, Any]:
    """An OpenAI reply as Azure sends it: the underlying model, the filter results of the prompt and
    of each choice (``flagged``: the output filter cut the reply)."""
    reply = {**reply, "model": model, "prompt_filter_results": prompt_filter_results()}
    reply.pop("system_fingerprint", None)
    choices = []
    for choice in reply.get("choices", []):
        choice = {**choice, "content_filter_results": filter_results(flagged)}
        if flagged is not None:
            choice["finish_reason"] = "content_filter"
            if isinstance(choice.get("message"), dict):
                choice["message"] = {**choice["message"], "content": None}
            else:
                choice["text"] = ""
        choices.append(choice)
    reply["choices"] = choices
    return reply


def annotate_stream(events: list[bytes], model: str, flagged: str | None = None) -> list[bytes]:
    """OpenAI's stream events as Azure sends them: first the prompt's annotation chunk, then each
    chunk with the model and its choices' filter results (``flagged``: the output filter ends it)."""
    first = {"choices": [], "created": 0, "id": "", "model": "", "object": "", "prompt_filter_results": prompt_filter_results()}
    out = [b"data: " + orjson.dumps(first) + b"\n\n"]
    for event in events:
        if event == b"data: [DONE]\n\n":
            out.append(event)
            continue
        data = orjson.loads(event.removeprefix(b"data: "))
        data["model"] = model
        data.pop("system_fingerprint", None)
        data["choices"] = [{**c, "content_filter_results": {} if c.get("finish_reason") else filter_results()} for c in data["choices"]]
        if flagged is not None and any(c.get("finish_reason") for c in data["choices"]):
            data["choices"] = [
                {**c, "finish_reason": "content_filter", "content_filter_results": filter_results(flagged)} for c in data["choices"]
            ]
        out.append(b"data: " + orjson.dumps(data) + b"\n\n")
    return out


def _azure_error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None, **extra: Any) -> AzureBehaviour:
    return AzureBehaviour(status=status, error={"code": code, "message": message, **extra}, headers=dict(headers or {}))


class _Errors:
    """Behaviours for Azure's failures, with its bodies."""

    @staticmethod
    def invalid_key() -> AzureBehaviour:
        message = (
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
            "for an active subscription and use a correct regional API endpoint for your resource."
        )
        return _azure_error(401, "401", message)

    @staticmethod
    def deployment_not_found() -> AzureBehaviour:
        message = (
            "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, "
            "please wait a moment and try again."
        )
        return _azure_error(404, "DeploymentNotFound", message)

    @staticmethod
    def resource_not_found() -> AzureBehaviour:
        return _azure_error(404, "404", "Resource not found")

    @staticmethod
    def content_filter(category: str = "violence", severity: str = "medium") -> AzureBehaviour:
        message = (
            "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify "
            "your prompt and retry. To learn more about our content filtering policies please read our documentation: "
            "https://go.microsoft.com/fwlink/?linkid=2198766"
        )
        results = {**filter_results(category, severity), "jailbreak": {"filtered": False, "detected": False}}
        inner = {"code": "ResponsibleAIPolicyViolation", "content_filter_result": results}
        error = {"message": message, "type": None, "param": "prompt", "code": "content_filter", "status": 400, "innererror": inner}
        return AzureBehaviour(status=400, error=error)

    @staticmethod
    def rate_limited(seconds: int = 6, api_version: str = "2024-10-21", *, headers: bool = True, tokens: bool = True) -> AzureBehaviour:
        """The 429 of a deployment over its quota; ``headers``: with retry-after and retry-after-ms (else the
        message alone says when)."""
        limit = "token rate limit" if tokens else "call rate limit"
        message = (
            f"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version {api_version} have exceeded {limit} "
            f"of your current OpenAI S0 pricing tier. Please retry after {seconds} seconds. Please go here: "
            "https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit."
        )
        sent = {"retry-after": str(seconds), "retry-after-ms": str(seconds * 1000), "x-ratelimit-remaining-tokens": "0"} if headers else {}
        return _azure_error(429, "429", message, sent)

    @staticmethod
    def server_error() -> AzureBehaviour:
        message = "The server had an error processing your request. Sorry about that! You can retry your request."
        return AzureBehaviour(status=500, error={"message": message, "type": "server_error", "param": None, "code": None})

    @staticmethod
    def stream_options_unsupported() -> Behaviour:
        return error_behaviour(400, "Unrecognized request argument supplied: stream_options", "invalid_request_error")


errors = _Errors()

"""Azure OpenAI: the OpenAI wire protocol at Azure's addresses, with Azure's key header and errors.

``base_url`` is the resource's endpoint, ``https://RESOURCE.openai.azure.com`` (what the openai
SDK's ``AzureOpenAI`` takes as ``azure_endpoint``), without ``/openai``. With a dated
``api_version`` a deployment is reached as Azure names it, at
``/openai/deployments/{model}/chat/completions?api-version=...``: the deployment's ``model`` is
the *Azure deployment name*. With ``api_version: v1`` it is the ``/openai/v1/...`` API, where the
deployment name goes in the body's ``model``, as with OpenAI (faregate always sends it there too,
as the SDK does; Azure reads the URL's). The credential is sent as ``api-key``.

Bodies, usage and streams are OpenAI's (``providers/openai.py``: this transport speaks
``openai_chat``). Azure's own errors are read here: a 400 ``content_filter`` is Azure's content
filter refusing the prompt (the client's request: passed through with its ``innererror``, never a
deployment failure; a reply the filter cut is a 200 with ``finish_reason: content_filter``, a normal
reply); a 429 says when to retry in ``retry-after-ms`` / ``retry-after`` or only in its message
("Please retry after N seconds"); a 404 ``DeploymentNotFound`` is a misnamed deployment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from faregate.errors import UpstreamError, UpstreamRateLimited, UpstreamRejected
from faregate.generation import Credential, Deployment
from faregate.providers import openai, sse
from faregate.providers.base import PATHS, UpstreamRequest, by_status, retry_after
from faregate.types import Endpoint

V1 = "v1"  # api_version for the /openai/v1/... API (no api-version query)

# The Transport protocol (providers/base.py): this module is the azure transport.
format = "openai_chat"
endpoints: frozenset[Endpoint] = frozenset({"chat", "completions", "embeddings"})
request_id_header = "apim-request-id"  # Azure's front door sends it on every reply (and support asks for it)
framing = sse.Splitter
usage_of = openai.usage_of
stream_events = openai.stream_events
with_stream_usage = openai.with_stream_usage  # Azure accepts stream_options from api-version 2024-09-01-preview
error_in_reply = openai.error_in_reply


def url(endpoint: Endpoint, deployment: Deployment) -> str:
    """Where ``endpoint`` of ``deployment`` is, in the provider's API form."""
    provider = deployment.provider
    if provider.api_version == V1:
        return provider.base_url + "/openai/v1" + PATHS[endpoint]
    name = quote(deployment.model, safe="")
    return f"{provider.base_url}/openai/deployments/{name}{PATHS[endpoint]}?api-version={quote(provider.api_version or '', safe='')}"


def build(
    endpoint: Endpoint,
    deployment: Deployment,
    credential: Credential | None,
    payload: dict[str, Any],
    client_headers: Mapping[str, str] | None = None,
) -> UpstreamRequest:
    """Re-serialised from the parsed payload with the deployment name as ``model``, like openai.build;
    the key in ``api-key``. No client header is passed on."""
    provider = deployment.provider
    headers = {"content-type": "application/json", "user-agent": openai.USER_AGENT}
    headers.update(provider.headers)
    for secret_header in provider.secret_headers:
        headers[secret_header.name] = secret_header.value.reveal()
    if credential is not None and credential.secret is not None:
        headers["api-key"] = credential.secret.reveal()
    body = bytes(memoryview(orjson.dumps({**payload, "model": deployment.model})))  # right-sized: base.UpstreamRequest
    return UpstreamRequest("POST", url(endpoint, deployment), headers, body)


def _error(body: bytes) -> dict[str, Any]:
    """The ``error`` object of an Azure (OpenAI-shaped) error body; {} for anything else."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    err = data.get("error") if isinstance(data, dict) else None
    return err if isinstance(err, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else str(value) if type(value) is int else None


def filtered_categories(err: Mapping[str, Any]) -> list[str]:
    """The categories Azure's content filter flagged (``innererror.content_filter_result``):
    ``violence (medium)``, ``jailbreak``; [] when it names none."""
    inner = err.get("innererror")
    result = inner.get("content_filter_result") if isinstance(inner, dict) else None
    if not isinstance(result, dict):
        return []
    found: list[str] = []
    for category, verdict in result.items():
        if isinstance(verdict, dict) and verdict.get("filtered") is True:
            severity = verdict.get("severity")
            found.append(f"{category} ({severity})" if isinstance(severity, str) and severity != "safe" else str(category))
    return found


# Azure's 429 message says how long to wait when no header does: "... Please retry after 6 seconds."
_RETRY_IN_MESSAGE = re.compile(r"retry after (\d{1,6}(?:\.\d+)?) seconds?", re.IGNORECASE)


def classify_error(status: int, headers: Mapping[str, str], body: bytes, content_type: bytes, now: float) -> UpstreamError:
    """Azure's error body is OpenAI's shape with Azure's codes: ``content_filter`` (400, the prompt
    refused by the content filter: the client's request, passed through), ``"429"`` (a rate limit:
    the wait from ``retry-after-ms``, ``retry-after`` or the message), ``DeploymentNotFound`` (404:
    the deployment's model names no Azure deployment), ``"401"`` (the key); the rest as OpenAI's."""
    err = _error(body)
    message, code, type_ = _text(err.get("message")), _text(err.get("code")), _text(err.get("type"))
    if code == "content_filter" and 400 <= status < 500:
        inner = err.get("innererror")
        inner_code = _text(inner.get("code")) if isinstance(inner, dict) else None
        flagged = ", ".join(filtered_categories(err)) or inner_code or "no category named"
        reason = f"{status} content_filter: Azure's content filter refused the prompt ({flagged})"
        return UpstreamRejected(reason, status=status, body=body, content_type=content_type)
    if status == 429:
        wait = retry_after(headers, now)
        if wait is None and message is not None:
            found = _RETRY_IN_MESSAGE.search(message)
            wait = float(found.group(1)) if found is not None else None
        limited = "insufficient_quota" if code == "insufficient_quota" else "rate_limit_exceeded"
        limit = next((name for name in ("token rate limit", "call rate limit") if message and name in message), None)
        return UpstreamRateLimited(f"429 {limited}" + (f" (Azure's {limit})" if limit else ""), code=limited, retry_after=wait)
    kind = code if code is not None and not code.isdigit() else type_  # Azure's "401", "404": the status says it
    return by_status(status, kind, message, headers, body, content_type, now)


# The cheapest probe of a deployment (faregate.probe): Azure retired its data-plane listing of
# deployments (``GET /openai/deployments``), and /openai/models lists base models, not deployment
# names, so a deployment is probed with the 1-token request only.
PROBE_ENDPOINT: Endpoint = "chat"
PROBE_PAYLOAD: dict[str, Any] = openai.PROBE_PAYLOAD

"""providers/azure.py on its own (sans-IO): the URL of each API form, the api-key header, and how
Azure's error bodies (those of tests/fakes/azure_wire.py) are classified."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from faregate.credentials.keyring import build as build_generation
from faregate.errors import CredentialRejected, UpstreamModelMissing, UpstreamRateLimited, UpstreamRejected, UpstreamServerError
from faregate.generation import Deployment
from faregate.providers import azure, openai
from tests.fakes.azure_wire import errors
from tests.fakes.openai_wire import Behaviour

KEY = "azure-CANARY-unit-0123456789abcdef"
ENV = {"FAREGATE_MASTER_KEY": "sk-fg-master-0123456789", "AZURE_KEY": KEY}


def deployment(tmp: Path, version: str, model: str = "chat4o") -> Deployment:
    path = tmp / "faregate.yaml"
    path.write_text(
        'server: {master_key: "${FAREGATE_MASTER_KEY}"}\nproviders:\n'
        f'  az:\n    type: azure\n    base_url: https://contoso.openai.azure.com/\n    api_version: "{version}"\n'
        '    credentials: [{key: "${AZURE_KEY}"}]\n'
        f'models:\n  m:\n    - {{provider: az, model: "{model}"}}\n'
    )
    gen, _ = build_generation(path, env=ENV)
    return gen.models["m"].deployments[0]


def test_the_deployment_url_and_the_v1_url(tmp_path: Path) -> None:
    dep = deployment(tmp_path, "2024-10-21", "my deployment/1")
    request = azure.build("chat", dep, dep.provider.credentials[0], {"model": "m", "messages": []})
    assert request.url == "https://contoso.openai.azure.com/openai/deployments/my%20deployment%2F1/chat/completions?api-version=2024-10-21"
    assert request.headers["api-key"] == KEY and "authorization" not in request.headers
    assert orjson.loads(request.body) == {"model": "my deployment/1", "messages": []}
    v1 = deployment(tmp_path, "v1")
    assert azure.build("embeddings", v1, None, {"input": "a"}).url == "https://contoso.openai.azure.com/openai/v1/embeddings"


def _classify(behaviour: Behaviour, status: int | None = None) -> object:
    body = orjson.dumps({"error": behaviour.error})
    return azure.classify_error(status or behaviour.status, dict(behaviour.headers), body, b"application/json", 1000.0)


def test_a_content_filter_400_is_the_clients_request_named_by_its_category() -> None:
    err = _classify(errors.content_filter("self_harm", "high"))
    assert isinstance(err, UpstreamRejected) and err.upstream_status == 400
    assert err.reason == "400 content_filter: Azure's content filter refused the prompt (self_harm (high))"
    assert b"innererror" in err.body  # passed through as Azure sent it


@pytest.mark.parametrize("headers", [True, False])
def test_a_429_waits_as_azure_says_in_its_headers_or_its_message(headers: bool) -> None:
    err = _classify(errors.rate_limited(6, headers=headers))
    assert isinstance(err, UpstreamRateLimited) and err.retry_after == 6.0 and err.code == "rate_limit_exceeded"
    assert err.reason == "429 rate_limit_exceeded (Azure's token rate limit)"
    # OpenAI's reading of the same body knows no wait when no header says it
    plain = openai.classify_error(
        429, {}, orjson.dumps({"error": errors.rate_limited(6, headers=False).error}), b"application/json", 1000.0
    )
    assert isinstance(plain, UpstreamRateLimited) and plain.retry_after is None


def test_deployment_not_found_the_key_and_the_server() -> None:
    missing = _classify(errors.deployment_not_found())
    assert isinstance(missing, UpstreamModelMissing) and "DeploymentNotFound" in missing.reason
    key = _classify(errors.invalid_key())
    assert isinstance(key, CredentialRejected) and key.reason == "credential rejected (401 unauthorized)"
    assert isinstance(_classify(errors.server_error()), UpstreamServerError)
    route = _classify(errors.resource_not_found())
    assert isinstance(route, UpstreamRejected) and route.upstream_status == 404  # a wrong address: not a misnamed deployment

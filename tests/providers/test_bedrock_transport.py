"""The bedrock transport: the request botocore would sign (its signature recomputed by the fake's
checker), the model id in the path, errors by x-amzn-errortype / __type, the event-stream framing
refusing corrupt and oversized frames, and the cost of signing (measured, not asserted)."""

from __future__ import annotations

import time

import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from faregate.errors import (
    CredentialRejected,
    UpstreamModelMissing,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
)
from faregate.generation import Credential, Deployment, Minted, Provider
from faregate.providers import bedrock, sigv4
from faregate.types import Secret
from tests.fakes import bedrock_wire as wire

PROFILE = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"


def deployment(model: str = PROFILE, base: str = "https://bedrock-runtime.us-east-1.amazonaws.com") -> Deployment:
    provider = Provider("br", "bedrock", base, (), 60, 5, (), "round_robin", 1, 0.0, region=wire.REGION)
    return Deployment(f"br/{model}", "m", provider, model, 1, 0, None)


def keys(token: str | None = None) -> Credential:
    parts = (Secret(wire.SECRET_ACCESS_KEY),) + ((Secret(token),) if token else ())
    return Credential("br", "main", Secret(wire.ACCESS_KEY_ID), parts=parts)


def test_build_signs_for_bedrock_in_the_region_and_the_fake_verifies_it() -> None:
    request = bedrock.build("chat", deployment(), keys(wire.SESSION_TOKEN), {"messages": [], "stream": True})
    assert (
        request.url
        == "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.anthropic.claude-3-7-sonnet-20250219-v1%3A0/converse-stream"
    )
    assert orjson.loads(request.body) == {"messages": []}  # "stream" chose the path and is not sent
    assert request.headers["x-amz-security-token"] == wire.SESSION_TOKEN
    assert (
        f"Credential={wire.ACCESS_KEY_ID}/" in request.headers["authorization"]
        and "/us-east-1/bedrock/aws4_request" in request.headers["authorization"]
    )
    host = "bedrock-runtime.us-east-1.amazonaws.com"
    path = request.url.removeprefix(f"https://{host}")
    sent = {**request.headers, "host": host}  # as faregate's HTTP client adds it
    verdict = wire.verify("POST", host, path, sent, request.body)
    assert verdict.ok, verdict.message
    tampered = wire.verify("POST", host, path, sent, request.body + b" ")
    assert not tampered.ok and tampered.error == "InvalidSignatureException"


def test_the_signature_is_botocores() -> None:
    """faregate's signer and botocore's SigV4Auth, at one instant, on what build sends: the same
    signed header list and the same signature."""
    provider_headers = {"content-type": "application/json", "accept": "application/json", "user-agent": "faregate", "x-custom": "a  b"}
    url = "https://bedrock-runtime.eu-west-3.amazonaws.com:8443/model/eu.amazon.nova-pro-v1%3A0/converse"
    body = b'{"messages": []}'
    for token in (None, wire.SESSION_TOKEN):
        headers = sigv4.sign("POST", url, provider_headers, body, wire.ACCESS_KEY_ID, wire.SECRET_ACCESS_KEY, token, "eu-west-3", "bedrock")
        sent = {k: v for k, v in headers.items() if k != "authorization"} | {"host": "bedrock-runtime.eu-west-3.amazonaws.com:8443"}
        request = AWSRequest(method="POST", url=url, data=body, headers=sent)
        request.context["timestamp"] = headers["x-amz-date"]
        auth = SigV4Auth(Credentials(wire.ACCESS_KEY_ID, wire.SECRET_ACCESS_KEY, token), "bedrock", "eu-west-3")
        expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
        names = auth.signed_headers(auth.headers_to_sign(request))
        assert headers["authorization"].endswith(f"SignedHeaders={names}, Signature={expected}")


def test_an_arn_model_id_is_one_path_segment() -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama3-3-70b-instruct-v1:0"
    request = bedrock.build("chat", deployment(arn), keys(), {"messages": []})
    assert request.url.endswith(
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.meta.llama3-3-70b-instruct-v1%3A0/converse"
    )


def test_no_keys_is_a_credential_error_and_no_chain_keys_yet_a_passing_one() -> None:
    with pytest.raises(CredentialRejected):
        bedrock.build("chat", deployment(), Credential("br", "none", None), {"messages": []})
    waiting = Credential("br", "aws-chain", None, minted=Minted("aws_chain", error="no AWS credentials found"))
    with pytest.raises(UpstreamServerError) as later:  # not rejected: the refresher may find keys
        bedrock.build("chat", deployment(), waiting, {"messages": []})
    assert "no AWS credentials found" in later.value.reason


def _error(name: str, message: str, *, header: bool = True) -> tuple[int, dict[str, str], bytes]:
    status, headers, body = wire.error_reply(name, message)
    if not header:
        headers = {}
        body = orjson.dumps({"__type": f"com.amazon.coral.service#{name}", "message": message})
    return status, headers, body


@pytest.mark.parametrize("header", [True, False])
@pytest.mark.parametrize(
    ("name", "message", "kind"),
    [
        ("ThrottlingException", "Too many requests", UpstreamRateLimited),
        ("ValidationException", wire.INVALID_MODEL, UpstreamModelMissing),
        ("ResourceNotFoundException", "Model not found", UpstreamModelMissing),
        ("ValidationException", "maxTokens must be positive", UpstreamRejected),
        ("AccessDeniedException", "You don't have access to the model", CredentialRejected),
        ("UnrecognizedClientException", "The security token included in the request is invalid.", CredentialRejected),
        ("InvalidSignatureException", "The request signature we calculated does not match", CredentialRejected),
        ("ModelNotReadyException", "Model is not ready", UpstreamServerError),
        ("ModelErrorException", "The model failed", UpstreamServerError),
        ("ServiceUnavailableException", "Service unavailable", UpstreamServerError),
        ("InternalServerException", "oops", UpstreamServerError),
    ],
)
def test_errors_are_classified_by_name(name: str, message: str, kind: type[Exception], header: bool) -> None:
    status, headers, body = _error(name, message, header=header)
    err = bedrock.classify_error(status, headers, body, b"application/json", time.time())
    assert type(err) is kind and (name in err.reason or isinstance(err, UpstreamRejected))
    if isinstance(err, UpstreamRejected):  # passed on in an error shape the client codecs read, with Bedrock's message
        assert orjson.loads(err.body)["error"]["message"] == message


def test_framing_refuses_a_corrupt_frame_and_an_oversized_one() -> None:
    frame = bytearray(wire.event("messageStart", {"role": "assistant"}))
    frame[-6] ^= 0xFF  # the payload changed: its message CRC no longer matches
    with pytest.raises(UpstreamProtocolError) as corrupt:
        bedrock.Framing(1 << 20).feed(bytes(frame))
    assert corrupt.value.code == "upstream_malformed_event"
    big = wire.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x" * 5000}})
    with pytest.raises(UpstreamProtocolError) as large:
        bedrock.Framing(1024).feed(big[:3000])
    assert large.value.code == "upstream_event_too_large"
    framing = bedrock.Framing(1024)
    assert framing.feed(big[:10]) == [] and framing.close() == b""  # a frame cut short is no event


def test_signing_cost_per_request(capsys: pytest.CaptureFixture[str]) -> None:
    """How long SigV4 signing takes per request (printed for the note; no timing is asserted)."""
    dep, cred = deployment(), keys(wire.SESSION_TOKEN)
    body = orjson.dumps({"messages": [{"role": "user", "content": [{"text": "hello " * 200}]}], "inferenceConfig": {"maxTokens": 100}})
    headers = {"content-type": "application/json", "accept": "application/json", "user-agent": "faregate"}
    ak = bedrock.keys_of(cred)
    url = dep.provider.base_url + "/model/x/converse"
    boto = SigV4Auth(Credentials(ak.access_key_id, ak.secret_access_key, ak.session_token), "bedrock", wire.REGION)
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        bedrock.sign("POST", url, headers, body, ak, wire.REGION)
    ours = (time.perf_counter() - start) / n * 1e6
    start = time.perf_counter()
    for _ in range(n):
        boto.add_auth(AWSRequest(method="POST", url=url, data=body, headers=headers))
    theirs = (time.perf_counter() - start) / n * 1e6
    with capsys.disabled():
        print(f"\nSigV4 signing per request ({len(body)}-byte body): faregate {ours:.0f} us, botocore SigV4Auth {theirs:.0f} us")
    assert ours > 0 and theirs > 0

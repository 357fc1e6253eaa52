"""Bedrock credentials: configured AWS keys (references) are one credential whose fingerprint
covers the key id and the secret and whose parts are all scrubbed; without credentials the AWS
chain (botocore's, read from this process's environment) is minted at load, refreshed inside
botocore's window before expiry, rotated by a reload, and shown only as a fingerprint."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.credentials import RefreshableCredentials

from faregate.credentials import aws
from faregate.credentials.keyring import Keyring, build
from faregate.errors import ConfigError
from faregate.generation import Minted
from faregate.providers.bedrock import AwsKeys
from tests.fakes import bedrock_wire as wire

HEAD = "server: {auth: none}\nproviders:\n  br:\n    type: bedrock\n    region: us-east-1\n"
KEYS = '    credentials: [{access_key_id: "${KID}", secret_access_key: "${SECRET}", session_token: "${TOKEN}"}]\n'
TAIL = "models:\n  m: [{provider: br, model: amazon.nova-lite-v1:0}]\n"
ENV = {"KID": wire.ACCESS_KEY_ID, "SECRET": wire.SECRET_ACCESS_KEY, "TOKEN": wire.SESSION_TOKEN}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "faregate.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def chain_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """botocore's chain sees only what a test sets (no files, no metadata services)."""
    for name in (
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_configured_keys_are_one_credential_fingerprinted_over_both_and_scrubbed(tmp_path: Path) -> None:
    gen, _ = build(write(tmp_path, HEAD + KEYS + TAIL), env=ENV)
    (cred,) = gen.providers["br"].credentials
    other, _ = build(write(tmp_path, HEAD + KEYS + TAIL), env={**ENV, "SECRET": "another/secret/key+000000000000000000000"})
    assert cred.label.startswith("br/default:") and other.providers["br"].credentials[0].label != cred.label  # the secret is in it
    text = f"echo {wire.SECRET_ACCESS_KEY} and {wire.SESSION_TOKEN} and {wire.ACCESS_KEY_ID}"
    scrubbed = gen.scrub(text)
    assert all(value not in scrubbed for value in (wire.SECRET_ACCESS_KEY, wire.SESSION_TOKEN, wire.ACCESS_KEY_ID))
    assert gen.id != other.id  # a new secret is a new generation


@pytest.mark.parametrize(
    ("providers", "says"),
    [
        (HEAD + '    credentials: [{key: "${KID}"}]\n', "give access_key_id and secret_access_key"),
        (HEAD + '    credentials: [{access_key_id: "${KID}"}]\n', "give access_key_id and secret_access_key"),
        (
            'server: {auth: none}\nproviders:\n  br:\n    type: openai\n    credentials: [{key: "${KID}", secret_access_key: "${SECRET}"}]\n',
            "only valid for providers of type bedrock",
        ),
        (
            HEAD + '    credentials: [{access_key_id: "${KID}", secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}]\n',
            "reference",
        ),
    ],
)
def test_bad_credential_configs_are_named(tmp_path: Path, providers: str, says: str) -> None:
    with pytest.raises(ConfigError) as bad:
        build(write(tmp_path, providers + TAIL.replace("br, model", "br, model")), env=ENV)
    assert says in str(bad.value) and wire.SECRET_ACCESS_KEY not in str(bad.value)


def test_the_chain_is_minted_at_load_and_rotated_by_a_reload(tmp_path: Path, chain_env: pytest.MonkeyPatch) -> None:
    chain_env.setenv("AWS_ACCESS_KEY_ID", wire.ACCESS_KEY_ID)
    chain_env.setenv("AWS_SECRET_ACCESS_KEY", wire.SECRET_ACCESS_KEY)
    path = write(tmp_path, HEAD + TAIL)
    gen, warnings = build(path)
    (cred,) = gen.providers["br"].credentials
    assert cred.id == aws.CHAIN_ID and cred.minted is not None and not warnings
    assert cred.minted.value == AwsKeys(wire.ACCESS_KEY_ID, wire.SECRET_ACCESS_KEY, None)
    assert cred.minted.fingerprint not in ("none", "") and wire.SECRET_ACCESS_KEY not in gen.scrub(f"x {wire.SECRET_ACCESS_KEY}")
    keyring = Keyring(gen)
    chain_env.setenv("AWS_SECRET_ACCESS_KEY", "rotated/secret/key+1111111111111111111111")
    snap, _ = keyring.reload()
    fresh = snap.generation.providers["br"].credentials[0].minted
    assert fresh is not None and isinstance(fresh.value, AwsKeys) and fresh.value.secret_access_key.startswith("rotated/")


def test_no_chain_keys_is_a_warning_and_a_credential_error_that_says_why(tmp_path: Path, chain_env: pytest.MonkeyPatch) -> None:
    gen, warnings = build(write(tmp_path, HEAD + TAIL))
    assert any("no AWS credentials found" in str(w) for w in warnings)
    minted = gen.providers["br"].credentials[0].minted
    assert minted is not None and minted.value is None and minted.error is not None
    assert aws.due(minted, minted.retry_at - aws.RETRY) == aws.RETRY and aws.due(minted, minted.retry_at) == 0  # asked again later


def test_expiring_keys_are_refreshed_inside_botocores_window() -> None:
    now = datetime.datetime.now(datetime.UTC)
    issued: list[str] = []

    def session(minutes: float) -> dict[str, Any]:
        issued.append(f"ASIA{len(issued):016d}")
        expiry = (now + datetime.timedelta(minutes=minutes)).isoformat()
        return {"access_key": issued[-1], "secret_key": "s" * 40, "token": "t" * 40, "expiry_time": expiry}

    boto = RefreshableCredentials.create_from_metadata(session(60), lambda: session(60), "assume-role")
    minted = Minted(aws.KIND)
    aws.mint(minted, lambda: boto)
    assert isinstance(minted.value, AwsKeys) and minted.value.access_key_id == issued[0]
    assert minted.expires is not None and aws.due(minted, now.timestamp()) == pytest.approx(46 * 60, abs=5)
    # when due, REFRESH_BEFORE ahead of expiry, botocore is inside its window and hands out a new session
    due = RefreshableCredentials.create_from_metadata(session(aws.REFRESH_BEFORE / 60), lambda: session(60), "assume-role")
    expiring = Minted(aws.KIND)
    aws.mint(expiring, lambda: due)
    assert isinstance(expiring.value, AwsKeys) and expiring.value.access_key_id == issued[-1] != issued[-2]
    aws.refresh(expiring)  # the same botocore object: nothing new while the keys are fresh
    assert expiring.value.access_key_id == issued[-1] and expiring.count == 2

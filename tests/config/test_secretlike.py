"""The secret-looking heuristic: what it catches, and common non-secrets it must let through."""

from __future__ import annotations

import pytest

from faregate.config.secretlike import credential_header, looks_like_secret


@pytest.mark.parametrize(
    "text",
    [
        "sk-proj-abc",
        "sk-ant-api03-xyz",
        "gsk_0123",
        "hf_abcdef",
        "AIzaSyA-1234",
        "Bearer abc",
        "Basic dXNlcjpwYXNz",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
        "a3f9c2e1b7d4a6f8c0e2b4d6f8a0c2e4",  # 32 hex digits: a key or a hash
    ],
)
def test_secret_looking_texts(text: str) -> None:
    assert looks_like_secret(text)


@pytest.mark.parametrize(
    "text",
    [
        "My App",
        "2023-06-01",
        "org-2dXq9aBc71KLmN0pQr",
        "https://myapp.example.com/chat/2024",
        "gpt-4o-2024-08-06",
        "claude-3-5-sonnet-20240620-v1:0",
        "sqlite:///.faregate/state.db",
        "round_robin",
        "abc",
        "Bearer",
    ],
)
def test_ordinary_texts(text: str) -> None:
    assert not looks_like_secret(text)


@pytest.mark.parametrize(
    "name", ["Authorization", "Proxy-Authorization", "api-key", "X-Api-Key", "x-goog-api-key", "X-Auth-Token", "Cookie"]
)
def test_credential_headers(name: str) -> None:
    assert credential_header(name)


@pytest.mark.parametrize("name", ["OpenAI-Organization", "OpenAI-Project", "HTTP-Referer", "X-Title", "anthropic-version", "User-Agent"])
def test_ordinary_headers(name: str) -> None:
    assert not credential_header(name)

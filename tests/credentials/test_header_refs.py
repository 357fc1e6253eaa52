"""References inside a provider's header values: expanded as secrets, unset ones and literal
secrets refused, by `keyring.build` and by `faregate check` (a real process)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from faregate.credentials.keyring import build
from faregate.errors import ConfigError
from faregate.generation import Generation
from faregate.providers import openai
from faregate.types import Secret
from tests.support.procs import run_cli

CANARY = "sk-CANARY-header-5e1d7a9c3b"
PROJECT = "proj-CANARY-77aa"
MASTER = "sk-fg-CANARY-master-987654"
ENV = {"FAREGATE_MASTER_KEY": MASTER, "UPKEY": CANARY, "PROJECT": PROJECT}


def write(tmp: Path, headers: str, credentials: str = "") -> Path:
    path = tmp / "faregate.yaml"
    path.write_text(
        f"""\
server: {{master_key: "${{FAREGATE_MASTER_KEY}}"}}
providers:
  up:
    type: openai
    base_url: http://127.0.0.1:9/v1{credentials}
    headers:
{headers}
models:
  m:
    - {{provider: up, model: gpt-4o-mini}}
"""
    )
    return path


def check(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = run_cli("check", "-c", str(path), env=env)
    output = result.stdout + result.stderr
    assert "CANARY" not in output, f"a secret leaked into check's output:\n{output}"
    return result


def test_references_anywhere_inside_a_header_value_are_expanded_into_secrets(tmp: Path) -> None:
    path = write(
        tmp,
        '      Authorization: "Bearer ${UPKEY}"\n'
        '      X-Project: "team/${PROJECT}/prod"\n'
        "      X-Whole: os.environ/UPKEY\n"
        "      X-Title: My App\n",
    )
    generation, warnings = build(path, env=ENV)
    assert warnings == []  # the key travels in a header: no "sent without an API key" warning
    provider = generation.providers["up"]
    assert provider.headers == (("x-title", "My App"),)  # plain text stays plain
    by_name = {h.name: h for h in provider.secret_headers}
    assert set(by_name) == {"authorization", "x-project", "x-whole"}
    assert by_name["authorization"].value == Secret(f"Bearer {CANARY}")
    assert by_name["authorization"].parts == (Secret(CANARY),)
    assert by_name["x-project"].value == Secret(f"team/{PROJECT}/prod")
    assert by_name["x-whole"].value == Secret(CANARY)
    assert CANARY not in repr(provider) and PROJECT not in repr(provider)
    # secrets of the generation: scrubbed from upstream text like credentials are
    assert {Secret(CANARY), Secret(PROJECT)} <= set(generation.secrets())
    scrubbed = generation.scrub(f"bad key {CANARY} for {PROJECT}".encode()).decode()
    assert CANARY not in scrubbed and PROJECT not in scrubbed and "[redacted:" in scrubbed
    # what the adapter sends upstream, and the credential label that stays about the credential
    request = openai.build("chat", generation.models["m"].deployments[0], provider.credentials[0], {"messages": []})
    assert request.headers["authorization"] == f"Bearer {CANARY}"
    assert request.headers["x-project"] == f"team/{PROJECT}/prod"
    assert request.headers["x-whole"] == CANARY
    assert provider.credentials[0].label == "up/none:none"


def test_a_credential_wins_over_an_authorization_header_and_check_says_so(tmp: Path) -> None:
    path = write(tmp, '      Authorization: "Bearer ${UPKEY}"\n', credentials='\n    credentials: [{key: "${OTHER}"}]')
    generation, warnings = build(path, env={**ENV, "OTHER": "sk-CANARY-other-0000"})
    assert [str(w) for w in warnings] == [
        "warning: providers.up.headers: authorization is replaced by each credential's key (drop one of the two)"
    ]
    provider = generation.providers["up"]
    request = openai.build("chat", generation.models["m"].deployments[0], provider.credentials[0], {"messages": []})
    assert request.headers["authorization"] == "Bearer sk-CANARY-other-0000"


def ids(path: Path, env: dict[str, str]) -> Generation:
    return build(path, env=env)[0]


def test_a_changed_header_secret_is_a_new_generation(tmp: Path) -> None:
    path = write(tmp, '      Authorization: "Bearer ${UPKEY}"\n')
    first = ids(path, ENV)
    assert ids(path, ENV).id == first.id
    assert ids(path, {**ENV, "UPKEY": "sk-CANARY-rotated-1111"}).id != first.id


def test_check_reports_an_unset_reference_inside_a_header(tmp: Path) -> None:
    path = write(tmp, '      Authorization: "Bearer ${UPKEY}"\n      X-Project: "p-${NOT_SET_HERE}"\n')
    result = check(path, {"FAREGATE_MASTER_KEY": MASTER})
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "error: providers.up.headers.Authorization: environment variable UPKEY is not set",
        "error: providers.up.headers.X-Project: environment variable NOT_SET_HERE is not set",
        f"{path}: 2 error(s), 0 warning(s)",
    ]


KEYED = '\n    credentials: [{key: "${UPKEY}"}]'
LITERAL = "write it as a reference, e.g. 'Bearer ${NAME}' or 'os.environ/NAME' (literal secrets are not accepted in config files)"
CREDENTIAL_HEADER = (
    "a credential header written literally: write its secret as a reference, e.g. 'Bearer ${NAME}' or 'os.environ/NAME' "
    "(literal secrets are not accepted in config files)"
)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(f"api-key: {CANARY}", f"providers.up.headers.api-key: {CREDENTIAL_HEADER}", id="azure-api-key"),
        pytest.param("Authorization: Bearer CANARY-literal", f"providers.up.headers.Authorization: {CREDENTIAL_HEADER}", id="bearer"),
        pytest.param("X-Auth-Token: CANARY-hunter2", f"providers.up.headers.X-Auth-Token: {CREDENTIAL_HEADER}", id="token-name"),
        pytest.param(
            f"X-Custom: {CANARY}", f"providers.up.headers.X-Custom: looks like a secret written literally: {LITERAL}", id="sk-value"
        ),
        pytest.param(
            "X-Custom: Bearer CANARY0123456789",
            f"providers.up.headers.X-Custom: looks like a secret written literally: {LITERAL}",
            id="scheme-value",
        ),
        pytest.param(
            f'X-Custom: "${{UPKEY}} {CANARY}"',
            f"providers.up.headers.X-Custom: looks like a secret written literally: {LITERAL}",
            id="literal-beside-a-reference",
        ),
        pytest.param(
            'X-Custom: "Bearer ${UPKEY"',
            "providers.up.headers.X-Custom: '${' that does not start a reference: write ${NAME} "
            "(letters, digits and _, not starting with a digit)",
            id="unterminated",
        ),
    ],
)
def test_check_refuses_a_header_secret_written_literally_without_echoing_it(tmp: Path, header: str, expected: str) -> None:
    path = write(tmp, f"      {header}\n", credentials=KEYED)
    result = check(path, ENV)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [f"error: {expected}", f"{path}: 1 error(s), 0 warning(s)"]


def test_check_accepts_plain_headers_that_are_not_secrets(tmp: Path) -> None:
    path = write(
        tmp,
        "      OpenAI-Organization: org-2dXq9aBc71KLmN0pQr\n"
        "      HTTP-Referer: https://myapp.example.com/chat/2024\n"
        "      X-Title: My App\n"
        "      anthropic-version: '2023-06-01'\n"
        '      Authorization: "Bearer ${UPKEY}"\n',
    )
    result = check(path, ENV)
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith(f"{path}: ok, 0 warning(s)")


def test_an_expanded_value_http_cannot_carry_is_an_error(tmp: Path) -> None:
    path = write(tmp, '      Authorization: "Bearer ${UPKEY}"\n')
    with pytest.raises(ConfigError) as info:
        build(path, env={**ENV, "UPKEY": "sk-CANARY-a\r\nx-injected: 1"})
    assert [str(p) for p in info.value.problems] == [
        "error: providers.up.headers.Authorization: holds a line break or NUL once expanded: HTTP headers cannot carry it"
    ]


def test_an_invalid_header_name_is_an_error(tmp: Path) -> None:
    path = write(tmp, '      "X Bad:Name": hello\n', credentials=KEYED)
    with pytest.raises(ConfigError) as info:
        build(path, env=ENV)
    assert [str(p) for p in info.value.problems] == [
        "error: providers.up.headers.X Bad:Name: not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)"
    ]

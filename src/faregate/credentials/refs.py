"""Secret references -> secret values. The only code in faregate that reads a secret.

Accepted forms (anything else is an error that lists them):

- ``${NAME}``        the environment variable NAME
- ``os.environ/NAME``  the same, in the spelling LiteLLM configs use
- ``key_file: PATH``   the file's content, stripped of surrounding whitespace; re-read on every load

A provider's ``headers:`` values may hold ``${NAME}`` anywhere inside (``Bearer ${NAME}``), or be
``os.environ/NAME`` as a whole; a header holding a reference is a secret. A header value written
literally that looks like a key, or in a header whose name says it carries one, is refused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from faregate.config.secretlike import credential_header, looks_like_secret
from faregate.types import Secret

_ENV_BRACES = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_ENV_INSIDE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ENV_LITELLM = re.compile(r"^os\.environ/([A-Za-z_][A-Za-z0-9_]*)$")
FORMS = "'${NAME}', 'os.environ/NAME' or key_file: PATH"


class RefError(ValueError):
    """A reference that does not resolve; the message says why and never contains a secret."""


def is_reference(text: str) -> bool:
    return bool(_ENV_BRACES.match(text) or _ENV_LITELLM.match(text))


def resolve_env_ref(ref: str, env: Mapping[str, str] | None = None) -> Secret:
    """Resolve ``${NAME}`` or ``os.environ/NAME``. A literal value is refused: secrets are never written in config."""
    match = _ENV_BRACES.match(ref) or _ENV_LITELLM.match(ref)
    if match is None:
        raise RefError(f"not a secret reference: write {FORMS} (literal secrets are not accepted in config files)")
    name = match.group(1)
    source = os.environ if env is None else env
    value = source.get(name)
    if value is None:
        raise RefError(f"environment variable {name} is not set")
    value = value.strip()
    if not value:
        raise RefError(f"environment variable {name} is empty")
    return Secret(value)


def resolve_key_file(path: str, base_dir: Path) -> Secret:
    file = Path(path)
    if not file.is_absolute():
        file = base_dir / file
    try:
        value = file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise RefError(f"key file {file} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RefError(f"key file {file} cannot be read: {type(exc).__name__}") from None
    if not value:
        raise RefError(f"key file {file} is empty")
    if "\n" in value:
        raise RefError(f"key file {file} holds more than one line; it must hold exactly one key")
    return Secret(value)


def expand_env(text: str, env: Mapping[str, str] | None = None) -> str:
    """Expand a non-secret value that may be a reference (e.g. a base_url); plain text is returned as is."""
    if is_reference(text):
        return resolve_env_ref(text, env).reveal()
    return text


def expand_header(name: str, text: str, env: Mapping[str, str] | None = None) -> tuple[str | Secret, tuple[Secret, ...]]:
    """A header value: plain text as it is (``str``, no secrets), or, when it holds references, a
    ``Secret`` with every reference expanded and the referenced values (what scrubbing looks for).

    Refused (RefError, never echoing the value): an unset or empty reference, a ``${`` that starts
    no reference, a literal that looks like a secret or sits in a credential header (``Authorization``,
    ``api-key``, ...), and a value HTTP cannot carry (a line break, a character outside Latin-1)."""
    parts: list[Secret] = []

    def resolve(match: re.Match[str]) -> str:
        secret = resolve_env_ref(match.group(0), env)
        parts.append(secret)
        return secret.reveal()

    whole = _ENV_LITELLM.match(text)
    if whole is not None:
        value, rest = resolve(whole), ""
    else:
        value, rest = _ENV_INSIDE.sub(resolve, text), _ENV_INSIDE.sub("", text)
    if "${" in rest:
        raise RefError("'${' that does not start a reference: write ${NAME} (letters, digits and _, not starting with a digit)")
    literal = " (literal secrets are not accepted in config files)"
    if not parts and credential_header(name):
        raise RefError(
            f"a credential header written literally: write its secret as a reference, e.g. 'Bearer ${{NAME}}' or 'os.environ/NAME'{literal}"
        )
    if looks_like_secret(rest):
        raise RefError(
            f"looks like a secret written literally: write it as a reference, e.g. 'Bearer ${{NAME}}' or 'os.environ/NAME'{literal}"
        )
    if any(c in value for c in "\r\n\0"):
        raise RefError("holds a line break or NUL once expanded: HTTP headers cannot carry it")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise RefError("holds characters outside Latin-1 once expanded: HTTP headers cannot carry them") from None
    return (Secret(value), tuple(parts)) if parts else (value, ())

"""Secret references -> secret values. The only code in faregate that reads a secret.

Accepted forms (anything else is an error that lists them):

- ``${NAME}``        the environment variable NAME
- ``os.environ/NAME``  the same, in the spelling LiteLLM configs use
- ``key_file: PATH``   the file's content, stripped of surrounding whitespace; re-read on every load
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from faregate.types import Secret

_ENV_BRACES = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
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

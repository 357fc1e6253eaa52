"""Does a text look like a secret? Pure heuristics, used two ways:

- a header value written literally in the config that looks like a key is refused, as a literal
  ``key:`` is (``faregate.credentials.refs``);
- a config validation error never echoes an input value that might be one (``faregate.config.load``).

A false positive costs little either way: the value is not echoed, or it must be written as a
``${NAME}`` reference (and is then handled as a secret).
"""

from __future__ import annotations

import re

# Prefixes of API keys and tokens that providers and code hosts issue.
_PREFIXES = (
    "sk-",
    "sk_",
    "rk-",
    "pk-",
    "xai-",
    "gsk_",
    "hf_",
    "r8_",
    "ghp_",
    "gho_",
    "ghs_",
    "github_pat_",
    "glpat-",
    "xox",
    "aiza",
    "akia",
    "ya29.",
    "eyj",  # a JWT
)
_AUTH_SCHEME = re.compile(r"^(bearer|basic|token|digest|apikey|api-key|key)\s+\S", re.IGNORECASE)
_LONG_RUN = re.compile(r"[A-Za-z0-9_\-+/=]{32,}")  # an unbroken run as long as a key, a hash, a base64 blob
_NAME_WORDS = frozenset(
    {"authorization", "auth", "key", "apikey", "token", "secret", "password", "passwd", "cookie", "credential", "credentials", "signature"}
)


def looks_like_secret(text: str) -> bool:
    """A key prefix, an auth scheme followed by a token, or a long run of letters and digits."""
    value = text.strip()
    if value.lower().startswith(_PREFIXES) or _AUTH_SCHEME.match(value):
        return True
    return any(re.search(r"[0-9]", run) and re.search(r"[A-Za-z]", run) for run in _LONG_RUN.findall(value))


def credential_header(name: str) -> bool:
    """A header whose name says it carries a credential (``Authorization``, ``api-key``, ``X-Auth-Token``, ...)."""
    words = re.split(r"[-_.]+", name.lower())
    return any(word in _NAME_WORDS or word.endswith(("apikey", "token", "secret")) for word in words)

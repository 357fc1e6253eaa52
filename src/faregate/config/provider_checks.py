"""Which provider settings belong to which provider type, and what each type requires."""

from __future__ import annotations

from faregate.config.schema import ProviderConfig
from faregate.errors import Problem

# setting -> the provider types it is valid for (a setting given for another type is an error)
ONLY_FOR: dict[str, tuple[str, ...]] = {
    "stream_chunks": ("mock",),
    "chunk_delay": ("mock",),
    "anthropic_version": ("anthropic",),  # Claude on Vertex always sends vertex-2023-10-16 in the body
    "responses": ("openai",),
    "api_version": ("azure",),
    "project": ("vertex",),
    "location": ("vertex",),
    "region": ("bedrock",),
}

# provider type -> (setting, why it is needed) for settings it cannot do without
REQUIRED: dict[str, tuple[tuple[str, str], ...]] = {
    "azure": (
        ("base_url", "your resource's endpoint, https://RESOURCE.openai.azure.com"),
        ("api_version", 'the api-version to call (e.g. 2024-10-21), or "v1" for the /openai/v1/ API'),
    ),
    "vertex": (("project", "the Google Cloud project id"), ("location", 'the region of your models (e.g. us-east5) or "global"')),
    "bedrock": (("region", "the AWS region of your models (e.g. us-east-1)"),),
}


def provider_problems(name: str, provider: ProviderConfig) -> list[Problem]:
    path = f"providers.{name}"
    problems: list[Problem] = []
    for setting, types in ONLY_FOR.items():
        value = getattr(provider, setting)
        if provider.type not in types and value not in (None, False):
            valid = " or ".join(types)
            problems.append(Problem(f"{path}.{setting}", f"only valid for providers of type {valid}, not {provider.type}"))
    for setting, why in REQUIRED.get(provider.type, ()):
        if getattr(provider, setting) in (None, ""):
            problems.append(Problem(f"{path}.{setting}", f"required for type {provider.type}: {why}"))
    if provider.type == "vertex":  # each credential is a service-account key file, from which tokens are minted
        if not provider.credentials:
            problems.append(Problem(f"{path}.credentials", f"required for type vertex: {VERTEX_KEY}"))
        for i, cred in enumerate(provider.credentials):
            if cred.key is not None:
                problems.append(Problem(f"{path}.credentials[{i}].key", f"not valid for type vertex: {VERTEX_KEY}"))
    return problems


VERTEX_KEY = "each credential is a service-account key file (JSON), written key_file: /path/to/key.json"

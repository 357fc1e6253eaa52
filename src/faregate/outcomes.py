"""Why a request found no deployment, as the error its client gets: the outcome of each deployment
(limited by its provider, refused by our own limit, misconfigured, failed otherwise) and the
messages that name each one. Pure: the pipeline records, this decides and words."""

from __future__ import annotations

import difflib

from faregate.errors import DeploymentMisconfigured, UpstreamError, UpstreamRateLimited
from faregate.generation import Deployment, Generation
from faregate.health import Health
from faregate.ratelimit import Refused


class Outcomes:
    """Why each deployment of a failed request did not answer, by kind: was every one that could
    have served limited by its provider (429: rate limit or quota), or did something else fail?"""

    __slots__ = ("limited", "misnamed", "other", "ours")

    def __init__(self) -> None:
        self.limited: dict[str, str] = {}  # deployment label -> the provider's 429 code
        self.other: set[str] = set()
        self.ours: dict[str, Refused] = {}  # deployment label -> its own rpm/tpm limit's refusal
        self.misnamed: dict[str, tuple[str, Deployment]] = {}  # label -> (fallback prefix, deployment): misconfigured

    def failed(self, label: str, err: UpstreamError) -> None:
        if isinstance(err, UpstreamRateLimited):
            self.limited[label] = err.code or "rate_limited"
        else:
            self.other.add(label)

    def skipped(self, prefix: str, dep: Deployment, health: Health, now: float) -> bool:
        """A deployment not tried: misconfigured (True: the error names it apart), cooling after its
        provider's 429, after failures, or not a candidate at all (weight 0, retry limit), which
        says nothing about the outcome."""
        label = dep.label
        if health.misconfigured(label) is not None:  # never a provider limit, even if it was cooling after one
            self.misnamed[label] = (prefix, dep)
            return True
        code = health.limit_code(label, now)
        if code is not None:
            self.limited[label] = code
        elif health.blocked(label, now) is not None:
            self.other.add(label)
        return False

    def limited_code(self) -> str | None:
        """``upstream_insufficient_quota`` / ``upstream_rate_limited`` when provider limits are
        the whole story, ``rate_limit_exceeded`` when only our deployment limits are; None when
        anything else failed too (then it is a 503)."""
        if self.other - self.limited.keys():
            return None
        if not self.limited:
            return "rate_limit_exceeded" if self.ours else None
        if all(code == "insufficient_quota" for code in self.limited.values()):
            return "upstream_insufficient_quota"
        return "upstream_rate_limited"


def closest(name: str, known: tuple[str, ...], gen: Generation) -> tuple[str, ...]:
    """The model names closest to a misconfigured deployment's: the provider's (a probe found
    them), then the price table's, at most five."""
    table = difflib.get_close_matches(name, [n for n in gen.prices if n != name], n=3, cutoff=0.6)
    return tuple(dict.fromkeys([*known, *table]))[:5]


def misconfigured(model: str, misnamed: dict[str, tuple[str, Deployment]], health: Health, failures: list[str]) -> DeploymentMisconfigured:
    """Nothing answered and some deployments are misconfigured: each named with its upstream
    model, what the provider said and the closest names, then the other deployments' reasons."""
    parts = []
    for label, (prefix, dep) in misnamed.items():
        why, closest = health.misconfigured(label) or ("its provider said the model does not exist", ())
        hint = "closest known names: " + ", ".join(f"'{n}'" for n in closest) if closest else "no close name in the price table"
        head = f"{prefix}deployment {label} is misconfigured: provider {dep.provider.name} has no model '{dep.model}'"
        parts.append(f"{head} ({why}); {hint}")
    rest = "; other deployments: " + "; ".join(failures) if failures else ""
    fix = "fix the upstream model name in the config and reload (faregate reload)"
    return DeploymentMisconfigured(f"no deployment available for model '{model}': " + "; ".join(parts) + f"; {fix}{rest}")


def unknown_model_message(name: str, gen: Generation) -> str:
    names = sorted(gen.models)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.4)
    if close:
        hint = "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
    else:
        shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
        hint = f"available models: {shown}" if names else "no models are configured"
    return f"The model '{name}' does not exist on this gateway; {hint}"

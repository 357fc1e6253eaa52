"""What doctor reports: one Finding per thing it checked, grouped by the decision tree.

A finding is data (no I/O): the offline checks (``pitfalls``, ``security``) and the live walk
(``live``) each return a list of them, and ``render`` prints them for a terminal or as JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["error", "warning", "ok"]

# The decision tree, in the order an operator walks it at 2 AM: is the gateway there, do its workers
# serve what the file says, are its dependencies up, can each deployment answer, does the path in
# front of it stream; then what the file itself gets wrong: config, routing, cost, security.
GROUPS: dict[str, str] = {
    "gateway": "gateway up and ready",
    "workers": "workers on the config's generation and credentials",
    "state": "bus, database and Redis",
    "deployments": "each deployment answers",
    "stream": "streaming through the path in front of faregate",
    "config": "the config file",
    "routing": "routing and fallbacks",
    "cost": "cost traps",
    "security": "security checklist",
}
RANK: dict[str, int] = {"error": 0, "warning": 1, "ok": 2}


@dataclass(frozen=True, slots=True)
class Finding:
    group: str  # a key of GROUPS
    code: str  # a stable name scripts can match: "weight_zero", "fallback_always_refused", ...
    severity: Severity
    subject: str  # what it is about: a config path ("models.gpt-4o[1]"), a deployment label, a URL
    message: str  # what is wrong (or, for ok, what was checked), in one sentence; never a secret
    fix: str = ""  # what to do about it ("" for ok)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ordered(findings: list[Finding]) -> list[Finding]:
    """Grouped in decision-tree order, worst first inside each group (stable otherwise)."""
    groups = list(GROUPS)
    return sorted(findings, key=lambda f: (groups.index(f.group) if f.group in GROUPS else len(groups), RANK[f.severity]))


def exit_code(findings: list[Finding]) -> int:
    """0: all ok; 1: at least one error; 2: warnings and no error (for cron and CI)."""
    if any(f.severity == "error" for f in findings):
        return 1
    if any(f.severity == "warning" for f in findings):
        return 2
    return 0

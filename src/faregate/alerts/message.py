"""One alert and its two wire forms: Slack's incoming-webhook JSON and a plain JSON object."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

SEVERITY = {
    "budget_threshold": "warning",
    "deployment_misconfigured": "critical",
    "deployment_cooldown": "warning",
    "credential_rejected": "critical",
    "reload_failed": "critical",
    "spend_outbox": "warning",
}


@dataclass(frozen=True, slots=True)
class Alert:
    event: str  # one of config.schema.ALERT_EVENTS
    subject: str  # what it is about (a key id, a deployment label, a credential label): with event, the dedupe key
    summary: str  # one line for people
    details: dict[str, Any] = field(default_factory=dict)  # plain values: ids, labels, fingerprints, numbers
    at: float = field(default_factory=time.time)
    ttl: float | None = None  # how long it stays deduplicated across workers (None: the webhook's min_interval)

    @property
    def dedupe_key(self) -> str:
        return f"{self.event}:{self.subject}"


def slack_text(text: str) -> str:
    """Slack's three control characters escaped, so a name a client chose cannot become a link or an @channel."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render(alert: Alert, form: str, instance: str, scrub: Callable[[str], str]) -> bytes:
    """The request body for a webhook of ``form`` ("slack" or "json"); every text scrubbed."""
    severity = SEVERITY.get(alert.event, "warning")
    summary = scrub(alert.summary)
    details = {name: scrub(value) if isinstance(value, str) else value for name, value in alert.details.items()}
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(alert.at))
    if form == "json":
        return orjson.dumps(
            {
                "source": "faregate",
                "event": alert.event,
                "severity": severity,
                "subject": scrub(alert.subject),
                "summary": summary,
                "details": details,
                "instance": instance,
                "at": stamp,
            }
        )
    summary = slack_text(summary)
    facts = "\n".join(f"*{name}*: {slack_text(str(value))}" for name, value in details.items())
    return orjson.dumps(
        {
            "text": f"[faregate {severity}] {summary}",  # what Slack shows in notifications, and the whole message elsewhere
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": f"*{alert.event}* ({severity}): {summary}"}},
                *([{"type": "section", "text": {"type": "mrkdwn", "text": facts}}] if facts else []),
                {"type": "context", "elements": [{"type": "mrkdwn", "text": f"faregate {instance} at {stamp}"}]},
            ],
        }
    )

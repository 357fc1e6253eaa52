"""Alerts: webhooks (Slack-compatible or plain JSON) told when something needs a person.

``watch`` looks at the worker's own state on a timer (budgets in the database, deployment health,
credential pools, the last reload, the spend outbox) and turns what it sees into ``Alert`` values;
``sender`` delivers them off the hot path: deduplicated across workers and instances through the
control bus, rate limited, retried, and never carrying a secret (every text goes through the
generation's scrubber; a webhook is named by its fingerprint, never its URL).
"""

"""Prometheus metrics without locks on the hot path.

Each worker counts in plain dicts. With several workers, each writes a snapshot of its counts to a
shared directory (at most once a second, off the request path); ``/metrics`` on any worker merges
every worker's latest snapshot with its own live counts. Nothing here runs per streamed chunk.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

# ``format`` is the client's wire format (a codec NAME: openai_chat | anthropic) and ``provider_type``
# the answering deployment's provider type (openai | anthropic | mock; "-" when none was reached):
# both come from fixed sets, so they multiply the series by a small constant, never by client input.
SPEC: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "faregate_requests_total": (
        "counter",
        'Requests answered, by public model ("(unknown)" for a name that is not configured), deployment, HTTP status, '
        "client format and provider type",
        ("model", "deployment", "status", "format", "provider_type"),
    ),
    "faregate_request_duration_seconds": (
        "histogram",
        "Time from arrival to the last byte sent",
        ("model", "format", "provider_type"),
    ),
    "faregate_time_to_first_token_seconds": (
        "histogram",
        "Time from arrival to the first streamed upstream byte",
        ("model", "format", "provider_type"),
    ),
    "faregate_tokens_total": (
        "counter",
        "Tokens reported by upstreams, by kind: prompt (every input token, cache reads and writes included), completion "
        "(reasoning included), and the parts of those priced at their own rates: cache_read, cache_write_5m, "
        "cache_write_1h, reasoning",
        ("model", "kind", "format", "provider_type"),
    ),
    "faregate_cost_usd_total": ("counter", "Priced cost of answered requests in USD", ("model", "format", "provider_type")),
    "faregate_upstream_errors_total": ("counter", "Failed upstream attempts by deployment and error class", ("deployment", "class")),
    "faregate_cache_total": (
        "counter",
        "Response cache lookups by result (hit, miss, no_cache, no_store, uncacheable)",
        ("model", "result"),
    ),
    "faregate_cache_saved_usd_total": ("counter", "What the answers served from the response cache cost when fetched", ("model",)),
    "faregate_usage_anomalies_total": ("counter", "Replies whose reported usage was invalid (then priced as unknown)", ("deployment",)),
    "faregate_unpriced_requests_total": (
        "counter",
        "Answered requests whose cost is unknown (unpriced model or no usage)",
        ("model", "format", "provider_type"),
    ),
    "faregate_deployment_cooldown": ("gauge", "1 while a deployment is cooling down", ("deployment",)),
    "faregate_deployment_misconfigured": (
        "gauge",
        "1 while a deployment is misconfigured (its provider said its upstream model does not exist): no traffic until a reload "
        "or a probe that succeeds",
        ("deployment",),
    ),
    "faregate_requests_in_flight": ("gauge", "Requests being served now", ()),
    "faregate_spend_rows_total": (
        "counter",
        "Spend log rows by where they went: db, outbox (fsync'd, replayed later), replayed, rejected, dropped",
        ("sink",),
    ),
    "faregate_spend_outbox_rows": ("gauge", "Spend rows in the workers' outbox files waiting for the database", ()),
    "faregate_alerts_total": (
        "counter",
        "Alerts by event and result: sent, failed (every attempt refused or unanswered), deduplicated, rate_limited, dropped",
        ("event", "result"),
    ),
}

Labels = tuple[str, ...]
FLAGS = frozenset({"faregate_deployment_cooldown", "faregate_deployment_misconfigured"})  # gauges of 0/1: any worker's 1 is the 1


class Metrics:
    def __init__(self) -> None:
        self.counters: dict[str, dict[Labels, float]] = {n: {} for n, (kind, _, _) in SPEC.items() if kind == "counter"}
        self.histograms: dict[str, dict[Labels, list[float]]] = {n: {} for n, (kind, _, _) in SPEC.items() if kind == "histogram"}
        self.in_flight = 0
        self.dirty = False

    def inc(self, name: str, labels: Labels, value: float = 1.0) -> None:
        series = self.counters.setdefault(name, {})
        series[labels] = series.get(labels, 0.0) + value
        self.dirty = True

    @staticmethod
    def observe(series: dict[Labels, list[float]], labels: Labels, value: float) -> None:
        """Add one observation to a histogram series (``self.histograms[name]``): buckets, sum, count."""
        row = series.get(labels)
        if row is None:
            row = series[labels] = [0.0] * (len(BUCKETS) + 2)
        i = bisect_left(BUCKETS, value)  # the first bucket whose bound is >= value
        if i < len(BUCKETS):
            row[i] += 1
        row[-2] += value
        row[-1] += 1

    def snapshot(self, gauges: dict[str, dict[Labels, float]]) -> dict[str, Any]:
        return {
            "c": [[n, list(k), v] for n, s in self.counters.items() for k, v in s.items()],
            "h": [[n, list(k), v] for n, s in self.histograms.items() for k, v in s.items()],
            "g": [[n, list(k), v] for n, s in gauges.items() for k, v in s.items()],
        }


def write_snapshot(directory: Path, snapshot: dict[str, Any]) -> None:
    tmp = directory / f".{os.getpid()}.tmp"
    tmp.write_bytes(orjson.dumps(snapshot))
    tmp.replace(directory / f"{os.getpid()}.json")


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_snapshots(directory: Path) -> list[tuple[bool, dict[str, Any]]]:
    """Every worker's latest snapshot, with whether that worker is still alive (its gauges count only then)."""
    out = []
    for file in directory.glob("*.json"):
        try:
            out.append((process_exists(int(file.stem)), orjson.loads(file.read_bytes())))
        except (ValueError, OSError, orjson.JSONDecodeError):
            continue
    return out


def render(snapshots: Iterable[tuple[bool, dict[str, Any]]]) -> bytes:
    counters: dict[str, dict[Labels, float]] = {}
    histograms: dict[str, dict[Labels, list[float]]] = {}
    gauges: dict[str, dict[Labels, float]] = {}
    for alive, snap in snapshots:
        for name, labels, value in snap["c"]:
            series = counters.setdefault(name, {})
            series[tuple(labels)] = series.get(tuple(labels), 0.0) + value
        for name, labels, row in snap["h"]:
            hseries = histograms.setdefault(name, {})
            have = hseries.setdefault(tuple(labels), [0.0] * len(row))
            for i, v in enumerate(row):
                have[i] += v
        if alive:
            for name, labels, value in snap["g"]:
                gseries = gauges.setdefault(name, {})
                key = tuple(labels)
                gseries[key] = max(gseries.get(key, 0.0), value) if name in FLAGS else gseries.get(key, 0.0) + value
    lines: list[str] = []
    for name, (kind, help_text, label_names) in SPEC.items():
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        if kind == "histogram":
            for labels, row in sorted(histograms.get(name, {}).items()):
                base = _labels(label_names, labels)
                cumulative = 0.0
                for bound, count in zip(BUCKETS, row, strict=False):
                    cumulative += count
                    lines.append(f"{name}_bucket{_join(base, _le(f'{bound:g}'))} {cumulative:g}")
                lines.append(f"{name}_bucket{_join(base, _le('+Inf'))} {row[-1]:g}")
                lines.append(f"{name}_sum{_wrap(base)} {row[-2]:.6f}")
                lines.append(f"{name}_count{_wrap(base)} {row[-1]:g}")
        else:
            source = counters if kind == "counter" else gauges
            for labels, value in sorted(source.get(name, {}).items()):
                lines.append(f"{name}{_wrap(_labels(label_names, labels))} {value:g}")
    return ("\n".join(lines) + "\n").encode()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: Labels) -> str:
    return ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=False))


def _le(bound: str) -> str:
    return 'le="' + bound + '"'


def _join(base: str, extra: str) -> str:
    return "{" + (f"{base},{extra}" if base else extra) + "}"


def _wrap(base: str) -> str:
    return "{" + base + "}" if base else ""

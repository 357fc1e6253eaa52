"""Regression guard for the hot path, without timing: Python function calls per proxied request.

The count (``bench.callcount``: the real gateway under uvicorn, 100-200 requests) is exact and the same
on every run: the upstream and the client move in lockstep (``bench.lockstep``), so the gateway
reads every request, reply and SSE event in the same pieces whatever the machine's load, and the
gateway's clock-driven background loops are not charged to requests. A stream is measured with
two numbers of events, so a change that adds work per request and one that adds work per event
both show. The ceilings sit ~10% above what the code measures (plain 113; stream 307 for 8 events,
of which 20 per event; access logging on). A change that adds work to every request fails here
and has to justify itself with `make bench` figures and a new ceiling.

History: 120/197 before the control plane's per-request pause check and the per-credential retry
loop (+5 plain); streams +26 for pricing (every chunk goes through the usage stripper); ceilings
140/245 then, counted with a loopback aiohttp upstream and httpx, which varied with load (5 of 9
runs over on a loaded machine: the kernel split replies into more reads, and background loops ran
longer). Now the lockstep count, with the SSE splitter every stream shares (+1 call per event and
+3 per stream over the old relay: 296 -> 307 for 8 events).
Issue 10 (2026-12-01): the OpenAI diagonal measures 114 / 307 / 20 (ceilings unchanged); ceilings of
their own for the Anthropic diagonal and for each translated direction (bench.lockstep_translated:
the upstream writes its events in groups that each give the client at least one event). Translated,
the client's payload is decoded into the neutral model and encoded for the provider, the reply
decoded and encoded back, and every event is parsed and re-encoded: OpenAI client to Anthropic
upstream 167 plain, 439 for a stream of 8 client events, 27 per further event; Anthropic client to
OpenAI upstream 170, 437 for 10 events, 32 per further event.
"""

from __future__ import annotations

import pytest

from bench.callcount import Count, count_calls

PLAIN = 125  # calls per plain request
# issue 13: the frames go out from a task of their own (server.proxy._pump), which resumes 4 calls fewer
# per event: measured 277 for 8 events (was 307), 16 per further event (was 20); plain 116 (+2: the two
# loop-turn gates, faregate.turns)
STREAM = 305  # calls per streamed request of 8 SSE events
PER_EVENT = 18  # calls per further SSE event
# The Anthropic diagonal (/v1/messages to an Anthropic upstream, relayed as bytes): measured plain 117
# (the client's anthropic-version is one more header to read), 371 for a stream of 11 events (its
# message_start, block start/stop, ping, message_delta and message_stop around the 5 deltas), and 20
# per further event, as the OpenAI diagonal.
ANTHROPIC_PLAIN = 130
ANTHROPIC_STREAM = 410  # calls per streamed request of 11 SSE events
# issue 12: the Responses diagonal (/v1/responses to an openai provider with responses: true, relayed
# as bytes, every event's JSON read for the usage and the end): measured 119 plain, 422 for a stream
# of 13 events (created, in_progress, item and part added, 5 deltas, the three done events,
# completed), 21 per further event.
RESPONSES_PLAIN = 131
RESPONSES_STREAM = 465  # calls per streamed request of 13 SSE events
RESPONSES_PER_EVENT = 23
# Translated (measured figures in the docstring): (upstream kind, client format, plain, stream, client events
# of the shorter stream and the longer one, per further event).
TRANSLATED = {
    "openai client to anthropic upstream": ("anthropic", "openai", 185, 485, (8, 18), 30),
    "anthropic client to openai upstream": ("openai", "anthropic", 187, 480, (10, 20), 35),
    # issue 12: an OpenAI Responses client to a Chat upstream (no responses: true): measured 160 plain,
    # 486 for a stream of 13 client events (created, in_progress, item and part added, 5 deltas, the
    # three done events, completed), 34 per further event
    "responses client to openai upstream": ("openai", "responses", 176, 535, (13, 23), 38),
}
# issue 13: the other translated directions of the protocol matrix (bench.lockstep_providers: Gemini and Bedrock
# upstreams), counted over fewer requests (the count is exact: only its one-offs are spread thinner). Measured
# plain, stream of the shorter length, per further event: OpenAI client to Gemini 182 / 358 (8 events) / 27;
# Anthropic client to Gemini 192 / 389 (10) / 29; Responses client to Anthropic 168 / 521 (13) / 31; Responses
# client to Gemini 181 / 416 (13) / 31; to Bedrock: OpenAI client 181 / 1,027 (8) / 94, Anthropic client 192 /
# 1,034 (10) / 96, Responses client 180 / 1,085 (13) / 98. A Bedrock stream costs ~3x per event: every binary
# frame goes through botocore's EventStreamBuffer (prelude, headers and CRCs parsed in Python), ~65 calls a frame.
MORE_TRANSLATED = {
    "openai client to gemini upstream": ("gemini", "openai", 200, 395, (8, 18), 30),
    "anthropic client to gemini upstream": ("gemini", "anthropic", 211, 428, (10, 20), 32),
    "responses client to anthropic upstream": ("anthropic", "responses", 185, 573, (13, 23), 34),
    "responses client to gemini upstream": ("gemini", "responses", 199, 458, (13, 23), 34),
    "openai client to bedrock upstream": ("bedrock", "openai", 199, 1130, (8, 18), 104),
    "anthropic client to bedrock upstream": ("bedrock", "anthropic", 211, 1137, (10, 20), 106),
    "responses client to bedrock upstream": ("bedrock", "responses", 198, 1194, (13, 23), 108),
}


def top(result: Count) -> str:
    ranked = sorted(result.by_function.items(), key=lambda kv: -kv[1])[:15]
    return "\n".join(f"{n / result.requests:6.1f}  {name}" for name, n in ranked)


def test_python_calls_per_plain_request_stay_under_the_ceiling() -> None:
    result = count_calls(requests=200, stream=False, log=True)
    assert result.per_request <= PLAIN, f"{result.per_request:.1f} calls per request; top callers:\n{top(result)}"
    assert result.by_package.get("aiohttp", 0) == 0  # the upstream client is faregate.http1


def test_python_calls_per_stream_and_per_event_stay_under_the_ceilings() -> None:
    short = count_calls(requests=100, stream=True, log=True, chunks=5)
    long = count_calls(requests=100, stream=True, log=True, chunks=15)
    per_event = (long.calls - short.calls) / short.requests / (long.events - short.events)
    assert short.events == 8 and long.events == 18
    assert short.per_request <= STREAM, f"{short.per_request:.1f} calls per stream of {short.events} events; top callers:\n{top(short)}"
    assert per_event <= PER_EVENT, f"{per_event:.1f} calls per SSE event; top callers of the longer stream:\n{top(long)}"


def test_the_anthropic_diagonal_stays_under_its_own_ceilings() -> None:
    plain = count_calls(requests=200, stream=False, log=True, kind="anthropic")
    assert plain.per_request <= ANTHROPIC_PLAIN, f"{plain.per_request:.1f} calls per request; top callers:\n{top(plain)}"
    short = count_calls(requests=100, stream=True, log=True, chunks=5, kind="anthropic")
    long = count_calls(requests=100, stream=True, log=True, chunks=15, kind="anthropic")
    per_event = (long.calls - short.calls) / short.requests / (long.events - short.events)
    assert short.events == 11 and long.events == 21
    assert short.per_request <= ANTHROPIC_STREAM, f"{short.per_request:.1f} calls per stream of {short.events} events:\n{top(short)}"
    assert per_event <= PER_EVENT, f"{per_event:.1f} calls per SSE event; top callers of the longer stream:\n{top(long)}"


def test_the_responses_diagonal_stays_under_its_own_ceilings() -> None:
    plain = count_calls(requests=200, stream=False, log=True, kind="responses")
    assert plain.per_request <= RESPONSES_PLAIN, f"{plain.per_request:.1f} calls per request; top callers:\n{top(plain)}"
    short = count_calls(requests=100, stream=True, log=True, chunks=5, kind="responses")
    long = count_calls(requests=100, stream=True, log=True, chunks=15, kind="responses")
    per_event = (long.calls - short.calls) / short.requests / (long.events - short.events)
    assert short.events == 13 and long.events == 23
    assert short.per_request <= RESPONSES_STREAM, f"{short.per_request:.1f} calls per stream of {short.events} events:\n{top(short)}"
    assert per_event <= RESPONSES_PER_EVENT, f"{per_event:.1f} calls per SSE event; top callers of the longer stream:\n{top(long)}"


def _within_ceilings(entry: tuple[str, str, int, int, tuple[int, int], int], plain_requests: int, stream_requests: int) -> None:
    """One translated direction (a TRANSLATED or MORE_TRANSLATED entry) under its plain, stream and per-event ceilings."""
    kind, client, plain_ceiling, stream_ceiling, events, event_ceiling = entry
    plain = count_calls(requests=plain_requests, stream=False, log=True, kind=kind, client=client)
    assert plain.per_request <= plain_ceiling, f"{plain.per_request:.1f} calls per request; top callers:\n{top(plain)}"
    short = count_calls(requests=stream_requests, stream=True, log=True, chunks=5, kind=kind, client=client)
    long = count_calls(requests=stream_requests, stream=True, log=True, chunks=15, kind=kind, client=client)
    per_event = (long.calls - short.calls) / short.requests / (long.events - short.events)
    assert (short.events, long.events) == events
    assert short.per_request <= stream_ceiling, f"{short.per_request:.1f} calls per stream of {short.events} events:\n{top(short)}"
    assert per_event <= event_ceiling, f"{per_event:.1f} calls per SSE event; top callers of the longer stream:\n{top(long)}"


@pytest.mark.parametrize("direction", sorted(TRANSLATED))
def test_each_translated_direction_stays_under_its_own_ceilings(direction: str) -> None:
    _within_ceilings(TRANSLATED[direction], plain_requests=200, stream_requests=100)


@pytest.mark.parametrize("direction", sorted(MORE_TRANSLATED))
def test_each_other_translated_direction_stays_under_its_own_ceilings(direction: str) -> None:
    _within_ceilings(MORE_TRANSLATED[direction], plain_requests=50, stream_requests=30)

"""Gemini replies (``GenerateContentResponse``, whole or as the chunks of ``streamGenerateContent``)
as neutral events. Pure: no I/O, no clock.

- Only the first candidate is read (faregate never asks for more: ``candidateCount`` is not sent).
- A ``functionCall`` part is a whole call (Gemini streams calls complete): its start, its
  arguments as JSON text and its stop, at once. Its id is Gemini's ``id`` when it sent one, else
  one made here (``GENERATED``, never sent back). A ``thoughtSignature`` on the call is carried in
  the id (``SIGNATURE_MARK`` then the signature in URL-safe base64), so that any client that returns
  the call in its history (every client returns tool-call ids) returns the signature Gemini needs.
- A ``thought: true`` part is thinking; a signature on any other part becomes a thinking block of its
  own (no text, the signature prefixed with ``SIGNATURE_PREFIX``) right after that part, which
  ``gemini.encode_request`` puts back on the part before it.
- Usage (``usageMetadata``): ``promptTokenCount`` includes ``cachedContentTokenCount`` (cache reads)
  and ``toolUsePromptTokenCount`` is more prompt; ``candidatesTokenCount`` excludes
  ``thoughtsTokenCount``, which Google bills as output: neutral output = candidates + thoughts.
  Streamed chunks report the running totals: a Usage event is made of the first (the prompt, as
  Anthropic's message_start) and of the last (the final counts), not of each chunk between.
- Finish: STOP is ``tool_calls`` when the reply made calls, else ``stop``; MAX_TOKENS ``length``;
  the safety and policy stops (SAFETY, RECITATION, BLOCKLIST, PROHIBITED_CONTENT, SPII, the IMAGE_
  ones; a prompt refused with ``promptFeedback.blockReason``) ``content_filter``, with the category
  (``Finish.detail``: ``SAFETY: HARM_CATEGORY_...``, the reason and the categories rated as blocked;
  an OpenAI Chat client reads it as the message's ``refusal``); a malformed or
  unexpected function call, a missing thought signature or OTHER end as ``error`` with the reason.
- The stream ends with the chunk that carries a ``finishReason`` (Gemini sends no ``[DONE]``).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Any

import orjson

from faregate.formats import neutral

GENERATED = "call_g"  # + 24 hex digits: an id faregate made for a call Gemini sent without one
SIGNATURE_MARK = "__gts_"  # in a tool-call id: what follows is the call's thought signature
SIGNATURE_PREFIX = "gemini:"  # a neutral Thinking signature that is Gemini's

_FILTERED = frozenset(
    {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "LANGUAGE"}
    | {"IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "MODEL_ARMOR", "JAILBREAK"}
)


def call_id(gemini_id: Any, signature: Any) -> str:
    """The neutral id of a function call: Gemini's id (or a made one), and its signature if any."""
    base = gemini_id if isinstance(gemini_id, str) and gemini_id else GENERATED + secrets.token_hex(12)
    if isinstance(signature, str) and signature:
        return base + SIGNATURE_MARK + signature.replace("+", "-").replace("/", "_").rstrip("=")
    return base


def split_call_id(neutral_id: str) -> tuple[str | None, str | None]:
    """(Gemini's id, or None for one faregate made or none; the thought signature, or None)."""
    base, mark, packed = neutral_id.partition(SIGNATURE_MARK)
    signature = None
    if mark and packed:
        padded = packed.replace("-", "+").replace("_", "/") + "=" * (-len(packed) % 4)
        try:
            base64.b64decode(padded, validate=True)
            signature = padded
        except (binascii.Error, ValueError):
            signature = None
    generated = base.startswith(GENERATED) and len(base) == len(GENERATED) + 24
    return (None if generated or not base else base), signature


def _count(value: Any) -> int:
    return value if type(value) is int and value >= 0 else 0


def usage_from(meta: Any) -> neutral.Usage:
    """``usageMetadata`` as a neutral Usage (an empty one when absent)."""
    if not isinstance(meta, dict):
        return neutral.Usage()
    cached = _count(meta.get("cachedContentTokenCount"))
    prompt = _count(meta.get("promptTokenCount")) + _count(meta.get("toolUsePromptTokenCount"))
    thoughts = _count(meta.get("thoughtsTokenCount"))
    return neutral.Usage(
        input=max(0, prompt - cached),
        cache_read=cached,
        output=_count(meta.get("candidatesTokenCount")) + thoughts,
        reasoning=thoughts if "thoughtsTokenCount" in meta else None,
    )


def _blocked(ratings: Any) -> list[str]:
    if not isinstance(ratings, list):
        return []
    return [str(r.get("category")) for r in ratings if isinstance(r, dict) and r.get("blocked") is True and r.get("category")]


def _detail(reason: str, ratings: Any) -> str:
    """``SAFETY: HARM_CATEGORY_HARASSMENT`` (the reason, and the categories rated as blocked)."""
    categories = _blocked(ratings)
    return f"{reason}: {', '.join(categories)}" if categories else reason


def finish_of(candidate: dict[str, Any], called: bool) -> neutral.Finish | None:
    """The neutral finish of a candidate that has a ``finishReason`` (None while it has none)."""
    reason = candidate.get("finishReason")
    if not isinstance(reason, str) or reason == "FINISH_REASON_UNSPECIFIED":
        return None
    if reason == "STOP":
        return neutral.Finish("tool_calls" if called else "stop")
    if reason == "MAX_TOKENS":
        return neutral.Finish("length")
    if reason in _FILTERED:
        return neutral.Finish("content_filter", detail=_detail(reason, candidate.get("safetyRatings")))
    return neutral.Finish("error", detail=reason)


def prompt_blocked(data: dict[str, Any]) -> neutral.Finish | None:
    """A prompt Gemini refused to answer (``promptFeedback.blockReason``, no candidates)."""
    feedback = data.get("promptFeedback")
    if not isinstance(feedback, dict) or data.get("candidates"):
        return None
    reason = feedback.get("blockReason")
    if not isinstance(reason, str):
        return None
    return neutral.Finish("content_filter", detail="prompt " + _detail(reason, feedback.get("safetyRatings")))


class StreamDecoder:
    """Gemini's chunks (each a ``GenerateContentResponse``) as neutral events. Consecutive text
    parts (and consecutive thought parts) make one block; anything else closes it."""

    def __init__(self) -> None:
        self.done = False
        self._started = False
        self._index = -1  # the last block's neutral index
        self._open: str | None = None  # the kind of the block still open: "text" | "thinking"
        self._called = False
        self._meta: Any = None  # the last usageMetadata read
        self._said: Any = None  # the last one turned into a Usage event

    def feed(self, data: dict[str, Any]) -> list[neutral.Event]:
        """One chunk's events. Few calls for the usual chunk (one text part): this runs per event."""
        events: list[neutral.Event] = []
        if not self._started:
            self._started = True
            events.append(neutral.Start(str(data.get("responseId") or ""), str(data.get("modelVersion") or "")))
        candidates = data.get("candidates")
        if "error" in data and not candidates:
            error = data["error"] if isinstance(data["error"], dict) else {}
            events.append(error_of(error))
            return events
        candidate = candidates[0] if type(candidates) is list and candidates and type(candidates[0]) is dict else {}
        content = candidate.get("content")
        parts = content.get("parts") if type(content) is dict else None
        if type(parts) is list:
            for part in parts:
                text = part.get("text") if type(part) is dict else None
                if type(text) is str and len(part) == 1 and text:  # plain text, the usual part: no helper
                    if self._open != "text":
                        self._block("text", events)
                    events.append(neutral.TextDelta(self._index, text))
                elif type(part) is dict:
                    self._part(part, events)
        meta = data.get("usageMetadata")
        if meta is not None:  # running totals on every chunk: said at the first (the prompt) and at the end
            if self._meta is None:
                self._said = meta
                events.append(usage_from(meta))
            self._meta = meta
        finish = finish_of(candidate, self._called) if "finishReason" in candidate else None
        if finish is None and "promptFeedback" in data:
            finish = prompt_blocked(data)
        if finish is not None:
            self._close(events)
            if self._meta is not self._said:
                events.append(usage_from(self._meta))
            events.append(finish)
            self.done = True
        return events

    def _part(self, part: dict[str, Any], events: list[neutral.Event]) -> None:
        signature = part.get("thoughtSignature")
        call = part.get("functionCall")
        if isinstance(call, dict):
            self._close(events)
            self._called = True
            self._index += 1
            args = call.get("args")
            events.append(neutral.ToolCallStart(self._index, call_id(call.get("id"), signature), str(call.get("name", ""))))
            events.append(neutral.ToolArgsDelta(self._index, orjson.dumps(args if isinstance(args, dict) else {}).decode()))
            events.append(neutral.BlockStop(self._index))
            return
        text = part.get("text")
        if not isinstance(text, str):
            return  # inlineData, executableCode and parts added later: nothing neutral to say
        if part.get("thought") is True:
            mark = SIGNATURE_PREFIX + signature if isinstance(signature, str) and signature else None
            if text or mark:
                self._block("thinking", events)
                events.append(neutral.ThinkingDelta(self._index, text, mark))
            return
        if text:
            self._block("text", events)
            events.append(neutral.TextDelta(self._index, text))
        if isinstance(signature, str) and signature:  # kept as a thinking block of its own, after the part
            self._close(events)
            self._index += 1
            events.append(neutral.ThinkingDelta(self._index, "", SIGNATURE_PREFIX + signature))
            events.append(neutral.BlockStop(self._index))

    def _block(self, kind: str, events: list[neutral.Event]) -> None:
        if self._open != kind:
            self._close(events)
            self._index += 1
            self._open = kind

    def _close(self, events: list[neutral.Event]) -> None:
        if self._open is not None:
            events.append(neutral.BlockStop(self._index))
            self._open = None


def error_of(error: dict[str, Any]) -> neutral.Error:
    """A Google error object (``{"code", "message", "status"}``) as a neutral Error."""
    status = str(error.get("status") or "")
    kinds: dict[str, Any] = {
        "INVALID_ARGUMENT": "invalid_request",
        "FAILED_PRECONDITION": "invalid_request",
        "UNAUTHENTICATED": "authentication",
        "PERMISSION_DENIED": "permission",
        "NOT_FOUND": "not_found",
        "RESOURCE_EXHAUSTED": "rate_limit",
        "UNAVAILABLE": "overloaded",
    }
    return neutral.Error(kinds.get(status, "api_error"), str(error.get("message") or status or "upstream error"), status or None)


def decode_reply(data: dict[str, Any]) -> neutral.Reply:
    """A whole ``generateContent`` reply as a neutral Reply."""
    decoder = StreamDecoder()
    events = decoder.feed(data)
    if not decoder.done and not any(isinstance(e, neutral.Error) for e in events):
        events.append(neutral.Finish("stop"))
    return neutral.collect(events)

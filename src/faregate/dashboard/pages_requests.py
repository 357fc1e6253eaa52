"""Admin pages Requests (the spend log, searched by request id, key, model, status and time, paged
by keyset: ``after`` is the last row's position) and Request (one request's whole story: who, what,
which deployment and credential fingerprint, which generation, the failed attempts, fallback,
error, tokens, cost, timings). Never a secret: the log holds fingerprints only."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from faregate.dashboard.web import Request, Response, render
from faregate.store import ui_queries as uq

PAGE = 50
FILTERS = ("request_id", "key_id", "model", "status", "start", "end")


def _when(raw: str, end: bool) -> float | None:
    """A UTC date (the whole day) or a date and time ``YYYY-MM-DDTHH:MM`` (a datetime-local field)."""
    for fmt in ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            moment = dt.datetime.strptime(raw, fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
        if end:
            moment += dt.timedelta(days=1) if fmt == "%Y-%m-%d" else dt.timedelta(minutes=1)
        return moment.timestamp()
    return None


def parse(request: Request) -> tuple[uq.RequestQuery, dict[str, str], list[str]]:
    """The query, the filters as given (for the form and the links), and what was not usable."""
    given = {name: request.query.get(name, "").strip()[:200] for name in FILTERS}
    notes = []
    status: int | str | None = None
    if given["status"]:
        if given["status"].isdigit() and len(given["status"]) <= 3:
            status = int(given["status"])
        elif given["status"] in uq.STATUS_CLASSES:
            status = given["status"]
        else:
            notes.append("status is a code (200, 429…) or one of: " + ", ".join(uq.STATUS_CLASSES))
    since = _when(given["start"], False) if given["start"] else None
    before = _when(given["end"], True) if given["end"] else None
    for name, value in (("start", since), ("end", before)):
        if given[name] and value is None:
            notes.append(f"'{name}' is not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM, UTC): ignored")
    query = uq.RequestQuery(
        since=since,
        before=before,
        request_id=given["request_id"] or None,
        key_id=given["key_id"] or None,
        model=given["model"] or None,
        status=status,
    )
    return query, given, notes


async def requests(request: Request) -> Response:
    engine = request.gw.engine
    assert engine is not None
    query, given, notes = parse(request)
    after = uq.Cursor.parse(request.query.get("after", "")) if request.query.get("after") else None
    rows, following, total, capped = await uq.find_requests(engine, query, PAGE, after)
    keys, _ = await uq.names(engine, sorted({r["key_id"] for r in rows if r["key_id"]}), [])
    kept = {k: v for k, v in given.items() if v}
    return render(
        request, "requests.html", rows=rows, given=given, notes="; ".join(notes), total=total, capped=capped, key_names=keys,
        first=urlencode(kept), following=urlencode({**kept, "after": following.text()}) if following else "", paged=after is not None,
        classes=list(uq.STATUS_CLASSES),
    )  # fmt: skip


async def request_story(request: Request) -> Response:
    engine = request.gw.engine
    assert engine is not None
    request_id = request.query.get("id", "")[:200]
    row = await uq.request_story(engine, request_id) if request_id else None
    if row is None:
        return render(
            request, "message.html", 404, title="No such request",
            message="There is no request with that id in the spend log (a request shows up about a second after it ends).",
        )  # fmt: skip
    failures = [part.strip() for part in (row.get("failures") or "").split(";") if part.strip()]
    return render(request, "request.html", r=row, failures=failures)

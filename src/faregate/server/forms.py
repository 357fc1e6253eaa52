"""Read a multipart/form-data request body (RFC 7578) only as far as routing needs it.

``POST /v1/audio/transcriptions`` sends the audio file and its fields as a form. faregate reads the
part headers and the small fields it routes and admits by (``model``, ``stream``), never copies
the file, and passes the body upstream as it came (``providers.base.Form``): only the model's value
is replaced by the deployment's. The body was read within ``server.max_body_bytes`` like any
other; here the work is bounded too: at most ``MAX_PARTS`` parts, ``MAX_HEADER_BYTES`` of headers
per part, ``MAX_FIELD_BYTES`` for a field that is read. Anything an upstream could read otherwise
than faregate does (two ``model`` fields, a boundary that never closes) is refused with a 400.
"""

from __future__ import annotations

from typing import Any

from faregate.errors import InvalidRequest
from faregate.providers.base import Form

MAX_PARTS = 64
MAX_HEADER_BYTES = 8 * 1024
MAX_FIELD_BYTES = 1024
READ = frozenset({"model", "stream"})  # the fields read; the others (file, language, prompt, ...) go as sent
REQUIRED = ("file", "model")


def _params(header: str) -> tuple[str, dict[str, str]]:
    """The value of a header and its ``; name=value`` parameters (quoted or not), names in lower case."""
    value, *rest = _split(header)
    params: dict[str, str] = {}
    for item in rest:
        name, eq, raw = item.partition("=")
        if not eq:
            continue
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        params[name.strip().lower()] = raw
    return value.strip().lower(), params


def _split(header: str) -> list[str]:
    """``header`` split at the semicolons outside quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in header:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def parse(body: bytes, content_type: bytes | None) -> Form:
    """The form's routing fields and where its model's value is, or InvalidRequest (a precise 400)."""
    header = (content_type or b"").decode("latin-1")
    mime, params = _params(header)
    if mime != "multipart/form-data":
        shown = repr(mime) if mime else "no Content-Type"
        raise InvalidRequest(
            f"this route takes a multipart/form-data body (the audio file and its fields), not {shown}", code="invalid_content_type"
        )
    boundary = params.get("boundary", "")
    if not 1 <= len(boundary) <= 70 or not boundary.isascii():  # RFC 2046 5.1.1
        raise InvalidRequest("the multipart/form-data Content-Type needs a boundary of 1 to 70 ASCII characters", code="invalid_multipart")
    delimiter = b"\r\n--" + boundary.encode("ascii")
    fields: dict[str, Any] = {}
    names: set[str] = set()
    model_at = (0, 0)
    if body.startswith(delimiter[2:]):  # "--boundary" first, or after a preamble (ignored) and its CRLF
        at = len(delimiter) - 2
    else:
        at = body.find(delimiter)
        if at < 0:
            raise _malformed("the body does not hold the boundary its Content-Type declares")
        at += len(delimiter)
    for _ in range(MAX_PARTS + 1):
        if body.startswith(b"--", at):  # the close delimiter: the form is complete
            break
        if not body.startswith(b"\r\n", at):
            raise _malformed("a boundary line is not followed by CRLF")
        head_end = body.find(b"\r\n\r\n", at + 2, at + 2 + MAX_HEADER_BYTES + 4)
        if head_end < 0:
            raise _malformed(f"a part's headers do not end within {MAX_HEADER_BYTES} bytes")
        name = _part_name(body[at + 2 : head_end])
        start = head_end + 4
        end = body.find(delimiter, start)
        if end < 0:
            raise _malformed("the form does not end with its closing boundary")
        if name in names and name in READ:
            raise InvalidRequest(f"the form has more than one '{name}' field", param=name, code="invalid_multipart")
        names.add(name)
        if name in READ:
            if end - start > MAX_FIELD_BYTES:
                raise InvalidRequest(f"the form field '{name}' is longer than {MAX_FIELD_BYTES} bytes", param=name, code="invalid_value")
            fields[name] = _text(body[start:end], name)
            if name == "model":
                model_at = (start, end)
        at = end + len(delimiter)
    else:
        raise InvalidRequest(f"the form has more than {MAX_PARTS} parts", code="invalid_multipart")
    for required in REQUIRED:
        if required not in names:
            raise InvalidRequest(f"missing required form field '{required}'", param=required, code="missing_field")
    if not fields["model"]:
        raise InvalidRequest("'model' must be a non-empty string", param="model", code="invalid_type")
    stream = fields.pop("stream", None)
    if stream is not None:
        if stream not in ("true", "false"):
            raise InvalidRequest(f"'stream' must be true or false, not {stream[:20]!r}", param="stream", code="invalid_type")
        fields["stream"] = stream == "true"
    return Form(fields, body, header, model_at)


def _part_name(headers: bytes) -> str:
    """The ``name`` of a part's ``Content-Disposition: form-data; name="..."``."""
    for line in headers.split(b"\r\n"):
        key, colon, value = line.partition(b":")
        if colon and key.strip().lower() == b"content-disposition":
            kind, params = _params(value.decode("utf-8", "replace"))
            if kind != "form-data" or "name" not in params:
                raise _malformed("a part's Content-Disposition is not form-data with a name")
            return params["name"]
    raise _malformed("a part has no Content-Disposition header")


def _text(value: bytes, name: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(f"the form field '{name}' is not UTF-8 text", param=name, code="invalid_value") from None


def _malformed(what: str) -> InvalidRequest:
    return InvalidRequest(f"the multipart/form-data body is malformed: {what}", code="invalid_multipart")

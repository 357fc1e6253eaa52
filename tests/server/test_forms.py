"""The multipart/form-data reader of /v1/audio/transcriptions (server/forms.py): it finds the model
where an upstream's parser would, refuses what two parsers could read differently, and bounds its
work; the bytes it passes on are the body as sent but for the model's value."""

from __future__ import annotations

import httpx
import pytest

from faregate.errors import InvalidRequest
from faregate.providers import openai
from faregate.server import forms


def encoded(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, bytes]:
    """A form as httpx (the openai SDK's client) encodes it: (body, Content-Type)."""
    request = httpx.Request("POST", "http://x/", data=fields, files=files)
    return request.read(), request.headers["content-type"].encode()


def test_the_model_is_read_and_replaced_in_place() -> None:
    audio = b"\r\n--\r\n" + bytes(range(256))
    body, content_type = encoded({"model": "transcribe", "language": "en"}, {"file": ("a.wav", audio)})
    form = forms.parse(body, content_type)
    assert dict(form) == {"model": "transcribe"}
    assert form.content_type == content_type.decode()
    assert form.with_model("transcribe") is body
    replaced = form.with_model("gpt-4o-transcribe")
    assert replaced == body.replace(b"\r\n\r\ntranscribe\r\n", b"\r\n\r\ngpt-4o-transcribe\r\n")
    assert forms.parse(replaced, content_type)["model"] == "gpt-4o-transcribe"


def test_stream_is_read_as_a_boolean() -> None:
    body, content_type = encoded({"model": "m", "stream": "true"}, {"file": ("a.wav", b"RIFF")})
    assert forms.parse(body, content_type)["stream"] is True


def test_a_quoted_boundary_and_a_preamble() -> None:
    body = b'preamble\r\n--a b:c\r\nContent-Disposition: form-data; name="model"\r\n\r\nm\r\n'
    body += b'--a b:c\r\nContent-Disposition: form-data; name="file"; filename="x;y.wav"\r\n\r\nRIFF\r\n--a b:c--\r\n'
    form = forms.parse(body, b'multipart/form-data; boundary="a b:c"')
    assert form["model"] == "m" and body[form.model_at[0] : form.model_at[1]] == b"m"


@pytest.mark.parametrize(
    ("body", "content_type", "says"),
    [
        (b"{}", b"application/json", "multipart/form-data body"),
        (b"", None, "no Content-Type"),
        (b"--b\r\n", b"multipart/form-data", "boundary of 1 to 70"),
        (b"nothing here", b"multipart/form-data; boundary=b", "does not hold the boundary"),
        (b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nm', b"multipart/form-data; boundary=b", "closing boundary"),
        (b"--b\r\nContent-Type: text/plain\r\n\r\nm\r\n--b--", b"multipart/form-data; boundary=b", "no Content-Disposition"),
        (b"--b\r\n" + b"X: " + b"y" * 9000 + b"\r\n\r\n", b"multipart/form-data; boundary=b", "do not end within"),
        (b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\nRIFF\r\n--b--', b"multipart/form-data; boundary=b", "'model'"),
    ],
)
def test_malformed_forms_are_precise_400s(body: bytes, content_type: bytes | None, says: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        forms.parse(body, content_type)
    assert says in caught.value.message


def test_two_model_fields_are_refused() -> None:
    part = b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\n%s\r\n'
    body = part % b"cheap" + part % b"dear" + b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\nRIFF\r\n--b--\r\n'
    with pytest.raises(InvalidRequest, match="more than one 'model'"):
        forms.parse(body, b"multipart/form-data; boundary=b")


def test_the_number_of_parts_is_bounded() -> None:
    part = b'--b\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n'
    body = b"".join(part % i for i in range(forms.MAX_PARTS + 1)) + b"--b--\r\n"
    with pytest.raises(InvalidRequest, match=f"more than {forms.MAX_PARTS} parts"):
        forms.parse(body, b"multipart/form-data; boundary=b")


def test_media_usage_is_read_only_in_tokens() -> None:
    tokens = {"usage": {"type": "tokens", "input_tokens": 20, "output_tokens": 5, "total_tokens": 25}}
    usage = openai.media_usage(tokens)
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (20, 5)
    assert openai.media_usage({"usage": {"type": "duration", "seconds": 3}}) is None  # no price per second
    assert openai.media_usage({"data": [{"url": "u"}]}) is None  # dall-e: none reported
    bad = openai.media_usage({"usage": {"input_tokens": -1, "output_tokens": 5}})
    assert bad is not None and bad.anomaly is not None  # invalid counts: usage unknown

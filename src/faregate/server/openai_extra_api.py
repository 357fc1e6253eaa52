"""OpenAI's endpoints beyond text, with the request life of every proxied route (``server/proxy.py``):
``POST /v1/moderations``, ``/v1/images/generations``, ``/v1/audio/speech`` (JSON bodies, checked as
far as routing needs) and ``/v1/audio/transcriptions`` (a multipart form: ``server/forms.py``).

They are served by OpenAI-compatible deployments only and answered as the upstream answers
(``faregate.media``); a model whose deployments cannot serve one gets a 400 naming the route.
Moderations are free, like counting tokens: no budget is reserved and no tokens are charged
against a key's limits. A moderation request without ``model`` goes to ``omni-moderation-latest``,
the model OpenAI uses when none is named, so the SDK's ``client.moderations.create(input=...)``
works as it does against OpenAI.
"""

from __future__ import annotations

from typing import Any

import orjson

from faregate.errors import InvalidRequest
from faregate.server import forms, validate
from faregate.server.proxy import Front, proxy
from faregate.types import Endpoint

DEFAULT_MODERATION_MODEL = "omni-moderation-latest"


def parse(endpoint: Endpoint, body: bytes) -> dict[str, Any]:
    try:
        return validate.parse(endpoint, body)
    except InvalidRequest as err:
        if endpoint != "moderations" or err.param != "model" or err.code != "missing_field":
            raise
    payload: dict[str, Any] = orjson.loads(body)  # valid: only the model was missing
    return validate.parse(endpoint, orjson.dumps({**payload, "model": DEFAULT_MODERATION_MODEL}))


JSON = Front("openai_chat", parse)
FORM = Front("openai_chat", validate.parse, form=forms.parse)

MODERATIONS = proxy("moderations", JSON)
IMAGES = proxy("images_generations", JSON)
SPEECH = proxy("audio_speech", JSON)
TRANSCRIPTIONS = proxy("audio_transcriptions", FORM)

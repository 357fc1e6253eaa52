"""The bench mock's files pass the bench's own reply checks, in the format of the client that reads
them on a diagonal (so a target fails for the gateway's sake, never for a mock the checks cannot read)."""

from __future__ import annotations

import pytest

from bench import httpcheck, mock
from tests.fakes import openai_responses_wire

# (plain body, stream body, the client format that reads them on a diagonal)
DIAGONALS = {
    "openai": (mock.plain_body, mock.stream_body),
    "anthropic": (mock.anthropic_plain_body, mock.anthropic_stream_body),
    "responses": (mock.responses_plain_body, mock.responses_stream_body),
}


@pytest.mark.parametrize("client", sorted(DIAGONALS))
def test_each_diagonal_mock_passes_the_checks_of_its_client(client: str) -> None:
    plain, stream = DIAGONALS[client]
    assert httpcheck.check_plain(200, plain(), client) is None
    assert httpcheck.check_stream(200, stream(), client) is None
    assert httpcheck.count_stream(stream(), client) == (mock.STREAM_EVENTS, True)


def test_the_responses_stream_is_the_api_sequence() -> None:
    names = [name for name, _ in openai_responses_wire.parse_stream(mock.responses_stream_body())]
    head = ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
    tail = ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]
    assert names == [*head, *["response.output_text.delta"] * mock.STREAM_EVENTS, *tail]


def test_a_chat_stream_is_not_counted_as_a_responses_one() -> None:
    assert httpcheck.count_stream(mock.stream_body(), "responses") == (0, False)
    assert httpcheck.check_plain(200, mock.plain_body(), "responses") is not None

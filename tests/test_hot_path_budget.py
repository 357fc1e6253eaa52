"""Regression guard for the hot path, without timing: Python function calls per proxied request.

The count (``bench.callcount``: the real gateway under uvicorn, a loopback upstream, 200 requests)
does not drift with machine load, so it is safe in CI. The ceilings sit ~10% above what the code
measures (plain 127, stream 223, access logging on; with aiohttp as the upstream client it was 254
per plain request). History: 120/197 before the control plane's per-request pause check and the
per-credential retry loop (+5 plain); streams +26 for pricing (every chunk goes through the usage
stripper). A change that adds work to every request fails here and has to justify itself with
`make bench` figures and a new ceiling.
"""

from __future__ import annotations

import pytest

from bench.callcount import count_calls
from tests.fakes.openai_upstream import FakeOpenAI

CEILINGS = {False: 140, True: 245}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_python_calls_per_request_stay_under_the_ceiling(fake: FakeOpenAI, stream: bool) -> None:
    result = count_calls(fake.url, requests=200, stream=stream, log=True)
    top = sorted(result.by_function.items(), key=lambda kv: -kv[1])[:15]
    detail = "\n".join(f"{n / result.requests:6.1f}  {name}" for name, n in top)
    assert result.per_request <= CEILINGS[stream], f"{result.per_request:.0f} calls per request; top callers:\n{detail}"
    assert result.by_package.get("aiohttp", 0) == 0  # the upstream client is faregate.http1

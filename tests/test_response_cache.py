"""The response cache end to end (README, "Response cache"): real gateway processes in front of the
fake OpenAI and Anthropic upstreams (which count what reaches them), the official SDKs as clients,
once with the in-process store and once with Redis (a real redis-server): hits skip the upstream,
cost nothing against budgets and are logged with the saved cost; streams replay in the client's
format; sampling parameters and messages are keyed, `user`/metadata are not; Cache-Control is
honoured; tenants never share answers; errors and cut streams are never kept; purge empties it."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest
import redis as redis_client

from faregate.cache.key import cache_key
from faregate.cache.redis_store import PREFIX
from tests.fakes import anthropic_wire, openai_wire
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.support.configs import UPSTREAM_ENV
from tests.support.procs import MASTER_KEY, GatewayProcess
from tests.support.redis import RedisServer

ANTHROPIC_KEY = "sk-ant-CANARY-cache-0a1b2c3d4e5f6071"
TTL = 600


def config(oa: str, an: str, redis: str | None) -> str:
    state = f"state:\n  redis: {redis}\n" if redis else ""
    return f"""
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
{state}providers:
  oa:
    type: openai
    base_url: {oa}
    credentials: [{{id: main, key: "${{UPSTREAM_KEY}}"}}]
    timeout: 20
  an:
    type: anthropic
    base_url: {an}
    credentials: [{{id: main, key: "${{ANTHROPIC_KEY}}"}}]
    timeout: 20
models:
  cached:
    deployments: [{{provider: oa, model: gpt-4o-mini}}]
    cache: {{ttl: {TTL}}}
  claude:
    deployments: [{{provider: an, model: claude-sonnet-4-5}}]
    cache: {{ttl: {TTL}}}
  uncached:
    - {{provider: oa, model: gpt-4o-mini}}
routing:
  retries: 0
prices:
  gpt-4o-mini: {{input: 2.0, output: 8.0}}
  claude-sonnet-4-5: {{input: 3.0, output: 15.0}}
"""


@dataclass
class World:
    gw: GatewayProcess
    oa: FakeOpenAI
    an: FakeAnthropic
    redis: RedisServer | None
    admin: httpx.Client

    def openai(self, key: str = MASTER_KEY, **headers: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gw.url + "/v1", api_key=key, max_retries=0, default_headers=headers or None)

    def anthropic(self, key: str = MASTER_KEY) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.gw.url, api_key=key, max_retries=0)

    def key(self, team: str | None = None, **fields: Any) -> tuple[str, str]:
        """A new virtual key (its secret, its id), in ``team`` when given."""
        created = self.admin.post("/admin/keys", json={"name": "k" + uuid.uuid4().hex[:8], "team_id": team, **fields}).json()
        return created["key"], created["id"]

    def team(self) -> str:
        return str(self.admin.post("/admin/teams", json={"name": "t" + uuid.uuid4().hex[:8]}).json()["id"])

    def access_line(self, request_id: str, timeout: float = 15.0) -> dict[str, Any]:
        """A request's access line: written once it was recorded, after its answer was kept."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.gw.logs().splitlines():
                if f'"request_id":"{request_id}"' in line and '"logger":"faregate.access"' in line:
                    return dict(json.loads(line))
            assert time.monotonic() < deadline, f"no access line for {request_id}"
            time.sleep(0.02)

    def spend_row(self, request_id: str, timeout: float = 15.0) -> dict[str, Any]:
        """A request's spend log row (written in batches: waited for, with a bound)."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.admin.get("/admin/spend/logs", params={"request_id": request_id}).json()["data"]
            if rows:
                return dict(rows[0])
            assert time.monotonic() < deadline, f"no spend row for {request_id}"
            time.sleep(0.05)

    def upstream(self, prompt: str) -> int:
        """How many requests carrying ``prompt`` reached either upstream."""
        return sum(1 for fake in (self.oa, self.an) for r in fake.requests if prompt.encode() in r.body)


@pytest.fixture(scope="module", params=["memory", "redis"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("cache-" + request.param)
    with FakeOpenAI() as oa, FakeAnthropic() as an:
        server = RedisServer(tmp).start() if request.param == "redis" else None
        try:
            text = config(oa.url, an.url, server.url if server else None)
            env = {**UPSTREAM_ENV, "ANTHROPIC_KEY": ANTHROPIC_KEY}
            with (
                GatewayProcess(tmp, text, env=env) as gw,
                httpx.Client(base_url=gw.url, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=30) as admin,
            ):
                yield World(gw, oa, an, server, admin)
        finally:
            if server is not None:
                server.stop()


def prompt() -> str:
    return "cache test " + uuid.uuid4().hex


def chat(client: openai.OpenAI, text: str, model: str = "cached", **extra: Any) -> tuple[str, str | None, str, str]:
    """(answer text, x-faregate-cache, request id, raw body) of one plain Chat request."""
    raw = client.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": text}], **extra)
    completion = raw.parse()
    return completion.choices[0].message.content or "", raw.headers.get("x-faregate-cache"), raw.headers["x-request-id"], raw.text


def chat_stream(client: openai.OpenAI, text: str, **extra: Any) -> tuple[str, str | None, str]:
    with client.chat.completions.with_streaming_response.create(
        model="cached", messages=[{"role": "user", "content": text}], stream=True, **extra
    ) as response:
        pieces = [c.choices[0].delta.content or "" for c in response.parse() if c.choices]
        return "".join(pieces), response.headers.get("x-faregate-cache"), response.headers["x-request-id"]


def spent(world: World, key_id: str) -> float:
    """The key's settled spend once nothing is reserved any more (settling runs after the answer)."""
    deadline = time.monotonic() + 15
    while True:
        state = world.admin.get(f"/admin/keys/{key_id}").json()
        if state["reserved_usd"] == 0:
            return float(state["spent_usd"])
        assert time.monotonic() < deadline, state
        time.sleep(0.02)


def test_a_second_identical_request_is_a_hit_that_costs_nothing(world: World) -> None:
    secret, key_id = world.key(budget_usd=10.0)
    client, text = world.openai(secret), prompt()
    first, state, rid, body = chat(client, text)
    assert state == "miss" and first == openai_wire.DEFAULT_REPLY
    miss = world.access_line(rid)
    cost = miss["cost_usd"]
    assert cost > 0 and miss["cache"] == "miss" and spent(world, key_id) == pytest.approx(cost)
    again, state, rid, body_again = chat(client, text, user="someone-else", metadata={"run": "2"}, stream_options=None)
    assert state == "hit" and again == first and body_again == body  # the plain answer's own bytes
    hit = world.access_line(rid)
    assert hit["cache"] == "hit" and hit["saved_usd"] == pytest.approx(cost) and hit["cost_usd"] == 0 and hit["deployment"] is None
    assert world.upstream(text) == 1
    assert spent(world, key_id) == pytest.approx(cost)  # no reservation, no spend
    row = world.spend_row(rid)
    assert row["cost_usd"] == 0 and row["deployment"] is None and row["status"] == 200 and row["key_id"] == key_id
    assert row["cache"] == "hit" and row["saved_usd"] == pytest.approx(cost)  # the spend log says why it cost 0
    missed = world.spend_row(miss["request_id"])
    assert missed["cache"] == "miss" and missed["saved_usd"] is None and missed["cost_usd"] == pytest.approx(cost)
    metrics = world.admin.get("/metrics").text
    assert 'faregate_cache_total{model="cached",result="hit"}' in metrics
    assert 'faregate_cache_saved_usd_total{model="cached"}' in metrics


def test_the_dashboard_says_a_hit_came_from_the_cache_and_what_it_saved(world: World) -> None:
    client, text = world.openai(), prompt()
    _, state, miss_id, _ = chat(client, text)
    _, state_again, hit_id, _ = chat(client, text)
    assert (state, state_again) == ("miss", "hit")
    cost = world.spend_row(miss_id)["cost_usd"]
    assert world.spend_row(hit_id)["cache"] == "hit"
    with httpx.Client(base_url=world.gw.url + "/ui/", timeout=30) as ui:
        page = ui.get("signin")
        csrf = re.search(r'name="csrf-token" content="([^"]*)"', page.text)
        assert csrf is not None and ui.post("signin", data={"key": MASTER_KEY, "csrf": csrf.group(1)}).status_code == 303
        listed = ui.get("requests", params={"request_id": hit_id}).text
        assert f"hit, saved ${cost:.6f}" in listed and "<em>response cache</em>" in listed
        story = ui.get("request", params={"id": hit_id}).text
        assert f"served from the response cache, saved ${cost:.6f}" in story
        assert "miss" in ui.get("requests", params={"request_id": miss_id}).text.split('class="cache">')[1][:20]


def test_a_plain_miss_replays_as_a_stream_and_a_streamed_miss_as_a_plain_reply(world: World) -> None:
    client = world.openai()
    text = prompt()
    plain, state, _, _ = chat(client, text)
    assert state == "miss"
    world.access_line(chat(client, text)[2])  # (a hit: nothing more to keep)
    streamed, state, _ = chat_stream(client, text, stream_options={"include_usage": True})
    assert state == "hit" and streamed == plain
    other = prompt()
    streamed, state, rid = chat_stream(client, other)
    assert state == "miss" and streamed == openai_wire.DEFAULT_REPLY
    world.access_line(rid)
    plain, state, _, _ = chat(client, other)
    assert state == "hit" and plain == streamed
    streamed_again, state, _ = chat_stream(client, other)
    assert state == "hit" and streamed_again == streamed
    assert world.upstream(text) == 1 and world.upstream(other) == 1


def test_anthropic_clients_get_their_own_format_back_streamed_and_not(world: World) -> None:
    client, text = world.anthropic(), prompt()
    with client.messages.stream(model="claude", max_tokens=100, messages=[{"role": "user", "content": text}]) as stream:
        first = stream.get_final_text()
        rid = stream.response.headers["x-request-id"]
        assert stream.response.headers["x-faregate-cache"] == "miss"
    assert first == anthropic_wire.DEFAULT_REPLY
    world.access_line(rid)
    with client.messages.stream(model="claude", max_tokens=100, messages=[{"role": "user", "content": text}]) as stream:
        assert stream.get_final_text() == first and stream.response.headers["x-faregate-cache"] == "hit"
        final = stream.get_final_message()
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0
    raw = client.messages.with_raw_response.create(model="claude", max_tokens=100, messages=[{"role": "user", "content": text}])
    message = raw.parse()
    assert raw.headers["x-faregate-cache"] == "hit" and message.content[0].text == first  # type: ignore[union-attr]
    assert world.upstream(text) == 1


def test_sampling_parameters_and_messages_are_keyed(world: World) -> None:
    client, text = world.openai(), prompt()
    world.access_line(chat(client, text, temperature=0.1)[2])
    assert chat(client, text, temperature=0.2)[1] == "miss"
    assert chat(client, text, temperature=0.1, max_tokens=7)[1] == "miss"
    assert chat(client, text + " more", temperature=0.1)[1] == "miss"
    assert chat(client, text, temperature=0.1, user="u2")[1] == "hit"
    assert world.upstream(text) == 4


def test_no_cache_is_not_read_but_stored_and_no_store_neither(world: World) -> None:
    text = prompt()
    world.access_line(chat(world.openai(), text)[2])
    world.oa.enqueue(openai_wire.Behaviour(reply_text="fresher"))
    answer, state, rid, _ = chat(world.openai(**{"Cache-Control": "no-cache"}), text)
    assert state == "miss" and answer == "fresher"
    assert world.access_line(rid)["cache"] == "no_cache"
    assert chat(world.openai(), text)[:2] == ("fresher", "hit")  # the fresh answer was kept
    answer, state, rid, _ = chat(world.openai(**{"Cache-Control": "no-store"}), text)
    assert state == "miss" and answer == openai_wire.DEFAULT_REPLY and world.access_line(rid)["cache"] == "no_store"
    assert chat(world.openai(), text)[:2] == ("fresher", "hit")  # no-store replaced nothing
    other = prompt()
    world.access_line(chat(world.openai(**{"Cache-Control": "no-store"}), other)[2])
    assert chat(world.openai(), other)[1] == "miss"  # nothing was kept
    assert world.upstream(text) == 3 and world.upstream(other) == 2


def test_tenants_never_share_cached_answers(world: World) -> None:
    team_a, team_b = world.team(), world.team()
    a1, a2, b1 = world.key(team_a)[0], world.key(team_a)[0], world.key(team_b)[0]
    lone1, lone2 = world.key()[0], world.key()[0]
    text = prompt()
    world.access_line(chat(world.openai(a1), text)[2])
    assert chat(world.openai(a2), text)[1] == "hit"  # one team: one tenant
    for secret in (b1, lone1, lone2, MASTER_KEY):  # another team, two keys without a team, the master key
        state, rid = chat(world.openai(secret), text)[1:3]
        assert state == "miss"
        world.access_line(rid)
        assert chat(world.openai(secret), text)[1] == "hit"
    assert world.upstream(text) == 5


def test_a_hit_counts_against_requests_per_minute(world: World) -> None:
    secret, _ = world.key(rpm=2)
    text = prompt()
    world.access_line(chat(world.openai(secret), text)[2])
    assert chat(world.openai(secret), text)[1] == "hit"
    with pytest.raises(openai.RateLimitError) as caught:
        chat(world.openai(secret), text)
    assert caught.value.code == "rate_limit_exceeded" and world.upstream(text) == 1


def test_a_model_without_cache_never_caches(world: World) -> None:
    text = prompt()
    for _ in range(2):
        raw = world.openai().chat.completions.with_raw_response.create(model="uncached", messages=[{"role": "user", "content": text}])
        assert "x-faregate-cache" not in raw.headers
        world.access_line(raw.headers["x-request-id"])
    assert world.upstream(text) == 2


def test_errors_and_cut_streams_are_not_kept(world: World) -> None:
    text = prompt()
    world.oa.enqueue(openai_wire.Behaviour(status=400, error={"message": "bad", "type": "invalid_request_error", "code": None}))
    with pytest.raises(openai.BadRequestError) as caught:
        world.openai().chat.completions.create(model="cached", messages=[{"role": "user", "content": text}])
    world.access_line(caught.value.response.headers["x-request-id"])
    world.oa.enqueue(openai_wire.Behaviour(stream_drop_after=2))
    with pytest.raises(openai.APIError):
        chat_stream(world.openai(), text)
    state, rid = chat(world.openai(), text)[1:3]
    assert state == "miss"
    world.access_line(rid)
    assert chat(world.openai(), text)[1] == "hit" and world.upstream(text) == 3


def test_purge_empties_the_cache_and_only_faregates_keys(world: World) -> None:
    text = prompt()
    world.access_line(chat(world.openai(), text)[2])
    other = redis_client.Redis.from_url(world.redis.url) if world.redis else None
    if other is not None:
        other.set("someone-else:key", b"kept")
    purged = world.admin.post("/cache/purge")
    assert purged.status_code == 200 and purged.json()["response_cache"]["purged"] >= 1
    assert chat(world.openai(), text)[1] == "miss"
    if other is not None:
        assert other.get("someone-else:key") == b"kept"
        other.close()


def test_redis_entries_carry_the_model_ttl(world: World) -> None:
    if world.redis is None:
        pytest.skip("the in-process store's expiry is checked with an advanced clock (tests/cache)")
    secret, key_id = world.key()
    text = prompt()
    world.access_line(chat(world.openai(secret), text)[2])
    payload = {"model": "cached", "messages": [{"role": "user", "content": text}]}
    name = PREFIX + cache_key("key:" + key_id, "openai_chat", "chat", "cached", payload)
    with redis_client.Redis.from_url(world.redis.url) as r:
        ttl = r.pttl(name)
        assert 0 < ttl <= TTL * 1000
        assert all(k.startswith(PREFIX.encode()) for k in r.scan_iter(match="faregate:rc:*"))


def test_redis_down_is_a_miss_never_an_error(world: World) -> None:
    """Last in the module: it stops the module's redis-server."""
    if world.redis is None:
        pytest.skip("no Redis in this gateway")
    text = prompt()
    world.redis.stop()
    for _ in range(2):
        answer, state, rid, _ = chat(world.openai(), text)
        assert answer == openai_wire.DEFAULT_REPLY and state == "miss"
        world.access_line(rid)
    assert world.upstream(text) == 2
    assert "response cache: redis unreachable" in world.gw.logs()

"""Per-key limits: the token bucket, the Redis GCRA, the guard, and 429s on each front."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from imagegate.errors import AuthError, PermissionDenied, RateLimited
from imagegate.server.context import ApiKey
from imagegate.server.guard import admit, bearer_key
from imagegate.server.limits import LocalLimiter, RedisLimiter, clamp_retry_after
from tests.fakes.server import free_port
from tests.gateway_fixtures import Gateway, KeyPair, api_key, gateway, gateway_factory

__all__ = ["api_key", "gateway", "gateway_factory"]  # fixtures, imported for pytest

REDIS_URL = "redis://127.0.0.1:6379/15"
DS_ASYNC = "/api/v1/services/aigc/image-generation/generation"
DS_BODY = {
    "model": "wan2.6-t2i",
    "input": {"messages": [{"role": "user", "content": [{"text": "a lighthouse"}]}]},
    "parameters": {"n": 1},
}
ASYNC = {"X-DashScope-Async": "enable"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def key(qps: float = 2.0, max_in_flight: int = 5) -> ApiKey:
    return ApiKey(id=f"ak_{uuid.uuid4().hex[:12]}", qps=qps, max_in_flight=max_in_flight)


# -- units -----------------------------------------------------------------------------------


def test_retry_after_is_whole_seconds_between_1_and_8() -> None:
    assert [clamp_retry_after(s) for s in (0, 0.01, 1.0, 1.2, 7.5, 8, 30)] == [
        1,
        1,
        1,
        2,
        8,
        8,
        8,
    ]
    assert clamp_retry_after(float("nan")) == 8


async def test_token_bucket_allows_a_burst_then_refills() -> None:
    clock = Clock()
    limiter = LocalLimiter(clock=clock)
    k = key(qps=2)
    assert [(await limiter.acquire(k, 0)).allowed for _ in range(3)] == [True, True, False]
    refused = await limiter.acquire(k, 0)
    assert (refused.reason, refused.retry_after) == ("qps", 1)
    clock.now += 0.5  # one token back at 2 per second
    assert (await limiter.acquire(k, 0)).allowed
    assert not (await limiter.acquire(k, 0)).allowed
    other = key(qps=2)  # buckets are per key
    assert (await limiter.acquire(other, 0)).allowed


async def test_slow_key_is_told_to_wait_at_most_8_seconds() -> None:
    clock = Clock()
    limiter = LocalLimiter(clock=clock)
    slow = key(qps=0.05)  # one request per 20 s
    assert (await limiter.acquire(slow, 0)).allowed
    refused = await limiter.acquire(slow, 0)
    assert not refused.allowed and refused.retry_after == 8
    clock.now += 17.5
    assert (await limiter.acquire(slow, 0)).retry_after == 3


async def test_in_flight_cap_is_checked_before_spending_a_token() -> None:
    limiter = LocalLimiter(in_flight_retry_after=3, clock=Clock())
    k = key(qps=1, max_in_flight=2)
    refused = await limiter.acquire(k, 2)
    assert (refused.allowed, refused.reason, refused.retry_after) == (False, "in_flight", 3)
    assert (await limiter.acquire(k, 1)).allowed  # the token was not spent by the refusal


# -- guard -------------------------------------------------------------------------------------


def test_bearer_key_names_the_header(gateway: Gateway, api_key: KeyPair) -> None:
    ctx = gateway.ctx
    assert bearer_key(ctx, f"Bearer {api_key.secret}").id == api_key.app_id
    assert bearer_key(ctx, f"bearer   {api_key.secret} ").id == api_key.app_id
    for header in (None, "", "Basic abc", "Bearer", "Bearer sk-ig-not-a-key"):
        with pytest.raises(AuthError) as caught:
            bearer_key(ctx, header)
        assert caught.value.field == "Authorization"
        assert "Authorization" in caught.value.message or "API-key" in caught.value.message


async def test_admit_checks_models_then_limits(gateway: Gateway) -> None:
    ctx = gateway.ctx
    only = gateway.new_key(models=("wan2.6-t2i",), qps=1)
    with pytest.raises(PermissionDenied) as denied:
        await admit(ctx, only.key, "kling-v2-1")
    assert denied.value.field == "model" and "kling-v2-1" in denied.value.message
    await admit(ctx, only.key, "wan2.6-t2i")
    with pytest.raises(RateLimited) as limited:
        await admit(ctx, only.key, "wan2.6-t2i")
    assert 1 <= limited.value.retry_after <= 8  # type: ignore[operator]


# -- over HTTP -------------------------------------------------------------------------------


def test_qps_limit_answers_429_with_retry_after_on_each_front(gateway: Gateway) -> None:
    slow = gateway.new_key(qps=0.2)  # one request, then 5 s to wait

    first = httpx.post(gateway.url(DS_ASYNC), json=DS_BODY, headers={**slow.headers, **ASYNC})
    assert first.status_code == 200, first.text
    ds = httpx.post(gateway.url(DS_ASYNC), json=DS_BODY, headers={**slow.headers, **ASYNC})
    assert ds.status_code == 429
    assert ds.json()["code"] == "Throttling.RateQuota"
    assert ds.headers["retry-after"].isdigit() and 1 <= int(ds.headers["retry-after"]) <= 8

    oa = httpx.post(
        gateway.url("/v1/images/generations"),
        headers=slow.headers,
        json={"model": "wan2.6-t2i", "prompt": "a lighthouse"},
    )
    assert oa.status_code == 429
    assert oa.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(oa.headers["retry-after"]) <= 8

    token = httpx.post(
        gateway.url("/open/v1/access_token"),
        json={"app_id": slow.app_id, "secret_key": slow.secret},
    ).json()["data"]["access_token"]
    cj = httpx.post(
        gateway.url("/open/v1/ai_creation/task/submit"),
        headers={"access_token": token},
        json={
            "creation_type": 3,
            "model_code": "doubao-seedream-4.0",
            "ref_prompt": "a lighthouse",
            "number_of_images": 1,
        },
    )
    assert cj.status_code == 200 and cj.json()["code"] == 40001
    assert 1 <= int(cj.headers["retry-after"]) <= 8


def test_in_flight_limit_answers_429_until_a_task_ends(
    gateway_factory: Callable[..., Gateway],
) -> None:
    gateway = gateway_factory(sandbox={"latency": 30.0})
    busy = gateway.new_key(max_in_flight=2)
    headers = {**busy.headers, **ASYNC}
    ids = []
    for _ in range(2):
        answer = httpx.post(gateway.url(DS_ASYNC), json=DS_BODY, headers=headers)
        assert answer.status_code == 200, answer.text
        ids.append(answer.json()["output"]["task_id"])
    third = httpx.post(gateway.url(DS_ASYNC), json=DS_BODY, headers=headers)
    assert third.status_code == 429, third.text
    assert "in flight" in third.json()["message"]
    assert 1 <= int(third.headers["retry-after"]) <= 8

    canceled = httpx.post(gateway.url(f"/api/v1/tasks/{ids[0]}/cancel"), headers=busy.headers)
    if canceled.status_code == 200:  # still PENDING: one slot is free again
        again = httpx.post(gateway.url(DS_ASYNC), json=DS_BODY, headers=headers)
        assert again.status_code == 200, again.text


# -- Redis (shared across nodes) -------------------------------------------------------------


def _redis_reachable() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping())
    except Exception:
        return False


needs_redis = pytest.mark.skipif(
    not _redis_reachable(), reason="Redis is not reachable on 127.0.0.1:6379"
)


@pytest.fixture
async def redis_limiters() -> AsyncIterator[tuple[RedisLimiter, RedisLimiter]]:
    nodes = (RedisLimiter(REDIS_URL), RedisLimiter(REDIS_URL))
    yield nodes
    for node in nodes:
        await node.close()


@pytest.mark.redis
@needs_redis
async def test_redis_limiter_shares_one_budget_between_nodes(
    redis_limiters: tuple[RedisLimiter, RedisLimiter],
) -> None:
    a, b = redis_limiters
    k = key(qps=2)
    try:
        assert (await a.acquire(k, 0)).allowed
        assert (await b.acquire(k, 0)).allowed
        refused = await a.acquire(k, 0)
        assert (refused.allowed, refused.reason, refused.retry_after) == (False, "qps", 1)
        assert not (await b.acquire(k, 0)).allowed  # the other node sees the same budget
        assert (await a.acquire(key(qps=2), 0)).allowed  # another key has its own
        slow = key(qps=0.1)
        assert (await b.acquire(slow, 0)).allowed
        assert (await a.acquire(slow, 0)).retry_after == 8
        capped = await a.acquire(key(max_in_flight=1), 1)
        assert (capped.allowed, capped.reason) == (False, "in_flight")
    finally:
        await a.reset(k)


async def test_redis_limiter_degrades_to_local_limits_when_redis_is_down() -> None:
    limiter = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0")
    k = key(qps=1)
    try:
        assert (await limiter.acquire(k, 0)).allowed
        refused = await limiter.acquire(k, 0)
        assert not refused.allowed and 1 <= refused.retry_after <= 8
    finally:
        await limiter.close()


@pytest.mark.redis
@needs_redis
def test_two_gateway_nodes_share_a_keys_rate_through_redis(
    gateway_factory: Callable[..., Gateway],
) -> None:
    first = gateway_factory(redis_url=REDIS_URL)
    second = gateway_factory(redis_url=REDIS_URL, data_dir=first.data_dir)  # same database
    shared = first.new_key(qps=0.5)
    headers = {**shared.headers, **ASYNC}
    assert httpx.post(first.url(DS_ASYNC), json=DS_BODY, headers=headers).status_code == 200
    answer = httpx.post(second.url(DS_ASYNC), json=DS_BODY, headers=headers)
    assert answer.status_code == 429, answer.text
    assert 1 <= int(answer.headers["retry-after"]) <= 8

"""Per-key admission: a QPS budget and a cap on tasks in flight.

Two implementations of ``imagegate.server.context.Limiter``:

- ``LocalLimiter``: a token bucket per key, in this process. Right for one node.
- ``RedisLimiter``: GCRA (the "generic cell rate algorithm", a token bucket stored as one
  timestamp) evaluated atomically by a Lua script on Redis, so every node behind a load balancer
  draws from the same budget. The script reads Redis's own clock, so node clocks need not agree.

The in-flight count is the caller's (``guard.admit`` asks the task service, which sees the shared
database), so both limiters only compare it with the key's cap. ``0`` as a key's ``qps`` or
``max_in_flight`` means "no limit".

Every refusal carries ``retry_after`` in whole seconds, 1 to 8 (the rulings: a 429 carries
``Retry-After`` of at most 8 seconds).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from imagegate.server.context import ApiKey, LimitDecision, Limiter

log = logging.getLogger(__name__)

MIN_RETRY_AFTER = 1
MAX_RETRY_AFTER = 8


def clamp_retry_after(seconds: float) -> int:
    """Whole seconds a client should wait, rounded up, never below 1 nor above 8."""
    if math.isnan(seconds):
        return MAX_RETRY_AFTER
    return max(MIN_RETRY_AFTER, min(MAX_RETRY_AFTER, math.ceil(seconds)))


def burst_for(qps: float) -> float:
    """How many requests may arrive at once: one second's worth, and at least one."""
    return max(1.0, qps)


def check_in_flight(key: ApiKey, in_flight: int, retry_after: float) -> LimitDecision | None:
    """A refusal when ``key`` already has its maximum number of unfinished tasks."""
    if key.max_in_flight > 0 and in_flight >= key.max_in_flight:
        return LimitDecision(False, clamp_retry_after(retry_after), "in_flight")
    return None


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class LocalLimiter:
    """Token bucket per key id, kept in memory (one gateway process).

    ``in_flight_retry_after`` is the hint given when the in-flight cap is hit: nothing here knows
    when a task will end, so it is a fixed, configurable guess.
    """

    def __init__(
        self,
        *,
        in_flight_retry_after: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.in_flight_retry_after = in_flight_retry_after
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    async def acquire(self, key: ApiKey, in_flight: int) -> LimitDecision:
        refused = check_in_flight(key, in_flight, self.in_flight_retry_after)
        if refused is not None:
            return refused
        if key.qps <= 0:
            return LimitDecision(True)
        return self._take(key.id, float(key.qps))

    def _take(self, key_id: str, qps: float) -> LimitDecision:
        burst = burst_for(qps)
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key_id)
            if bucket is None:
                bucket = self._buckets[key_id] = _Bucket(tokens=burst, stamp=now)
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.stamp) * qps)
            bucket.stamp = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return LimitDecision(True)
            wait = (1.0 - bucket.tokens) / qps
        return LimitDecision(False, clamp_retry_after(wait), "qps")


#: GCRA in one atomic step. KEYS[1]: the key's "theoretical arrival time" (ms, Redis clock).
#: ARGV[1]: emission interval in ms (1000 / qps); ARGV[2]: burst. Returns {allowed, wait_ms}.
GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local allow_at = tat + interval - burst * interval
if now < allow_at then
  return {0, allow_at - now}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1000)
return {1, 0}
"""


class RedisLimiter:
    """QPS budget shared by every node through Redis (GCRA in a Lua script).

    If Redis cannot be reached the limiter degrades to a per-node ``LocalLimiter`` and logs it:
    a rate limiter outage should throttle less precisely, not take the gateway down.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "imagegate:qps:",
        in_flight_retry_after: float = 2.0,
        client: Any | None = None,
    ) -> None:
        import redis.asyncio as aioredis  # optional dependency: imported only when chosen

        self.url = url
        self.prefix = prefix
        self.in_flight_retry_after = in_flight_retry_after
        self._redis = client or aioredis.Redis.from_url(
            url, socket_connect_timeout=1.0, socket_timeout=1.0
        )
        self._script = self._redis.register_script(GCRA_SCRIPT)
        self._fallback = LocalLimiter(in_flight_retry_after=in_flight_retry_after)
        self._degraded = False

    async def acquire(self, key: ApiKey, in_flight: int) -> LimitDecision:
        refused = check_in_flight(key, in_flight, self.in_flight_retry_after)
        if refused is not None:
            return refused
        if key.qps <= 0:
            return LimitDecision(True)
        interval_ms = 1000.0 / float(key.qps)
        try:
            allowed, wait_ms = await self._script(
                keys=[self.prefix + key.id], args=[interval_ms, burst_for(float(key.qps))]
            )
        except Exception as exc:  # any Redis/transport failure: degrade, do not fail requests
            if not self._degraded:
                log.warning(
                    "Redis limiter at %s unreachable (%s); limiting per node", self.url, exc
                )
                self._degraded = True
            return await self._fallback.acquire(key, in_flight)
        self._degraded = False
        if int(allowed) == 1:
            return LimitDecision(True)
        return LimitDecision(False, clamp_retry_after(float(wait_ms) / 1000.0), "qps")

    async def reset(self, key: ApiKey) -> None:
        """Forget ``key``'s budget (tests and key rotation)."""
        await self._redis.delete(self.prefix + key.id)

    async def close(self) -> None:
        await self._redis.aclose()


def make_limiter(redis_url: str | None, *, in_flight_retry_after: float = 2.0) -> Limiter:
    """The limiter the settings ask for: Redis when a URL is configured, else in-process."""
    if redis_url:
        return RedisLimiter(redis_url, in_flight_retry_after=in_flight_retry_after)
    return LocalLimiter(in_flight_retry_after=in_flight_retry_after)

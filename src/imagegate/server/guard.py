"""Who is calling and may they submit now: the two checks every front delegates here.

Fronts never look at keys or limits themselves; they call ``bearer_key`` (DashScope and
OpenAI-style routes; Chanjing uses its access token through ``ctx.keys.check_token``) and, before
submitting a task, ``admit``. The errors raised are imagegate's own; each front turns them into
its protocol's shape (401 / 10400, 403 / 40000, 429 / 40001 with ``Retry-After``).
"""

from __future__ import annotations

from imagegate.errors import AuthError, PermissionDenied, RateLimited
from imagegate.server.context import ApiKey, GatewayContext

AUTH_HEADER = "Authorization"


def bearer_key(ctx: GatewayContext, authorization_header: str | None) -> ApiKey:
    """The key named by an ``Authorization: Bearer <key>`` header, or ``AuthError``."""
    if authorization_header is None or not authorization_header.strip():
        raise AuthError(
            "No API-key provided: send the header 'Authorization: Bearer <key>'.",
            field=AUTH_HEADER,
            http_status=401,
        )
    scheme, _, token = authorization_header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError(
            "Invalid API-key provided: the Authorization header must read 'Bearer <key>'.",
            field=AUTH_HEADER,
            http_status=401,
        )
    key = ctx.keys.authenticate(token)
    if key is None or key.revoked:
        raise AuthError(
            "Invalid API-key provided: the key in the Authorization header is unknown or revoked.",
            field=AUTH_HEADER,
            http_status=401,
        )
    return key


async def admit(ctx: GatewayContext, key: ApiKey, model: str) -> None:
    """Let ``key`` submit one task for ``model`` now, or raise why not.

    ``PermissionDenied`` when the key is restricted to other models; ``RateLimited`` (with
    ``retry_after`` in whole seconds, 1..8) when its QPS budget or its in-flight cap is spent.
    """
    if not key.allows(model):
        allowed = ", ".join(key.models)
        raise PermissionDenied(
            f"model: this API key may not use model '{model}' (it may use: {allowed}).",
            field="model",
            http_status=403,
        )
    in_flight = await ctx.service.in_flight(key)
    decision = await ctx.limiter.acquire(key, in_flight)
    if decision.allowed:
        return
    if decision.reason == "in_flight":
        message = (
            f"Too many tasks in flight for this API key: {in_flight} unfinished, the limit is "
            f"{key.max_in_flight}; retry after {decision.retry_after} s."
        )
    else:
        message = (
            f"Requests rate limit exceeded for this API key ({key.qps:g} requests per second); "
            f"retry after {decision.retry_after} s."
        )
    raise RateLimited(message, retry_after=decision.retry_after, http_status=429)

"""The identity provider's signing keys (its JWKS), fetched, cached and kept fresh.

Verifying a token never waits on the network, with one exception: a token whose key id
(`kid`) is not cached, say the provider has just rotated its keys. Such a token triggers one
fetch, shared by every request waiting for it, and at most one every `min_refetch_s`, so
made-up kids cannot turn the service into a flood at the provider. Besides, the keys are
fetched at start-up and again every `refresh_s` in the background, so a rotation is usually
picked up before the first token signed with the new key arrives.

When the endpoint is away, the keys already held stay in use (a provider publishes its next
key well before it signs with it, and keeps the old one published while its tokens live);
`jifen_jwks_fetch_total{outcome="error"}` and `jifen_jwks_keys_age_seconds` say so.

aiohttp, not PyJWKClient: that client fetches with urllib, which would block the event loop
for as long as the provider takes to answer. PyJWK still parses each key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt

from shared.metrics import JWKS_FETCHES, JWKS_KEYS, JWKS_KEYS_AGE

log = logging.getLogger(__name__)

# Public-key algorithms only: a symmetric (`oct`) key or `alg: HS256` published in a JWKS is
# skipped, so no token is ever checked with an HMAC over key material anyone can read.
ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})
MAX_JWKS_BYTES = 1 << 20


@dataclass(frozen=True, eq=False)
class SigningKey:
    kid: str | None
    key: Any  # a `cryptography` public key
    algorithm: str  # the one algorithm a token signed with this key may name


def parse_jwks(document: Any) -> dict[str | None, SigningKey]:
    """The usable signing keys of a JWKS document, by kid; `ValueError` when there are none.

    A key's algorithm comes from the key itself (its `alg`, or its type and curve), never
    from a token: RSA -> RS256, EC P-256 -> ES256, Ed25519 -> EdDSA."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError('not a JWKS document (no "keys" list)')
    keys: dict[str | None, SigningKey] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") not in _KEY_TYPES:
            continue
        alg = jwk.get("alg")
        if jwk.get("use", "sig") != "sig" or (alg is not None and alg not in ASYMMETRIC):
            continue  # an encryption key, or one for an algorithm not accepted here
        try:
            parsed = jwt.PyJWK(jwk)
        except (jwt.PyJWTError, ValueError, TypeError):
            continue  # malformed, or a curve PyJWT does not know
        if parsed.algorithm_name not in ASYMMETRIC:
            continue  # e.g. secp256k1
        kid = jwk.get("kid") if isinstance(jwk.get("kid"), str) else None
        keys[kid] = SigningKey(kid, parsed.key, parsed.algorithm_name)
    if not keys:
        raise ValueError("the JWKS holds no usable signing key (RSA, EC or Ed25519)")
    return keys


class JwksKeys:
    """The keys of one JWKS URL. `get` is what the request path calls; `refetch` is awaited
    only for an unknown kid, and only when `may_refetch()` allows it."""

    def __init__(
        self,
        url: str,
        service: str,
        *,
        refresh_s: float = 300.0,
        min_refetch_s: float = 10.0,
        timeout_s: float = 5.0,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        self.service = service
        self.refresh_s = refresh_s
        self.min_refetch_s = min_refetch_s
        self.timeout_s = timeout_s
        self._on_change = on_change
        self._keys: dict[str | None, SigningKey] = {}
        self._fingerprint = ""
        self._fetched_at: float | None = None  # monotonic, of the last successful fetch
        self._last_attempt = float("-inf")
        self._last_ok = False
        self._inflight: asyncio.Task[bool] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._refresher: asyncio.Task[None] | None = None
        JWKS_KEYS_AGE.labels(service).set_function(self.age)

    def get(self, kid: str | None) -> SigningKey | None:
        """The key a token names; a token naming none may use the only key there is."""
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    def may_refetch(self) -> bool:
        """True when a fetch runs (join it) or the last one is long enough ago."""
        return (
            self._inflight is not None
            or time.monotonic() - self._last_attempt >= self.min_refetch_s
        )

    def age(self) -> float:
        if self._fetched_at is None:
            return float("inf")
        return time.monotonic() - self._fetched_at

    @property
    def degraded(self) -> bool:
        """The last fetch failed: the keys in use (if any) are those of an earlier one."""
        return not self._last_ok

    async def refetch(self) -> bool:
        """Fetch the keys now, or join the fetch under way; True when it succeeded. Never
        raises: a failure is logged and counted, and the cached keys stay."""
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._fetch())
        # shielded: a caller that gives up does not cancel the fetch the others wait for
        return await asyncio.shield(self._inflight)

    async def start(self) -> None:
        """Fetch once (a provider that is down delays the start by at most `timeout_s`),
        then keep refreshing in the background."""
        await self.refetch()
        self._refresher = asyncio.create_task(self._refresh_loop(), name="jwks-refresh")

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
            self._refresher = None
        if self._inflight is not None:
            await asyncio.gather(self._inflight, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _refresh_loop(self) -> None:
        while True:
            # after a failure, try again sooner: the keys in use are getting old
            await asyncio.sleep(self.refresh_s if self._last_ok else min(30.0, self.refresh_s))
            await self.refetch()

    async def _fetch(self) -> bool:
        self._last_attempt = time.monotonic()
        try:
            document = await self._download()
            keys = parse_jwks(document)
        except Exception as exc:  # the network, the status, the body: all degrade the same
            self._last_ok = False
            JWKS_FETCHES.labels(self.service, "error").inc()
            log.warning(
                "could not fetch the JWKS at %s (%s: %s); verifying with the %d keys cached",
                self.url,
                type(exc).__name__,
                exc,
                len(self._keys),
            )
            return False
        finally:
            self._inflight = None
        self._last_ok = True
        self._fetched_at = time.monotonic()
        JWKS_FETCHES.labels(self.service, "ok").inc()
        fingerprint = json.dumps(document["keys"], sort_keys=True)
        if fingerprint != self._fingerprint:
            added = set(keys) - set(self._keys)
            self._keys, self._fingerprint = keys, fingerprint
            JWKS_KEYS.labels(self.service).set(len(keys))
            log.info(
                "JWKS keys in use: %s (new: %s)", sorted(map(str, keys)), sorted(map(str, added))
            )
            if self._on_change is not None:
                self._on_change()
        return True

    async def _download(self) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            )
        async with self._session.get(self.url, headers={"Accept": "application/json"}) as answer:
            if answer.status != 200:
                raise ValueError(f"HTTP {answer.status}")
            body = bytearray()
            async for chunk in answer.content.iter_chunked(1 << 16):
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError(f"larger than {MAX_JWKS_BYTES} bytes")
        return json.loads(body)

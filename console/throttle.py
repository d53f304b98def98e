"""The sign-in throttle: wrong passwords slowed per operator name and per client address,
counted in Valkey so that every console replica draws on the same buckets.

Each name may take `failures` wrong passwords, then one more per `cooldown_s`; each address
four times as many across names (token buckets that refill at one token per cooldown).
`admit` takes a token from both buckets before the password is checked, in one atomic
script, so replicas checking guesses at the same moment cannot together let more through
than the buckets hold; a right password then gives them back (`succeeded`: the name's bucket
is full again, the address gets its token back), so only failures drain them. Time is the
Valkey server's (`TIME`), so replicas' clocks do not matter, and every bucket expires when
it would be full again: idle names cost no memory.

When Valkey cannot be reached (or JIFEN_REDIS_URL is unset), the same buckets are kept in
the process: the throttle still holds, per replica, as it did before Valkey. That is logged
when it starts and ends, and every attempt so decided is counted in
`jifen_console_signin_throttle_local_total`. After a failed call Valkey is left alone for
`RETRY_AFTER_S`, so an unreachable server costs one timeout, not one per sign-in.
"""

from __future__ import annotations

import hashlib
import logging
import time

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from console.metrics import THROTTLE_LOCAL

log = logging.getLogger("jifen.console")

KEY_PREFIX = "jifen:console:signin"
RETRY_AFTER_S = 5.0

# KEYS: the name's bucket, the address's. ARGV: rate (tokens a second), their two bursts.
# Answers 0 after taking a token from each, or the milliseconds until both hold one.
ADMIT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local rate = tonumber(ARGV[1])
local bursts = {tonumber(ARGV[2]), tonumber(ARGV[3])}
local levels, short = {}, 0
for i = 1, 2 do
  local state = redis.call('HMGET', KEYS[i], 'tokens', 'at')
  local tokens = bursts[i]
  if state[1] then
    tokens = math.min(bursts[i], tonumber(state[1]) + math.max(0, now - tonumber(state[2])) * rate)
  end
  levels[i] = tokens
  short = math.max(short, 1 - tokens)
end
if short > 0 then
  return math.ceil(short / rate * 1000)
end
for i = 1, 2 do
  local left = levels[i] - 1
  redis.call('HSET', KEYS[i], 'tokens', string.format('%.6f', left), 'at', string.format('%.6f', now))
  redis.call('PEXPIRE', KEYS[i], math.ceil((bursts[i] - left) / rate * 1000) + 1000)
end
return 0
"""

# KEYS: the name's bucket (emptied of failures), the address's (its token back).
# ARGV: rate, the address's burst.
SUCCEEDED = """
redis.call('DEL', KEYS[1])
local state = redis.call('HMGET', KEYS[2], 'tokens', 'at')
if not state[1] then
  return 0
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tokens = tonumber(state[1]) + math.max(0, now - tonumber(state[2])) * rate + 1
if tokens >= burst then
  redis.call('DEL', KEYS[2])
else
  redis.call('HSET', KEYS[2], 'tokens', string.format('%.6f', tokens), 'at', string.format('%.6f', now))
  redis.call('PEXPIRE', KEYS[2], math.ceil((burst - tokens) / rate * 1000) + 1000)
end
return 0
"""


def _digest(value: str) -> str:
    # names and addresses as typed by anyone: fixed-size keys, and none kept in clear
    return hashlib.blake2b(value.encode(), digest_size=12).hexdigest()


class _LocalBuckets:
    """The same two buckets in this process's memory (monotonic clock)."""

    def __init__(self, rate: float, bursts: tuple[float, float], max_keys: int = 100_000) -> None:
        self.rate = rate
        self.bursts = bursts
        self.max_keys = max_keys
        self._state: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def _level(self, key: str, burst: float, now: float) -> float:
        tokens, at = self._state.get(key, (burst, now))
        return min(burst, tokens + max(0.0, now - at) * self.rate)

    def admit(self, keys: tuple[str, str]) -> float:
        now = time.monotonic()
        levels = [self._level(k, b, now) for k, b in zip(keys, self.bursts, strict=True)]
        short = max(1.0 - level for level in levels)
        if short > 0:
            return short / self.rate
        for key, level in zip(keys, levels, strict=True):
            self._state[key] = (level - 1.0, now)
        if len(self._state) > self.max_keys:  # forget the buckets that are full again
            self._state = {
                k: (tokens, at)
                for k, (tokens, at) in self._state.items()
                if tokens + (now - at) * self.rate < max(self.bursts)
            }
        return 0.0

    def succeeded(self, keys: tuple[str, str]) -> None:
        name, address = keys
        self._state.pop(name, None)
        if address in self._state:
            now = time.monotonic()
            self._state[address] = (self._level(address, self.bursts[1], now) + 1.0, now)
            if self._state[address][0] >= self.bursts[1]:
                del self._state[address]


class SignInThrottle:
    def __init__(
        self,
        failures: int,
        cooldown_s: float,
        redis_url: str = "",
        timeout_s: float = 0.5,
        prefix: str = KEY_PREFIX,
    ) -> None:
        self.enabled = failures > 0
        self.rate = 1.0 / cooldown_s
        self.bursts = (float(max(failures, 1)), float(max(failures, 1) * 4))
        self.prefix = prefix
        self.local = _LocalBuckets(self.rate, self.bursts)
        self.redis: aioredis.Redis | None = None
        if redis_url and self.enabled:
            self.redis = aioredis.Redis.from_url(
                redis_url,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                health_check_interval=30,
                # once more at once (a pooled connection Valkey closed), then the process
                # decides: a sign-in never waits out the client's default backoff
                retry=Retry(NoBackoff(), 1),
            )
            self._admit = self.redis.register_script(ADMIT)
            self._succeeded = self.redis.register_script(SUCCEEDED)
        self._away_until = 0.0  # monotonic: Valkey is not asked before then
        self.away = False  # the last decision was made in the process for want of Valkey

    @property
    def shared(self) -> bool:
        """Whether the buckets are Valkey's (every replica's) at the moment."""
        return self.redis is not None and not self.away

    def _keys(self, name: str, address: str) -> tuple[str, str]:
        return f"{self.prefix}:name:{_digest(name)}", f"{self.prefix}:addr:{_digest(address)}"

    def _valkey_usable(self) -> bool:
        return self.redis is not None and time.monotonic() >= self._away_until

    def _lost(self, exc: Exception) -> None:
        self._away_until = time.monotonic() + RETRY_AFTER_S
        if not self.away:
            log.warning(
                "sign-in throttle: Valkey unreachable, counting wrong passwords in this "
                "process only (each replica admits its own)",
                extra={"error": repr(exc)},
            )
        self.away = True

    def _back(self) -> None:
        if self.away:
            log.info("sign-in throttle: Valkey reachable again, buckets shared by every replica")
        self.away = False

    async def admit(self, name: str, address: str) -> float:
        """0.0: the password may be checked (one guess is taken from the name's and the
        address's buckets); else the seconds until it may."""
        if not self.enabled:
            return 0.0
        keys = self._keys(name, address)
        if self._valkey_usable():
            try:
                waited_ms = await self._admit(keys=list(keys), args=[self.rate, *self.bursts])
            except (RedisError, OSError) as exc:
                self._lost(exc)
            else:
                self._back()
                return int(waited_ms) / 1000.0
        if self.redis is not None:
            THROTTLE_LOCAL.inc()
        return self.local.admit(keys)

    async def succeeded(self, name: str, address: str) -> None:
        """The right password: the guess `admit` took is given back."""
        if not self.enabled:
            return
        keys = self._keys(name, address)
        self.local.succeeded(keys)
        if self._valkey_usable():
            try:
                await self._succeeded(keys=list(keys), args=[self.rate, self.bursts[1]])
            except (RedisError, OSError) as exc:
                self._lost(exc)
            else:
                self._back()

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()

"""Which failures are worth retrying, and how long to wait between tries."""

from __future__ import annotations

import asyncio
import random

from aiokafka.errors import KafkaError
from sqlalchemy import exc as sa_exc

from shared.errors import Unavailable

# SQLSTATE classes and codes worth retrying: connection trouble, serialization failure,
# deadlock, resource exhaustion, server shutting down or starting, lock timeouts.
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "40", "53", "57P", "55P03", "58")


def is_transient(exc: BaseException) -> bool:
    """True for a failure that goes away by itself (database or broker down, a deadlock):
    retry it, never skip the work."""
    if isinstance(exc, (OSError, TimeoutError, ConnectionError, Unavailable)):
        return True
    if isinstance(exc, KafkaError):
        return True  # broker unreachable or leader moving: wait for it
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if sqlstate:
            return str(sqlstate).startswith(_TRANSIENT_SQLSTATE_PREFIXES)
        return isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError))
    if isinstance(exc, (sa_exc.TimeoutError, sa_exc.DisconnectionError)):
        return True
    cause = exc.__cause__
    return cause is not None and cause is not exc and is_transient(cause)


class Backoff:
    """Exponential backoff with jitter, reset after a success."""

    def __init__(self, base: float = 0.05, cap: float = 10.0) -> None:
        self.base, self.cap, self.attempt = base, cap, 0

    async def wait(self) -> None:
        delay = min(self.cap, self.base * (2**self.attempt)) * (0.5 + random.random() / 2)
        self.attempt += 1
        await asyncio.sleep(delay)

    def reset(self) -> None:
        self.attempt = 0

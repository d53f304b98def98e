"""Crash points for fault-injection runs (`make chaos`); inert unless JIFEN_FAILPOINTS is set.

JIFEN_FAILPOINTS="consumer.after_db_commit=0.02,relay.after_publish=0.01" makes the process
kill itself (SIGKILL: no cleanup, no flush, exactly like a crash) with that probability each
time it passes the named point. The points sit in the windows where a crash is most
dangerous: between a database commit and the Kafka offset commit, between publishing outbox
rows and marking them published, between a ledger debit and the redemption's completion.
"""

from __future__ import annotations

import logging
import os
import random
import signal
from functools import cache

log = logging.getLogger(__name__)

POINTS = (
    "consumer.after_db_commit",
    "consumer.after_offset_commit",
    "relay.after_publish",
    "publisher.after_send",
    "exchange.after_debit",
)


@cache
def _armed() -> dict[str, float]:
    armed: dict[str, float] = {}
    for part in os.environ.get("JIFEN_FAILPOINTS", "").split(","):
        name, _, probability = part.strip().partition("=")
        if not name:
            continue
        if name not in POINTS:
            raise ValueError(f"unknown failpoint {name!r}; known: {', '.join(POINTS)}")
        armed[name] = float(probability or 1)
    return armed


def failpoint(name: str) -> None:
    probability = _armed().get(name)
    if probability and random.random() < probability:
        log.warning("failpoint %s fired: killing this process", name)
        os.kill(os.getpid(), signal.SIGKILL)

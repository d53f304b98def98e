"""The `log` provider: each message appended as a JSON line to a file (the `make run`
default, no credentials needed)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from services.notifier.providers.base import (
    Outcome,
    Push,
    device_digest,
)


class LogProvider:
    """Writes each message as a JSON line (the device as a digest) and calls it sent."""

    name = "log"

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    async def send(self, push: Push) -> Outcome:
        line = {
            "notification_id": push.notification_id,
            "user_id": push.user_id,
            "platform": push.platform,
            "device": device_digest(push.token),
            "category": push.category,
            "collapse_id": push.collapse_id,
            "title": push.title,
            "body": push.body,
            "at": time.time(),
        }
        self._file.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._file.flush()
        return Outcome("sent", message_id=f"log-{push.notification_id}")

    async def close(self) -> None:
        self._file.close()

"""The operator CLI (`jifen`) against the running suite: a behavior sent through it is
credited; writes need an idempotency key and repeat as one; reconcile; dead letters are
listed and replayed through the normal consumer path exactly once."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from typer.testing import CliRunner

from cli.jifen import app
from shared.events import UPSTREAM_EVENTS, dlq_topic
from tests.conftest import ADMIN, unique

pytestmark = pytest.mark.integration


@pytest.fixture
def jifen(stack, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("JIFEN_CLI_BASE_PORT", str(stack.base_port))
    monkeypatch.setenv("JIFEN_KAFKA_BOOTSTRAP", stack.kafka_bootstrap)
    runner = CliRunner()

    def run(*args: str, ok: bool = True) -> Any:
        result = runner.invoke(app, [str(a) for a in args])
        if ok:
            assert result.exit_code == 0, (args, result.output)
        return result

    return run


def wait_for(check, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def balance(jifen, user: str) -> int:
    return int(json.loads(jifen("balance", user, "--json").output)["balance"])


def test_send_adjust_history_and_reconcile(jifen, stack) -> None:
    action = unique("cli_tick")
    created = httpx.post(
        f"{stack.url('task_progress')}/v1/tasks",
        json={"name": "cli: 5 points", "action": action, "reward_points": 5},
        headers=ADMIN,
    )
    assert created.status_code == 201, created.text
    user = unique("cli_user")
    sent = jifen("event", "send", user, action, "--attr", "post_id=p1", "--json")
    assert json.loads(sent.output)["accepted"] == 1

    def credited() -> None:
        assert balance(jifen, user) == 5

    wait_for(credited)

    missing = jifen("adjust", user, "-p", "100", "--reason", "客服补偿", ok=False)
    assert missing.exit_code == 2 and "idempotency-key" in missing.output
    key = unique("ticket")
    first = jifen(
        "adjust", user, "-p", "100", "--reason", "客服补偿", "--idempotency-key", key, "--json"
    )
    again = jifen(
        "adjust", user, "-p", "100", "--reason", "客服补偿", "--idempotency-key", key, "--json"
    )
    assert json.loads(first.output)["id"] == json.loads(again.output)["id"]
    assert balance(jifen, user) == 105
    jifen("adjust", user, "--points", "-30", "--reason", "纠正", "-k", unique("ticket"))
    assert balance(jifen, user) == 75
    too_much = jifen("adjust", user, "-p", "-1000", "--reason", "x", "-k", unique("t"), ok=False)
    assert too_much.exit_code == 1 and "insufficient" in too_much.output

    entries = json.loads(jifen("history", user, "--json").output)["items"]
    assert sorted(e["amount"] for e in entries) == [-30, 5, 100]
    assert "客服补偿" in jifen("history", user).output

    checked = jifen("reconcile")
    assert "rewards_ledger: ok" in checked.output and "exchange: ok" in checked.output


def test_dead_letters_are_listed_and_replayed_exactly_once(jifen, stack) -> None:
    action = unique("cli_dlq")
    httpx.post(
        f"{stack.url('task_progress')}/v1/tasks",
        json={"name": "cli dlq: 5 points", "action": action, "reward_points": 5},
        headers=ADMIN,
    ).raise_for_status()
    user = unique("cli_dlq_user")
    envelope = {
        "event_id": uuid.uuid4().hex,
        "source": "cli-test",
        "user_id": user,
        "action": action,
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    raw = json.dumps(envelope).encode()
    # A letter of a message that failed earlier (say, before a bug was fixed), and a real
    # poison message the sensor dead-letters now.
    letter = {
        "error": "simulated: failed before the fix",
        "consumer": "behavior_sensor.upstream",
        "topic": UPSTREAM_EVENTS,
        "partition": 0,
        "offset": 0,
        "key": user,
        "original": raw.decode(),
        "original_base64": base64.b64encode(raw).decode(),
        "failed_at": datetime.now(UTC).isoformat(),
    }

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(
                dlq_topic(UPSTREAM_EVENTS), json.dumps(letter).encode(), key=user.encode()
            )
            await producer.send_and_wait(UPSTREAM_EVENTS, b"{not json", key=user.encode())
        finally:
            await producer.stop()

    asyncio.run(produce())

    def listed() -> list[dict[str, Any]]:
        letters = json.loads(jifen("dlq", "list", UPSTREAM_EVENTS, "--json").output)
        mine = [x for x in letters if x.get("key") == user]
        assert len(mine) == 2, mine
        return mine

    mine = wait_for(listed)
    simulated = next(x for x in mine if x["error"].startswith("simulated"))
    where = f"{simulated['dlq_partition']}:{simulated['dlq_offset']}"
    assert "simulated" in jifen("dlq", "list", UPSTREAM_EVENTS).output

    no_key = jifen("dlq", "replay", UPSTREAM_EVENTS, "--offset", where, ok=False)
    assert no_key.exit_code == 2
    for _ in range(2):  # replayed twice: credited once
        out = jifen("dlq", "replay", UPSTREAM_EVENTS, "--offset", where, "-k", unique("r"))
        assert "replayed 1" in out.output

    def credited() -> None:
        assert balance(jifen, user) == 5

    wait_for(credited)
    time.sleep(2)
    assert balance(jifen, user) == 5
    missing = jifen(
        "dlq", "replay", UPSTREAM_EVENTS, "--offset", "0:999999999", "-k", "x", ok=False
    )
    assert missing.exit_code == 1

"""Display names on the leaderboards, on the running suite: a named user is masked on a
default board and shown in full on a board set to full, a user with no name gets a
pseudonym, no public answer carries a user id (the JSON text is searched for it), a user's
own entry is flagged `me`, operators still see ids; profiles from `profile_updated`
behaviors keep the newest whatever order they arrive in. And closed periods, read from
PostgreSQL, show names the same way (a private database)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.engagement import service
from services.engagement.leaderboards import Leaderboards
from services.engagement.names import PROFILE_UPDATED, Viewer, pseudonym
from services.engagement.settings import Settings
from services.engagement.workers import PeriodCloser
from shared.auth import issue_user_token
from shared.db import Database, create_engine, database_url, ensure_database
from shared.events import BEHAVIOR_EVENTS, BehaviorEvent, LedgerEvent
from shared.messaging.lag import consumer_lag
from shared.migrate import upgrade
from shared.settings import DEV_JWT_SECRET, dev_service_token
from tests.conftest import ADMIN, eventually, unique
from tests.integration.test_engagement import ENGAGEMENT_GROUP, ENGAGEMENT_TOPICS
from tests.integration.test_engagement_close import NoIndex

pytestmark = pytest.mark.integration

AVATAR = "https://img.example/zhang.png"


def bearer(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_user_token(DEV_JWT_SECRET, user)}"}


def behavior(user: str, action: str, at: datetime, **attributes: Any) -> dict[str, Any]:
    return {
        "behavior_id": uuid.uuid4().hex,
        "event_id": uuid.uuid4().hex,
        "source": "app",
        "user_id": user,
        "action": action,
        "occurred_at": at.isoformat(),
        "attributes": attributes,
        "received_at": datetime.now(UTC).isoformat(),
    }


async def send(producer, *behaviors: dict[str, Any]) -> None:
    for b in behaviors:
        await producer.send_and_wait(
            BEHAVIOR_EVENTS, json.dumps(b).encode(), key=b["user_id"].encode()
        )


async def settled(stack) -> None:
    async def check() -> None:
        assert await consumer_lag(stack.kafka_bootstrap, ENGAGEMENT_GROUP, ENGAGEMENT_TOPICS) == 0

    await eventually(check, timeout=30, interval=0.3)


async def action_board(engagement: httpx.AsyncClient, **fields: Any) -> tuple[str, str]:
    """A board counting an action nobody else sends: (code, action)."""
    action = unique("named_act").lower()
    body = {
        "code": unique("names").replace("_", "-"),
        "name": "names",
        "metric": "action_count",
        "action": action,
        "window": "day",
        **fields,
    }
    response = await engagement.post("/v1/leaderboards", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return body["code"], action


async def ranked(
    engagement: httpx.AsyncClient, code: str, count: int, headers: dict[str, str] | None = None
) -> httpx.Response:
    async def check() -> httpx.Response:
        response = await engagement.get(f"/v1/leaderboards/{code}/top", headers=headers or {})
        assert response.status_code == 200, response.text
        assert len(response.json()["items"]) == count
        return response

    return await eventually(check, timeout=20, interval=0.1)


async def test_public_boards_show_names_masked_full_or_pseudonyms_and_never_an_id(
    http, producer
) -> None:
    engagement = http("engagement")
    named, nameless = unique("named"), unique("nameless")
    mine = await engagement.put(
        f"/v1/users/{named}/profile",
        json={"display_name": "张三丰", "avatar_url": AVATAR},
        headers=bearer(named),
    )
    assert mine.status_code == 200, mine.text
    assert (mine.json()["display_name"], mine.json()["avatar_url"]) == ("张三丰", AVATAR)
    theirs = await engagement.put(
        f"/v1/users/{named}/profile", json={"display_name": "冒名"}, headers=bearer(nameless)
    )
    assert theirs.status_code == 403

    masked, action = await action_board(engagement)
    got = await engagement.get(f"/v1/leaderboards/{masked}")
    assert got.json()["name_display"] == "masked"
    full = await engagement.post(
        "/v1/leaderboards",
        json={
            "code": f"{masked}-full",
            "name": "names in full",
            "metric": "action_count",
            "action": action,
            "window": "day",
            "name_display": "full",
        },
        headers=ADMIN,
    )
    assert full.status_code == 201 and full.json()["name_display"] == "full", full.text
    now = datetime.now(UTC)
    await send(producer, *(behavior(named, action, now) for _ in range(2)))
    await send(producer, behavior(nameless, action, now))

    top = await ranked(engagement, masked, 2)
    assert [
        (i["rank"], i["name"], i["avatar_url"], i["score"], i["me"]) for i in top.json()["items"]
    ] == [
        (1, "张**", AVATAR, 2, False),
        (2, pseudonym(nameless), None, 1, False),
    ]
    shown = (await ranked(engagement, f"{masked}-full", 2)).json()["items"]
    assert [i["name"] for i in shown] == ["张三丰", pseudonym(nameless)]

    public = [
        top,
        await engagement.get(f"/v1/leaderboards/{masked}/top", headers=bearer(unique("other"))),
        await engagement.get(f"/v1/leaderboards/{masked}/users/{named}"),
        await engagement.get(f"/v1/leaderboards/{masked}/users/{nameless}", params={"around": 5}),
        await engagement.get(f"/v1/leaderboards/{masked}/users/{named}/history"),
        await engagement.get(f"/v1/leaderboards/{masked}-full/users/{named}"),
    ]
    for response in public:
        assert response.status_code == 200, response.text
        assert named not in response.text and nameless not in response.text, response.text
        assert "user_id" not in response.text
    standing = public[3].json()
    assert (standing["name"], standing["rank"], standing["me"]) == (pseudonym(nameless), 2, False)
    assert [a["name"] for a in standing["around"]] == ["张**", pseudonym(nameless)]

    # the user themselves: their own entry flagged, their id echoed, nobody else's id
    as_named = await ranked(engagement, masked, 2, headers=bearer(named))
    assert [i["me"] for i in as_named.json()["items"]] == [True, False]
    assert nameless not in as_named.text
    own = (
        await engagement.get(f"/v1/leaderboards/{masked}/users/{named}", headers=bearer(named))
    ).json()
    assert (own["user_id"], own["me"], own["name"]) == (named, True, "张**")
    # operators (the admin, the console's engagement:read credential) still see the ids;
    # a service without that scope sees what the public sees
    console = {"Authorization": f"Bearer {dev_service_token('console')}"}
    for operator in (ADMIN, console):
        items = (await ranked(engagement, masked, 2, headers=operator)).json()["items"]
        assert [(i["user_id"], i["name"]) for i in items] == [
            (named, "张**"),
            (nameless, pseudonym(nameless)),
        ]
    exchange = {"Authorization": f"Bearer {dev_service_token('exchange')}"}
    assert named not in (await ranked(engagement, masked, 2, headers=exchange)).text

    # the setting changes on a live board; hidden shows pseudonyms only, and no avatar
    refused = await engagement.patch(
        f"/v1/leaderboards/{masked}", json={"name_display": "hidden"}, headers=bearer(named)
    )
    assert refused.status_code == 403
    bad = await engagement.patch(
        f"/v1/leaderboards/{masked}", json={"name_display": "ids"}, headers=ADMIN
    )
    assert bad.status_code == 422
    changed = await engagement.patch(
        f"/v1/leaderboards/{masked}", json={"name_display": "hidden"}, headers=ADMIN
    )
    assert changed.status_code == 200 and changed.json()["name_display"] == "hidden"
    assert changed.json()["name"] == "names"  # left out: unchanged

    async def hidden() -> None:
        items = (await engagement.get(f"/v1/leaderboards/{masked}/top")).json()["items"]
        assert [(i["name"], i["avatar_url"]) for i in items] == [
            (pseudonym(named), None),
            (pseudonym(nameless), None),
        ]

    await eventually(hidden, timeout=10)
    missing = await engagement.patch(
        "/v1/leaderboards/no-such-board", json={"name_display": "full"}, headers=ADMIN
    )
    assert missing.status_code == 404


async def test_profile_behaviors_arriving_out_of_order_keep_the_newest(
    http, producer, stack
) -> None:
    engagement = http("engagement")
    code, action = await action_board(engagement, name_display="full")
    user = unique("renamed")
    now = datetime.now(UTC)
    newer = behavior(
        user, PROFILE_UPDATED, now, display_name="新名字", avatar_url="https://img.example/n.png"
    )
    older = behavior(
        user,
        PROFILE_UPDATED,
        now - timedelta(hours=1),
        display_name="旧名字",
        avatar_url="https://img.example/o.png",
    )
    await send(producer, newer)

    async def profile() -> dict[str, Any]:
        response = await engagement.get(f"/v1/users/{user}/profile", headers=ADMIN)
        assert response.status_code == 200, response.text
        assert response.json()["display_name"] == "新名字"
        return dict(response.json())

    await eventually(profile, timeout=20)
    await send(producer, older, behavior(user, action, now))
    await settled(stack)
    kept = await profile()  # the older one, applied after, changed nothing
    assert kept["avatar_url"] == "https://img.example/n.png"
    top = await ranked(engagement, code, 1)
    assert top.json()["items"][0]["name"] == "新名字" and user not in top.text

    # a later change of one field leaves the other; a field that is not a string is ignored
    later = behavior(user, PROFILE_UPDATED, now + timedelta(seconds=1), avatar_url=None)
    await send(producer, later, behavior(user, PROFILE_UPDATED, now, display_name=42))
    await settled(stack)
    final = await profile()
    assert (final["display_name"], final["avatar_url"]) == ("新名字", None)
    # the API's own write is as of now: newer than all of the above
    put = await engagement.put(
        f"/v1/users/{user}/profile", json={"display_name": "自己改的"}, headers=bearer(user)
    )
    assert put.status_code == 200 and put.json()["display_name"] == "自己改的", put.text
    top = await ranked(engagement, code, 1)
    assert top.json()["items"][0]["name"] == "自己改的"
    own = await engagement.get(f"/v1/users/{user}/profile", headers=bearer(user))
    assert own.json()["display_name"] == "自己改的"
    other = await engagement.get(f"/v1/users/{user}/profile", headers=bearer(unique("x")))
    assert other.status_code == 403


# -- closed periods (a private database) ----------------------------------------------------

DAY = "2026-01-05"  # a Monday; in Shanghai it ends at 2026-01-05T16:00Z
AT = datetime(2026, 1, 5, 4, 0, tzinfo=UTC)
SETTINGS = Settings(board_grace_s=300)


@pytest.fixture(scope="module")
async def engagement_db(infra) -> AsyncIterator[Database]:
    name = f"jifen_engagement_{unique('names')}".lower()
    await ensure_database(infra.database_url, name)
    url = database_url(infra.database_url, name).render_as_string(hide_password=False)
    await asyncio.to_thread(upgrade, "services.engagement", url)
    db = Database(create_engine(database_url(infra.database_url, name), pool_size=5))
    yield db
    await db.dispose()


def credit(user: str, points: int) -> LedgerEvent:
    return LedgerEvent(
        type="credited",
        entry_id=abs(hash((user, points))) % 10**12,
        user_id=user,
        points=points,
        balance_after=points,
        idempotency_key=unique("k"),
        occurred_at=AT,
    )


def renamed(user: str, name: str, minutes: int) -> BehaviorEvent:
    return BehaviorEvent.model_validate(
        behavior(user, PROFILE_UPDATED, AT + timedelta(minutes=minutes), display_name=name)
    )


async def test_a_closed_period_shows_names_from_its_frozen_standings(engagement_db) -> None:
    db = engagement_db
    code = unique("closed").replace("_", "-")
    first, second = unique("first"), unique("second")
    async with db.transaction() as session:
        values = {"code": code, "name": "c", "metric": "points_earned", "window": "day"}
        await service.create_board(session, values)
    batches = [  # the newer name arrives first, in its own batch, then the older one
        service.Batch(ledger=[credit(first, 90), credit(second, 10)]),
        service.Batch(behaviors=[renamed(first, "Alice", 5)]),
        service.Batch(behaviors=[renamed(first, "Mallory", 1)]),
    ]
    for batch in batches:
        async with db.transaction() as session:
            await service.apply_batch(session, batch, SETTINGS, NoIndex(), now=AT)
    closer = PeriodCloser(SETTINGS, db)
    while (done := await closer.close_once(AT + timedelta(days=1))) is not None:
        if done[0] == code:
            break
    assert done == (code, DAY)

    boards = Leaderboards(SETTINGS, db)
    try:
        top = await boards.top(code, DAY, 10, Viewer())
        assert top["closed"] is True
        assert [(i["rank"], i["name"], i["me"]) for i in top["items"]] == [
            (1, "A****", False),
            (2, pseudonym(second), False),
        ]
        standing = await boards.user(code, second, DAY, 2, Viewer(user_id=second))
        assert (standing["name"], standing["me"], standing["user_id"]) == (
            pseudonym(second),
            True,
            second,
        )
        text = json.dumps([top, await boards.user(code, first, DAY, 2, Viewer())])
        assert first not in text and second not in text
        operator = await boards.top(code, DAY, 10, Viewer(ids=True))
        assert [i["user_id"] for i in operator["items"]] == [first, second]
    finally:
        await boards.close()

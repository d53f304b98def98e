"""Display names on the public boards: masking by user-perceived character (CJK, ASCII, emoji
sequences, surrogates, empty), the pseudonym of a user with no name, what each board setting
shows to whom, cleaning what users and upstreams send, and the newest profile change of a
batch winning whatever order its behaviors came in."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.engagement import names, service
from services.engagement import repository as repo
from services.engagement.leaderboards import NameCache
from services.engagement.names import Viewer
from services.engagement.schemas import BoardCreate, BoardUpdate, ProfileIn
from shared.events import BehaviorEvent

T0 = datetime(2026, 1, 5, 4, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("张三丰", "张**"),
        ("张三", "张*"),
        ("alice", "a****"),
        ("Bo Li", "B****"),
        ("张", "*"),
        ("a", "*"),
        ("", ""),
        ("😀abc", "😀***"),  # an emoji outside the BMP is one character, not two halves
        ("👍🏽好", "👍🏽*"),  # with its skin tone
        ("👨\u200d👩\u200d👧小明", "👨\u200d👩\u200d👧**"),  # a ZWJ family is one character
        ("🇨🇳中国", "🇨🇳**"),  # a flag is two regional indicators
        ("e\u0301cole", "e\u0301****"),  # a combining accent stays with its letter
        ("小明😀", "小**"),  # a masked emoji is one star
    ],
)
def test_a_name_is_masked_by_character_keeping_the_first(name: str, masked: str) -> None:
    assert names.mask(name) == masked


@given(st.text(min_size=1, max_size=40))
def test_a_mask_keeps_one_character_and_hides_the_rest(name: str) -> None:
    chars = names.characters(name)
    masked = names.mask(name)
    assert "".join(chars) == name  # cutting loses nothing
    if len(chars) == 1:
        assert masked == "*"
    else:
        assert masked == chars[0] + "*" * (len(chars) - 1)


def test_a_user_without_a_name_has_a_stable_pseudonym_that_is_not_the_id() -> None:
    first, again, other = (names.pseudonym(u) for u in ("u-1001", "u-1001", "u-1002"))
    assert first == again != other
    assert first.startswith("用户") and len(first) == 6
    assert all(c in string.hexdigits for c in first[2:])
    assert "1001" not in first


@pytest.mark.parametrize(
    ("display", "name", "shown"),
    [
        ("masked", "张三丰", "张**"),
        ("full", "张三丰", "张三丰"),
        ("hidden", "张三丰", None),
        ("masked", None, None),
        ("full", None, None),
        ("full", "", None),
    ],
)
def test_each_board_setting_shows_a_name_or_a_pseudonym(
    display: str, name: str | None, shown: str | None
) -> None:
    assert names.shown_name(display, "user-42", name) == (shown or names.pseudonym("user-42"))


def test_ids_only_to_operators_and_me_only_to_the_user_themselves() -> None:
    avatar = "https://img.example/a.png"
    public = names.person("masked", "u1", "alice", avatar, Viewer())
    assert public == {"name": "a****", "avatar_url": avatar, "me": False}
    mine = names.person("masked", "u1", "alice", avatar, Viewer(user_id="u1"))
    assert mine == {"name": "a****", "avatar_url": avatar, "me": True}
    assert names.person("masked", "u1", "alice", avatar, Viewer(user_id="u2"))["me"] is False
    operator = names.person("full", "u1", "alice", avatar, Viewer(ids=True))
    assert operator == {"name": "alice", "avatar_url": avatar, "me": False, "user_id": "u1"}
    hidden = names.person("hidden", "u1", "alice", avatar, Viewer())
    assert hidden == {"name": names.pseudonym("u1"), "avatar_url": None, "me": False}


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("  张三丰 ", "张三丰"),
        ("a\tb\n c", "a b c"),
        ("ali\u202ece", "alice"),  # a bidi override would flip what others see
        ("bo\u200bb", "bob"),  # zero-width space
        ("x\x00y\x1b", "xy"),
        ("\ud83d\ude00 ok", "😀 ok"),  # UTF-16 halves joined into their emoji
        ("a\ud800b", "ab"),  # an unpaired half cannot be encoded: dropped
        ("e\u0301", "é"),  # NFC
        ("👨\u200d👩\u200d👧", "👨\u200d👩\u200d👧"),  # joiners kept
        ("\u200b \x00", None),
        ("", None),
    ],
)
def test_names_are_cleaned_before_they_are_stored(sent: str, stored: str | None) -> None:
    assert names.clean_name(sent) == stored


def test_a_long_name_is_cut_between_characters() -> None:
    cut = names.clean_name("👍🏽" * 40)  # two code points each
    assert cut == "👍🏽" * 32 and len(cut) == names.NAME_MAX
    assert len(names.clean_name("名" * 100) or "") == names.NAME_MAX


def test_the_profile_api_validates_what_it_stores() -> None:
    assert ProfileIn(display_name=" 张三\u200b丰 ").display_name == "张三丰"
    assert ProfileIn(display_name=None).model_fields_set == {"display_name"}  # null clears
    assert ProfileIn().model_fields_set == set()  # nothing sent: nothing changes
    for bad in (
        {"display_name": "\u200b"},
        {"display_name": ""},
        {"display_name": "x" * 65},
        {"avatar_url": "javascript:alert(1)"},
        {"nickname": "x"},
    ):
        with pytest.raises(ValidationError):
            ProfileIn(**bad)


def test_boards_are_masked_unless_set_otherwise() -> None:
    body = {"code": "b", "name": "b", "metric": "points_earned", "window": "day"}
    assert BoardCreate(**body).name_display == "masked"
    assert BoardCreate(**body, name_display="full").name_display == "full"
    with pytest.raises(ValidationError):
        BoardCreate(**body, name_display="ids")
    assert BoardUpdate(name_display="hidden").model_dump(exclude_none=True) == {
        "name_display": "hidden"
    }


def profile(user: str, at: datetime, **attributes: Any) -> BehaviorEvent:
    return BehaviorEvent(
        behavior_id=f"b-{user}-{at.isoformat()}",
        event_id=f"e-{user}-{at.isoformat()}",
        source="app",
        user_id=user,
        action=names.PROFILE_UPDATED,
        occurred_at=at,
        attributes=attributes,
        received_at=T0,
    )


def test_the_newest_change_of_each_field_wins_within_a_batch_whatever_the_order() -> None:
    older, newer, newest = T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    behaviors = [
        profile("u1", newer, display_name="新名字", avatar_url="https://img.example/new.png"),
        profile("u1", older, display_name="旧名字", avatar_url="https://img.example/old.png"),
        profile("u1", newest, avatar_url=None),  # clears the avatar, leaves the name
        profile("u2", older, display_name=42, avatar_url="ftp://nope"),  # ignored
        profile("u3", older, display_name="  "),  # an empty name clears it
        BehaviorEvent(**{**profile("u4", older).model_dump(), "action": "share"}),
    ]
    changes = {row["user_id"]: row for row in service.profile_changes(behaviors)}
    assert set(changes) == {"u1", "u3"}
    assert changes["u1"] == {
        "user_id": "u1",
        "display_name": "新名字",
        "name_at": newer,
        "avatar_url": None,
        "avatar_at": newest,
    }
    assert changes["u3"]["display_name"] is None and changes["u3"]["name_at"] == older
    assert changes["u3"]["avatar_at"] is None  # not sent: left alone


class FakeDb:
    """Answers profile reads from a dict, counting them; `down` makes them fail."""

    def __init__(self, profiles: dict[str, repo.Profile]) -> None:
        self.profiles = profiles
        self.reads: list[list[str]] = []
        self.down = False

    async def read(self, user_ids: list[str]) -> dict[str, repo.Profile]:
        if self.down:
            raise ConnectionRefusedError("PostgreSQL is down")
        self.reads.append(list(user_ids))
        return {u: self.profiles[u] for u in user_ids if u in self.profiles}


async def test_names_are_read_once_a_page_then_cached_and_last_seen_when_postgres_is_down() -> None:
    alice = repo.Profile("u1", "alice", None)
    db = FakeDb({"u1": alice})
    cache = NameCache(db.read, ttl_s=60, size=100)
    assert await cache.profiles(["u1", "u2", "u1"]) == {"u1": alice}
    assert await cache.profiles(["u2", "u1"]) == {"u1": alice}
    assert db.reads == [["u1", "u2"]]  # one read for the page; the nameless cached too
    cache.forget(["u2"])
    await cache.profiles(["u1", "u2"])
    assert db.reads[-1] == ["u2"]

    db.down, cache.ttl_s = True, 0  # everything expired, and the database is unreachable
    assert await cache.profiles(["u1", "u3"]) == {"u1": alice}  # last seen; u3: a pseudonym

    small = NameCache(FakeDb({}).read, ttl_s=60, size=2)
    await small.profiles(["a", "b", "c"])
    assert list(small._seen) == ["b", "c"]  # the oldest go first

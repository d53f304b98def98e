"""Display names on the public boards (pure rules, no I/O): cleaning what a user or an
upstream sends, masking (张三丰 -> 张**), and the stable pseudonym shown for a user with no
name, so that a public board never shows a raw user id.

Names are cut into user-perceived characters, not code points: an emoji with a skin tone, a
ZWJ family, a flag or a letter with a combining accent is one character, kept or masked
whole. This approximates Unicode's grapheme clusters (UAX #29) for what names hold; Hangul
conjoining jamo and Indic conjuncts are rare in stored names (they arrive precomposed).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

NameDisplay = Literal["masked", "full", "hidden"]
NAME_DISPLAYS: tuple[str, ...] = ("masked", "full", "hidden")
PROFILE_UPDATED = "profile_updated"  # the behavior an upstream sends when a profile changes
NAME_MAX = 64  # characters (code points) stored; the column is varchar(64)
AVATAR_URL = re.compile(r"^https?://\S{1,1990}$")
PSEUDONYM_PREFIX = "用户"

_ZWJ = "\u200d"
_KEPT_FORMAT = {"\u200c", _ZWJ}  # joiners: part of emoji sequences and some scripts


def _extends(ch: str) -> bool:
    """Does this code point belong to the character before it?"""
    cp = ord(ch)
    return (
        unicodedata.category(ch) in ("Mn", "Me", "Mc")  # combining marks
        or 0xFE00 <= cp <= 0xFE0F  # variation selectors (emoji / text presentation)
        or 0xE0100 <= cp <= 0xE01EF  # variation selectors supplement
        or 0x1F3FB <= cp <= 0x1F3FF  # skin tone modifiers
        or 0xE0020 <= cp <= 0xE007F  # tags (subdivision flags)
    )


def _regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def characters(text: str) -> list[str]:
    """`text` cut into user-perceived characters."""
    out: list[str] = []
    joined = False  # the previous code point was a ZWJ: the next one joins its character
    for ch in text:
        pair = _regional(ch) and bool(out) and len(out[-1]) == 1 and _regional(out[-1])
        if out and (joined or ch == _ZWJ or _extends(ch) or pair):
            out[-1] += ch
        else:
            out.append(ch)
        joined = ch == _ZWJ
    return out


def mask(name: str) -> str:
    """The first character and a `*` for each other one: 张三丰 -> 张**, alice -> a****;
    a one-character name is all masked (*), an empty one stays empty."""
    chars = characters(name)
    if len(chars) <= 1:
        return "*" * len(chars)
    return chars[0] + "*" * (len(chars) - 1)


def pseudonym(user_id: str) -> str:
    """What a user with no name (or any user on a `hidden` board) is shown as: stable for a
    user, and not the id (用户 + the last 4 hex digits of its SHA-256)."""
    return PSEUDONYM_PREFIX + hashlib.sha256(user_id.encode()).hexdigest()[-4:]


@dataclass(frozen=True)
class Viewer:
    """Who reads a board: operators (the admin token, a service credential with
    engagement:read, such as the console's) see user ids beside the names; a signed-in
    user's own entries are flagged `me`. Everyone else sees names only."""

    ids: bool = False
    user_id: str | None = None


def person(
    display: str, user_id: str, name: str | None, avatar_url: str | None, viewer: Viewer
) -> dict[str, Any]:
    """How a board's entry shows its user to this viewer."""
    shown: dict[str, Any] = {
        "name": shown_name(display, user_id, name),
        "avatar_url": None if display == "hidden" else avatar_url,
        "me": viewer.user_id == user_id,
    }
    if viewer.ids:
        shown["user_id"] = user_id
    return shown


def shown_name(display: str, user_id: str, name: str | None) -> str:
    """The name a public board shows for this user under the board's `name_display`."""
    if display == "hidden" or not name:
        return pseudonym(user_id)
    return name if display == "full" else mask(name)


def clean_name(value: str) -> str | None:
    """A display name as stored: surrogate pairs joined, NFC, without control, format (bidi
    overrides, zero-width spaces; joiners and tags kept) or unpaired surrogate code points,
    runs of whitespace one space, at most NAME_MAX code points cut between characters; None
    when nothing is left."""
    # UTF-16 halves that arrived as two code points are joined into their character; an
    # unpaired one cannot be encoded as UTF-8 (it would fail every response showing it)
    value = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "ignore")
    kept: list[str] = []
    for ch in unicodedata.normalize("NFC", value):
        category = unicodedata.category(ch)
        if ch.isspace():
            ch = " "
        elif category in ("Cc", "Cs") or (
            category == "Cf" and ch not in _KEPT_FORMAT and not 0xE0020 <= ord(ch) <= 0xE007F
        ):
            continue
        kept.append(ch)
    text = " ".join("".join(kept).split())
    if len(text) > NAME_MAX:
        cut = ""
        for char in characters(text):
            if len(cut) + len(char) > NAME_MAX:
                break
            cut += char
        text = cut.rstrip()
    return text or None


def valid_avatar_url(value: str) -> bool:
    return bool(AVATAR_URL.match(value))


def profile_fields(attributes: Mapping[str, Any]) -> dict[str, str | None]:
    """What a `profile_updated` behavior changes: the `display_name` / `avatar_url` keys it
    carries (null or empty clears the field; a value that is not a string, or not an http(s)
    URL for the avatar, is ignored, so one bad field never holds up the batch)."""
    fields: dict[str, str | None] = {}
    if "display_name" in attributes:
        name = attributes["display_name"]
        if name is None or isinstance(name, str):
            fields["display_name"] = clean_name(name) if name else None
    if "avatar_url" in attributes:
        url = attributes["avatar_url"]
        if url is None or url == "":
            fields["avatar_url"] = None
        elif isinstance(url, str) and valid_avatar_url(url.strip()):
            fields["avatar_url"] = url.strip()
    return fields

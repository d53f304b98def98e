"""The notifier's rules, free of I/O: who may be told what and when (categories, quiet hours,
daily caps), which users a daily trigger reminds, how a template becomes text, and how long
to wait before trying a provider again."""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from shared.events import stable_id

Category = Literal["transactional", "reminders", "marketing"]
CATEGORIES: tuple[Category, ...] = ("transactional", "reminders", "marketing")
LOCALES = ("zh-CN", "en")
DEFAULT_LOCALE = "zh-CN"


def parse_hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


@dataclass(frozen=True)
class Preferences:
    """A user's choices; a user who never set any has the defaults (everything on, the
    default quiet window, the business timezone, Chinese)."""

    reminders: bool = True
    marketing: bool = True
    quiet_enabled: bool = True
    quiet_start: time = time(22, 0)
    quiet_end: time = time(8, 0)
    timezone: str = "Asia/Shanghai"
    locale: str = DEFAULT_LOCALE

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def allows(self, category: str) -> bool:
        if category == "transactional":
            return True  # cannot be switched off
        return self.reminders if category == "reminders" else self.marketing

    def quiet_until(self, now: datetime) -> datetime | None:
        """The end of the quiet window `now` falls in (an aware instant), else None. A window
        may cross midnight (22:00-08:00) or not (13:00-14:00); start == end means none."""
        if not self.quiet_enabled or self.quiet_start == self.quiet_end:
            return None
        local = now.astimezone(self.zone)
        clock = local.time().replace(tzinfo=None)
        start, end = self.quiet_start, self.quiet_end
        if start < end:
            inside = start <= clock < end
            end_day = local.date()
        else:  # crosses midnight
            inside = clock >= start or clock < end
            end_day = local.date() + timedelta(days=1) if clock >= start else local.date()
        if not inside:
            return None
        return local_instant(end_day, end, self.zone)


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The instant a wall-clock time happens on a local day (the first such instant when a
    DST change repeats it; the hour after when it skips it)."""
    naive = datetime.combine(day, at)
    aware = naive.replace(tzinfo=zone)
    # A wall time that does not exist (spring forward) round-trips to another one: move on.
    back = aware.astimezone(ZoneInfo("UTC")).astimezone(zone)
    if back.replace(tzinfo=None) != naive:
        aware = (naive + timedelta(hours=1)).replace(tzinfo=zone)
    return aware


@dataclass
class DayCount:
    """What a user was already sent on one local day (the caps read these)."""

    capped: int = 0  # reminders + marketing
    marketing: int = 0


@dataclass(frozen=True)
class Caps:
    daily: int = 3
    marketing_daily: int = 1


@dataclass(frozen=True)
class Decision:
    action: Literal["send", "defer", "suppress"]
    reason: str | None = None
    until: datetime | None = None  # defer: when to look again
    day: date | None = None  # send: the local day it counts on


def decide(
    category: str,
    prefs: Preferences,
    counts: dict[date, DayCount],
    caps: Caps,
    now: datetime,
    *,
    quiet_transactional: bool = False,
) -> Decision:
    """Whether one message goes now. Order: the user's opt-out (suppressed, `opted_out`),
    quiet hours (deferred to the window's end: it is counted on the day it goes), the daily
    caps (suppressed, `daily_cap` / `marketing_cap`). Transactional messages are exempt from
    opt-outs and caps, and from quiet hours unless `quiet_transactional`. A message let
    through is counted in `counts` at once, so the next one in the same batch sees it."""
    if not prefs.allows(category):
        return Decision("suppress", f"opted_out:{category}")
    if category != "transactional" or quiet_transactional:
        until = prefs.quiet_until(now)
        if until is not None:
            return Decision("defer", "quiet_hours", until=until)
    day = now.astimezone(prefs.zone).date()
    if category == "transactional":
        return Decision("send", day=day)
    count = counts.setdefault(day, DayCount())
    if count.capped >= caps.daily:
        return Decision("suppress", f"daily_cap:{caps.daily}")
    if category == "marketing" and count.marketing >= caps.marketing_daily:
        return Decision("suppress", f"marketing_cap:{caps.marketing_daily}")
    count.capped += 1
    if category == "marketing":
        count.marketing += 1
    return Decision("send", day=day)


def retry_delay(attempt: int, base_s: float, cap_s: float, retry_after_s: float | None) -> float:
    """Exponential backoff after the `attempt`-th failure (1-based), never sooner than the
    provider's Retry-After."""
    delay = min(cap_s, base_s * 2.0 ** max(0, attempt - 1))
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, cap_s))
    return delay


def notification_status(
    outcomes: Sequence[str], delivered_before: bool, last_attempt: bool
) -> Literal["queued", "sent", "failed"]:
    """A notification's status from its deliveries: each device's outcome this time (sent,
    retry, invalid_token, failed) and whether an earlier attempt delivered it to a device.
    While a device awaits a retry and attempts remain it is `queued` (tried again, on those
    devices only), even if another device has it; once every device is settled it is
    `sent` when at least one has it, else `failed`."""
    if "retry" in outcomes and not last_attempt:
        return "queued"
    return "sent" if delivered_before or "sent" in outcomes else "failed"


# --- templates --------------------------------------------------------------------------


class TemplateError(ValueError):
    pass


def placeholders(text: str) -> set[str]:
    """The variable names a text uses (`{points}`); raises on a malformed text or on
    attribute/index access (`{a.b}`, `{a[0]}`), which a template must not do."""
    names: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateError(f"malformed template text: {exc}") from exc
    for _, name, spec, _ in parsed:
        if name is None:
            continue
        if not name.isidentifier():
            raise TemplateError(f"{{{name}}} is not a plain variable name")
        if spec and "{" in spec:
            raise TemplateError("nested placeholders are not allowed")
        names.add(name)
    return names


def check_texts(texts: Mapping[str, Mapping[str, str]], variables: Iterable[str]) -> None:
    allowed = set(variables)
    if DEFAULT_LOCALE not in texts:
        raise TemplateError(f"a template needs its {DEFAULT_LOCALE} text")
    for locale, pair in texts.items():
        if locale not in LOCALES:
            raise TemplateError(f"unknown locale {locale!r} (one of {', '.join(LOCALES)})")
        for part in ("title", "body"):
            used = placeholders(pair[part])
            unknown = used - allowed
            if unknown:
                raise TemplateError(
                    f"{locale} {part} uses undeclared variables: {', '.join(sorted(unknown))}"
                )


class _Missing(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def render(
    texts: Mapping[str, Mapping[str, str]], locale: str, variables: Mapping[str, Any]
) -> tuple[str, str]:
    """The title and body in the user's locale (Chinese when there is no text in theirs)."""
    pair = texts.get(locale) or texts[DEFAULT_LOCALE]
    values = _Missing(variables)
    return pair["title"].format_map(values), pair["body"].format_map(values)


# --- daily triggers ---------------------------------------------------------------------


@dataclass
class Expiring:
    """What one user has expiring, from the ledger: (expires_at, points) pairs."""

    user_id: str
    lots: list[tuple[datetime, int]] = field(default_factory=list)


@dataclass(frozen=True)
class ExpiryReminder:
    user_id: str
    points: int  # expiring within the longest horizon
    earliest: date  # the first local day any of them expire
    days_left: int
    marks: tuple[int, ...]  # which of T-7/T-3/T-1 are today


def expiry_window(day: date, zone: ZoneInfo, horizons: Sequence[int]) -> tuple[datetime, datetime]:
    """The instants whose lots a run on local `day` looks at: the whole of tomorrow through
    the end of the day `max(horizons)` days ahead (today's own expiries are too late)."""
    start = local_instant(day + timedelta(days=1), time(0), zone)
    end = local_instant(day + timedelta(days=max(horizons) + 1), time(0), zone)
    return start, end


def expiry_reminder(
    day: date, zone: ZoneInfo, expiring: Expiring, horizons: Sequence[int]
) -> ExpiryReminder | None:
    """One reminder per user per day: on local `day`, a user is reminded when some of their
    points expire exactly `h` days later for an `h` in `horizons` (7, 3, 1). The reminder
    carries every point expiring within the longest horizon and the first day any expire."""
    by_day: dict[date, int] = {}
    for expires_at, points in expiring.lots:
        local_day = expires_at.astimezone(zone).date()
        by_day[local_day] = by_day.get(local_day, 0) + points
    longest = max(horizons)
    window = {d: p for d, p in by_day.items() if 1 <= (d - day).days <= longest and p > 0}
    marks = tuple(sorted(h for h in set(horizons) if day + timedelta(days=h) in window))
    if not marks:
        return None
    earliest = min(window)
    return ExpiryReminder(
        user_id=expiring.user_id,
        points=sum(window.values()),
        earliest=earliest,
        days_left=(earliest - day).days,
        marks=marks,
    )


def notification_id(trigger: str, *cause: object) -> str:
    """A notification's id from its cause: the same cause, replayed or re-scanned after a
    crash, is the same notification (inserted once)."""
    return stable_id("notification", trigger, *cause)

"""Business health, the pure part: each of the seed's signals graded healthy / warning /
critical against its thresholds, and the overall status (the worst signal). No I/O here: the
use case (service/health.py) reads the values, this grades them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

Status = Literal["healthy", "warning", "critical"]
ORDER: dict[Status, int] = {"healthy": 0, "warning": 1, "critical": 2}


@dataclass(frozen=True)
class Reason:
    signal: str
    status: Status
    value: float | None
    threshold: float | None
    message: str

    def public(self) -> dict[str, Any]:
        """What an anonymous monitor sees: the verdict, no business numbers."""
        return {
            "signal": self.signal,
            "status": self.status,
            "value": None,
            "threshold": None,
            "message": f"{self.signal} is {self.status}",
        }

    def full(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Bounds:
    """A signal's warning and critical thresholds; `low_is_bad` for a rate that must stay
    above them (redemption), else the value must stay below (expiry, latency, lag)."""

    warning: float
    critical: float
    low_is_bad: bool = False

    def grade(self, value: float) -> tuple[Status, float]:
        """The status of `value` and the threshold it is judged by (the one crossed, or the
        warning one when none is)."""

        def crossed(threshold: float) -> bool:
            return value < threshold if self.low_is_bad else value > threshold

        if crossed(self.critical):
            return "critical", self.critical
        if crossed(self.warning):
            return "warning", self.warning
        return "healthy", self.warning


def graded(signal: str, value: float | None, bounds: Bounds, what: str) -> Reason:
    """A measured signal; without data (no points issued yet, no redemption in the window)
    it is healthy: an idle programme is not a broken one."""
    if value is None:
        return Reason(signal, "healthy", None, bounds.warning, f"no data for {what} yet")
    status, threshold = bounds.grade(value)
    side = "under" if bounds.low_is_bad else "over"
    if status == "healthy":
        message = f"{what} is {value:g}, within {threshold:g}"
    else:
        message = f"{what} is {value:g}, {side} the {status} threshold {threshold:g}"
    return Reason(signal, status, value, threshold, message)


def lag_reason(
    lags: Mapping[str, int] | None, bounds: Bounds, stale: bool, error: str | None
) -> Reason:
    """The largest consumer group lag of the suite (messages behind, summed over topics);
    an unread or stale reading is a warning (the check is blind, not the suite broken)."""
    if lags is None or stale:
        why = error or ("no reading yet" if lags is None else "the reading is stale")
        return Reason("consumer_lag", "warning", None, bounds.warning, f"lag unknown: {why}")
    if not lags:
        return graded("consumer_lag", 0, bounds, "the largest consumer lag")
    group = max(sorted(lags), key=lambda g: lags[g])  # the first of equals, by name
    return graded("consumer_lag", lags[group], bounds, f"the lag of {group}")


def reconciliation_reason(
    service: str,
    violations: Mapping[str, int] | None,
    stale: bool,
    error: str | None,
) -> Reason:
    """Any failing row is critical (the books disagree); an unread or stale run a warning."""
    signal = f"reconciliation_{service}"
    if violations is None or stale:
        why = error or ("no run yet" if violations is None else "the last run is stale")
        return Reason(signal, "warning", None, 0, f"{service} reconciliation unknown: {why}")
    failing = {check: n for check, n in sorted(violations.items()) if n}
    total = sum(failing.values())
    if total:
        checks = ", ".join(f"{c} ({n})" for c, n in failing.items())
        return Reason(signal, "critical", total, 0, f"{service} reconciliation fails: {checks}")
    return Reason(signal, "healthy", 0, 0, f"{service} reconciliation is clean")


def overall(reasons: Iterable[Reason]) -> Status:
    worst: Status = "healthy"
    for reason in reasons:
        if ORDER[reason.status] > ORDER[worst]:
            worst = reason.status
    return worst

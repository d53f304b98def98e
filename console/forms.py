"""Operator forms to API bodies: pure functions, no I/O (unit-tested). A form that cannot be
read raises `FormError`; the page answers 422 with the message and changes nothing. What a
service decides (a ladder's order, an unknown asset) stays the service's to refuse."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

RULE_TEXT = ("name", "description", "action", "kind", "reward_type", "period", "after_cycle")
RULE_NUMBERS = (
    "target_count",
    "reward_points",
    "max_per_period",
    "pending_days",
    "points_validity_days",
    "amount_unit_cents",
    "cycle_days",
)
ITEM_TEXT = ("name", "description", "category", "type", "min_tier")
ITEM_NUMBERS = ("points_price", "stock", "vip_days", "coupon_value_cents")


class FormError(ValueError):
    pass


def _text(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _number(form: Mapping[str, Any], name: str) -> int | None:
    raw = _text(form, name)
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise FormError(f"{name}: {raw!r} is not a whole number") from None


def parse_ladder(text: str) -> list[dict[str, int]]:
    """'1=5\\n3=10' (or '1:5, 3:10') -> [{"day": 1, "amount": 5}, {"day": 3, "amount": 10}]"""
    steps = []
    for part in text.replace(",", "\n").splitlines():
        part = part.strip()
        if not part:
            continue
        day, sep, amount = part.replace(":", "=").partition("=")
        if not sep:
            raise FormError(f"ladder step {part!r}: write day=amount")
        try:
            steps.append({"day": int(day), "amount": int(amount)})
        except ValueError:
            raise FormError(f"ladder step {part!r}: day and amount are whole numbers") from None
    return steps


def ladder_text(ladder: list[dict[str, Any]] | None) -> str:
    return "\n".join(f"{s['day']}={s['amount']}" for s in ladder or [])


def rule_body(form: Mapping[str, Any], *, for_patch: bool = False) -> dict[str, Any]:
    """A task rule (POST /v1/tasks) from the rule form; for a patch, the fields to set (an
    empty optional number clears it)."""
    body: dict[str, Any] = {}
    for name in RULE_TEXT:
        value = _text(form, name)
        if value or (name == "description" and for_patch):
            body[name] = value
    for name in RULE_NUMBERS:
        number = _number(form, name)
        if number is not None:
            body[name] = number
        elif for_patch and name not in ("target_count", "reward_points"):
            body[name] = None
    conditions = _text(form, "conditions")
    if conditions:
        try:
            parsed = json.loads(conditions)
        except json.JSONDecodeError as exc:
            raise FormError(f"conditions: not JSON ({exc.msg})") from None
        if not isinstance(parsed, list):
            raise FormError('conditions: a JSON list, e.g. [{"attribute": "length", ...}]')
        body["conditions"] = parsed
    elif for_patch:
        body["conditions"] = []
    if body.get("kind") == "checkin":
        body["ladder"] = parse_ladder(_text(form, "ladder"))
        makeup = [
            _number(form, f"makeup_{f}") for f in ("window_days", "max_per_month", "cost_points")
        ]
        if any(v is not None for v in makeup):
            if any(v is None for v in makeup):
                raise FormError("make-up: give the window, the monthly limit and the cost")
            body["makeup"] = dict(
                zip(("window_days", "max_per_month", "cost_points"), makeup, strict=True)
            )
        elif for_patch:
            body["makeup"] = None
    else:
        for name in ("cycle_days", "after_cycle"):
            body.pop(name, None)
    if not for_patch:
        body["active"] = form.get("active") in ("on", "true", "1")
    return body


def item_body(form: Mapping[str, Any], *, for_patch: bool = False) -> dict[str, Any]:
    """A catalog item (POST /v1/items) or the fields of a patch from the item form."""
    body: dict[str, Any] = {}
    for name in ITEM_TEXT:
        value = _text(form, name)
        if value:
            body[name] = value
        elif for_patch and name == "min_tier":
            body[name] = None
    if for_patch:
        body.pop("type", None)  # an item's type is fixed
    for name in ITEM_NUMBERS:
        number = _number(form, name)
        if number is not None:
            body[name] = number
    limit_period, limit_quantity = _text(form, "limit_period"), _number(form, "limit_quantity")
    if limit_period and limit_quantity is not None:
        body["per_user_limit"] = {"period": limit_period, "quantity": limit_quantity}
    elif limit_period or limit_quantity is not None:
        raise FormError("per-user limit: give both the period and the quantity")
    tags = _text(form, "tags")
    if tags:
        body["tags"] = [t.strip() for t in tags.split(",") if t.strip()]
    if not for_patch:
        body["active"] = form.get("active") in ("on", "true", "1")
    return body


def adjustment(form: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """('credits' | 'debits', body) for the ledger from the adjust-points form."""
    direction = _text(form, "direction")
    if direction not in ("credit", "debit"):
        raise FormError("choose add or deduct")
    points = _number(form, "points")
    if points is None or points <= 0:
        raise FormError("points: a whole number above zero")
    reason = _text(form, "reason")
    if not reason:
        raise FormError("reason: say why (it is kept in the ledger and the audit log)")
    key = _text(form, "idempotency_key")
    if not key:
        raise FormError("idempotency key missing: reload the page")
    body = {
        "points": points,
        "reason": reason,
        "idempotency_key": key,
        "asset": _text(form, "asset") or "points",
    }
    return ("credits" if direction == "credit" else "debits"), body

"""What the API shows of an item and of a redemption (rows mapped to response dicts)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from services.exchange import domain


def item_view(row: Mapping[str, Any]) -> dict[str, Any]:
    item = dict(row)
    period, quantity = item.pop("limit_period"), item.pop("limit_quantity")
    item["per_user_limit"] = {"period": period, "quantity": quantity} if period else None
    item["available"] = (
        domain.unavailable_reason(
            item["active"], item["starts_at"], item["ends_at"], datetime.now(UTC)
        )
        is None
    )
    return item


def redemption_view(row: Any) -> dict[str, Any]:
    r = row._mapping
    return {
        "id": r["id"],
        "user_id": r["user_id"],
        "idempotency_key": r["idempotency_key"],
        "item_id": r["item_id"],
        "item_name": r["item_name"],
        "item_type": r["item_type"],
        "quantity": r["quantity"],
        "points": r["points"],
        "status": r["status"],
        "failure": (
            {"code": r["failure_code"], "message": r["failure_message"]}
            if r["failure_code"]
            else None
        ),
        "compensated": r["compensated"],
        "balance_after": r["balance_after"],
        "ledger_entry_id": r["ledger_entry_id"],
        "refund_entry_id": r["refund_entry_id"],
        "reward": r["reward"],
        "fulfilment": (
            {
                "status": r["fulfilment_status"],
                "shipping_address": r["shipping_address"],
                "carrier": r["carrier"],
                "tracking_number": r["tracking_number"],
            }
            if r["item_type"] == "physical"
            else None
        ),
        "cancel_reason": r["cancel_reason"],
        "cancelled_by": r["cancelled_by"],
        "created_at": r["created_at"],
        "updated_at": r["updated_at"],
    }

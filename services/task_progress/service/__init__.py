"""task_progress use cases, one module per area: behaviors -> progress and grants
(`progress`), orders, refunds and clawbacks (`refunds`), rule administration (`rules`) and
what users and operators read (`reads`). Callers keep writing `service.apply_behaviors(...)`."""

from services.task_progress.service.progress import active_rules, apply_behaviors, first_of_each
from services.task_progress.service.reads import order_view, user_tasks
from services.task_progress.service.refunds import (
    ORDER_PAID,
    ORDER_REFUNDED,
    RefundCause,
    SettledGrant,
    Settlement,
    emit_clawbacks,
    record_orders_and_refunds,
    refund_order,
    settle,
)
from services.task_progress.service.rules import (
    create_task,
    get_task,
    patch_task,
    require_assets,
    rule_snapshot,
    task_versions,
)

__all__ = [
    "ORDER_PAID",
    "ORDER_REFUNDED",
    "RefundCause",
    "SettledGrant",
    "Settlement",
    "active_rules",
    "apply_behaviors",
    "create_task",
    "emit_clawbacks",
    "first_of_each",
    "get_task",
    "order_view",
    "patch_task",
    "record_orders_and_refunds",
    "refund_order",
    "require_assets",
    "rule_snapshot",
    "settle",
    "task_versions",
    "user_tasks",
]

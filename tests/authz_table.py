"""The authorization matrix: who may call every route of every service (issue 25).

Each route has one row naming its policy; each policy says, once, what each of the eight
principals gets. tests/integration/test_authz_matrix.py checks the rows against the routes
the running services publish in their OpenAPI (a route without a row fails, so does a row
without a route) and sends every row's request as every principal.

A policy is a fixed name (`public`, `own_user`, `admin`, ...) or a scoped one naming the
service scopes that open the route, as the handler's require_scope / require_user_or_scope
call does: `admin_or_scope:ledger:debit|ledger:adjust`. The service column of a scoped
policy follows shared.settings.SERVICE_SCOPES, so it stays right when scopes change.

Answers: 401 (no valid credentials), 403 (valid credentials that may not do this), or
ALLOWED: the authorization layer let the request through, so any status that is neither
401, 403 nor 5xx (a 404 for an id that does not exist, a 409 or a 422 of the handler's own
checks are fine: they come after the decision).

The requests are meant to be harmless to the ~800 other tests sharing the suite: ids that
do not exist, a user of our own (user A, unique per run), bodies that pass validation but
are refused by the handler after authorization where creating something would matter.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from shared.settings import SERVICE_SCOPES

ALLOWED: Final = "allowed"
Expected = Literal[401, 403, "allowed"]

PRINCIPALS = (
    "anonymous",  # no credentials at all
    "user_a",  # a valid JWT of the user the request is about
    "user_b",  # a valid JWT of another user (asking for user A's data)
    "expired_jwt",  # user A's JWT, expired
    "forged_jwt",  # user A's JWT signed with the wrong secret
    "ingest_other_source",  # a valid ingest key restricted to a source the request is not
    "service",  # the exchange's service credential (scopes in SERVICE_SCOPES["exchange"])
    "admin",  # the admin/operations token
)
SERVICE_CALLER = "exchange"


def _service_holds(scopes: str) -> Expected:
    """The service column follows the credential's scopes, so it stays right when they change.
    `scopes` is one scope or several separated by "|", any of which lets a service in."""
    held = SERVICE_SCOPES[SERVICE_CALLER]
    return ALLOWED if any(scope in held for scope in scopes.split("|")) else 403


def _row(*answers: Expected) -> dict[str, Expected]:
    """One answer per principal, in PRINCIPALS order."""
    return dict(zip(PRINCIPALS, answers, strict=True))


A: Final = ALLOWED  # short, so that each policy fits on one line
# Policy -> the answer of each principal, in PRINCIPALS order.
FIXED_POLICIES: dict[str, dict[str, Expected]] = {
    # reads no credentials: whatever is sent (even a bad token) is ignored
    "public": _row(A, A, A, A, A, A, A, A),
    # open to anonymous callers, but credentials that are sent must be valid
    "public_checks_credentials": _row(A, A, A, 401, 401, A, A, A),
    # the user themselves or the admin
    "own_user": _row(401, A, 403, 401, 401, 403, 403, A),
    # the admin token only
    "admin": _row(401, 403, 403, 401, 401, 403, 403, A),
    # an ingest key for the event's source, or the admin. No column holds a key for the
    # source sent, so the cells equal the admin's; the dev key ("*") is allowed all through
    # the rest of the suite
    "ingest": _row(401, 403, 403, 401, 401, 403, 403, A),
}
SCOPED_POLICIES: dict[str, Callable[[str], dict[str, Expected]]] = {
    # the user themselves, the admin, or a service whose credential carries one of the scopes
    "own_user_or_scope": lambda scope: _row(401, A, 403, 401, 401, 403, _service_holds(scope), A),
    # the admin or a service whose credential carries one of the scopes
    "admin_or_scope": lambda scope: _row(401, 403, 403, 401, 401, 403, _service_holds(scope), A),
}


def expectations(policy: str) -> dict[str, Expected]:
    """The answers of a policy: a fixed name, or `<scoped policy>:<scope>[|<scope>...]`
    (e.g. `admin_or_scope:ledger:debit|ledger:adjust`: either scope will do)."""
    if policy in FIXED_POLICIES:
        return FIXED_POLICIES[policy]
    kind, _, scope = policy.partition(":")
    if kind in SCOPED_POLICIES and scope:
        return SCOPED_POLICIES[kind](scope)
    raise KeyError(f"unknown policy {policy!r}")


# -- the requests --------------------------------------------------------------------------


@dataclass
class Context:
    """What a request is built from: user A (whom every /users/{user_id} route is about),
    resources user A owns (for routes that check ownership inside the handler), and a fresh
    value per request for idempotency keys and codes."""

    user_a: str
    redemption_id: str  # a (failed) redemption of user A's
    notification_id: str  # a notification to user A
    today: str = field(default_factory=lambda: datetime.now(UTC).date().isoformat())

    def fresh(self, prefix: str = "authz") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:12]}"


# An id no table holds, valid for every id parameter (uuid-shaped, at most 36 characters).
NO_ID = "00000000-0000-4000-8000-00000000a0a0"
Body = Mapping[str, Any] | list[Any] | Callable[[Context], Any] | None


@dataclass(frozen=True)
class Row:
    policy: str
    path: Mapping[str, str] = field(default_factory=dict)  # beyond path_defaults()
    query: Mapping[str, Any] = field(default_factory=dict)
    body: Body = None
    note: str = ""
    may_answer: frozenset[int] = frozenset()  # 5xx statuses that are the route's own verdict


def path_defaults(ctx: Context) -> dict[str, str]:
    """Path parameters by name, unless a row gives its own."""
    return {
        "user_id": ctx.user_a,
        "redemption_id": ctx.redemption_id,
        "notification_id": ctx.notification_id,
        "task_id": NO_ID,
        "item_id": NO_ID,
        "campaign_id": NO_ID,
        "order_no": "authz-no-such-order",
        "key": "authz-no-such-experiment",
        "code": "authz-no-such-code",
    }


def _now(delta: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) + delta).isoformat()


def _event(ctx: Context) -> dict[str, Any]:
    # source "app": not the source the restricted ingest key may publish for
    return {
        "event_id": ctx.fresh("authz-event"),
        "source": "app",
        "user_id": ctx.user_a,
        "action": "authz_probe",
        "occurred_at": _now(),
        "attributes": {},
    }


def _key(**fields: Any) -> Callable[[Context], dict[str, Any]]:
    """A body with a fresh idempotency key per request."""
    return lambda ctx: {**fields, "idempotency_key": ctx.fresh()}


TIER_LADDER_REFUSED = [  # duplicate codes: refused by the handler (422) after authorization
    {"code": "authz", "name": "authz probe", "min_growth": 0},
    {"code": "authz", "name": "authz probe", "min_growth": 10},
]

# (service, METHOD, path template) -> row. Every route of every service's OpenAPI, no more.
ROUTES: dict[tuple[str, str, str], Row] = {
    # -- behavior_sensor --------------------------------------------------------------------
    ("behavior_sensor", "GET", "/health/live"): Row("public"),
    ("behavior_sensor", "GET", "/health/ready"): Row("public"),
    ("behavior_sensor", "POST", "/v1/events"): Row(
        "ingest", body=_event, note="the admin's event is recorded (user A, unused action)"
    ),
    ("behavior_sensor", "GET", "/v1/diverted"): Row(
        "admin_or_scope:behavior:read", query={"limit": 1}
    ),
    ("behavior_sensor", "POST", "/v1/diverted/release"): Row(
        "admin_or_scope:behavior:decide", body={"source": "app", "event_id": "authz-no-such-event"}
    ),
    ("behavior_sensor", "POST", "/v1/diverted/reject"): Row(
        "admin_or_scope:behavior:decide", body={"source": "app", "event_id": "authz-no-such-event"}
    ),
    # -- task_progress ----------------------------------------------------------------------
    ("task_progress", "GET", "/health/live"): Row("public"),
    ("task_progress", "GET", "/health/ready"): Row("public"),
    ("task_progress", "POST", "/v1/tasks"): Row(
        "admin_or_scope:tasks:write",
        body={
            "name": "authz probe",
            "action": "authz_probe",
            "reward_points": 1,
            "reward_type": "authz_no_such_asset",
            "active": False,
        },
        note="an unknown reward asset: refused (422) after authorization, no task created",
    ),
    ("task_progress", "GET", "/v1/tasks"): Row(
        "admin_or_scope:tasks:read|tasks:rules", query={"limit": 1}
    ),
    ("task_progress", "GET", "/v1/tasks/{task_id}"): Row("admin_or_scope:tasks:read"),
    ("task_progress", "PATCH", "/v1/tasks/{task_id}"): Row(
        "admin_or_scope:tasks:write", body={"active": False}
    ),
    ("task_progress", "GET", "/v1/users/{user_id}/tasks"): Row("own_user_or_scope:tasks:read"),
    ("task_progress", "POST", "/v1/orders/{order_no}/refunds"): Row(
        "admin", body=lambda ctx: {"refund_no": ctx.fresh()}
    ),
    ("task_progress", "GET", "/v1/orders/{order_no}"): Row("admin"),
    ("task_progress", "POST", "/v1/tasks/simulate"): Row(
        "admin_or_scope:tasks:read",
        body=lambda ctx: {
            "rule": {"name": "authz probe", "action": "authz_probe", "reward_points": 1},
            "from": _now(timedelta(hours=-1)),
            "to": _now(),
        },
        note="a dry run: writes nothing",
    ),
    ("task_progress", "GET", "/v1/tasks/{task_id}/versions"): Row("admin_or_scope:tasks:read"),
    ("task_progress", "GET", "/v1/users/{user_id}/checkins"): Row("own_user_or_scope:tasks:read"),
    ("task_progress", "POST", "/v1/users/{user_id}/checkins/makeup"): Row(
        "own_user", body=lambda ctx: {**_key(task_id=NO_ID)(ctx), "day": ctx.today}
    ),
    # -- rewards_ledger ---------------------------------------------------------------------
    ("rewards_ledger", "GET", "/health/live"): Row("public"),
    ("rewards_ledger", "GET", "/health/ready"): Row("public"),
    ("rewards_ledger", "GET", "/v1/assets"): Row("admin"),
    ("rewards_ledger", "POST", "/v1/assets"): Row(
        "admin",
        body={
            "code": "authz_probe",
            "name": "authz probe",
            "spendable": False,
            "expires": False,
            "default_validity_days": 30,
        },
        note="validity days on a never-expiring asset: refused (422) by the handler",
    ),
    ("rewards_ledger", "GET", "/v1/assets/{code}"): Row(
        "admin_or_scope:ledger:assets", path={"code": "points"}
    ),
    ("rewards_ledger", "GET", "/v1/accounts/{user_id}"): Row(
        "own_user_or_scope:ledger:read|ledger:accounts"
    ),
    ("rewards_ledger", "GET", "/v1/accounts/{user_id}/balances"): Row(
        "own_user_or_scope:ledger:accounts"
    ),
    ("rewards_ledger", "GET", "/v1/accounts/{user_id}/entries"): Row(
        "own_user_or_scope:ledger:accounts"
    ),
    ("rewards_ledger", "POST", "/v1/accounts/{user_id}/debits"): Row(
        "admin_or_scope:ledger:debit|ledger:adjust",
        body=_key(points=1, reason="authz probe"),
        note="user A holds nothing: 409 insufficient_points",
    ),
    ("rewards_ledger", "POST", "/v1/debits/batch"): Row(
        "admin_or_scope:ledger:debit",
        body=lambda ctx: {"debits": [{**_key(points=1)(ctx), "user_id": ctx.user_a}]},
        note="user A holds nothing: the one debit is refused inside a 200",
    ),
    ("rewards_ledger", "POST", "/v1/accounts/{user_id}/refunds"): Row(
        "admin_or_scope:ledger:refund",
        body=lambda ctx: {"debit_idempotency_key": ctx.fresh()},
        note="no such debit: the fresh key is voided (user A's only)",
    ),
    ("rewards_ledger", "POST", "/v1/accounts/{user_id}/credits"): Row(
        "admin_or_scope:ledger:adjust",
        body=_key(points=1, reason="authz probe", asset="authz_no_such_asset"),
        note="an unknown asset: refused after authorization, nothing credited",
    ),
    ("rewards_ledger", "POST", "/v1/accounts/{user_id}/extensions"): Row(
        "own_user", body=_key(days=1), note="user A holds nothing: 409 nothing_to_extend"
    ),
    ("rewards_ledger", "POST", "/v1/holds"): Row(
        "admin_or_scope:ledger:hold",
        body=lambda ctx: {**_key(points=1, expires_in_s=60)(ctx), "user_id": ctx.user_a},
        note="user A holds nothing: 409 insufficient_points",
    ),
    ("rewards_ledger", "GET", "/v1/holds/{hold_id}"): Row(
        "admin_or_scope:ledger:hold|ledger:accounts", path={"hold_id": NO_ID}
    ),
    ("rewards_ledger", "POST", "/v1/holds/{hold_id}/capture"): Row(
        "admin_or_scope:ledger:hold", path={"hold_id": NO_ID}, body=_key(), note="no such hold"
    ),
    ("rewards_ledger", "POST", "/v1/holds/{hold_id}/void"): Row(
        "admin_or_scope:ledger:hold", path={"hold_id": NO_ID}, body=_key(), note="no such hold"
    ),
    ("rewards_ledger", "GET", "/v1/accounts/{user_id}/holds"): Row(
        "own_user_or_scope:ledger:accounts|ledger:hold"
    ),
    ("rewards_ledger", "GET", "/v1/reports/liability"): Row("admin_or_scope:ledger:overview"),
    ("rewards_ledger", "GET", "/v1/reconciliation"): Row("admin_or_scope:ledger:overview"),
    ("rewards_ledger", "GET", "/v1/reports/expiring-lots"): Row(
        "admin_or_scope:ledger:reports|ledger:expiring",
        query={"from": "2000-01-01T00:00:00Z", "to": "2000-01-02T00:00:00Z", "limit": 1},
    ),
    ("rewards_ledger", "GET", "/v1/reports/holders"): Row(
        "admin_or_scope:ledger:reports", query={"limit": 1}
    ),
    # -- exchange ---------------------------------------------------------------------------
    ("exchange", "GET", "/health/live"): Row("public"),
    ("exchange", "GET", "/health/ready"): Row("public"),
    ("exchange", "POST", "/v1/items"): Row(
        "admin_or_scope:exchange:items",
        body={
            "name": "authz probe",
            "category": "authz-probe",
            "type": "virtual",
            "points_price": 1,
            "stock": 0,
            "active": False,
        },
        note="the admin creates an inactive item with no stock (never on sale)",
    ),
    ("exchange", "GET", "/v1/items"): Row(
        "public_checks_credentials",
        query={"limit": 1},
        note="include_unavailable=true needs more (tests/integration/test_exchange.py)",
    ),
    ("exchange", "GET", "/v1/items/{item_id}"): Row("public"),
    ("exchange", "PATCH", "/v1/items/{item_id}"): Row(
        "admin_or_scope:exchange:items", body={"active": False}
    ),
    ("exchange", "DELETE", "/v1/items/{item_id}"): Row("admin"),
    ("exchange", "POST", "/v1/redemptions"): Row(
        "own_user_or_scope:exchange:redeem",
        body=lambda ctx: {**_key(item_id=NO_ID)(ctx), "user_id": ctx.user_a},
        note="the owner is the body's user_id; no such item: 404",
    ),
    ("exchange", "GET", "/v1/redemptions/{redemption_id}"): Row(
        "own_user_or_scope:exchange:read",
        note="user A's real redemption: ownership is checked in the handler",
    ),
    ("exchange", "POST", "/v1/redemptions/{redemption_id}/cancel"): Row(
        "own_user", body={"reason": "authz probe"}, note="it failed: 409 for those allowed"
    ),
    ("exchange", "POST", "/v1/redemptions/{redemption_id}/ship"): Row(
        "admin_or_scope:exchange:fulfil",
        path={"redemption_id": NO_ID},
        body={"carrier": "authz", "tracking_number": "authz"},
    ),
    ("exchange", "POST", "/v1/redemptions/{redemption_id}/deliver"): Row(
        "admin_or_scope:exchange:fulfil", path={"redemption_id": NO_ID}
    ),
    ("exchange", "GET", "/v1/fulfilments"): Row("admin_or_scope:exchange:read", query={"limit": 1}),
    ("exchange", "GET", "/v1/users/{user_id}/redemptions"): Row("own_user_or_scope:exchange:read"),
    ("exchange", "GET", "/v1/users/{user_id}/quick-options"): Row("own_user"),
    ("exchange", "GET", "/v1/reconciliation"): Row(
        "admin_or_scope:exchange:read|exchange:reconciliation"
    ),
    # -- engagement -------------------------------------------------------------------------
    ("engagement", "GET", "/health/live"): Row("public"),
    ("engagement", "GET", "/health/ready"): Row("public"),
    ("engagement", "GET", "/v1/leaderboards"): Row("public"),
    ("engagement", "POST", "/v1/leaderboards"): Row(
        "admin",
        body=lambda ctx: {
            "code": ctx.fresh(),
            "name": "authz probe",
            "metric": "action_count",
            "action": "authz_never_sent",
            "window": "day",
        },
        note="the admin creates a board of an action nobody sends",
    ),
    ("engagement", "GET", "/v1/leaderboards/{code}"): Row("public"),
    ("engagement", "PATCH", "/v1/leaderboards/{code}"): Row(
        "admin", body={"name_display": "masked"}, note="no such board: 404 for the admin"
    ),
    # public reads that show operators the user ids and a user their own entries (`me`)
    ("engagement", "GET", "/v1/leaderboards/{code}/top"): Row("public_checks_credentials"),
    ("engagement", "GET", "/v1/leaderboards/{code}/users/{user_id}"): Row(
        "public_checks_credentials"
    ),
    ("engagement", "GET", "/v1/leaderboards/{code}/users/{user_id}/history"): Row(
        "public_checks_credentials"
    ),
    ("engagement", "PUT", "/v1/users/{user_id}/profile"): Row(
        "own_user", body={"display_name": "authz probe"}, note="user A's own display name"
    ),
    ("engagement", "GET", "/v1/users/{user_id}/profile"): Row("own_user_or_scope:engagement:read"),
    ("engagement", "POST", "/v1/leaderboards/{code}/rebuild"): Row(
        "admin_or_scope:engagement:rebuild"
    ),
    ("engagement", "GET", "/v1/badges"): Row("public"),
    ("engagement", "POST", "/v1/badges"): Row(
        "admin",
        body=lambda ctx: {
            "code": ctx.fresh(),
            "name": "authz probe",
            "criteria": {"type": "first_action", "action": "authz_never_sent"},
        },
        note="the admin creates a badge of an action nobody sends",
    ),
    ("engagement", "GET", "/v1/users/{user_id}/badges"): Row("own_user_or_scope:engagement:read"),
    ("engagement", "GET", "/v1/tiers"): Row("public"),
    ("engagement", "PUT", "/v1/tiers"): Row(
        "admin", body=TIER_LADDER_REFUSED, note="the ladder is refused (422) by the handler"
    ),
    ("engagement", "GET", "/v1/users/{user_id}/tier"): Row("own_user_or_scope:engagement:read"),
    # -- notifier ---------------------------------------------------------------------------
    ("notifier", "GET", "/health/live"): Row("public"),
    ("notifier", "GET", "/health/ready"): Row("public"),
    ("notifier", "POST", "/v1/users/{user_id}/devices"): Row(
        "own_user", body={"platform": "web", "token": "authz-probe-device-token"}
    ),
    ("notifier", "GET", "/v1/users/{user_id}/devices"): Row("own_user"),
    ("notifier", "DELETE", "/v1/users/{user_id}/devices/{token}"): Row(
        "own_user", path={"token": "authz-no-such-device"}
    ),
    ("notifier", "GET", "/v1/users/{user_id}/preferences"): Row("own_user"),
    ("notifier", "PUT", "/v1/users/{user_id}/preferences"): Row("own_user", body={"locale": "en"}),
    ("notifier", "GET", "/v1/users/{user_id}/notifications"): Row(
        "own_user_or_scope:notifier:read"
    ),
    ("notifier", "GET", "/v1/notifications/{notification_id}"): Row(
        "own_user", note="user A's real notification: ownership is checked in the handler"
    ),
    ("notifier", "POST", "/v1/notifications/{notification_id}/opened"): Row(
        "own_user", note="user A's real notification (never sent: 409 for those allowed)"
    ),
    ("notifier", "GET", "/v1/templates"): Row("admin"),
    ("notifier", "PUT", "/v1/templates/{code}"): Row(
        "admin",
        path={"code": "authz_probe"},
        body={
            "category": "marketing",
            "texts": {"zh-CN": {"title": "{undeclared}", "body": "authz probe"}},
            "variables": [],
        },
        note="an undeclared variable: refused (422) by the handler, nothing stored",
    ),
    ("notifier", "POST", "/v1/campaigns"): Row(
        "admin",
        body=lambda ctx: {
            "idempotency_key": ctx.fresh(),
            "name": "authz probe",
            "audience": {"user_ids": [ctx.fresh("authz-nobody")]},
            "category": "reminders",
            "title": "authz probe",
            "body": "authz probe",
        },
        note="the admin's campaign goes to one user id nobody else uses",
    ),
    ("notifier", "GET", "/v1/campaigns"): Row("admin_or_scope:notifier:read", query={"limit": 1}),
    ("notifier", "GET", "/v1/campaigns/{campaign_id}"): Row("admin"),
    ("notifier", "GET", "/v1/triggers/runs"): Row("admin", query={"limit": 1}),
    ("notifier", "POST", "/v1/triggers/{trigger}/runs"): Row(
        "admin",
        path={"trigger": "points_expiring"},
        body=lambda ctx: {
            "day": (datetime.now(UTC) - timedelta(days=300)).date().isoformat(),
            "timezone": "Pacific/Kiritimati",
        },
        note="the admin runs the expiry reminder for a day long past (lots expiring then are "
        "gone) in a zone nobody uses",
    ),
    # -- insights ---------------------------------------------------------------------------
    ("insights", "GET", "/health/live"): Row("public"),
    ("insights", "GET", "/health/ready"): Row("public"),
    ("insights", "GET", "/v1/kpis"): Row(
        "admin_or_scope:insights:read", query={"from": "2000-01-01", "to": "2000-01-01"}
    ),
    ("insights", "GET", "/v1/kpis/summary"): Row("admin_or_scope:insights:read"),
    ("insights", "GET", "/v1/kpis/targets"): Row("admin_or_scope:insights:read"),
    ("insights", "PUT", "/v1/kpis/targets/{kpi}"): Row(
        "admin", path={"kpi": "authz_no_such_kpi"}, body={"target": 1}, note="404 after auth"
    ),
    ("insights", "GET", "/v1/kpis/targets/{kpi}/history"): Row(
        "admin_or_scope:insights:read", path={"kpi": "nps"}
    ),
    # verdicts for anyone, numbers for operators; 503 is its answer when critical
    ("insights", "GET", "/v1/health/business"): Row(
        "public_checks_credentials", may_answer=frozenset({503})
    ),
    ("insights", "POST", "/v1/experiments"): Row(
        "admin",
        body=lambda ctx: {
            "key": ctx.fresh(),
            "name": "authz probe",
            "variants": [{"key": "a", "weight": 1}, {"key": "b", "weight": 1}],
            "metric": {"type": "conversion", "event": "redemption"},
        },
        note="the admin defines a draft experiment (never started)",
    ),
    ("insights", "GET", "/v1/experiments"): Row("admin_or_scope:insights:read", query={"limit": 1}),
    ("insights", "GET", "/v1/experiments/{key}"): Row("admin"),
    ("insights", "PATCH", "/v1/experiments/{key}"): Row("admin", body={"status": "stopped"}),
    ("insights", "GET", "/v1/experiments/{key}/assignment/{user_id}"): Row("own_user"),
    ("insights", "GET", "/v1/experiments/{key}/results"): Row("admin_or_scope:insights:read"),
    ("insights", "GET", "/v1/users/{user_id}/recommendations"): Row(
        "own_user_or_scope:insights:recommendations"
    ),
}

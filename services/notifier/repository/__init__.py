"""Every SQL statement of the notifier, by area (the same as the use cases'). Batches are
set-based (one statement per batch, arrays unnested) and the texts are fixed, so each is
prepared once per connection."""

from services.notifier.repository.campaigns import (
    Campaign,
    advance_campaign,
    campaign,
    campaigns_page,
    campaigns_with_counts,
    due_campaign,
    insert_campaign,
    set_tiers,
    tier_members,
)
from services.notifier.repository.devices import (
    active_devices,
    deactivate,
    devices_of,
    remove_device,
    upsert_device,
)
from services.notifier.repository.dispatch import (
    ATTEMPTS,
    COUNTS,
    Settled,
    claim_due,
    insert_attempts,
    lock_counts,
    mark_sending,
    set_counts,
    set_decided,
    set_recorded,
    settled_deliveries,
    upsert_deliveries,
)
from services.notifier.repository.notifications import (
    attempts_of,
    deliveries_of,
    mark_opened,
    notification,
    notifications_of,
)
from services.notifier.repository.preferences import (
    preferences_of,
    prefs_of,
    put_preferences,
    timezones_in_use,
)
from services.notifier.repository.queueing import (
    NOTIFICATIONS,
    queue,
)
from services.notifier.repository.templating import (
    put_template,
    stored_templates,
)
from services.notifier.repository.triggers import (
    advance_run,
    record_checkins,
    record_task_days,
    restart_run,
    runs,
    start_run,
    streaks_at_risk,
    unfinished_tasks,
)

__all__ = [
    "ATTEMPTS",
    "COUNTS",
    "NOTIFICATIONS",
    "Campaign",
    "Settled",
    "active_devices",
    "advance_campaign",
    "advance_run",
    "attempts_of",
    "campaign",
    "campaigns_page",
    "campaigns_with_counts",
    "claim_due",
    "deactivate",
    "deliveries_of",
    "devices_of",
    "due_campaign",
    "insert_attempts",
    "insert_campaign",
    "lock_counts",
    "mark_opened",
    "mark_sending",
    "notification",
    "notifications_of",
    "preferences_of",
    "prefs_of",
    "put_preferences",
    "put_template",
    "queue",
    "record_checkins",
    "record_task_days",
    "remove_device",
    "restart_run",
    "runs",
    "set_counts",
    "set_decided",
    "set_recorded",
    "set_tiers",
    "settled_deliveries",
    "start_run",
    "stored_templates",
    "streaks_at_risk",
    "tier_members",
    "timezones_in_use",
    "unfinished_tasks",
    "upsert_deliveries",
    "upsert_device",
]

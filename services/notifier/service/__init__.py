"""Notifier use cases, by area: devices and preferences, templates, queueing notifications
from their causes (events, daily triggers, campaigns), the dispatcher's claim-decide-send
(`dispatch`) and record (`outcomes`) cycle, and a user's notifications (reads, opens).

Callers keep writing `service.queue(...)`, `service.claim(...)`: the public use cases are
re-exported here.
"""

from services.notifier.service.campaigns import (
    campaign_plans,
    create_campaign,
    get_campaign,
    list_campaigns,
)
from services.notifier.service.causes import Batch, apply_batch, expiry_plan, is_daily_period
from services.notifier.service.devices import list_devices, register_device, remove_device
from services.notifier.service.dispatch import Job, claim, send
from services.notifier.service.notifications import (
    get_notification,
    list_notifications,
    opened,
    owner_of,
)
from services.notifier.service.outcomes import record
from services.notifier.service.preferences import (
    get_preferences,
    preferences_from,
    preferences_out,
    put_preferences,
    user_zones,
)
from services.notifier.service.queueing import Planned, queue
from services.notifier.service.templating import list_templates, put_template, template_book

__all__ = [
    "Batch",
    "Job",
    "Planned",
    "apply_batch",
    "campaign_plans",
    "claim",
    "create_campaign",
    "expiry_plan",
    "get_campaign",
    "get_notification",
    "get_preferences",
    "is_daily_period",
    "list_campaigns",
    "list_devices",
    "list_notifications",
    "list_templates",
    "opened",
    "owner_of",
    "preferences_from",
    "preferences_out",
    "put_preferences",
    "put_template",
    "queue",
    "record",
    "register_device",
    "remove_device",
    "send",
    "template_book",
    "user_zones",
]

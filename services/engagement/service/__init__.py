"""Engagement use cases, by area: `batches.py` (applying consumed events: scores, counters,
flags, then tier upgrades and badges), `boards.py` (leaderboard definitions, periods, score
pages for rebuilds), `closing.py` (closing periods, daily rank snapshots), `tiers.py` (the
ladder, upgrades, end-of-term evaluation, a user's tier), `badges.py` (awards and a user's
badges), `profiles.py` (display names and avatars). Leaderboard reads served from the
index are `leaderboards.py`.

Use cases take the caller's session and only flush. What must wait for the commit (writing
the leaderboard index) is registered with `after_commit`; what other services must hear
goes to the outbox in the same transaction.
"""

from __future__ import annotations

from services.engagement.service.badges import (
    award_badges,
    create_badge,
    load_stats,
    user_badges,
)
from services.engagement.service.batches import Batch, apply_batch
from services.engagement.service.boards import (
    create_board,
    get_board,
    resolve_period,
    score_pages,
    update_board,
)
from services.engagement.service.closing import close_one, snapshot_one
from services.engagement.service.profiles import (
    apply_profiles,
    get_profile,
    profile_changes,
    put_profile,
)
from services.engagement.service.tiers import (
    base_tier,
    evaluate_due_tiers,
    load_ladder,
    replace_ladder,
    tier_view,
    upgrade_tiers,
    user_tier,
)

__all__ = [
    "Batch",
    "apply_batch",
    "apply_profiles",
    "award_badges",
    "base_tier",
    "close_one",
    "create_badge",
    "create_board",
    "evaluate_due_tiers",
    "get_board",
    "get_profile",
    "load_ladder",
    "load_stats",
    "profile_changes",
    "put_profile",
    "replace_ladder",
    "resolve_period",
    "score_pages",
    "snapshot_one",
    "tier_view",
    "update_board",
    "upgrade_tiers",
    "user_badges",
    "user_tier",
]

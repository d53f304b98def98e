from __future__ import annotations

from pydantic import Field

from shared.settings import JifenSettings


class Settings(JifenSettings):
    service_name: str = "task_progress"
    database_name: str = "jifen_task_progress"
    behavior_topic: str = "behavior.events"
    ledger_url: str = Field(
        "http://127.0.0.1:8003",
        description="Base URL of rewards_ledger (asks it whether a rule's reward asset exists)",
    )
    ledger_timeout_s: float = Field(3.0, gt=0, le=60, description="Per call to the ledger")
    behavior_history_hours: int = Field(
        90 * 24,
        ge=1,
        le=24 * 3650,
        description="how long behaviors are kept for the dry run of a draft rule (never less "
        "than JIFEN_DEDUPE_RETENTION_HOURS: the kept behavior ids are also the consumer's inbox)",
    )

    @property
    def history_retention_hours(self) -> int:
        """The kept behaviors decide which were applied, so they outlive the dedupe window."""
        return max(self.behavior_history_hours, self.dedupe_retention_hours)

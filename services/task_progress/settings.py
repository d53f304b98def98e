from __future__ import annotations

from shared.settings import JifenSettings


class Settings(JifenSettings):
    service_name: str = "task_progress"
    database_name: str = "jifen_task_progress"
    behavior_topic: str = "behavior.events"

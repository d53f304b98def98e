"""What the sensor's routes and workers share (built by `main.build_parts`)."""

from __future__ import annotations

from dataclasses import dataclass

from services.behavior_sensor.intake import HttpIntake
from services.behavior_sensor.workers import BehaviorProcessor


@dataclass(frozen=True)
class Parts:
    processor: BehaviorProcessor  # a worker; HTTP intake wakes it after each commit
    intake: HttpIntake

"""behavior_sensor composition root: `uvicorn services.behavior_sensor.main:app`."""

from __future__ import annotations

from services.behavior_sensor.adapters import ADAPTERS
from services.behavior_sensor.api import router
from services.behavior_sensor.consumer import UpstreamHandler
from services.behavior_sensor.enrichment import make_enricher
from services.behavior_sensor.intake import HttpIntake
from services.behavior_sensor.models import PURGES, messaging, metadata
from services.behavior_sensor.parts import Parts
from services.behavior_sensor.settings import Settings
from services.behavior_sensor.workers import BehaviorProcessor
from shared.events import BEHAVIOR_DIVERTED, BEHAVIOR_EVENTS
from shared.service import Platform, Runtime, ServiceSpec, Worker, create_app


def build_parts(platform: Platform[Settings]) -> Parts:
    """The processor (workers run it) and HTTP intake, which wakes it after each commit."""
    settings = platform.settings
    enricher = make_enricher(
        settings.enricher_url, settings.enricher_timeout_s, settings.enricher_retries
    )
    processor = BehaviorProcessor(settings, platform.db, enricher)
    return Parts(processor, HttpIntake(settings, platform.db, processor.wake))


def build_workers(rt: Runtime[Settings, Parts]) -> list[Worker]:
    processor = rt.parts.processor
    return [rt.consumer(UpstreamHandler(processor.enricher, processor.limits)), processor]


SPEC = ServiceSpec(
    name="behavior_sensor",
    title="Jifen behavior sensor",
    description="Ingests upstream behavior over HTTP and Kafka; de-duplicates, enriches, screens and publishes it.",
    package="services.behavior_sensor",
    settings_factory=Settings,
    metadata=metadata,
    messaging=messaging,
    routers=[router],
    topics=[*ADAPTERS, BEHAVIOR_EVENTS, BEHAVIOR_DIVERTED],
    build_parts=build_parts,
    build_workers=build_workers,
    purges=PURGES,
)

app = create_app(SPEC)

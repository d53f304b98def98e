"""The composition root every service shares: lifespan, app factory, health, background loops.

A service describes itself with a `ServiceSpec` (its settings, tables, routers, the parts it
builds from the platform and the workers it runs); `create_app` wires the rest the same way
for everyone. The `Runtime` is generic over the service's settings and parts, so routes and
workers reach both typed (see docs/ADDING_A_SERVICE.md).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from sqlalchemy import MetaData

from shared import tracing
from shared.auth import Authenticator
from shared.db import Database, create_engine, database_url, ensure_database
from shared.errors import RejectNulBytes, install_error_handlers
from shared.events import dlq_topic
from shared.logs import configure_logging
from shared.messaging import (
    BatchHandler,
    ConsumerLoop,
    MessagingTables,
    OutboxPublisher,
    OutboxRelay,
    Purge,
    RetentionSweeper,
    ensure_topics,
    inbox_purge,
    make_producer,
    queued_rows,
    start_with_retry,
)
from shared.metrics import install_metrics
from shared.migrate import upgrade
from shared.openapi import document_errors
from shared.ratelimit import Limit, RateLimit
from shared.settings import JifenSettings

log = logging.getLogger(__name__)


class Worker(Protocol):
    healthy: bool

    async def run(self) -> None: ...

    def stop(self) -> None: ...


S = TypeVar("S", bound=JifenSettings)
P = TypeVar("P")  # the service's own parts: a use-case object, a worker routes wake, or None


@dataclass
class Platform(Generic[S]):
    """What the kit gives every service before its own parts are built."""

    settings: S
    db: Database
    producer: AIOKafkaProducer
    messaging: MessagingTables

    def consumer(self, handler: BatchHandler[Any], **kwargs: Any) -> ConsumerLoop:
        """A consumer loop for `handler`, with this service's inbox and dead-letter producer."""
        return ConsumerLoop(
            handler,
            settings=self.settings,
            db=self.db,
            producer=self.producer,
            inbox=self.messaging.inbox,
            **kwargs,
        )


@dataclass
class Runtime(Platform[S], Generic[S, P]):
    """What a running service holds; routes reach it through `runtime_of(request)`."""

    parts: P
    relay: OutboxRelay
    workers: list[Worker] = field(default_factory=list)


def no_parts(platform: Platform[Any]) -> None:
    return None


@dataclass
class ServiceSpec(Generic[S, P]):
    name: str
    title: str
    description: str
    package: str  # e.g. "services.rewards_ledger": migrations live in <package>/migrations
    settings_factory: Callable[..., S]
    metadata: MetaData
    messaging: MessagingTables
    routers: Sequence[APIRouter]
    topics: Sequence[str]  # topics it consumes or produces (created if missing, with DLQs)
    build_parts: Callable[[Platform[S]], P]
    build_workers: Callable[[Runtime[S, P]], list[Worker]] = lambda rt: []
    # Rows of the service's own tables past the dedupe retention (the inbox is always purged).
    purges: Sequence[Purge] = ()
    seed: Callable[[Runtime[S, P]], Awaitable[None]] | None = None
    on_stop: Callable[[Runtime[S, P]], Awaitable[None]] | None = None


async def _supervise(worker: Worker, name: str) -> None:
    """Keep a background loop alive: a crash is logged and the loop restarted after a pause."""
    delay = 0.5
    while True:
        try:
            await worker.run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("worker %s crashed; restarting in %.1fs", name, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30)


# FastAPI's own OpenTelemetry hooks look up the global providers on every request.
TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def telemetry(settings: JifenSettings) -> TelemetryConfig:
    """FastAPI's instrumentation: off, or (JIFEN_OPENTELEMETRY=true) a server span per request
    through Jifen's tracer provider (shared/tracing.py), continuing the request's
    `traceparent`. Its per-operation spans (dependencies, serialization) and its metrics and
    logs stay off: Prometheus has the request metrics, and a span per dependency is more
    cost than insight on the hot routes."""
    if not tracing.configure(settings.service_name, settings.opentelemetry):
        return TELEMETRY_OFF
    return {
        "tracer_provider": tracing.provider(),
        "tracing": True,
        "metrics": False,
        "logs": False,
        "operation_spans": False,
        "auto_configure": False,
        "exclude": tracing.unobserved,
    }


def tune_gc(young_threshold: int) -> None:
    """Make the cyclic garbage collector cheap for a long-running service.

    With Python's default of a young collection every 700 net allocations, a service under
    load spent about a sixth of its CPU in the collector (docs/BENCHMARKS.md, sixth round),
    mostly re-walking the modules, routes and compiled statements loaded at start. Those are
    frozen out of collection, and young collections run far less often. Reference counting
    still frees everything that is not in a cycle at once.
    """
    if young_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)


async def prepare_database(package: str, settings: JifenSettings) -> None:
    """Create the database if missing and migrate it (`<package>/migrations`)."""
    await ensure_database(settings.database_url, settings.database_name)
    url = database_url(settings.database_url, settings.database_name)
    await asyncio.to_thread(upgrade, package, url.render_as_string(hide_password=False))


async def open_database(package: str, settings: JifenSettings) -> Database:
    """Logging configured, the database prepared (when `migrate_on_start`) and its pool opened:
    the first steps of every process's start, the console's included."""
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    if settings.migrate_on_start:
        await prepare_database(package, settings)
    engine = create_engine(
        database_url(settings.database_url, settings.database_name),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    return Database(engine)


async def open_messaging(
    spec: ServiceSpec[Any, Any], settings: JifenSettings, db: Database
) -> tuple[AIOKafkaProducer, OutboxRelay, OutboxPublisher]:
    """The producer, the service's topics (and their dead-letter topics), and the two ways an
    outbox row leaves: published right after its commit, or by the relay."""
    producer = make_producer(settings)
    await start_with_retry(producer, "producer")
    topics = [t for topic in spec.topics for t in (topic, dlq_topic(topic))]
    await ensure_topics(
        settings.kafka_bootstrap,
        topics,
        settings.kafka_topic_partitions,
        settings.kafka_replication_factor,
    )
    relay = OutboxRelay(settings, db, producer)
    publisher = OutboxPublisher(settings, db, producer)
    if settings.outbox_publish_on_commit:
        db.commit_listeners.append(publisher.on_commit)
        publisher.start()
    else:
        db.commit_listeners.append(lambda session: relay.wake() if queued_rows(session) else None)
    return producer, relay, publisher


def start_workers(spec: ServiceSpec[S, P], runtime: Runtime[S, P]) -> list[asyncio.Task[None]]:
    """The relay, the retention sweeper and the service's own workers, each supervised."""
    retention = RetentionSweeper(
        runtime.settings, runtime.db, [inbox_purge(spec.messaging.inbox), *spec.purges]
    )
    runtime.workers = [runtime.relay, retention, *spec.build_workers(runtime)]
    return [
        asyncio.create_task(_supervise(worker, type(worker).__name__), name=type(worker).__name__)
        for worker in runtime.workers
    ]


async def stop_workers(
    runtime: Runtime[Any, Any], tasks: list[asyncio.Task[None]], publisher: OutboxPublisher
) -> None:
    """Stop consumers first (they finish and commit their batch), then let the publisher and
    the relay drain what they wrote."""
    relay = runtime.relay
    for worker in runtime.workers:
        if worker is not relay:
            worker.stop()
    others = [t for t, w in zip(tasks, runtime.workers, strict=True) if w is not relay]
    if others:
        await asyncio.wait(others, timeout=20)
    await publisher.close()
    relay.stop()
    if tasks:
        await asyncio.wait(tasks, timeout=20)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def health_router(
    name: str, readiness: Callable[[Request], Awaitable[tuple[bool, dict[str, Any]]]]
) -> APIRouter:
    """`/health/live` (the process answers) and `/health/ready` (200 when `readiness` says
    ready, 503 otherwise, with what it found)."""
    health = APIRouter(tags=["health"])

    @health.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok", "service": name}

    @health.get("/health/ready")
    async def ready(request: Request) -> JSONResponse:
        ok, found = await readiness(request)
        return JSONResponse(found, status_code=200 if ok else 503)

    return health


async def service_readiness(request: Request) -> tuple[bool, dict[str, Any]]:
    """Ready: the database answers and every worker runs."""
    runtime: Runtime[Any, Any] | None = getattr(request.app.state, "runtime", None)
    checks: dict[str, str] = {}
    if runtime is None:
        return False, {"status": "starting", "checks": checks}
    try:
        await runtime.db.ping()
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    for worker in runtime.workers:
        name = getattr(worker, "health_name", None) or (
            type(worker).__name__ + getattr(getattr(worker, "handler", None), "name", "")
        )  # health_name: a worker that runs in several copies tells them apart
        checks[name] = "ok" if worker.healthy else "not running"
    ok = all(v == "ok" for v in checks.values())
    role = runtime.settings.role
    return ok, {"status": "ready" if ok else "degraded", "role": role, "checks": checks}


def install_edge(app: FastAPI, settings: JifenSettings) -> None:
    """What every request passes through: error handlers, the body guard, rate limits,
    request metrics and, tracing off, the request's `traceparent` made current (outermost, so
    that the answers of the guards name it too)."""
    install_error_handlers(app)
    app.add_middleware(RejectNulBytes, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(
        RateLimit,
        service=settings.service_name,
        per_key=Limit(settings.rate_limit_key_per_s, settings.rate_limit_key_burst),
        per_user=Limit(settings.rate_limit_user_per_s, settings.rate_limit_user_burst),
        per_ip=Limit(settings.rate_limit_ip_per_s, settings.rate_limit_ip_burst),
        exempt_tokens=frozenset(
            [settings.admin_token.get_secret_value(), *settings.service_credentials]
        ),
    )
    install_metrics(app, settings.service_name)
    if not tracing.enabled():
        app.add_middleware(tracing.TraceContext)


def create_app(spec: ServiceSpec[S, P], settings: S | None = None) -> FastAPI:
    settings = settings or spec.settings_factory()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = await open_database(spec.package, settings)
        producer, relay, publisher = await open_messaging(spec, settings, db)
        platform = Platform(settings, db, producer, spec.messaging)
        runtime = Runtime(settings, db, producer, spec.messaging, spec.build_parts(platform), relay)
        app.state.runtime = runtime
        if settings.seed_demo and spec.seed is not None:
            await spec.seed(runtime)
        tasks = start_workers(spec, runtime) if settings.runs_workers else []
        authenticator: Authenticator = app.state.authenticator
        if settings.serves_api:
            await authenticator.start()  # the identity provider's keys, before any request
        tune_gc(settings.gc_young_threshold)
        log.info("service started", extra={"role": settings.role, "tracing": tracing.enabled()})
        try:
            yield
        finally:
            await authenticator.close()
            await stop_workers(runtime, tasks, publisher)
            if spec.on_stop is not None:
                await spec.on_stop(runtime)
            await producer.stop()
            await db.dispose()
            await asyncio.to_thread(tracing.flush)
            log.info("service stopped")

    app = FastAPI(
        title=spec.title,
        description=spec.description,
        version="0.1.0",
        lifespan=lifespan,
        telemetry=telemetry(settings),
    )
    app.state.settings = settings
    app.state.authenticator = Authenticator(settings)
    install_edge(app, settings)
    app.include_router(health_router(settings.service_name, service_readiness))
    if settings.serves_api:
        for router in spec.routers:
            app.include_router(router)
    document_errors(app)
    return app


def runtime_of(request: Request) -> Runtime[Any, Any]:
    """The running service; annotate the variable with its settings and parts types:
    `rt: Runtime[Settings, Exchange] = runtime_of(request)`."""
    runtime: Runtime[Any, Any] = request.app.state.runtime
    return runtime

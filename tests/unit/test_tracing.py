"""Trace context across hops (shared/tracing.py), in process: a request's traceparent reaches
what it sends, its logs and its error answers; a consumed record's reaches what its batch
sends; with tracing on, spans for the request, the consumed message and the publish, each
the child of the one before. The run through the real broker is in
tests/integration/test_tracing.py."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from shared import tracing
from shared.errors import DomainError
from shared.logs import JsonFormatter
from shared.messaging.outbox import OutgoingEvent, QueuedRow, add_to_outbox, queued_rows
from shared.messaging.publisher import send_rows
from shared.service import install_edge, telemetry
from shared.settings import JifenSettings

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01"
HEX32 = r"[0-9a-f]{32}"


def test_only_a_valid_traceparent_is_taken() -> None:
    assert tracing.parse(TRACEPARENT) == TRACEPARENT
    assert tracing.parse(TRACEPARENT.encode()) == TRACEPARENT
    # a later version is read as version 00 (its extra fields dropped)
    assert tracing.parse(f"01-{TRACE}-{PARENT}-01-what-comes") == TRACEPARENT
    for bad in (
        None,
        "",
        "garbage",
        TRACEPARENT.upper(),
        f"00-{'0' * 32}-{PARENT}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{TRACE}-{PARENT}-01",  # forbidden version
        TRACEPARENT + "-extra",  # version 00 has exactly four fields
    ):
        assert tracing.parse(bad) is None, bad


def test_a_kafka_header_is_forwarded_only_when_it_cannot_harm() -> None:
    ours = TRACEPARENT.encode()
    assert tracing.of_headers([("other", b"x"), (tracing.HEADER, ours)]) == TRACEPARENT
    assert tracing.of_headers([(tracing.HEADER, b"  " + ours + b" ")]) == TRACEPARENT  # parsed
    # shaped like ours but with bytes PostgreSQL's text or a log line would refuse
    for bad in (ours.replace(b"a", b"\x00"), ours.replace(b"a", b"\xff"), b"junk", b""):
        assert tracing.of_headers([(tracing.HEADER, bad)]) is None, bad


# --------------------------------------------------------------------------------------------
# an app with the platform's edge (error handlers, guards, the trace middleware)


class Sink:
    """What a route sent through the outbox, without a database."""

    def __init__(self) -> None:
        self.info: dict[str, Any] = {}
        self.statements: list[str] = []

    async def execute(self, statement: Any, params: Any = None) -> Any:
        self.statements.append(str(statement))
        return SimpleNamespace(scalar_one=lambda: len(self.statements))


OUTBOX: Any = SimpleNamespace(name="outbox")


def edge_app(settings: JifenSettings) -> FastAPI:
    app = FastAPI(telemetry=telemetry(settings))
    install_edge(app, settings)
    log = logging.getLogger("test.tracing")

    @app.post("/v1/send")
    async def send() -> dict[str, Any]:
        log.info("sending")
        session: Any = Sink()
        await add_to_outbox(session, OUTBOX, [OutgoingEvent("t", "u1", "{}")])
        return {"current": tracing.current(), "queued": queued_rows(session)[0].traceparent}

    @app.get("/v1/refuse")
    async def refuse() -> None:
        raise DomainError("nope", "refused")

    @app.get("/v1/crash")
    async def crash() -> None:
        raise RuntimeError("boom")

    return app


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    """Lines the JSON formatter writes meanwhile."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("test"))
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    yield out
    root.removeHandler(handler)
    root.setLevel(level)


def lines(out: io.StringIO, msg: str) -> list[dict[str, Any]]:
    found = [json.loads(line) for line in out.getvalue().splitlines()]
    return [entry for entry in found if entry["msg"] == msg]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = edge_app(JifenSettings(service_name="test"))
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


async def test_off_a_request_traceparent_reaches_the_outbox_and_the_log(
    client: httpx.AsyncClient, logged: io.StringIO
) -> None:
    assert not tracing.enabled()
    answer = await client.post("/v1/send", headers={"traceparent": TRACEPARENT})
    assert answer.json() == {"current": TRACEPARENT, "queued": TRACEPARENT}
    assert [entry.get("trace_id") for entry in lines(logged, "sending")] == [TRACE]

    plain = await client.post("/v1/send")
    assert plain.json() == {"current": None, "queued": None}
    assert "trace_id" not in lines(logged, "sending")[-1]
    # an invalid one is ignored
    bad = await client.post("/v1/send", headers={"traceparent": "00-nonsense"})
    assert bad.json() == {"current": None, "queued": None}


async def test_error_bodies_name_the_request(
    client: httpx.AsyncClient, logged: io.StringIO
) -> None:
    traced = {"traceparent": TRACEPARENT}
    refused = await client.get("/v1/refuse", headers=traced)
    assert refused.status_code == 409
    assert refused.json() == {"error": "nope", "message": "refused", "request_id": TRACE}
    crashed = await client.get("/v1/crash", headers=traced)
    assert crashed.status_code == 500 and crashed.json()["request_id"] == TRACE
    [line] = lines(logged, "unhandled error")
    assert line["trace_id"] == line["request_id"] == TRACE
    # the middleware's own answers too (a NUL in the URL is refused before any route)
    guarded = await client.get("/v1/refuse?x=%00", headers=traced)
    assert guarded.status_code == 422 and guarded.json()["request_id"] == TRACE

    # without a traceparent: a fresh id for each answer, in the trace id's shape
    first, second = (await client.get("/v1/refuse"), await client.get("/v1/crash"))
    ids = first.json()["request_id"], second.json()["request_id"]
    assert all(len(i) == 32 and int(i, 16) for i in ids) and ids[0] != ids[1]
    assert lines(logged, "unhandled error")[-1]["request_id"] == ids[1]


# --------------------------------------------------------------------------------------------
# messages


def record(key: str, offset: int, traceparent: str | None = None, topic: str = "in") -> Any:
    headers = ((tracing.HEADER, traceparent.encode()),) if traceparent else ()
    return SimpleNamespace(
        topic=topic, partition=0, offset=offset, key=key.encode(), headers=headers
    )


OTHER = f"00-{'1' * 32}-{'2' * 16}-01"


async def test_off_what_a_batch_sends_continues_the_record_of_its_key() -> None:
    records = [record("ann", 1, TRACEPARENT), record("bob", 2), record("cy", 3, OTHER)]
    with tracing.consuming(records, "group") as traces:
        assert traces is not None and traces.of_record(records[2]) == OTHER
        session: Any = Sink()
        named = f"00-{'3' * 32}-{'4' * 16}-00"
        await add_to_outbox(
            session,
            OUTBOX,
            [
                OutgoingEvent("out", "ann", "{}"),
                OutgoingEvent("out", "bob", "{}"),
                OutgoingEvent("out", "cy", "{}"),
                OutgoingEvent("out", "cy", "{}", traceparent=named),  # its builder knew better
                OutgoingEvent("out", None, "{}"),
            ],
        )
    assert [row.traceparent for row in queued_rows(session)] == [
        TRACEPARENT,
        None,
        OTHER,
        named,
        None,
    ]
    assert "traceparents" in session.statements[0]

    # a batch with no traced record: nothing set, the row's fourth array not written
    with tracing.consuming([record("ann", 4)], "group") as traces:
        assert traces is None and tracing.batch() is None
        untraced: Any = Sink()
        await add_to_outbox(untraced, OUTBOX, [OutgoingEvent("out", "ann", "{}")])
    assert queued_rows(untraced)[0].traceparent is None
    assert "traceparents" not in untraced.statements[0]


class Producer:
    """Takes record batches as aiokafka's producer does and keeps what was appended."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1}

    def create_batch(self) -> Any:
        def append(**message: Any) -> object:
            self.messages.append(message)
            return object()

        return SimpleNamespace(append=append)

    async def send_batch(self, builder: Any, topic: str, partition: int) -> asyncio.Future[Any]:
        acked: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        return acked


async def test_off_a_row_traceparent_goes_out_as_the_message_header() -> None:
    producer: Any = Producer()
    rows = [QueuedRow(1, "t", "ann", "{}", TRACEPARENT), QueuedRow(1, "t", "bob", "{}")]
    sent, error = await send_rows(producer, rows)
    assert error is None and sum(len(b.rows) for b in sent) == 2
    headers = {m["key"]: m["headers"] for m in producer.messages}
    assert headers == {b"ann": [("traceparent", TRACEPARENT.encode())], b"bob": []}


# --------------------------------------------------------------------------------------------
# tracing on


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.configure("test", True, exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.reset()


async def test_on_a_request_gets_a_server_span_continuing_its_traceparent(
    spans: InMemorySpanExporter, logged: io.StringIO
) -> None:
    app = edge_app(JifenSettings(service_name="test", opentelemetry=True))
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        answer = await c.post("/v1/send", headers={"traceparent": TRACEPARENT})
        refused = await c.get("/v1/refuse")
        await c.get("/health/live")  # not traced (probes)
    [server, other] = spans.get_finished_spans()
    assert server.kind == SpanKind.SERVER and server.parent is not None
    assert server.context.trace_id == int(TRACE, 16) and server.parent.span_id == int(PARENT, 16)
    # what the request sends continues its span, and its log lines name the trace
    own = f"00-{TRACE}-{server.context.span_id:016x}-01"
    assert answer.json() == {"current": own, "queued": own}
    assert lines(logged, "sending")[-1]["trace_id"] == TRACE
    # a request without a traceparent starts a trace, which its error answer names
    assert other.parent is None
    assert refused.json()["request_id"] == f"{other.context.trace_id:032x}"


def consumed_parent(spans: InMemorySpanExporter, offset: int) -> Any:
    [span] = [
        s for s in spans.get_finished_spans() if s.attributes["messaging.kafka.offset"] == offset
    ]
    return span.parent


async def test_on_a_consumed_message_and_its_publish_get_spans_in_its_trace(
    spans: InMemorySpanExporter,
) -> None:
    records = [record("ann", 7, TRACEPARENT, topic="rewards.grants"), record("bob", 8)]
    with tracing.consuming(records, "jifen.ledger") as traces:
        assert traces is not None
        session: Any = Sink()
        await add_to_outbox(session, OUTBOX, [OutgoingEvent("ledger.events", "ann", "{}")])
    consumed = {s.attributes["messaging.kafka.offset"]: s for s in spans.get_finished_spans()}
    mine, fresh = consumed[7], consumed[8]
    assert mine.kind == SpanKind.CONSUMER and mine.name == "rewards.grants process"
    assert mine.parent is not None and mine.parent.span_id == int(PARENT, 16)
    assert mine.context.trace_id == int(TRACE, 16)
    assert fresh.parent is None  # a record without a trace starts one
    # one shaped like a traceparent but not hex starts a new trace too, and breaks nothing
    odd = f"00-{'z' * 32}-{PARENT}-01"
    with tracing.consuming([record("dee", 9, odd)], "jifen.ledger") as traces:
        assert traces is not None
    assert consumed_parent(spans, 9) is None
    [row] = queued_rows(session)
    assert row.traceparent == f"00-{TRACE}-{mine.context.span_id:016x}-01"

    spans.clear()
    producer: Any = Producer()
    sent, error = await send_rows(producer, [row])
    assert error is None
    await asyncio.gather(*(batch.acked for batch in sent))
    await asyncio.sleep(0)  # the ack's callbacks
    [publish] = spans.get_finished_spans()
    assert publish.kind == SpanKind.PRODUCER and publish.name == "ledger.events publish"
    assert publish.parent is not None and publish.parent.span_id == mine.context.span_id
    [message] = producer.messages
    header = f"00-{TRACE}-{publish.context.span_id:016x}-01"
    assert message["headers"] == [("traceparent", header.encode())]

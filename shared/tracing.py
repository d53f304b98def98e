"""Following one behavior through every hop: W3C trace context, and OpenTelemetry spans on demand.

Every hop carries a `traceparent` (https://www.w3.org/TR/trace-context/): an HTTP request may
bring one, the outbox stores one with each message it will send (`add_to_outbox`), the message
goes out with it as a Kafka header, and a consumer hands it on to the messages its batch
produces. A table a worker drains later (behavior_sensor's received behaviors) stores it too.

Two modes, chosen once per process at start (`configure`):

- Off (the default, `JIFEN_OPENTELEMETRY=false`): nothing is created, only forwarded. A
  traceparent that arrived is copied onto what follows from it, verbatim, and shown as
  `trace_id` in log lines and as `request_id` in error bodies. Work that carries none pays a
  truthiness test per Kafka record and one header scan per HTTP request, nothing else; the
  SDK is not even imported.
- On: the OpenTelemetry SDK, configured by the standard `OTEL_*` variables (exporter,
  endpoint, sampler, resource), records spans at the granularity that matters here: one per
  HTTP request (FastAPI's own instrumentation, given our provider), one per Kafka message a
  consumer processes (parented to the span that produced it), one per message published
  (ended on the broker's ack) and one per received behavior the sensor's processor publishes.
  What is forwarded is then the traceparent of those spans, so one trace shows ingest ->
  behavior -> progress -> grant -> credit -> engagement / notifier.

Which messages continue which trace inside a consumer batch: the handlers apply whole batches
and build their messages from many records at once, so an outgoing message takes the trace of
the batch's record with the same Kafka key (every topic of the chain is keyed by user), unless
the code that built it named one (`OutgoingEvent.traceparent`). Two traced messages of one user
in one batch: what follows from them continues the later one's trace.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    Tracer,
    TracerProvider,
)

log = logging.getLogger(__name__)

HEADER = "traceparent"
_HEADER_BYTES = HEADER.encode()
# version-traceid-spanid-flags, lower-case hex; a later version may append fields after a dash
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_LENGTH = 55  # of a version 00 traceparent
_DASH = ord("-")


@dataclass
class _State:
    tracer: Tracer | None = None  # set when tracing is on
    provider: TracerProvider | None = None
    owned: list[Any] = field(default_factory=list)  # span processors to flush at exit


_state = _State()

# The traceparent the current HTTP request continues (set only when tracing is off and the
# request brought one; on, FastAPI's server span is current instead).
_request: ContextVar[str | None] = ContextVar("jifen.traceparent", default=None)
# The consumer batch being applied: which trace each Kafka key continues (see the module doc).
_batch: ContextVar[BatchTraces | None] = ContextVar("jifen.batch_traces", default=None)


def enabled() -> bool:
    return _state.tracer is not None


def provider() -> TracerProvider | None:
    return _state.provider


# ---------------------------------------------------------------------------------------------
# set-up


def configure(service_name: str, wanted: bool, exporter: Any = None) -> bool:
    """Turn tracing on for this process when `wanted` (JIFEN_OPENTELEMETRY) and the SDK is not
    disabled (OTEL_SDK_DISABLED); returns whether it is on. Called once at start; again, it
    keeps what the first call set up.

    The SDK reads OTEL_TRACES_SAMPLER(_ARG), OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME
    (default: the service's name) and OTEL_BSP_*; OTEL_TRACES_EXPORTER picks `otlp` (the
    default: OTLP over HTTP/protobuf to OTEL_EXPORTER_OTLP[_TRACES]_ENDPOINT), `console` or
    `none`. `exporter`: a span exporter to use instead, exported span by span, the provider
    left out of OpenTelemetry's global one (tests)."""
    if _state.tracer is not None:
        return True
    if not wanted or os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    # imported only here: a process with tracing off never loads the SDK
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    named = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    sdk = SdkTracerProvider(resource=Resource.create(named))
    processors: list[Any] = []
    if exporter is not None:
        processors.append(SimpleSpanProcessor(exporter))
    else:
        for kind in _exporters():
            if kind == "otlp":
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )

                processors.append(BatchSpanProcessor(OTLPSpanExporter()))
            elif kind == "console":
                processors.append(BatchSpanProcessor(ConsoleSpanExporter()))
            elif kind != "none":
                log.warning("unknown OTEL_TRACES_EXPORTER %r ignored", kind)
    for processor in processors:
        sdk.add_span_processor(processor)
    _state.provider = sdk
    _state.owned = processors
    _state.tracer = sdk.get_tracer("jifen")
    if exporter is None and type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider":
        trace.set_tracer_provider(sdk)  # for any other library that looks it up
    log.info("tracing on", extra={"exporters": [type(p).__name__ for p in processors]})
    return True


def _exporters() -> list[str]:
    chosen = os.environ.get("OTEL_TRACES_EXPORTER", "otlp")
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    if protocol and protocol != "http/protobuf":
        log.warning("OTLP protocol %r is not supported; traces go as http/protobuf", protocol)
    return [k.strip().lower() for k in chosen.split(",") if k.strip()]


def flush(timeout_ms: int = 5_000) -> None:
    """Export what is buffered (at shutdown)."""
    if _state.provider is not None:
        for processor in _state.owned:
            processor.force_flush(timeout_ms)


def reset() -> None:
    """Turn tracing off again (tests)."""
    flush()
    for processor in _state.owned:
        processor.shutdown()
    _state.tracer = _state.provider = None
    _state.owned = []


# ---------------------------------------------------------------------------------------------
# traceparent values


def parse(value: str | bytes | None) -> str | None:
    """A traceparent received from outside, as version 00, or None when it is not valid (then
    it is ignored, as the W3C recommends)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    found = _TRACEPARENT.fullmatch(value.strip())
    if found is None:
        return None
    version, trace_id, span_id, flags, rest = found.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return f"00-{trace_id}-{span_id}-{flags}"


def trace_id_of(traceparent: str) -> str:
    return traceparent[3:35]


def _format(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def _parent(traceparent: str | None) -> Context | None:
    """The context a span continuing `traceparent` starts in (None: a new trace, also for a
    value that is not hex where it must be)."""
    if traceparent is None:
        return None
    try:
        remote = SpanContext(
            int(traceparent[3:35], 16),
            int(traceparent[36:52], 16),
            is_remote=True,
            trace_flags=TraceFlags(int(traceparent[53:55], 16)),
        )
    except ValueError:
        return None
    return trace.set_span_in_context(NonRecordingSpan(remote))


def of_headers(headers: Sequence[tuple[str, bytes]]) -> str | None:
    """The traceparent of a Kafka record's headers. One shaped as Jifen writes them (55 ASCII
    bytes, dashes where they belong, no NUL, which PostgreSQL's text refuses) is forwarded as
    it is, without a regular expression; anything else (an upstream producer's) is parsed.
    Hex digits are checked only where they are read as numbers (spans, with tracing on)."""
    for name, value in headers:
        if name == HEADER and value:
            if (
                len(value) == _LENGTH
                and value[2] == value[35] == value[52] == _DASH
                and value.isascii()
                and 0 not in value
            ):
                return value.decode("ascii")
            return parse(value)
    return None


# ---------------------------------------------------------------------------------------------
# the current trace


def current() -> str | None:
    """The traceparent that work done now continues: the current span's (on), or the one the
    HTTP request brought (off); None outside any trace."""
    if _state.tracer is not None:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            return _format(context)
    return _request.get()


def current_trace_id() -> str | None:
    traceparent = current()
    return traceparent[3:35] if traceparent is not None else None


def request_id() -> str:
    """What an error body names the request by: its trace id, or a new random id of the same
    shape when it has none (made only here, so a request that succeeds never pays for one)."""
    return current_trace_id() or uuid.uuid4().hex


class TraceContext:
    """ASGI middleware (tracing off): a request's valid `traceparent` becomes the current one
    for everything the request does. A request without one costs a scan of its headers."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == _HEADER_BYTES:
                    traceparent = parse(value)
                    if traceparent is not None:
                        token = _request.set(traceparent)
                        try:
                            await self.app(scope, receive, send)
                        finally:
                            _request.reset(token)
                        return
                    break
        await self.app(scope, receive, send)


def unobserved(scope: Any) -> bool:
    """Requests FastAPI's instrumentation leaves out when tracing is on: probes and scrapes."""
    path: str = scope.get("path", "")
    return path.startswith(("/health", "/metrics"))


# ---------------------------------------------------------------------------------------------
# messages


@dataclass
class BatchTraces:
    """The traces of the records of one consumer batch that carry one."""

    by_key: dict[str, str] = field(default_factory=dict)
    by_record: dict[tuple[str, int, int], str] = field(default_factory=dict)
    spans: list[Span] = field(default_factory=list)

    def of_record(self, record: Any) -> str | None:
        return self.by_record.get((record.topic, record.partition, record.offset))


def batch() -> BatchTraces | None:
    """The current consumer batch's traces; None when none of its records carried one."""
    return _batch.get()


def _traces_of(records: Sequence[Any], group: str) -> BatchTraces | None:
    tracer = _state.tracer
    if tracer is None:
        found: BatchTraces | None = None
        for record in records:
            if record.headers:
                traceparent = of_headers(record.headers)
                if traceparent is not None:
                    if found is None:
                        found = BatchTraces()
                    found.by_record[record.topic, record.partition, record.offset] = traceparent
                    if record.key is not None:
                        found.by_key[record.key.decode("utf-8", "replace")] = traceparent
        return found
    traces = BatchTraces()
    for record in records:
        parent = of_headers(record.headers) if record.headers else None
        span = tracer.start_span(
            f"{record.topic} process",
            context=_parent(parent),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": record.topic,
                "messaging.destination.partition.id": str(record.partition),
                "messaging.kafka.offset": record.offset,
                "messaging.consumer.group.name": group,
            },
        )
        traces.spans.append(span)
        traceparent = _format(span.get_span_context())
        traces.by_record[record.topic, record.partition, record.offset] = traceparent
        if record.key is not None:
            traces.by_key[record.key.decode("utf-8", "replace")] = traceparent
    return traces


@contextmanager
def consuming(records: Sequence[Any], group: str) -> Iterator[BatchTraces | None]:
    """Apply a consumer batch inside this: what it sends continues its records' traces (off:
    only those that carry one; on: a span per record, ended when the batch is done)."""
    traces = _traces_of(records, group)
    if traces is None:
        yield None
        return
    token = _batch.set(traces)
    try:
        yield traces
    except BaseException as exc:
        _end(traces.spans, exc)
        traces.spans = []
        raise
    finally:
        _batch.reset(token)
        _end(traces.spans, None)


def _end(spans: list[Span], error: BaseException | None) -> None:
    for span in spans:
        if error is not None:
            span.set_status(StatusCode.ERROR, type(error).__name__)
        span.end()


def outgoing(keys: Sequence[str | None], named: Sequence[str | None]) -> list[str | None] | None:
    """The traceparent each outgoing message carries, by its key (see the module doc); None
    when none carries one, the usual case with tracing off."""
    traces = _batch.get()
    if traces is not None:
        by_key = traces.by_key
        found = [
            given or (by_key.get(key) if key is not None else None)
            for key, given in zip(keys, named, strict=True)
        ]
        return found if any(found) else None
    traceparent = current()
    if traceparent is not None:
        return [given or traceparent for given in named]
    return list(named) if any(named) else None


@contextmanager
def spans_for(
    traceparents: Sequence[str | None], name: str, **attributes: str
) -> Iterator[Sequence[str | None]]:
    """On: a span per item of a batch a worker handles, continuing each item's trace (a new
    trace for an item without one); yields their traceparents. Off: yields the input as is."""
    tracer = _state.tracer
    if tracer is None:
        yield traceparents
        return
    spans = [
        tracer.start_span(name, context=_parent(t), kind=SpanKind.INTERNAL, attributes=attributes)
        for t in traceparents
    ]
    try:
        yield [_format(span.get_span_context()) for span in spans]
    except BaseException as exc:
        _end(spans, exc)
        raise
    else:
        _end(spans, None)


def sending(topic: str, traceparent: str | None) -> tuple[Span | None, str | None]:
    """On: a span for publishing one message, continuing `traceparent`; returns it with the
    traceparent the message carries. Off: no span, the traceparent as it is."""
    tracer = _state.tracer
    if tracer is None:
        return None, traceparent
    span = tracer.start_span(
        f"{topic} publish",
        context=_parent(traceparent),
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
        },
    )
    return span, _format(span.get_span_context())


def end_on_ack(spans: list[Span], acked: asyncio.Future[Any] | None) -> None:
    """End publish spans when their batch's ack resolves (an error if it failed); `acked`
    None: the batch was never handed to the producer."""
    if not spans:
        return
    if acked is None:
        _end(spans, ConnectionError("not handed to the producer"))
        return

    def done(future: Any) -> None:
        error = None if future.cancelled() else future.exception()
        _end(spans, error)

    acked.add_done_callback(done)

"""A small asyncio HTTP/2 client for APNs, on the `h2` protocol library.

Why not httpx's HTTP/2: measured against the same local HTTP/2 server (a Rust one that does
7,000 requests/s for h2load), httpx with http2=True managed 500-740 requests/s from one
process and failed some requests with WriteError under 64 concurrent streams (docs/
BENCHMARKS.md, issue 22). APNs is one long-lived connection carrying many concurrent
streams, which is exactly the case this covers: one TLS connection (ALPN h2), streams limited
to what the server allows (SETTINGS_MAX_CONCURRENT_STREAMS), outbound flow control honoured,
received data acknowledged, GOAWAY and a lost connection failing the streams in flight with
`H2Error` (the caller retries them) and the next request reconnecting.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass, field
from typing import cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings


class H2Error(Exception):
    """The request may not have been processed (connection lost, reset, timed out)."""


@dataclass
class _Stream:
    future: asyncio.Future[tuple[int, dict[str, str], bytes]]
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding="utf-8",
            # the headers are ours (lowercase names, no connection headers): checking and
            # normalizing each one again was a tenth of a fan-out's CPU
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
        )
        self.h2 = h2.connection.H2Connection(config=config)
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, _Stream] = {}
        self.closed = False
        self.max_streams = 100  # until the server says otherwise
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._window_waiters: deque[asyncio.Future[None]] = deque()

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.h2.initiate_connection()
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._fail_all(H2Error(f"protocol error: {exc}"))
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            self._handle(event)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail_all(H2Error(f"connection lost: {exc or 'closed by the server'}"))

    # -- events -----------------------------------------------------------------------------

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                for name, value in event.headers:
                    key, text = str(name), str(value)
                    if key == ":status":
                        stream.status = int(text)
                    else:
                        stream.headers[key] = text
        elif isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.body += event.data
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            ended = self.streams.pop(event.stream_id, None)
            if ended is not None and not ended.future.done():
                ended.future.set_result((ended.status, ended.headers, bytes(ended.body)))
            self._free_slot()
            self._close_when_idle()
        elif isinstance(event, h2.events.StreamReset):
            reset = self.streams.pop(event.stream_id, None)
            if reset is not None and not reset.future.done():
                reset.future.set_exception(H2Error(f"stream reset ({event.error_code!r})"))
            self._free_slot()
            self._close_when_idle()
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            changed = event.changed_settings.get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS)
            if changed is not None:
                self.max_streams = max(1, int(changed.new_value))
                self._free_slot()
            self._wake_windows()
        elif isinstance(event, h2.events.WindowUpdated):
            self._wake_windows()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.closed = True  # GOAWAY: no new streams; those above the last id failed
            last = event.last_stream_id or 0
            for stream_id in [s for s in self.streams if s > last]:
                gone = self.streams.pop(stream_id)
                if not gone.future.done():
                    gone.future.set_exception(H2Error("the server went away (GOAWAY)"))
            self._close_when_idle()

    def _close_when_idle(self) -> None:
        """A connection that takes no new streams (GOAWAY, ids used up) closes once its last
        stream is done."""
        if self.closed and not self.streams and self.transport is not None:
            self.transport.close()

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _fail_all(self, error: H2Error) -> None:
        self.closed = True
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            if not stream.future.done():
                stream.future.set_exception(error)
        for waiters in (self._slot_waiters, self._window_waiters):
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(error)

    def _free_slot(self) -> None:
        while self._slot_waiters and len(self.streams) < self.max_streams:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _wake_windows(self) -> None:
        while self._window_waiters:
            waiter = self._window_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    # -- requests ---------------------------------------------------------------------------

    async def request(
        self, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        loop = asyncio.get_running_loop()
        while len(self.streams) >= self.max_streams and not self.closed:
            waiter: asyncio.Future[None] = loop.create_future()
            self._slot_waiters.append(waiter)
            await waiter
        if self.closed:
            raise H2Error("the connection is closed")
        try:
            stream_id = self.h2.get_next_available_stream_id()
        except h2.exceptions.NoAvailableStreamIDError as exc:
            # 2^30 requests on one connection: retire it as if the server had sent GOAWAY
            # (the streams in flight finish, then it closes) so the next request reconnects.
            self.closed = True
            self._close_when_idle()
            raise H2Error("stream ids used up on this connection") from exc
        stream = _Stream(loop.create_future())
        self.streams[stream_id] = stream
        try:
            self.h2.send_headers(stream_id, headers, end_stream=not body)
            sent = 0
            while sent < len(body):
                window = min(
                    self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size
                )
                if window <= 0:
                    self._flush()
                    blocked: asyncio.Future[None] = loop.create_future()
                    self._window_waiters.append(blocked)
                    await blocked
                    continue
                chunk = body[sent : sent + window]
                sent += len(chunk)
                self.h2.send_data(stream_id, chunk, end_stream=sent >= len(body))
            self._flush()
        except h2.exceptions.H2Error as exc:
            self.streams.pop(stream_id, None)
            raise H2Error(f"could not send: {exc}") from exc
        try:
            return await stream.future
        except asyncio.CancelledError:  # timed out: give the stream (and its slot) back
            self.cancel(stream_id)
            raise

    def cancel(self, stream_id: int) -> None:
        if self.streams.pop(stream_id, None) is not None and not self.closed:
            try:
                self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
                self._flush()
            except h2.exceptions.H2Error:
                pass
            self._free_slot()


class H2Client:
    """Requests to one origin over one HTTP/2 connection, opened on first use and again
    after it was lost or the server sent GOAWAY."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, timeout_s: float) -> None:
        context.set_alpn_protocols(["h2"])
        self.host, self.port, self.context, self.timeout_s = host, port, context, timeout_s
        self.authority = host if port == 443 else f"{host}:{port}"
        self._protocol: _Protocol | None = None
        self._connecting = asyncio.Lock()

    async def _connection(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and not protocol.closed:
            return protocol
        async with self._connecting:
            if self._protocol is None or self._protocol.closed:
                loop = asyncio.get_running_loop()
                try:
                    _, made = await asyncio.wait_for(
                        loop.create_connection(
                            _Protocol,
                            self.host,
                            self.port,
                            ssl=self.context,
                            server_hostname=self.host,
                        ),
                        self.timeout_s,
                    )
                except (OSError, TimeoutError, ssl.SSLError) as exc:
                    raise H2Error(f"could not connect: {type(exc).__name__}: {exc}") from exc
                self._protocol = made
            return self._protocol

    async def post(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, response headers, body); raises H2Error when no answer came."""
        protocol = await self._connection()
        request = [
            (":method", "POST"),
            (":scheme", "https"),
            (":authority", self.authority),
            (":path", path),
            *headers.items(),
            ("content-length", str(len(body))),
        ]
        try:
            async with asyncio.timeout(self.timeout_s):
                return await protocol.request(request, body)
        except TimeoutError as exc:
            raise H2Error(f"no answer within {self.timeout_s} s") from exc

    async def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            try:
                protocol.h2.close_connection()
                protocol._flush()
            except h2.exceptions.H2Error:
                pass
            protocol.transport.close()

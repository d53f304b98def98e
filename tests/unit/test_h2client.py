"""The APNs HTTP/2 connection retires itself when its stream ids are used up."""

from __future__ import annotations

import pytest

from services.notifier.h2client import H2Error, _Protocol


class _Transport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


async def test_a_connection_out_of_stream_ids_fails_the_request_cleanly_and_closes() -> None:
    protocol = _Protocol()
    transport = _Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.h2.highest_outbound_stream_id = 2**31 - 1  # the last odd id has been used

    with pytest.raises(H2Error, match="stream ids used up"):
        await protocol.request([(":method", "POST"), (":path", "/3/device/x")], b"{}")
    # No new streams on it, and nothing in flight: closed, so the client's next request
    # opens a new connection instead of failing on this one forever.
    assert protocol.closed
    assert transport.closed
    assert not protocol.streams

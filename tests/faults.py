"""A TCP proxy that can break the link between two real services on demand.

Modes: `pass` forwards both ways; `refuse` drops every connection at once (the far side
looks down); `swallow` forwards requests but throws the answers away and hangs up (the far
side did the work, the caller never hears about it). It runs its own event loop in a thread,
so it keeps serving while a test blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Literal

Mode = Literal["pass", "refuse", "swallow"]


class FaultProxy:
    def __init__(self, listen_port: int, target_host: str, target_port: int) -> None:
        self.listen_port = listen_port
        self.target = (target_host, target_port)
        self.mode: Mode = "pass"
        self.swallowed = 0
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listen_port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def set_mode(self, mode: Mode) -> None:
        """Switch mode; open connections are cut so the new mode applies to the next request."""
        self.mode = mode
        self._loop.call_soon_threadsafe(self._cut_all)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _cut_all(self) -> None:
        for writer in list(self._writers):
            writer.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.listen_port)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "refuse":
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, answers: bool) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    if answers and self.mode == "swallow":
                        self.swallowed += 1
                        break  # the work was done upstream; the caller never hears of it
                    if self.mode == "refuse":
                        break
                    dst.write(data)
                    await dst.drain()
            writer.close()
            up_writer.close()

        await asyncio.gather(
            pump(reader, up_writer, answers=False), pump(up_reader, writer, answers=True)
        )
        self._writers.difference_update((writer, up_writer))

"""A fake provider's lifecycle: its server runs on an event loop of its own, in a thread, so a
test's loop (and the client under test) talk to it over real loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Self

from aiohttp import web
from websockets.asyncio.server import Server


class ThreadedServer:
    """Subclasses set `name` and implement `serve()`, which starts listening on 127.0.0.1; a
    websockets server kept in `self._server` is closed at `stop()`, anything else by `shutdown()`."""

    name = "server"

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    async def serve(self) -> object:
        raise NotImplementedError

    async def shutdown(self) -> None:
        """Stop listening and let open connections go (on the server's own loop)."""
        if self._server is None:
            return
        self._server.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self._server.wait_closed()

    def serve_in_foreground(self, host: str, port: int) -> None:
        """For a benchmark: serve on this thread until interrupted, printing the URL a client takes."""

        async def run() -> None:
            await self.serve(host, port)  # type: ignore[call-arg]
            print(self.base_url, flush=True)  # type: ignore[attr-defined]
            await asyncio.Event().wait()

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run())

    def before_stop(self) -> None:
        """Let go of anything a handler waits on (held replies), so the server can close."""

    def start(self) -> Self:
        ready = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            loop.run_until_complete(self.serve())
            ready.set()
            try:
                loop.run_forever()
            finally:
                # Finish the handlers of connections still open, so nothing is torn down later by
                # the garbage collector on a closed loop.
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.wait(pending, timeout=5))
                loop.close()

        self._thread = threading.Thread(target=run, name=f"fake-{self.name.lower()}", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"the fake {self.name} server did not start")
        return self

    def stop(self) -> None:
        if not self._loop:
            return
        loop = self._loop
        self.before_stop()
        asyncio.run_coroutine_threadsafe(self.shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread:
            self._thread.join(10)


class AiohttpServer(ThreadedServer):
    """A ThreadedServer serving an aiohttp application (`app()`), with `url` once it listens.
    A client hanging up cancels its handler (handler_cancellation), which is how the fakes see an
    early close: an interrupt, a cancelled tool call."""

    url = ""
    _runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        raise NotImplementedError

    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]
        self.url = f"http://{host}:{sockets[0].getsockname()[1]}"
        return self.url

    async def shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

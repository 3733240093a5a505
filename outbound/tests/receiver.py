"""A webhook receiver over the wire: a real HTTP server on 127.0.0.1 in a thread, recording every
request and answering as the test asks (a status per request, or holding the answer back)."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOLD_LIMIT_SECONDS = 10.0  # a held answer is released at the latest then (or when the test ends)


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class FakeReceiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.answers: deque[int] = deque()  # statuses for the next requests; then `default`
        self.default = 200
        self.holding = threading.Event()  # set: answers wait for `release` (a slow receiver)
        self._released = threading.Event()
        self._seen = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hooks/switchboard"

    def start(self) -> FakeReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()

    def hold(self) -> None:
        self.holding.set()

    def release(self) -> None:
        self._released.set()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        with self._seen:
            if not self._seen.wait_for(lambda: len(self.requests) >= count, timeout):
                raise TimeoutError(f"the receiver got {len(self.requests)} of {count} requests")
            return list(self.requests)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._seen:
                    receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
                    status = receiver.answers.popleft() if receiver.answers else receiver.default
                    receiver._seen.notify_all()
                if receiver.holding.is_set():
                    receiver._released.wait(HOLD_LIMIT_SECONDS)
                reply = f"status {status}".encode() + b" " + b"x" * 4000  # longer than what is kept
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                except OSError:
                    pass  # the client gave up waiting (a timeout test)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

"""WhiteNoise's static files, served from an async middleware.

WhiteNoiseMiddleware is sync only. Under ASGI, Django then runs it, and every middleware and view
below it, on the one thread that also writes the live calls' turns, for the whole request: a
voice webhook held that thread while it waited for its own database work, and at 100 new calls a
second the webhooks queued there for seconds (bench/relay_load.py --webhook). Looking a path up
in WhiteNoise's table needs no thread, so this does it on the event loop and passes every other
request on as it came.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        super().__init__(get_response)
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self._async:
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        # In DEBUG, WhiteNoise looks on disk for files added since start (autorefresh): a
        # developer's run, where blocking the loop for a stat call costs nothing.
        static_file = (
            self.find_file(request.path_info) if self.autorefresh else self.files.get(request.path_info)
        )
        if static_file is not None:
            return self.serve(static_file, request)
        return await self.get_response(request)

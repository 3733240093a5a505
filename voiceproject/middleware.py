"""WhiteNoise's static files, served from an async middleware.

WhiteNoiseMiddleware is sync only. Under ASGI, Django then runs it, and every middleware and view
below it, in a thread of its own for each request (with its own database connection, opened and
closed per request), held for the whole request. With this one the chain stays async: the voice
webhook runs on the event loop and its database work joins the batches on the database thread
that every call shares (calls.store.services.calls_start). Looking a path up in WhiteNoise's table needs
no thread, so that is done on the loop; every other request passes on as it came.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from inspect import isawaitable

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
        # WhiteNoise's own lookup (in DEBUG it looks on disk for files added since start: a
        # developer's run, where a stat call on the loop costs nothing). It returns a static
        # file's response, or what the rest of the chain returns: here, a coroutine.
        response = super().__call__(request)
        return await response if isawaitable(response) else response

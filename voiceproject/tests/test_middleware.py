"""Static files are served on the event loop; every other request passes through untouched."""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.test import AsyncRequestFactory, RequestFactory

from voiceproject.middleware import StaticFilesMiddleware


async def test_a_static_file_is_served_and_anything_else_reaches_the_view(tmp_path):
    (tmp_path / "app.css").write_text("body { color: teal }")
    seen: list[str] = []

    async def view(request: HttpRequest) -> HttpResponse:
        seen.append(request.path)
        return HttpResponse("from the view")

    middleware = StaticFilesMiddleware(view)
    middleware.add_files(str(tmp_path), prefix="/static/")
    requests = AsyncRequestFactory()

    # An async chain stays async: Django would otherwise run it, and all below, in a thread.
    assert iscoroutinefunction(middleware)
    static = await middleware(requests.get("/static/app.css"))
    assert static.status_code == 200
    assert b"".join(static.streaming_content) == b"body { color: teal }"
    passed = await middleware(requests.post("/twilio/voice/"))
    assert passed.content == b"from the view"
    assert seen == ["/twilio/voice/"]


def test_a_sync_chain_gets_a_sync_middleware(tmp_path):
    middleware = StaticFilesMiddleware(lambda request: HttpResponse("sync view"))
    assert not iscoroutinefunction(middleware)
    assert middleware(RequestFactory().get("/anything/")).content == b"sync view"

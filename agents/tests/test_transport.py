"""The aiohttp transport under both SDKs: httpx sees an ordinary response, and the per-token path
reads the body straight off aiohttp's reader, decompressed."""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import AsyncIterator

import aiohttp
import anthropic
import httpx2
import pytest
from aiohttp import web

from agents.llm import transport
from agents.llm.sse import sse_events
from agents.llm.transport import EXTENSION, AiohttpTransport, body_reader

EVENTS = b'event: content_block_delta\ndata: {"delta":{"text":"Hi"}}\n\nevent: message_stop\ndata: {}\n\n'


@pytest.fixture
async def gzip_server() -> AsyncIterator[str]:
    """Answers every request with gzip-compressed SSE, as a proxy on the way might."""

    async def stream(request: web.Request) -> web.Response:
        return web.Response(
            body=gzip.compress(EVENTS),
            headers={"Content-Type": "text/event-stream", "Content-Encoding": "gzip"},
        )

    async def message(request: web.Request) -> web.Response:
        body = gzip.compress(json.dumps({"ok": True}).encode())
        return web.Response(
            body=body, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
        )

    app = web.Application()
    app.router.add_post("/stream", stream)
    app.router.add_post("/message", message)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    await runner.cleanup()


async def test_a_stream_is_read_off_aiohttps_reader_and_decompressed(gzip_server):
    async with httpx2.AsyncClient(transport=AiohttpTransport()) as client:
        request = client.build_request("POST", f"{gzip_server}/stream", json={"stream": True})
        response = await client.send(request, stream=True)
        try:
            assert isinstance(response.extensions[EXTENSION], aiohttp.ClientResponse)
            read = body_reader(response)
            assert read == response.extensions[EXTENSION].content.readany
            events = [event async for event in sse_events(read)]
        finally:
            await response.aclose()
    assert events == [(b"content_block_delta", b'{"delta":{"text":"Hi"}}'), (b"message_stop", b"{}")]


async def test_httpx_reads_a_compressed_body_once_decoded(gzip_server):
    async with httpx2.AsyncClient(transport=AiohttpTransport()) as client:
        response = await client.post(f"{gzip_server}/message", json={})
    assert "content-encoding" not in response.headers
    assert response.json() == {"ok": True}


async def test_a_response_from_another_transport_is_read_through_httpx(gzip_server):
    async with (
        httpx2.AsyncClient() as client,  # httpx's own transport
        client.stream("POST", f"{gzip_server}/stream", json={}) as response,
    ):
        events = [event async for event in sse_events(body_reader(response))]
    assert [name for name, _ in events] == [b"content_block_delta", b"message_stop"]


async def test_a_refused_connection_is_the_sdks_connection_error():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    client = anthropic.AsyncAnthropic(
        api_key="k",
        base_url=f"http://127.0.0.1:{port}",
        max_retries=0,
        http_client=anthropic.DefaultAsyncHttpxClient(transport=AiohttpTransport()),
    )
    with pytest.raises(anthropic.APIConnectionError):
        await client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    await client.close()


def test_proxy_variables_are_honoured_except_for_no_proxy_hosts(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,.internal")
    transport._proxy_for.cache_clear()
    try:
        assert transport._proxy_for("https", "api.anthropic.com") == "http://proxy.internal:3128"
        assert transport._proxy_for("https", "llm.internal") is None
        assert transport._proxy_for("http", "api.anthropic.com") is None  # no HTTP_PROXY
    finally:
        transport._proxy_for.cache_clear()

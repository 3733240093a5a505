"""The HTTP transport under both SDKs: aiohttp, with the body of a stream readable straight off
aiohttp's reader.

The SDKs speak httpx (httpx2) and accept any httpx transport, so they keep the request: auth
headers, retries, typed errors. What they hand back for a stream is an httpx response whose body
iterator wraps aiohttp's reader in four async generators, about 60 µs of CPU a token at 200 calls.
This transport puts the aiohttp response in the httpx response's `extensions`, so the per-token
path awaits aiohttp's `readany()` itself (`body_reader`); everything else (error bodies,
non-streamed replies, closing) still goes through httpx as usual.
"""

from __future__ import annotations

import asyncio
import functools
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import httpx2

EXTENSION = "switchboard.aiohttp_response"

# Connect fast or fail over to the fallback line. No read timeout: it would re-arm a timer on
# every chunk of the stream (a fifth of the per-token CPU); the engine bounds the whole reply.
TIMEOUT = httpx2.Timeout(None, connect=5.0)

# Requests are retried by the SDK, which retries on any exception from the transport; httpx's
# types only make its errors say what happened.
_ERRORS: tuple[tuple[type[Exception], type[httpx2.TransportError]], ...] = (
    (TimeoutError, httpx2.TimeoutException),  # aiohttp's ServerTimeoutError included
    (aiohttp.ClientConnectorError, httpx2.ConnectError),
    (aiohttp.ClientPayloadError, httpx2.ReadError),
    (aiohttp.ClientError, httpx2.NetworkError),
)


def _as_httpx_error(exc: Exception) -> Exception:
    for aiohttp_type, httpx_type in _ERRORS:
        if isinstance(exc, aiohttp_type):
            return httpx_type(str(exc) or type(exc).__name__)
    return exc


@functools.cache
def _proxy_for(scheme: str, host: str) -> str | None:
    """HTTP(S)_PROXY for this host unless NO_PROXY exempts it, as httpx would choose."""
    if urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(scheme)


class _Body(httpx2.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except aiohttp.ClientError as exc:
            raise _as_httpx_error(exc) from exc

    async def aclose(self) -> None:
        # A body left unread (an interrupted reply) makes aiohttp close the connection instead of
        # pooling it: the provider sees its stream closed and stops generating.
        self._response.release()
        await self._response.wait_for_close()


class AiohttpTransport(httpx2.AsyncBaseTransport):
    """One aiohttp session per transport; a transport lives on one event loop (SharedClient)."""

    def __init__(self, *, max_connections: int = 1000, keepalive_seconds: float = 30.0) -> None:
        self._max_connections = max_connections
        self._keepalive_seconds = keepalive_seconds
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, keepalive_timeout=self._keepalive_seconds
            )
            # Not trust_env: aiohttp would then read ~/.netrc in a thread on every request. The
            # proxy variables are read once per host instead (_proxy_for).
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        timeout: dict[str, Any] = request.extensions.get("timeout", {})
        try:
            response = await self._get_session().request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=await request.aread() or None,
                allow_redirects=False,
                proxy=_proxy_for(request.url.scheme, request.url.host),
                # aiohttp decompresses (in C) before anything reads the body, so the raw reader
                # sees the same bytes httpx would; the header goes so httpx does not decode twice.
                auto_decompress=True,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeout.get("pool"),
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _as_httpx_error(exc) from exc
        headers = [
            (name, value) for name, value in response.raw_headers if name.lower() != b"content-encoding"
        ]
        return httpx2.Response(
            status_code=response.status,
            headers=headers,
            stream=_Body(response),
            request=request,
            extensions={"http_version": b"HTTP/1.1", EXTENSION: response},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def sdk_http_client(client_class: type[httpx2.AsyncClient]) -> httpx2.AsyncClient:
    """The http client an SDK is given: its own defaults (`DefaultAsyncHttpxClient`), this
    transport, TIMEOUT."""
    return client_class(timeout=TIMEOUT, transport=AiohttpTransport())


def body_reader(response: httpx2.Response) -> Callable[[], Awaitable[bytes]]:
    """A coroutine function returning the body's next chunk as it arrives, b"" at the end: aiohttp's
    own `readany` when this transport made the response, httpx's iterator otherwise. Mid-stream,
    aiohttp's reader raises `aiohttp.ClientError` where httpx would raise `httpx2.HTTPError`."""
    raw: aiohttp.ClientResponse | None = response.extensions.get(EXTENSION)
    if raw is not None:
        return raw.content.readany
    chunks = response.aiter_bytes()

    async def read() -> bytes:
        return await anext(chunks, b"")

    return read


async def read_to_end(read: Callable[[], Awaitable[bytes]], timeout: float = 0.1) -> None:
    """Read what is left of a body whose last event has arrived (the end of the chunked encoding
    follows it at once), so the connection goes back to the pool: a body left unread makes aiohttp
    close it, and the next reply pays for a new connection (and, to the real API, a TLS handshake).
    A server that keeps the stream open past `timeout` only costs that connection."""
    try:
        async with asyncio.timeout(timeout):
            while await read():
                pass
    except (TimeoutError, aiohttp.ClientError, httpx2.HTTPError):
        pass

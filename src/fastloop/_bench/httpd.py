"""HTTP/1.1 keep-alive workloads: a small server on httptools, loaded by the client process.

The server runs on the loop under test: an `asyncio.Protocol` that feeds what arrives
to an `httptools.HttpRequestParser` and answers each complete request with a small
response whose body is the request's path. The client is the echo workloads' process
(`echo_client`, the "http" command): it opens `HTTP_CONNECTIONS` keep-alive connections
and sends GETs on each, one at a time or pipelined `PIPELINE_DEPTH` deep, and compares
every response byte for byte with the one expected for that request, so a lost,
duplicated or reordered response fails the run. The client is the same for every loop
and does little per request (one send per batch, a byte comparison per answer); the
pipelined variant in particular leaves the server as the bottleneck.

Checks (each a `WorkloadError`): the client's verdict, the requests and response bytes
it counted, the requests the server parsed, every connection accepted and closed
without error, and nothing reported to the loop's exception handler. Without httptools
the workloads are skipped (`Workload.requires`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from . import echo as _echo
from .base import Workload, WorkloadError, check
from .echo_client import http_response

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

__all__ = ["HTTP_WORKLOADS", "run_http"]

HTTP_CONNECTIONS = 4
# Requests per connection: each run takes roughly 0.1-0.3 s on stock asyncio on a
# 2-core machine. The pipelined count is a multiple of the depth.
KEEPALIVE_REQUESTS = 1500
PIPELINE_DEPTH = 16
PIPELINED_REQUESTS = 4800
# Per response: the body is the path, "/" and 8 digits.
RESPONSE_SIZE = len(http_response(b"/%08d" % 0))


class _HttpStats(_echo._Stats):
    """The echo server's tally, plus the requests parsed."""

    __slots__ = ("requests",)

    def __init__(self, loop: asyncio.AbstractEventLoop, conns: int) -> None:
        super().__init__(loop, conns)
        self.requests = 0


class _HttpProtocol(asyncio.Protocol):
    """One keep-alive connection: parse with httptools, answer each request at once."""

    def __init__(self, stats: _HttpStats, httptools: ModuleType) -> None:
        self.stats = stats
        # Set by connection_made, before any data arrives.
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.parse_error: type[Exception] = httptools.HttpParserError
        self.url = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # a stream's
        self.stats.opened()

    def data_received(self, data: bytes) -> None:
        self.stats.echoed += len(data)
        try:
            self.parser.feed_data(data)
        except self.parse_error as exc:
            self.stats.errors.append(exc)
            self.transport.close()

    # httptools' callbacks; the URL may arrive in pieces.
    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        self.stats.requests += 1
        parser = self.parser
        if parser.get_method() != b"GET" or not parser.should_keep_alive():
            self.stats.errors.append(WorkloadError(
                f"bad request: {parser.get_method()!r} {self.url!r}, keep-alive "
                f"{parser.should_keep_alive()}"))
        self.transport.write(http_response(self.url))
        self.url = b""

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.lost(exc)


async def _serve_http(loop: asyncio.AbstractEventLoop, stats: _HttpStats) -> _echo.Served:
    import httptools

    server = await loop.create_server(lambda: _HttpProtocol(stats, httptools),
                                      "127.0.0.1", 0)
    address = server.sockets[0].getsockname()[:2]
    return "tcp", list(address), lambda: _echo._close_server(server)


def run_http(
    loop: asyncio.AbstractEventLoop, requests: int, depth: int, conns: int = HTTP_CONNECTIONS
) -> int:
    """Serve HTTP while the client sends conns x requests GETs, depth at a time.

    Return the requests answered; raise WorkloadError on any wrong outcome.
    """
    stats = _HttpStats(loop, conns)
    result = _echo.run_session(loop, _serve_http, stats,
                               {"op": "http", "conns": conns, "requests": requests,
                                "depth": depth}, what="HTTP")
    total = conns * requests
    check("requests the client sent", result.get("requests"), total)
    check("response bytes the client got", result.get("bytes"), total * RESPONSE_SIZE)
    check("requests the server parsed", stats.requests, total)
    check("connections accepted", stats.accepted, conns)
    check("connections closed", stats.closed, conns)
    return total


def _workload(requests: int, depth: int) -> Callable[[asyncio.AbstractEventLoop], int]:
    def run(loop: asyncio.AbstractEventLoop) -> int:
        return run_http(loop, requests, depth)
    return run


HTTP_WORKLOADS = [
    Workload("http_keepalive", _workload(KEEPALIVE_REQUESTS, 1),
             f"HTTP/1.1 on httptools, {HTTP_CONNECTIONS} keep-alive conns x "
             f"{KEEPALIVE_REQUESTS} requests, one at a time",
             HTTP_CONNECTIONS * KEEPALIVE_REQUESTS, requires=["httptools"]),
    Workload("http_pipelined", _workload(PIPELINED_REQUESTS, PIPELINE_DEPTH),
             f"the same, {PIPELINED_REQUESTS} requests per conn pipelined "
             f"{PIPELINE_DEPTH} deep", HTTP_CONNECTIONS * PIPELINED_REQUESTS,
             requires=["httptools"]),
]

"""Failures are freed at once, not at the next garbage collection.

An exception's traceback holds the frames it passed through, and with them their
locals: a loop that keeps a handle, a future or a transport in such a frame makes a
reference cycle, and the exception, the failed future and its socket then live until
the collector runs (or forever, with gc disabled). asyncio clears those locals; so
must both cores, in debug mode and not. Every check runs with gc disabled and asks a
weak reference whether the object is gone.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import struct
import weakref

import pytest

from helpers import run, run_briefly
from nethelpers import refused_tcp_address


class Tracked(Exception):
    """An exception that registers a weak reference to itself (builtin ones cannot)."""

    def __init__(self, refs: list) -> None:
        super().__init__("tracked")
        refs.append(weakref.ref(self))


class Marker:
    """Hung on a builtin exception (which takes no weak reference) to see it freed."""


@pytest.fixture(params=[False, True], ids=["nodebug", "debug"])
def quiet_loop(request, loop):
    """`loop` in the parametrised debug mode, with gc disabled for the test."""
    loop.set_debug(request.param)
    # Debug mode warns about slow callbacks; the first run may be slow on a busy host.
    loop.slow_callback_duration = 1000.0
    gc.collect()
    gc.disable()
    try:
        yield loop
    finally:
        gc.enable()


def alive(refs: list) -> list:
    return [r() for r in refs if r() is not None]


def mark(exc: BaseException, refs: list) -> None:
    """Hang a Marker on `exc` and add a weak reference to it to `refs`."""
    marker = Marker()
    exc.marker = marker  # type: ignore[attr-defined]
    refs.append(weakref.ref(marker))


async def expect_failure(awaitable, exc_type, refs: list) -> None:
    """Await `awaitable`, which must raise `exc_type`; mark that error."""
    try:
        await awaitable
    except exc_type as exc:
        mark(exc, refs)
    else:
        pytest.fail(f"{awaitable!r} did not raise {exc_type.__name__}")
    finally:
        awaitable = None  # this frame is in the traceback too


def fail(refs: list) -> None:
    raise Tracked(refs)


def test_exception_settled_by_callback_freed(quiet_loop):
    """A callback fails a future with an exception, as asyncio's own callbacks do.

    The exception's traceback holds the callback's frame, and that frame the frames
    that called it (f_back): those of the loop. A loop frame that still names the
    handle (whose arguments hold the future, which holds the exception) is a cycle.
    """
    loop = quiet_loop
    refs: list = []
    futs: list = []

    def settle(fut):
        try:
            fail(refs)
        except Tracked as exc:
            fut.set_exception(exc)
        finally:
            fut = None  # as asyncio's callbacks do: the frame must not keep it

    async def main():
        fut = loop.create_future()
        futs.append(weakref.ref(fut))
        loop.call_soon(settle, fut)
        try:
            await fut
        except Tracked:
            pass
        else:
            pytest.fail("no exception")
        finally:
            fut = None  # this frame is in the traceback too

    run(loop, main())
    run_briefly(loop, 2)
    assert len(refs) == 1
    assert alive(refs) == [], "the exception outlived the future it failed"
    assert alive(futs) == []


def test_failed_task_freed(quiet_loop):
    loop = quiet_loop
    messages = []
    loop.set_exception_handler(lambda _loop, ctx: messages.append(ctx["message"]))
    refs: list = []

    async def failing():
        await asyncio.sleep(0)
        fail(refs)

    task = loop.create_task(failing())
    run_briefly(loop, 4)
    assert task.done()
    task_ref = weakref.ref(task)
    del task
    # The task is dropped with its exception unretrieved: asyncio reports it from
    # the task's finaliser, which therefore runs now, not at a collection.
    assert task_ref() is None, "the failed task outlived its last reference"
    assert alive(refs) == []
    assert messages == ["Task exception was never retrieved"]


def test_failed_connect_freed(quiet_loop):
    loop = quiet_loop
    (host, port), holder = refused_tcp_address()
    markers: list = []
    socks: list = []

    async def connect_sock():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        socks.append(weakref.ref(sock))
        try:
            await expect_failure(loop.sock_connect(sock, (host, port)), OSError, markers)
        finally:
            sock.close()

    try:
        connect = loop.create_connection(asyncio.Protocol, host, port)
        run(loop, expect_failure(connect, OSError, markers))
        run(loop, connect_sock())
        run_briefly(loop, 2)
    finally:
        holder.close()
    assert len(markers) == 2
    assert alive(markers) == [], "a failed connect's exception outlived it"
    assert alive(socks) == [], "a failed sock_connect kept its socket"


class Recorder(asyncio.Protocol):
    def __init__(self, refs: list) -> None:
        self.refs = refs
        self.lost = False

    def connection_lost(self, exc):
        # Marks the error, never keeps it.
        self.lost = True
        mark(exc, self.refs)


def reset_pair():
    """A connected TCP pair: the client socket, and the server's, set to reset on close."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return client, server


def test_reset_connection_freed(quiet_loop, loop_kind):
    """A read failing with ECONNRESET: the error, the transport and the protocol go."""
    loop = quiet_loop
    refs: list = []
    client, server = reset_pair()

    async def main():
        proto = Recorder(refs)
        transport, _ = await loop.create_connection(lambda: proto, sock=client)
        refs.append(weakref.ref(transport))
        refs.append(weakref.ref(proto))
        server.close()
        while not proto.lost:
            await asyncio.sleep(0.001)

    run(loop, main())
    run_briefly(loop, 2)
    del client
    assert len(refs) == 3
    if loop_kind == "aio":
        # asyncio's socket transport keeps a bound method of itself (_read_ready_cb):
        # a cycle of its own, which only the collector frees. Ours have none.
        assert alive(refs) == [refs[0]()]
    else:
        assert alive(refs) == []


def test_failed_sock_recv_freed(quiet_loop, loop_kind):
    """sock_recv waiting when the peer resets: its error, future and socket go."""
    loop = quiet_loop
    refs: list = []
    client, server = reset_pair()
    client.setblocking(False)
    refs.append(weakref.ref(client))

    async def main():
        recv = loop.create_task(loop.sock_recv(client, 10))
        refs.append(weakref.ref(recv))
        await asyncio.sleep(0.01)
        server.close()
        try:
            await expect_failure(recv, ConnectionResetError, refs)
        finally:
            # The error's traceback holds expect_failure's frame, and on 3.12 and 3.13 that
            # frame's f_back is this one: it must not keep the task either.
            recv = None

    try:
        run(loop, main())
        run_briefly(loop, 2)
    finally:
        client.close()
    del client
    assert len(refs) == 3
    if loop_kind == "aio":
        # asyncio's _sock_recv callback keeps the future in its frame, which the
        # error's traceback holds: a cycle until the next collection. Ours clear it.
        gc.collect()
    assert alive(refs) == []

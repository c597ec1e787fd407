"""add_reader / add_writer / remove_*: readiness callbacks over socketpairs and pipes."""

from __future__ import annotations

import asyncio
import os
import select
import socket
import time

import pytest

from helpers import run_briefly, run_until


@pytest.fixture
def pair():
    r, w = socket.socketpair()
    r.setblocking(False)
    w.setblocking(False)
    yield r, w
    r.close()
    w.close()


class FileLike:
    """Not a socket: only a fileno() method, as selectors accepts."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd


def test_reader_called_when_data_arrives(loop, pair):
    r, w = pair
    got = []

    def on_readable(sock):
        got.append(sock.recv(100))

    loop.add_reader(r.fileno(), on_readable, r)
    run_briefly(loop, 3)
    assert got == []  # nothing to read yet: never called
    w.send(b"hello")
    run_until(loop, lambda: got)
    assert got == [b"hello"]
    assert loop.remove_reader(r.fileno()) is True
    assert loop.remove_reader(r.fileno()) is False


def test_reader_called_again_while_data_remains(loop, pair):
    r, w = pair
    got = []

    def on_readable():
        got.append(r.recv(1))
        if len(got) == 3:
            loop.remove_reader(r)

    w.send(b"abc")
    loop.add_reader(r, on_readable)
    run_until(loop, lambda: len(got) == 3)
    assert b"".join(got) == b"abc"


def test_reader_accepts_objects_with_fileno(loop, pair):
    r, w = pair
    got = []
    for fdobj in (r, FileLike(r.fileno())):
        loop.add_reader(fdobj, lambda: got.append(r.recv(10)))
        w.send(b"x")
        run_until(loop, lambda: got)
        assert got == [b"x"]
        got.clear()
        # Removing by int or by object is the same registration.
        assert loop.remove_reader(r.fileno()) is True


def test_writer_called_when_writable(loop, pair):
    r, w = pair
    calls = []
    loop.add_writer(w, calls.append, "w")
    run_until(loop, lambda: calls)
    assert loop.remove_writer(w) is True
    n = len(calls)
    run_briefly(loop, 3)
    assert len(calls) == n
    assert loop.remove_writer(w) is False


def test_reader_and_writer_on_same_fd(loop, pair):
    r, w = pair
    events = []
    loop.add_writer(r, events.append, "write")
    loop.add_reader(r, events.append, "read")
    run_until(loop, lambda: "write" in events)
    assert "read" not in events
    w.send(b"x")
    run_until(loop, lambda: "read" in events)
    # Removing one direction keeps the other.
    assert loop.remove_writer(r) is True
    events.clear()
    run_briefly(loop, 2)
    assert "write" not in events and "read" in events
    assert loop.remove_reader(r) is True


def test_replacing_a_reader(loop, pair):
    r, w = pair
    out = []
    loop.add_reader(r, out.append, "old")
    loop.add_reader(r, lambda: (out.append("new"), r.recv(10)))
    w.send(b"x")
    run_until(loop, lambda: out)
    assert out == ["new"]
    loop.remove_reader(r)


def test_remove_reader_from_its_own_callback(loop, pair):
    r, w = pair
    calls = []

    def once():
        calls.append(1)
        loop.remove_reader(r)

    w.send(b"xyz")
    loop.add_reader(r, once)
    run_briefly(loop, 5)
    assert calls == [1]


def test_reader_removed_before_it_runs_in_same_iteration(loop, pair):
    # Both fds are ready in one poll; the first callback removes the second reader.
    # asyncio cancels the reader handle, so it must not run.
    r, w = pair
    r2, w2 = socket.socketpair()
    try:
        out = []

        def first():
            out.append("first")
            loop.remove_reader(r2)
            loop.remove_reader(r)

        def second():
            out.append("second")
            loop.remove_reader(r2)
            loop.remove_reader(r)

        w.send(b"x")
        w2.send(b"x")
        loop.add_reader(r, first)
        loop.add_reader(r2, second)
        run_briefly(loop, 3)
        assert len(out) == 1
    finally:
        r2.close()
        w2.close()


def test_remove_unregistered_fd_returns_false(loop, pair):
    r, w = pair
    assert loop.remove_reader(r) is False
    assert loop.remove_writer(r) is False
    loop.add_reader(r, print)
    assert loop.remove_writer(r) is False
    assert loop.remove_reader(r) is True


def test_reader_on_pipe_sees_eof(loop):
    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)
    try:
        chunks = []

        def on_readable():
            data = os.read(rfd, 100)
            chunks.append(data)
            if not data:
                loop.remove_reader(rfd)

        loop.add_reader(rfd, on_readable)
        os.write(wfd, b"data")
        os.close(wfd)
        wfd = -1
        run_until(loop, lambda: chunks and chunks[-1] == b"")
        assert b"".join(chunks) == b"data"
    finally:
        os.close(rfd)
        if wfd != -1:
            os.close(wfd)


def test_reader_handle_runs_in_registration_context(loop, pair):
    import contextvars

    var = contextvars.ContextVar("var", default="unset")
    r, w = pair
    seen = []
    token = var.set("registered")
    loop.add_reader(r, lambda: (seen.append(var.get()), loop.remove_reader(r)))
    var.reset(token)
    w.send(b"x")
    run_until(loop, lambda: seen)
    assert seen == ["registered"]


def test_many_fds(loop):
    pairs = [socket.socketpair() for _ in range(50)]
    try:
        got = set()
        for i, (r, w) in enumerate(pairs):
            loop.add_reader(r, lambda i=i, r=r: (got.add(i), loop.remove_reader(r)))
        for _, w in pairs:
            w.send(b"x")
        run_until(loop, lambda: len(got) == 50)
    finally:
        for r, w in pairs:
            r.close()
            w.close()


# --- invalid file descriptors -----------------------------------------------------------


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_add_invalid_fd_minus_one(loop, method):
    with pytest.raises(ValueError, match="Invalid file descriptor: -1"):
        getattr(loop, method)(-1, print)


@pytest.mark.parametrize("method", ["remove_reader", "remove_writer"])
def test_remove_invalid_fd_minus_one(loop, method):
    with pytest.raises(ValueError, match="Invalid file descriptor: -1"):
        getattr(loop, method)(-1)


@pytest.mark.parametrize("bad", [object(), "3", 1.5, None], ids=["object", "str", "float", "None"])
@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_add_object_without_fileno(loop, method, bad):
    with pytest.raises(ValueError, match="Invalid file object"):
        getattr(loop, method)(bad, print)


@pytest.mark.parametrize("method", ["remove_reader", "remove_writer"])
def test_remove_object_without_fileno(loop, method):
    with pytest.raises(ValueError, match="Invalid file object"):
        getattr(loop, method)(object())


def test_fileno_returning_negative(loop):
    with pytest.raises(ValueError, match="Invalid file descriptor: -1"):
        loop.add_reader(FileLike(-1), print)


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_add_closed_fd_raises_oserror(loop, method):
    r, w = socket.socketpair()
    fd = r.fileno()
    r.close()
    w.close()
    # The fd number may be reused by another thread's open(); pick one surely closed.
    with pytest.raises(OSError):
        getattr(loop, method)(fd, print)
    # The failed registration left nothing behind.
    assert loop.remove_reader(fd) is False
    assert loop.remove_writer(fd) is False


def test_fd_closed_while_registered_then_removed(loop):
    r, w = socket.socketpair()
    fd = r.fileno()
    loop.add_reader(fd, print)
    r.close()
    w.close()
    # The registration is still known to the loop; removing it must not raise.
    assert loop.remove_reader(fd) is True
    run_briefly(loop, 2)


@pytest.mark.skipif(not hasattr(select, "epoll"), reason="kqueue: no stale entries")
def test_stale_fd_neither_spins_nor_misfires(loop, loop_kind):
    # docs/core.md, "Stale fds are forgotten": an fd closed while registered, whose
    # file description lives on in a dup, stays in the epoll set under its old
    # number, and EPOLL_CTL_DEL can no longer reach it.
    if loop_kind == "aio":
        pytest.skip("stock asyncio keeps polling a stale epoll entry: it spins")
    r, w = socket.socketpair()
    fd = r.fileno()
    dup = os.dup(fd)
    loop.add_reader(fd, pytest.fail, "the closed fd's reader ran")
    r.close()
    assert loop.remove_reader(fd) is True  # DEL fails with EBADF: the entry stays
    # The number is reused by a socket the loop does not watch (yet).
    r2, w2 = socket.socketpair()
    try:
        if r2.fileno() != fd:
            pytest.skip("another thread took the fd number first")
        w.send(b"x")  # the stale entry is ready, and stays ready
        # No spin: sleeping costs the loop's thread next to no CPU time (a spinning
        # loop burns about as much as it sleeps).
        cpu = time.thread_time()
        loop.run_until_complete(asyncio.sleep(0.3))
        assert time.thread_time() - cpu < 0.1
        # No misfire: the new fd under the old number sees only its own events.
        got = []
        loop.add_reader(fd, lambda: got.append(r2.recv(16)))
        loop.run_until_complete(asyncio.sleep(0.05))
        assert got == []
        w2.send(b"y")
        run_until(loop, lambda: got)
        assert got == [b"y"]
        assert loop.remove_reader(fd) is True
    finally:
        r2.close()
        w2.close()
        w.close()
        os.close(dup)

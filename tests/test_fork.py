"""fork() while a loop exists: the child's loops never share the parent's kernel objects.

Each test forks with os.fork(); the child reports through a pipe as JSON and ends with
os._exit (never returning into pytest), with an alarm bounding a hang. On 3.12+ os.fork()
in a process with threads (pytest's faulthandler watchdog is one) warns
DeprecationWarning; as CPython's own fork tests do, that warning is ignored around it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import threading
import traceback
import warnings

import pytest

from helpers import DEADLINE, run, run_until

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork() here")

# What exercise() returns on a working loop.
EXERCISED = ["soon", "threadsafe", "child"]


def in_child(body) -> object:
    """Run body() in a forked child; return what it returned (JSON-able), or fail."""
    r, w = os.pipe()
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*multi-threaded, use of fork\(\)", category=DeprecationWarning
        )
        pid = os.fork()
    if pid == 0:  # the child: never leaves this block
        status, out = 1, '["error", "no report"]'
        try:
            os.close(r)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(int(DEADLINE))  # a hang ends the child, and the test fails
            out = json.dumps(["ok", body()])
            status = 0
        except BaseException:
            out = json.dumps(["error", traceback.format_exc()])
        finally:
            data = out.encode()
            while data:
                data = data[os.write(w, data) :]
            os._exit(status)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    _, wstatus = os.waitpid(pid, 0)
    raw = b"".join(chunks)
    assert raw, f"the child died without a report (wait status {wstatus})"
    kind, value = json.loads(raw)
    assert kind == "ok", f"the child failed:\n{value}"
    assert os.waitstatus_to_exitcode(wstatus) == 0
    return value


def exercise(loop) -> list:
    """Use `loop` the way a program would: callbacks, a timer, a socket, a wake-up."""

    async def main() -> list:
        order = []
        loop.call_soon(order.append, "soon")
        await asyncio.sleep(0.001)
        # Woken from another thread while the loop sleeps in its poll with no timer
        # due: only the loop's own waker can end that poll.
        woken = loop.create_future()
        waker = threading.Thread(
            target=loop.call_soon_threadsafe, args=(woken.set_result, "threadsafe")
        )
        loop.call_soon(waker.start)
        order.append(await woken)
        waker.join()
        r, w = socket.socketpair()
        with r, w:
            r.setblocking(False)
            w.send(b"child")
            order.append((await loop.sock_recv(r, 16)).decode())
        return order

    return loop.run_until_complete(main())


def threadsafe_roundtrip(loop) -> None:
    """call_soon_threadsafe from a thread wakes `loop` out of a blocking poll."""
    woken = loop.create_future()
    thread = threading.Thread(target=loop.call_soon_threadsafe, args=(woken.set_result, 1))
    loop.call_soon(thread.start)
    assert run(loop, woken) == 1
    thread.join()


class Reader:
    """A reader callback on one end of a socketpair that records what it reads."""

    def __init__(self, loop) -> None:
        self.sock, self.peer = socket.socketpair()
        self.got: list[bytes] = []
        loop.add_reader(self.sock, self.read)

    def read(self) -> None:
        self.got.append(self.sock.recv(16))

    def check_fires(self, loop) -> None:
        self.peer.send(b"parent")
        run_until(loop, lambda: self.got)
        assert self.got == [b"parent"]

    def close(self, loop) -> None:
        loop.remove_reader(self.sock)
        self.sock.close()
        self.peer.close()


def test_child_of_an_idle_loop_runs_a_new_loop(make_loop):
    """asyncio: a loop made in the child has its own selector and self-pipe; the
    parent's loop, idle at the fork, keeps its readers and wake-ups."""
    parent = make_loop()
    reader = Reader(parent)

    def child() -> list:
        loop = make_loop.factory()
        try:
            return exercise(loop)
        finally:
            loop.close()

    assert in_child(child) == EXERCISED
    reader.check_fires(parent)
    threadsafe_roundtrip(parent)
    assert exercise(parent) == EXERCISED
    reader.close(parent)


@pytest.mark.skipif(
    sys.version_info < (3, 12), reason="asyncio resets the running loop in a fork child from 3.12"
)
def test_fork_from_a_running_loop(make_loop):
    """asyncio 3.12+ (its os.register_at_fork hook): a child forked from a callback has
    no running loop, so it can make and run a new one; the parent's loop runs on."""
    parent = make_loop()
    reader = Reader(parent)
    report = {}

    def child() -> dict:
        try:
            asyncio.get_running_loop()
            running = True
        except RuntimeError:
            running = False
        loop = make_loop.factory()
        try:
            return {"running": running, "exercised": exercise(loop)}
        finally:
            loop.close()

    def fork_now() -> None:
        report.update(in_child(child))

    parent.call_soon(fork_now)
    run_until(parent, lambda: report)
    assert report == {"running": False, "exercised": EXERCISED}
    reader.check_fires(parent)
    threadsafe_roundtrip(parent)
    reader.close(parent)


def test_inherited_loop_in_the_child_leaves_the_parent_alone(core):
    """fastloop's cores only. Stock asyncio's inherited loop shares its epoll instance
    and self-pipe with the parent: in the child, remove_reader() or close() deletes the
    parent's registrations from that instance (its readers and call_soon_threadsafe
    wake-ups go dead), and add_reader() adds to it. The cores move an inherited loop to
    a poller and waker of its own on its first syscall in the child: it works there
    like a fresh loop, and the parent's loop is untouched."""
    from fastloop._loop import loop_class_for

    loop = loop_class_for(core)()
    try:
        first, second = Reader(loop), Reader(loop)
        extra_sock, extra_peer = socket.socketpair()

        def child() -> list:
            loop.remove_reader(first.sock)
            loop.add_reader(extra_sock, lambda: None)
            exercised = exercise(loop)  # iterations: the removal reaches the kernel
            loop.close()  # second's registration goes with it
            return exercised

        assert in_child(child) == EXERCISED
        first.check_fires(loop)
        second.check_fires(loop)
        threadsafe_roundtrip(loop)
        assert exercise(loop) == EXERCISED
        first.close(loop)
        second.close(loop)
        extra_sock.close()
        extra_peer.close()
    finally:
        loop.close()


def test_child_carries_on_in_the_inherited_running_loop(core):
    """fastloop's cores only. A child forked from a callback carries on inside the
    parent's run_forever, in its own copy of the running loop. (On 3.12+ asyncio's
    at-fork hook resets the running loop there, so coroutines that look it up fail, as
    with asyncio; callbacks, readers and thread-safe calls still work.) asyncio's loop
    would keep polling the parent's epoll instance and waker; the cores move to their
    own at the next iteration: the child's reader and wake-up work, and the reader it
    removes stays registered in the parent."""
    from fastloop._loop import loop_class_for

    loop = loop_class_for(core)()
    try:
        reader = Reader(loop)
        r, w = os.pipe()
        forked = {}

        def child_steps() -> None:
            """In the child, in the inherited running loop: report, then os._exit."""
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(int(DEADLINE))
            os.close(r)
            steps = []
            c, d = socket.socketpair()

            def finish(status: int, what) -> None:
                os.write(w, json.dumps(what).encode())
                os._exit(status)

            def woken() -> None:
                steps.append("threadsafe")
                finish(0, steps)

            def readable() -> None:
                try:
                    steps.append(c.recv(16).decode())
                    loop.remove_reader(c)
                    threading.Thread(target=loop.call_soon_threadsafe, args=(woken,)).start()
                except BaseException:
                    finish(1, traceback.format_exc())

            # The child never stops the loop: leaving run_forever would take it back
            # into pytest's code. It ends here, in time, whatever happens.
            loop.call_later(DEADLINE / 2, finish, 2, "the child timed out")
            try:
                loop.remove_reader(reader.sock)  # the parent's registration stays
                loop.add_reader(c, readable)
                d.send(b"child")
            except BaseException:
                finish(1, traceback.format_exc())

        def fork_now() -> None:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r".*multi-threaded, use of fork\(\)",
                                        category=DeprecationWarning)
                pid = os.fork()
            if pid == 0:
                child_steps()  # then back into the child's copy of run_forever
            else:
                forked["pid"] = pid
                loop.stop()

        # No coroutine around the fork: in the child it would find no running loop.
        loop.call_soon(fork_now)
        loop.run_forever()
        os.close(w)
        raw = b""
        while chunk := os.read(r, 65536):
            raw += chunk
        os.close(r)
        _, wstatus = os.waitpid(forked["pid"], 0)
        assert raw, f"the child died without a report (wait status {wstatus})"
        assert os.waitstatus_to_exitcode(wstatus) == 0, json.loads(raw)
        assert json.loads(raw) == ["child", "threadsafe"]
        reader.check_fires(loop)
        threadsafe_roundtrip(loop)
        reader.close(loop)
    finally:
        loop.close()

"""White-box tests of each core's building blocks: TimerQueue, Poller, Waker."""

from __future__ import annotations

import gc
import math
import os
import socket
import weakref

import pytest


class StubLoop:
    """Just enough of a loop for handles: cancel() reports to the queue under test."""

    def __init__(self) -> None:
        self.queue = None

    def get_debug(self) -> bool:
        return False

    def _timer_handle_cancelled(self, handle) -> None:
        self.queue.note_cancelled(handle)


@pytest.fixture
def tq(core):
    stub = StubLoop()
    stub.queue = core.TimerQueue()
    return core, stub, stub.queue


# Both TimerQueues offer the same public API: push(handle), note_cancelled(handle),
# first_deadline() -> float or None, pop_due(end, append), clear() and len().
def _due(queue, end):
    """Pop every live timer due before `end`, as a list."""
    out = []
    queue.pop_due(end, out.append)
    return out


def test_timerqueue_orders_by_when_then_seq(tq):
    core, stub, q = tq
    hs = [core.TimerHandle(w, print, (), stub) for w in (3.0, 1.0, 2.0, 1.0, 3.0, 1.0)]
    for h in hs:
        q.push(h)
    assert len(q) == 6
    assert q.first_deadline() == 1.0
    assert _due(q, 10.0) == [hs[1], hs[3], hs[5], hs[2], hs[0], hs[4]]
    assert len(q) == 0
    assert q.first_deadline() is None


def test_timerqueue_pop_due_respects_end(tq):
    core, stub, q = tq
    a, b = core.TimerHandle(1.0, print, (), stub), core.TimerHandle(2.0, print, (), stub)
    q.push(b)
    q.push(a)
    assert _due(q, 1.0) == []  # strictly before end
    assert _due(q, 1.5) == [a]
    assert q.first_deadline() == 2.0


def test_timerqueue_skips_cancelled(tq):
    core, stub, q = tq
    hs = [core.TimerHandle(float(i), print, (), stub) for i in range(10)]
    for h in hs:
        q.push(h)
    hs[0].cancel()
    hs[5].cancel()
    assert q.first_deadline() == 1.0  # the cancelled top is dropped
    assert _due(q, 100.0) == [h for i, h in enumerate(hs) if i not in (0, 5)]


def test_timerqueue_mostly_cancelled(tq):
    core, stub, q = tq
    hs = [core.TimerHandle(1000.0 + i, print, (), stub) for i in range(400)]
    for h in hs:
        q.push(h)
    for h in hs[:300]:
        h.cancel()
    _due(q, 0.0)  # nothing due; gives the queue its chance to compact
    assert 100 <= len(q) <= 400
    assert _due(q, 10_000.0) == hs[300:]


def test_timerqueue_nan_sorts_first_inf_last(tq):
    core, stub, q = tq
    inf = core.TimerHandle(math.inf, print, (), stub)
    nan = core.TimerHandle(math.nan, print, (), stub)
    one = core.TimerHandle(1.0, print, (), stub)
    for h in (inf, one, nan):
        q.push(h)
    assert _due(q, 5.0) == [nan, one]
    assert _due(q, 1e308) == []
    assert q.first_deadline() == math.inf


def test_timerqueue_push_of_a_cancelled_timer(tq):
    core, stub, q = tq
    dead = core.TimerHandle(1.0, print, (), stub)
    dead.cancel()
    live = core.TimerHandle(2.0, print, (), stub)
    q.push(dead)
    q.push(live)
    assert q.first_deadline() == 2.0
    assert _due(q, 10.0) == [live]
    assert len(q) == 0 and not dead._scheduled


def test_timerqueue_cancel_after_pop_is_not_counted(tq):
    core, stub, q = tq
    hs = [core.TimerHandle(float(i), print, (), stub) for i in range(3)]
    for h in hs:
        q.push(h)
    assert _due(q, 1.5) == hs[:2]
    hs[0].cancel()  # no longer in the queue: must not count as a dead entry
    hs[2].cancel()
    assert q.first_deadline() is None
    assert len(q) == 0


def test_timerqueue_clear(tq):
    core, stub, q = tq
    for i in range(5):
        q.push(core.TimerHandle(float(i), print, (), stub))
    q.clear()
    assert len(q) == 0 and q.first_deadline() is None


# --- Poller ---------------------------------------------------------------------------


@pytest.fixture
def poller(core):
    p = core.Poller()
    yield p
    p.close()


@pytest.fixture
def pair():
    r, w = socket.socketpair()
    yield r, w
    r.close()
    w.close()


def test_poller_basics(core, poller):
    assert poller.name in ("epoll", "kqueue")
    assert isinstance(poller.fileno(), int) and poller.fileno() >= 0
    assert core.READ and core.WRITE and core.READ != core.WRITE
    assert poller.poll(0) == []


def test_poller_read_and_write(core, poller, pair):
    r, w = pair
    poller.modify(r.fileno(), core.READ)
    assert poller.poll(0) == []
    w.send(b"x")
    assert poller.poll(1.0) == [(r.fileno(), core.READ)]
    poller.modify(r.fileno(), core.READ | core.WRITE)
    assert poller.poll(1.0) == [(r.fileno(), core.READ | core.WRITE)]
    poller.modify(r.fileno(), core.WRITE)
    assert poller.poll(1.0) == [(r.fileno(), core.WRITE)]
    poller.modify(r.fileno(), 0)  # forget it
    assert poller.poll(0) == []


def test_poller_hangup_reports_both(core, poller, pair):
    r, w = pair
    poller.modify(r.fileno(), core.READ)
    w.close()
    events = poller.poll(1.0)
    assert len(events) == 1 and events[0][0] == r.fileno()
    assert events[0][1] & core.READ


def test_poller_timeout_waits(poller):
    # A bounded wait with nothing registered returns an empty list (not a speed test).
    assert poller.poll(0.01) == []


def test_poller_invalidate(core, poller, pair):
    r, w = pair
    w.send(b"x")
    poller.modify(r.fileno(), core.READ)
    poller.invalidate(r.fileno())
    assert poller.poll(0) == []


def test_poller_many_fds(core, poller):
    pairs = [socket.socketpair() for _ in range(64)]
    try:
        for r, w in pairs:
            poller.modify(r.fileno(), core.READ)
            w.send(b"x")
        got = {}
        for _ in range(10):
            for fd, ev in poller.poll(1.0):
                got[fd] = ev
            if len(got) == 64:
                break
        assert got == {r.fileno(): core.READ for r, _ in pairs}
    finally:
        for r, w in pairs:
            r.close()
            w.close()


# --- Waker ----------------------------------------------------------------------------


@pytest.fixture
def waker(core):
    wk = core.Waker()
    yield wk
    wk.close()


def test_waker_wakes_poller(core, poller, waker):
    fd = waker.fileno()
    poller.modify(fd, core.READ)
    assert poller.poll(0) == []
    waker.wake()
    assert poller.poll(1.0) == [(fd, core.READ)]
    waker.drain()
    assert poller.poll(0) == []


def test_waker_coalesces(core, poller, waker):
    poller.modify(waker.fileno(), core.READ)
    for _ in range(10_000):  # far more than a pipe buffer holds, if it wrote each time
        waker.wake()
    assert poller.poll(1.0) == [(waker.fileno(), core.READ)]
    waker.drain()
    assert poller.poll(0) == []
    waker.wake()  # pending was cleared by drain: wakes again
    assert poller.poll(1.0) == [(waker.fileno(), core.READ)]
    waker.drain()


def test_waker_fd_is_nonblocking(waker):
    assert os.get_blocking(waker.fileno()) is False
    waker.drain()  # nothing pending: must not block


def test_loop_is_freed_with_handles_kept_for_reuse(core):
    # The Cython core keeps finished handles for reuse; they must not refer to the
    # loop (untracked by the collector, such a cycle would never be freed).
    class Loop(core.CoreLoop):
        pass

    loop = Loop()
    for i in range(10):
        loop.call_soon(int, i)
        loop.call_later(0, int, i)
    loop.stop()
    loop._run_until_stopped()
    loop.call_soon(int, 0)  # one taken back out of each pool, still queued
    loop.call_later(0, int, 0)
    loop.close()
    ref = weakref.ref(loop)
    del loop
    gc.collect()
    assert ref() is None

"""Callbacks and timers: ordering, cancellation, handles, contexts, threadsafe wake-ups."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import socket
import sys
import threading
import time
import weakref

import pytest

from helpers import DEADLINE, run_briefly

# --- ordering -------------------------------------------------------------------------


def test_call_soon_runs_in_fifo_order(loop):
    out = []
    for i in range(100):
        loop.call_soon(out.append, i)
    run_briefly(loop)
    assert out == list(range(100))


def test_call_soon_passes_args(loop):
    out = []
    loop.call_soon(lambda *a: out.append(a), 1, "two", None)
    run_briefly(loop)
    assert out == [(1, "two", None)]


def test_timers_fire_in_deadline_order(loop):
    out = []
    now = loop.time()
    for i, offset in enumerate([0.03, 0.01, 0.02, 0.0, 0.015]):
        loop.call_at(now + offset, out.append, offset)
    loop.call_at(now + 0.05, loop.stop)
    loop.run_forever()
    assert out == [0.0, 0.01, 0.015, 0.02, 0.03]


def test_few_timers_with_equal_deadlines_fire_fifo(loop):
    out = []
    when = loop.time()
    for i in range(3):
        loop.call_at(when, out.append, i)
    run_briefly(loop)
    assert out == [0, 1, 2]


def test_many_timers_with_equal_deadlines_fire_fifo(loop, loop_kind):
    # fastloop keys its heap by (when, seq), so equal deadlines fire in scheduling
    # order (DESIGN.md). Stock asyncio's heapq of TimerHandles is not stable, so it
    # allows any order here; the test does not apply to it.
    if loop_kind == "aio":
        pytest.skip("stock asyncio does not promise FIFO for many equal deadlines")
    out = []
    when = loop.time() + 0.01
    for i in range(50):
        loop.call_at(when, out.append, i)
    loop.call_at(when, loop.stop)
    loop.run_forever()
    assert out == list(range(50))


def test_call_later_zero_runs_after_call_soon_made_before(loop):
    out = []
    loop.call_soon(out.append, "soon-1")
    loop.call_later(0, out.append, "later-0")
    loop.call_soon(out.append, "soon-2")
    run_briefly(loop)
    assert out == ["soon-1", "soon-2", "later-0"]


def test_iteration_order_ready_then_io_then_timers(loop):
    # One iteration: callbacks already queued run first, then the handles of ready fds,
    # then timers that came due; that is asyncio's _run_once order.
    out = []
    r, w = socket.socketpair()
    try:
        w.send(b"x")
        loop.call_later(0, out.append, "timer")
        loop.add_reader(r, out.append, "reader")
        loop.call_soon(out.append, "soon")
        loop.stop()
        loop.run_forever()
        assert out == ["soon", "reader", "timer"]
    finally:
        loop.remove_reader(r)
        r.close()
        w.close()


def test_callbacks_added_by_callbacks_run_next_iteration(loop):
    out = []

    def first():
        out.append("first")
        loop.call_soon(out.append, "added")

    loop.call_soon(first)
    loop.call_soon(out.append, "second")
    run_briefly(loop)
    assert out == ["first", "second"]
    run_briefly(loop)
    assert out == ["first", "second", "added"]


def test_timer_callbacks_adding_call_soon_runs_next_iteration(loop):
    out = []
    when = loop.time()

    def timer_a():
        out.append("a")
        loop.call_soon(out.append, "from-a")

    loop.call_at(when, timer_a)
    loop.call_at(when, out.append, "b")
    run_briefly(loop)
    assert out == ["a", "b"]
    run_briefly(loop)
    assert out == ["a", "b", "from-a"]


def test_stop_lets_the_current_iteration_finish(loop):
    out = []
    loop.call_soon(loop.stop)
    loop.call_soon(out.append, 1)
    loop.call_soon(lambda: loop.call_soon(out.append, 3))
    loop.run_forever()
    assert out == [1]
    # The callback added during the stopped iteration waits for the next run.
    run_briefly(loop)
    assert out == [1, 3]


def test_stop_before_run_forever_runs_one_iteration(loop):
    out = []
    loop.call_soon(out.append, 1)
    loop.call_soon(lambda: loop.call_soon(out.append, 2))
    loop.stop()
    loop.run_forever()
    assert out == [1]
    assert not loop.is_running()
    # The stop request was consumed: the next run goes on until stopped again.
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert out == [1, 2]


def test_stop_twice_is_one_stop(loop):
    out = []
    loop.stop()
    loop.stop()
    loop.run_forever()
    loop.call_soon(out.append, 1)
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert out == [1]


def test_stop_from_timer_while_sleeping(loop):
    start = loop.time()
    loop.call_later(0.02, loop.stop)
    loop.run_forever()
    assert loop.time() - start >= 0.02 - 0.002
    assert not loop.is_running()


def test_is_running_inside_callbacks(loop):
    seen = []
    loop.call_soon(lambda: seen.append(loop.is_running()))
    assert not loop.is_running()
    run_briefly(loop)
    assert seen == [True]
    assert not loop.is_running()


def test_time_is_monotonic_clock(loop):
    before = time.monotonic()
    t = loop.time()
    after = time.monotonic()
    assert before <= t <= after


# --- cancellation ---------------------------------------------------------------------


def test_cancelled_handle_does_not_run(loop):
    out = []
    h = loop.call_soon(out.append, 1)
    loop.call_soon(out.append, 2)
    assert not h.cancelled()
    h.cancel()
    assert h.cancelled()
    h.cancel()  # idempotent
    run_briefly(loop)
    assert out == [2]


def test_cancel_handle_while_queued_in_same_iteration(loop):
    out = []
    later = []

    def canceller():
        out.append("canceller")
        later[0].cancel()

    loop.call_soon(canceller)
    later.append(loop.call_soon(out.append, "victim"))
    loop.call_soon(out.append, "after")
    run_briefly(loop)
    assert out == ["canceller", "after"]


def test_cancelled_timer_does_not_fire(loop):
    out = []
    t = loop.call_later(0.01, out.append, "cancelled")
    loop.call_later(0.02, out.append, "kept")
    t.cancel()
    assert t.cancelled()
    loop.call_later(0.04, loop.stop)
    loop.run_forever()
    assert out == ["kept"]


def test_cancel_timer_that_is_already_due_in_same_iteration(loop):
    # Both timers are moved to the ready queue in the same iteration; cancelling the
    # second from the first must still prevent it from running.
    out = []
    when = loop.time()
    handles = []

    def first():
        out.append("first")
        handles[0].cancel()

    loop.call_at(when, first)
    handles.append(loop.call_at(when, out.append, "second"))
    loop.call_at(when, out.append, "third")
    run_briefly(loop)
    assert out == ["first", "third"]


def test_cancel_many_timers(loop):
    out = []
    base = loop.time() + 0.01
    handles = [loop.call_at(base + i * 1e-6, out.append, i) for i in range(2000)]
    for h in handles[::2]:
        h.cancel()
    # Cancel most of another batch far in the future, so the heap holds mostly dead
    # entries (a core may compact it) while the live ones must still fire in order.
    far = [loop.call_later(3600, out.append, "never") for _ in range(1000)]
    for h in far:
        h.cancel()
    loop.call_at(base + 0.05, loop.stop)
    loop.run_forever()
    assert out == list(range(1, 2000, 2))


def test_cancel_all_timers_then_loop_sleeps_until_stop(loop):
    hs = [loop.call_later(0.001 * i, pytest.fail, "cancelled timer ran") for i in range(200)]
    for h in hs:
        h.cancel()
    loop.call_later(0.05, loop.stop)
    loop.run_forever()


def test_timer_cancelled_from_another_timer_many_times(loop):
    out = []
    when = loop.time() + 0.005
    victims = [loop.call_at(when + 0.001, out.append, i) for i in range(300)]

    def killer():
        for v in victims[:150]:
            v.cancel()

    loop.call_at(when, killer)
    loop.call_at(when + 0.03, loop.stop)
    loop.run_forever()
    # The survivors share one deadline; stock asyncio runs them in heap order.
    assert sorted(out) == list(range(150, 300))


# --- handles ------------------------------------------------------------------------


def test_timer_when(loop):
    when = loop.time() + 100
    h = loop.call_at(when, print)
    assert h.when() == when
    before = loop.time()
    h2 = loop.call_later(5, print)
    after = loop.time()
    assert before + 5 <= h2.when() <= after + 5
    h.cancel()
    h2.cancel()
    assert h.when() == when  # still readable after cancel


def test_call_soon_returns_handle_call_later_timerhandle(loop):
    # Duck-typed, not isinstance(asyncio.Handle): like uvloop, a Cython core's handles
    # cannot subclass asyncio's Python classes.
    h = loop.call_soon(print)
    t = loop.call_later(10, print)
    for handle in (h, t):
        assert callable(handle.cancel) and callable(handle.cancelled)
    assert callable(t.when) and not hasattr(h, "when")
    h.cancel()
    t.cancel()


def test_timer_handles_compare_by_when(loop):
    a = loop.call_later(1, print)
    b = loop.call_later(2, print)
    assert a < b and b > a and a <= b and a != b
    assert hash(a) == hash(a.when())
    a.cancel()
    b.cancel()


def _needs_get_context(loop, loop_kind):
    if loop_kind == "aio" and sys.version_info < (3, 12):
        pytest.skip("Handle.get_context() is new in Python 3.12")


def test_get_context_default_is_a_copy_of_current(loop, loop_kind):
    _needs_get_context(loop, loop_kind)
    var = contextvars.ContextVar("var")
    token = var.set("outer")
    try:
        h = loop.call_soon(print)
        t = loop.call_later(10, print)
    finally:
        var.reset(token)
    for handle in (h, t):
        ctx = handle.get_context()
        assert isinstance(ctx, contextvars.Context)
        assert ctx[var] == "outer"
        handle.cancel()


def test_get_context_returns_given_context(loop, loop_kind):
    _needs_get_context(loop, loop_kind)
    ctx = contextvars.Context()
    for h in (
        loop.call_soon(print, context=ctx),
        loop.call_later(1, print, context=ctx),
        loop.call_at(loop.time() + 1, print, context=ctx),
        loop.call_soon_threadsafe(print, context=ctx),
    ):
        assert h.get_context() is ctx
        h.cancel()


def test_context_argument_on_every_call(loop):
    var = contextvars.ContextVar("var", default="unset")
    seen = {}

    def record(name):
        seen[name] = var.get()
        var.set("changed-by-" + name)  # must stay inside that context

    def make_ctx(value):
        ctx = contextvars.copy_context()
        ctx.run(var.set, value)
        return ctx

    ctxs = {name: make_ctx(name) for name in ("soon", "later", "at", "threadsafe")}
    loop.call_soon(record, "soon", context=ctxs["soon"])
    loop.call_later(0, record, "later", context=ctxs["later"])
    loop.call_at(loop.time(), record, "at", context=ctxs["at"])
    loop.call_soon_threadsafe(record, "threadsafe", context=ctxs["threadsafe"])
    loop.call_soon(record, "none")
    run_briefly(loop, 2)
    assert seen == {
        "soon": "soon",
        "later": "later",
        "at": "at",
        "threadsafe": "threadsafe",
        "none": "unset",
    }
    assert var.get() == "unset"
    for name, ctx in ctxs.items():
        assert ctx[var] == "changed-by-" + name


def test_default_context_is_copied_at_schedule_time(loop):
    var = contextvars.ContextVar("var", default="unset")
    seen = []
    token = var.set("at-schedule")
    loop.call_soon(lambda: seen.append(var.get()))
    var.reset(token)
    run_briefly(loop)
    assert seen == ["at-schedule"]


def my_named_callback():
    pass


def test_repr_contains_callback(loop):
    h = loop.call_soon(my_named_callback)
    t = loop.call_later(10, my_named_callback)
    assert "my_named_callback" in repr(h)
    assert repr(h).startswith("<Handle")
    assert "my_named_callback" in repr(t)
    assert "when=" in repr(t)
    assert repr(t).startswith("<TimerHandle")
    h.cancel()
    t.cancel()
    assert "cancelled" in repr(h)
    assert "cancelled" in repr(t)


def test_repr_formats_args_in_debug(loop):
    loop.set_debug(True)  # 3.13 formats the arguments only in debug mode
    h = loop.call_soon(my_named_callback, 1, "x")
    assert "my_named_callback(1, 'x')" in repr(h)
    h.cancel()


# --- call_soon_threadsafe -------------------------------------------------------------


def test_call_soon_threadsafe_from_many_threads_all_arrive(loop):
    n_threads, per_thread = 8, 1000
    total = n_threads * per_thread
    got = []
    start = threading.Event()

    def on_call(tid, i):
        got.append((tid, i))
        if len(got) == total:
            loop.stop()

    def producer(tid):
        start.wait()
        for i in range(per_thread):
            loop.call_soon_threadsafe(on_call, tid, i)

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    watchdog = loop.call_later(DEADLINE, loop.stop)
    # The loop is idle (only the far watchdog timer): it sleeps in poll while the
    # threads start, so every batch must wake it.
    loop.call_soon(start.set)
    loop.run_forever()
    watchdog.cancel()
    for t in threads:
        t.join(DEADLINE)
    assert len(got) == total
    # Each thread's calls arrive in the order that thread made them.
    for tid in range(n_threads):
        assert [i for t, i in got if t == tid] == list(range(per_thread))


def test_call_soon_threadsafe_wakes_a_sleeping_loop(loop):
    woke = []

    def from_thread():
        time.sleep(0.05)  # let the loop go to sleep in poll
        loop.call_soon_threadsafe(woke.append, time.monotonic())
        loop.call_soon_threadsafe(loop.stop)

    # Without a wake-up the loop would sleep until this far watchdog.
    watchdog = loop.call_later(DEADLINE * 2, loop.stop)
    t = threading.Thread(target=from_thread)
    t.start()
    started = time.monotonic()
    loop.run_forever()
    t.join()
    watchdog.cancel()
    assert woke
    # Not a speed assertion: only that the wake-up happened long before the watchdog.
    assert time.monotonic() - started < DEADLINE


def test_call_soon_threadsafe_repeated_wakeups(loop):
    # Coalesced wake-ups must not get stuck: after each drain, a new call wakes again.
    count = []

    def worker():
        for _ in range(20):
            done = threading.Event()
            loop.call_soon_threadsafe(lambda: (count.append(1), done.set()))
            assert done.wait(DEADLINE)
        loop.call_soon_threadsafe(loop.stop)

    watchdog = loop.call_later(DEADLINE * 2, loop.stop)
    t = threading.Thread(target=worker)
    t.start()
    loop.run_forever()
    t.join()
    watchdog.cancel()
    assert len(count) == 20


def test_call_soon_threadsafe_from_8_threads_wakes_a_long_poll(loop):
    # Each round, 8 threads call at once while the loop sleeps in a poll that only
    # a far watchdog would end; every call arrives and the loop wakes for each round.
    n_threads, rounds, per_round = 8, 5, 50
    got = []
    barrier = threading.Barrier(n_threads)
    round_done = threading.Event()
    round_total = [0]

    def on_call(tid, r, i):
        got.append((tid, r, i))
        if len(got) == round_total[0]:
            round_done.set()
        if len(got) == n_threads * rounds * per_round:
            loop.stop()

    def producer(tid):
        for r in range(rounds):
            barrier.wait(DEADLINE)
            for i in range(per_round):
                loop.call_soon_threadsafe(on_call, tid, r, i)
            barrier.wait(DEADLINE)
            if tid == 0:
                # Wait until the loop ran the round, then give it time to go back
                # to sleep before the next one.
                assert round_done.wait(DEADLINE)
                time.sleep(0.02)
                round_done.clear()
                round_total[0] += n_threads * per_round

    round_total[0] = n_threads * per_round
    threads = [threading.Thread(target=producer, args=(t,)) for t in range(n_threads)]
    watchdog = loop.call_later(DEADLINE * 2, loop.stop)

    def start():
        # Called from the loop: from here on it idles in a poll until woken.
        for t in threads:
            t.start()

    loop.call_soon(start)
    started = time.monotonic()
    loop.run_forever()
    elapsed = time.monotonic() - started
    watchdog.cancel()
    for t in threads:
        t.join(DEADLINE)
    assert len(got) == n_threads * rounds * per_round
    for tid in range(n_threads):
        assert [(r, i) for t, r, i in got if t == tid] == [
            (r, i) for r in range(rounds) for i in range(per_round)
        ]
    # Not a speed assertion: only that no round waited for the watchdog.
    assert elapsed < DEADLINE


def test_call_soon_threadsafe_same_thread(loop):
    out = []
    loop.call_soon_threadsafe(out.append, 1)
    loop.call_soon(out.append, 2)
    run_briefly(loop)
    assert out == [1, 2]


def test_call_soon_threadsafe_handle_is_asyncios(loop):
    # Where asyncio has _ThreadSafeHandle, every loop returns one, set as its __init__
    # sets it; elsewhere a Handle-like object with the same fields. The Cython core's
    # is a subclass of the same name whose `_lock` and `_context` are properties
    # (made when asked for, and out of the collector while queued): every method is
    # asyncio's.
    def cb(a, b):
        pass

    ctx = contextvars.copy_context()
    handle = loop.call_soon_threadsafe(cb, 1, 2, context=ctx)
    if hasattr(asyncio.events, "_ThreadSafeHandle"):
        aio_class = asyncio.events._ThreadSafeHandle
        assert isinstance(handle, aio_class)
        assert type(handle).__name__ == "_ThreadSafeHandle"
        assert type(handle).__slots__ == () or type(handle) is aio_class
        for name in ("__init__", "__repr__", "cancel", "cancelled", "_run", "get_context",
                     "_repr_info", "get_loop"):
            if hasattr(aio_class, name):
                assert getattr(type(handle), name) is getattr(aio_class, name), name
        assert type(handle._lock) is type(threading.RLock())
        assert handle._lock is handle._lock
        assert handle._repr is None
    assert (handle._callback, handle._args, handle._cancelled, handle._loop) == (
        cb, (1, 2), False, loop)
    assert handle._source_traceback is None
    assert handle._context is ctx
    assert handle.cancelled() is False
    assert repr(handle).startswith(f"<{type(handle).__name__} ")
    default = loop.call_soon_threadsafe(cb, 1, 2)
    assert type(default._context) is contextvars.Context
    handle.cancel()
    assert handle.cancelled() and handle._callback is None and handle._args is None
    run_briefly(loop)


@pytest.mark.skipif(not hasattr(asyncio.events, "_ThreadSafeHandle"),
                    reason="asyncio has no _ThreadSafeHandle before 3.12.8/3.13.1")
def test_call_soon_threadsafe_kept_handle_runs_under_its_lock(loop):
    # A handle its caller kept can be cancelled from another thread meanwhile: its
    # callback runs holding the handle's lock, as asyncio's _run takes it.
    owned = []
    handle = loop.call_soon_threadsafe(lambda: owned.append(handle._lock._is_owned()))
    run_briefly(loop)
    assert owned == [True]


@pytest.mark.skipif(not hasattr(asyncio.events, "_ThreadSafeHandle"),
                    reason="asyncio has no _ThreadSafeHandle before 3.12.8/3.13.1")
def test_call_soon_threadsafe_weakly_referenced_handle_runs_under_its_lock(loop):
    # A weak reference reaches the handle as well: another thread could take it
    # from there and cancel the handle while its callback runs.
    owned = []
    ref = weakref.ref(loop.call_soon_threadsafe(lambda: owned.append(ref()._lock._is_owned())))
    run_briefly(loop)
    assert owned == [True]


def test_call_soon_threadsafe_handle_freed_with_what_it_held(loop):
    # Once run and dropped, the handle goes at once, with its callback's arguments,
    # and weak references to it learn so.
    class Arg:
        pass

    arg, freed = Arg(), []
    arg_ref = weakref.ref(arg)
    handle = loop.call_soon_threadsafe(lambda a: None, arg)
    handle_ref = weakref.ref(handle, lambda ref: freed.append("handle"))
    del handle, arg
    run_briefly(loop)
    assert freed == ["handle"] and handle_ref() is None and arg_ref() is None


@pytest.mark.skipif(not hasattr(asyncio.events, "_ThreadSafeHandle"),
                    reason="asyncio has no _ThreadSafeHandle before 3.12.8/3.13.1")
def test_call_soon_threadsafe_context_replaced_while_queued(loop):
    # The Cython core keeps the context it copied out of the collector while the
    # handle is queued; replacing or deleting it then must free it safely.
    var: contextvars.ContextVar = contextvars.ContextVar("var")
    seen = []
    replaced = loop.call_soon_threadsafe(lambda: seen.append(var.get("unset")))
    other = contextvars.copy_context()
    other.run(var.set, "other")
    replaced._context = other
    deleted = loop.call_soon_threadsafe(lambda: None)
    del deleted._context
    with pytest.raises(AttributeError):
        deleted.get_context()
    deleted._context = contextvars.copy_context()
    gc.collect()
    del replaced, deleted, other
    gc.collect()
    run_briefly(loop)
    assert seen == ["other"]


def test_call_soon_threadsafe_callback_error_is_reported(loop):
    seen = []
    loop.set_exception_handler(lambda lp, context: seen.append(context))
    exc = ValueError("boom")

    def fail():
        raise exc

    handle = loop.call_soon_threadsafe(fail)
    ran = []
    loop.call_soon_threadsafe(ran.append, 1)  # the next one still runs
    run_briefly(loop)
    assert ran == [1]
    assert len(seen) == 1
    assert set(seen[0]) == {"message", "exception", "handle"}
    assert seen[0]["message"].startswith("Exception in callback ")
    assert "fail" in seen[0]["message"]
    assert seen[0]["exception"] is exc and seen[0]["handle"] is handle


def test_call_soon_threadsafe_callback_cancels_its_own_handle(loop):
    # The handle's lock is held while its callback runs: cancelling it from inside
    # must not deadlock (the lock is re-entrant), and it counts as cancelled.
    handles = []
    ran = []

    def cb():
        ran.append(1)
        handles[0].cancel()
        ran.append(handles[0].cancelled())

    handles.append(loop.call_soon_threadsafe(cb))
    run_briefly(loop)
    assert ran == [1, True]
    assert handles[0].cancelled()


def test_call_soon_threadsafe_dropped_handle_runs_in_its_context_and_reports(loop):
    # Nobody keeps these handles (the Cython core then runs them without taking their
    # lock): each callback still runs in a copy of its caller's context, and an
    # error still reaches the handler with the handle and asyncio's message.
    var = contextvars.ContextVar("var")
    seen, errors = [], []
    loop.set_exception_handler(lambda lp, context: errors.append(context))
    exc = ValueError("boom")

    def fail(tag):
        seen.append((tag, var.get()))
        var.set("changed")  # in the handle's own copy: the caller never sees it
        raise exc

    var.set("first")
    loop.call_soon_threadsafe(fail, 1)
    var.set("second")
    loop.call_soon_threadsafe(lambda: seen.append((2, var.get())))
    run_briefly(loop)
    assert seen == [(1, "first"), (2, "second")]
    assert var.get() == "second"
    assert len(errors) == 1 and errors[0]["exception"] is exc
    assert errors[0]["message"].startswith("Exception in callback ")
    assert "fail" in errors[0]["message"]
    assert errors[0]["handle"]._callback is fail and errors[0]["handle"]._args == (1,)


@pytest.mark.skipif(not hasattr(asyncio.events, "_ThreadSafeHandle"),
                    reason="asyncio before 3.12.8/3.13.1 has no _ThreadSafeHandle, whose "
                           "lock makes the loop wait")
def test_call_soon_threadsafe_waits_for_a_thread_holding_the_handles_lock(loop):
    # The handle is dropped but its lock is not: a thread holding that lock makes the
    # callback wait, as _ThreadSafeHandle._run does. The holder lets go by itself a
    # little later; the order below holds however long that takes.
    out = []
    lock = loop.call_soon_threadsafe(out.append, "callback")._lock
    acquired = threading.Event()

    def holder():
        with lock:
            acquired.set()
            time.sleep(0.05)
            out.append("holder")

    thread = threading.Thread(target=holder)
    thread.start()
    assert acquired.wait(DEADLINE)
    run_briefly(loop)
    thread.join(DEADLINE)
    assert out == ["holder", "callback"]


@pytest.mark.parametrize("run", [True, False], ids=["ran", "closed"])
def test_call_soon_threadsafe_handle_in_a_cycle_is_collected(make_loop, run):
    # The Cython core keeps queued handles out of the cycle collector; one the user
    # still holds when the loop lets go must rejoin it, or this cycle would leak.
    loop = make_loop()
    box: list = []

    def cb():
        return box  # the cycle: box -> handle -> cb -> box

    box.append(loop.call_soon_threadsafe(cb))
    ref = weakref.ref(box[0])
    if run:
        run_briefly(loop)
    else:
        loop.close()
    del box, cb
    gc.collect()
    assert ref() is None


# --- handle lifetime ------------------------------------------------------------------
# The Cython core reuses a finished Handle or TimerHandle that nothing else refers to
# (coreloop.pyx, keep_spare). None of that may show: what a callback was given is released when it
# has run, a handle someone kept stays as it was, and each callback runs in its own
# context however often the objects behind the handles are reused.


class Marker:
    """An object that takes a weak reference, to see when it is freed."""


def test_finished_callback_releases_args_and_context_at_once(loop):
    var = contextvars.ContextVar("var")
    arg, value = Marker(), Marker()
    refs = [weakref.ref(arg), weakref.ref(value)]
    ctx = contextvars.copy_context()
    ctx.run(var.set, value)
    loop.call_soon(lambda a: None, arg, context=ctx)
    del arg, value, ctx
    gc.disable()
    try:
        run_briefly(loop)
        assert [ref() for ref in refs] == [None, None]
    finally:
        gc.enable()


def test_kept_handle_keeps_its_fields_after_running(loop):
    def cb(x):
        return x

    arg = Marker()
    handle = loop.call_soon(cb, arg)
    for _ in range(300):  # more finished handles than a loop keeps for reuse
        loop.call_soon(cb, None)
    run_briefly(loop, 2)
    for _ in range(300):
        loop.call_soon(cb, None)
    run_briefly(loop)
    assert handle._callback is cb
    assert handle._args == (arg,)
    assert not handle.cancelled()


def test_kept_timer_handle_keeps_its_fields_after_running(loop):
    def cb(x):
        return x

    arg = Marker()
    handle = loop.call_later(0, cb, arg)
    when = handle.when()
    for _ in range(300):  # more finished timers than a loop keeps for reuse
        loop.call_later(0, cb, None)
    run_briefly(loop, 2)
    for _ in range(300):
        loop.call_later(0, cb, None)
    run_briefly(loop, 2)
    assert handle._callback is cb
    assert handle._args == (arg,)
    assert handle.when() == when
    assert not handle.cancelled()


def test_weakly_referenced_timer_handle_dies_after_running(loop):
    ref = weakref.ref(loop.call_later(0, lambda: None))
    gc.disable()
    try:
        run_briefly(loop, 2)
        assert ref() is None
    finally:
        gc.enable()


def test_weakly_referenced_handle_dies_after_running(loop):
    ref = weakref.ref(loop.call_soon(lambda: None))
    gc.disable()
    try:
        run_briefly(loop)
        assert ref() is None
    finally:
        gc.enable()


@pytest.mark.parametrize("delayed", [False, True], ids=["call_soon", "call_later_0"])
def test_many_handles_each_run_in_their_own_context(loop, delayed):
    var = contextvars.ContextVar("var", default=None)
    seen = []

    def schedule(*args, context=None):
        if delayed:  # a TimerHandle each time, reused as Handles are
            return loop.call_later(0, *args, context=context)
        return loop.call_soon(*args, context=context)

    def step(i, left):
        seen.append((i, var.get()))
        var.set(("changed", i))  # must not leak into the next callback's context
        if left:
            schedule(step, i, left - 1)  # copies this callback's context

    for i in range(20):
        ctx = contextvars.copy_context()
        ctx.run(var.set, i)
        schedule(step, i, 3, context=ctx)
    schedule(step, "none", 0)
    run_briefly(loop, 10)
    first = [(i, i) for i in range(20)] + [("none", None)]
    assert seen[:21] == first
    assert sorted(seen[21:], key=repr) == sorted(
        [(i, ("changed", i)) for i in range(20) for _ in range(3)], key=repr)


def test_cancelled_and_finished_handles_then_new_ones(loop):
    out = []
    for i in range(10):
        h = loop.call_soon(out.append, i)
        if i % 2:
            h.cancel()
    del h
    run_briefly(loop)
    handles = [loop.call_soon(out.append, i) for i in range(10, 20)]
    assert not any(h.cancelled() for h in handles)
    run_briefly(loop)
    assert out == [0, 2, 4, 6, 8, *range(10, 20)]


def test_failing_callback_leaves_its_context(loop):
    # The context is exited on the way out of a failing callback: the next callback
    # given the same context can enter it, and the exception reaches the handler.
    var = contextvars.ContextVar("var", default="outer")
    seen, errors = [], []
    loop.set_exception_handler(lambda lp, context: errors.append(context["exception"]))
    ctx = contextvars.copy_context()
    exc = ValueError("boom")

    def fail():
        var.set("inner")
        raise exc

    loop.call_soon(fail, context=ctx)
    loop.call_soon(lambda: seen.append(var.get()), context=ctx)
    loop.call_soon(lambda: seen.append(var.get()))
    run_briefly(loop)
    assert errors == [exc]
    assert seen == ["inner", "outer"]


def test_loop_busy_with_c_callbacks_lets_other_threads_run(loop):
    """A callback chain of C code alone (no Python bytecode, where the interpreter
    switches threads): asyncio's Python-level iteration lets a thread waiting for the
    GIL run within the switch interval, so the thread's call_soon_threadsafe gets in
    and stops the loop; the Cython core used to hold the GIL until the watchdog."""
    chain = functools.partial(int)
    chain.__setstate__((loop.call_soon, (chain,), {}, None))  # chain() is call_soon(chain)
    stopped_by = []

    def stop(who: str) -> None:
        if not stopped_by:
            stopped_by.append(who)
            loop.stop()

    go = threading.Event()

    def in_thread() -> None:
        go.wait()
        loop.call_soon_threadsafe(stop, "thread")

    thread = threading.Thread(target=in_thread)
    thread.start()
    watchdog = loop.call_later(DEADLINE, stop, "watchdog")
    loop.call_soon(chain)
    loop.call_soon(go.set)  # the thread then needs the GIL while the chain runs
    loop.run_forever()
    thread.join()
    watchdog.cancel()
    assert stopped_by == ["thread"]

"""loop.stats() and loop.reset_stats() (docs/observability.md).

Stock asyncio has no stats(), so these tests run on the two cores only (the
`make_loop` fixture below narrows the suite's). Times are asserted only from below,
where a callback's own time.sleep() makes a lower bound certain.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import socket
import threading
import time

import pytest

from conftest import CORE_KINDS, loops_of
from fastloop import LoopStats
from helpers import import_core, run, run_briefly

SLEEP = 0.05


# asyncio has no such API: the cores only.
make_loop = loops_of(CORE_KINDS)


def test_lag_edges_same_in_both_cores():
    import_core("cy")
    assert importlib.import_module("fastloop._cy.core").LAG_EDGES == LoopStats.LAG_EDGES
    assert importlib.import_module("fastloop._py.stats").LAG_EDGES == LoopStats.LAG_EDGES


def test_fresh_loop(loop):
    st = loop.stats()
    assert isinstance(st, LoopStats)
    assert (st.iterations, st.callbacks, st.io_events) == (0, 0, 0)
    assert (st.busy_time, st.idle_time, st.utilisation) == (0.0, 0.0, 0.0)
    assert (st.ready, st.timers, st.timers_cancelled, st.readers, st.writers) == (0, 0, 0, 0, 0)
    assert (st.transports, st.servers, st.slow_callbacks) == (0, 0, 0)
    assert (st.lag_latest, st.lag_max) == (0.0, 0.0)
    assert st.lag_histogram == (0,) * (len(LoopStats.LAG_EDGES) + 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        st.iterations = 1  # type: ignore[misc]


def test_iterations_and_callbacks(loop):
    ran = []
    for i in range(3):
        loop.call_soon(ran.append, i)
    assert loop.stats().ready == 3
    run_briefly(loop)
    loop.call_soon(ran.append, 3)
    run_briefly(loop, 2)
    st = loop.stats()
    assert ran == [0, 1, 2, 3]
    assert (st.iterations, st.callbacks, st.ready) == (3, 4, 0)
    # Two iterations ran callbacks; the third ran none and took no lag sample.
    assert sum(st.lag_histogram) == 2


def test_timers_gauges(loop):
    handles = [loop.call_later(3600, lambda: None) for _ in range(3)]
    handles[0].cancel()
    st = loop.stats()
    assert (st.timers, st.timers_cancelled) == (2, 1)
    for handle in handles:
        handle.cancel()
    assert (loop.stats().timers, loop.stats().timers_cancelled) == (0, 3)


def test_fds_and_io_events(loop):
    a, b = socket.socketpair()
    with a, b:
        got = []
        loop.add_reader(a, lambda: got.append(a.recv(10)))
        loop.add_writer(b, lambda: None)
        st = loop.stats()
        assert (st.readers, st.writers) == (1, 1)
        loop.remove_writer(b)
        b.send(b"x")
        run_briefly(loop)
        st = loop.stats()
        assert got == [b"x"]
        assert (st.readers, st.writers, st.io_events) == (1, 0, 1)
        loop.remove_reader(a)
        assert (loop.stats().readers, loop.stats().writers) == (0, 0)


def test_busy_and_idle_time(loop):
    before = time.monotonic()
    loop.call_soon(time.sleep, SLEEP)
    run(loop, asyncio.sleep(SLEEP))
    elapsed = time.monotonic() - before
    st = loop.stats()
    assert st.busy_time >= SLEEP
    assert st.idle_time > 0
    assert st.busy_time + st.idle_time <= elapsed
    assert 0 < st.utilisation < 1


def test_lag_of_callbacks_queued_behind_a_slow_one(loop):
    def slow():
        loop.call_soon(lambda: None)
        time.sleep(SLEEP)

    loop.call_soon(slow)
    run_briefly(loop)
    assert loop.stats().lag_max < SLEEP  # nothing waited for slow() yet
    run_briefly(loop)
    st = loop.stats()
    # Queued during slow(), whose batch began after the previous poll returned.
    assert st.lag_latest >= SLEEP
    assert st.lag_max == st.lag_latest
    bucket = next(i for i, edge in enumerate(LoopStats.LAG_EDGES) if edge >= SLEEP)
    assert sum(st.lag_histogram[bucket:]) == 1
    assert st.lag_percentile(100) == st.lag_max


def test_lag_of_a_timer_delayed_by_a_slow_callback(loop):
    when = loop.time() + SLEEP / 5
    loop.call_at(when, lambda: None)
    loop.call_soon(time.sleep, SLEEP)
    run_briefly(loop)  # the sleep; the timer is due by its end
    run_briefly(loop)  # the timer, late by what was left of the sleep
    assert loop.stats().lag_latest >= SLEEP * 4 / 5 - 1e-3


def test_reset_and_delta(loop):
    for _ in range(5):
        loop.call_soon(lambda: None)
    run_briefly(loop)
    first = loop.stats()
    loop.call_soon(lambda: None)
    loop.call_later(3600, lambda: None)
    run_briefly(loop)
    d = loop.stats().delta(first)
    assert (d.iterations, d.callbacks, d.timers) == (1, 1, 1)
    assert sum(d.lag_histogram) == 1
    loop.reset_stats()
    st = loop.stats()
    assert (st.iterations, st.callbacks, st.busy_time, st.idle_time) == (0, 0, 0.0, 0.0)
    assert (st.lag_max, sum(st.lag_histogram)) == (0.0, 0)
    assert st.timers == 1  # gauges describe the loop as it is


def test_lag_percentile():
    hist = [0] * (len(LoopStats.LAG_EDGES) + 1)
    hist[0], hist[4], hist[-1] = 90, 9, 1
    st = LoopStats(
        iterations=100, callbacks=100, io_events=0, busy_time=1.0, idle_time=3.0,
        ready=0, timers=0, timers_cancelled=0, readers=0, writers=0, transports=0,
        servers=0, lag_latest=0.0, lag_max=2.5, lag_histogram=tuple(hist),
    )
    assert st.utilisation == 0.25
    assert st.lag_percentile(50) == st.lag_percentile(90) == LoopStats.LAG_EDGES[0]
    assert st.lag_percentile(99) == LoopStats.LAG_EDGES[4]
    assert st.lag_percentile(100) == 2.5


def test_transports_and_servers(loop):
    async def handle(reader, writer):
        await reader.read()
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        assert (loop.stats().servers, loop.stats().transports) == (1, 0)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        while loop.stats().transports < 2:  # the server's side comes a turn later
            await asyncio.sleep(0.001)
        writer.close()
        await writer.wait_closed()
        while loop.stats().transports:  # the server's side closes on our EOF
            await asyncio.sleep(0.001)
        server.close()
        await server.wait_closed()
        assert loop.stats().servers == 0

    run(loop, main())


def test_stats_from_another_thread(loop):
    """stats() may be called from any thread while the loop runs (OTel readers do)."""
    done = threading.Event()
    seen = []

    def reader():
        while not done.is_set():
            seen.append(loop.stats().iterations)

    def spin(n):
        if n:
            loop.call_soon(spin, n - 1)
            loop.call_later(0, lambda: None).cancel()
        else:
            loop.stop()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        loop.call_soon(spin, 20000)
        loop.run_forever()
    finally:
        done.set()
        thread.join()
    assert seen == sorted(seen)
    assert loop.stats().callbacks == 20001

"""No growth over time (issue 13, part 3), scaled down for CI.

Each workload runs a few times to warm up (caches, free lists, the loop's read buffer,
tables reallocated once), then as many times again; what tracemalloc still counts
afterwards must stay under a bound far below what one round allocates. The bound holds for stock asyncio doing
the same (the `aio` run), so it measures leaks, not allocation habits.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

import pytest

ROUNDS = 5
# Left over after ROUNDS rounds: a leak of one small object per callback, timer or
# connection would exceed it many times over.
BOUND = 64 * 1024


def grown(work) -> int:
    # The warm-up runs traced too: a table that a round reallocates once (a dict
    # grown to a burst's size and then emptied keeps its table until it is resized)
    # is then counted in `before`, and only what keeps growing is measured.
    tracemalloc.start()
    try:
        for _ in range(ROUNDS):
            work()
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(ROUNDS):
            work()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_callbacks_and_timers(loop):
    def work():
        for _ in range(2000):
            loop.call_soon(lambda: None)
        timers = [loop.call_later(3600, lambda: None) for _ in range(2000)]
        for t in timers:
            t.cancel()
        loop.run_until_complete(asyncio.sleep(0))

    assert grown(work) < BOUND


def test_loops_created_and_closed(make_loop):
    def work():
        for _ in range(20):
            lp = make_loop.factory()
            lp.run_until_complete(asyncio.sleep(0))
            lp.close()

    assert grown(work) < BOUND


def test_connections_opened_and_closed(loop):
    async def one_round():
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        for _ in range(50):
            tr, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
            tr.write(b"x" * 100)
            tr.close()
            await asyncio.sleep(0)
        server.close()
        await server.wait_closed()
        for _ in range(5):
            await asyncio.sleep(0)

    assert grown(lambda: loop.run_until_complete(one_round())) < BOUND

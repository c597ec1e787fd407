"""No growth over time (issue 13, part 3), scaled down for CI: the workloads of
tests/growth.py, which also runs them at full counts.

Each workload runs a few times to warm up (caches, free lists, the loop's read buffer,
tables reallocated once), then as many times again; what tracemalloc still counts
afterwards must stay under a bound far below what one round allocates. The bound
holds for stock asyncio doing the same (the `aio` run), so it measures leaks, not
allocation habits.
"""

from __future__ import annotations

import gc
import tracemalloc

import growth

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
    assert grown(lambda: (growth.callbacks(loop, 2000), growth.timers(loop, 4000))) < BOUND


def test_loops_created_and_closed(make_loop):
    assert grown(lambda: growth.loops(make_loop.factory, 20)) < BOUND


def test_connections_opened_and_closed(loop):
    assert grown(lambda: growth.connections(loop, 50)) < BOUND


def test_tls_handshakes(loop):
    contexts = growth.tls_contexts()
    assert grown(lambda: growth.tls_handshakes(loop, 5, contexts)) < BOUND


def test_subprocesses(loop):
    assert grown(lambda: growth.subprocesses(loop, 4)) < BOUND

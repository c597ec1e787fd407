"""The `threads` workload: N event loops in N threads at once, one loop per thread.

Each thread makes its own loop and runs the same program on it: call_soon chains (a
callback that schedules the next one) side by side with tasks that switch with
`await asyncio.sleep(0)`. Nothing is shared between the threads but the interpreter, so
on a free-threaded build (3.13t+, `sys._is_gil_enabled()` False) N loops can run on N
cores and the N-thread run should do nearly N times the 1-thread run's operations per
second. On a build with a GIL, or when importing a loop's extension re-enabled it, the
threads take turns holding the GIL and the scaling stays near 1x (or below: the hand-off
costs). The runner times the workload at 1 thread and at N and reports both, with the
ratio of their throughputs and whether the GIL was on in the process that ran it.

`control` runs plain Python (function calls, no loop) the same way: its scaling is the
ceiling on this machine at that moment (a 2-core VM whose other core is busy shows ~1x
for everything), so a loop's scaling can be read against it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import sysconfig
import threading
import time
from typing import TYPE_CHECKING, TypeVar

from .base import Workload, WorkloadError, switch
from .base import check as _check

if TYPE_CHECKING:
    from collections.abc import Callable

    from .base import LoopFactory

T = TypeVar("T")

__all__ = ["THREADS_WORKLOADS", "control", "default_threads", "free_threaded", "gil_enabled"]

# Per thread: 10 call_soon chains of 10k callbacks each, interleaved with 10 tasks of 4k
# sleep(0) switches each; 140k operations, about 0.1 s on stock asyncio with one thread.
THREAD_CHAINS = 10
THREAD_CHAIN_STEPS = 10_000
THREAD_TASKS = 10
THREAD_SWITCHES = 4_000
THREAD_OPS = THREAD_CHAINS * THREAD_CHAIN_STEPS + THREAD_TASKS * THREAD_SWITCHES
# The control's calls per thread: about as long as the loops' program on a fast loop.
PLAIN_CALLS = 1_000_000


def free_threaded() -> bool:
    """Return whether this interpreter was built without the GIL (3.13t+)."""
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def gil_enabled() -> bool:
    """Return whether the GIL is on in this process now (a free-threaded build turns it
    on when it imports an extension module that does not declare it can run without)."""
    is_enabled = getattr(sys, "_is_gil_enabled", None)  # 3.13+
    return True if is_enabled is None else bool(is_enabled())


def default_threads() -> int:
    """Return the default thread count: one per CPU, and at least 2."""
    return max(2, os.cpu_count() or 2)


def _program(loop: asyncio.AbstractEventLoop) -> tuple[int, list[int]]:
    """Run the chains and the switching tasks together on loop; return (callbacks run,
    switches per task)."""
    callbacks = [0]
    chains_left = [THREAD_CHAINS]
    chains_done = loop.create_future()

    def step(left: int) -> None:
        callbacks[0] += 1
        if left > 1:
            loop.call_soon(step, left - 1)
        else:
            chains_left[0] -= 1
            if chains_left[0] == 0:
                chains_done.set_result(None)

    async def main() -> list[int]:
        for _ in range(THREAD_CHAINS):
            loop.call_soon(step, THREAD_CHAIN_STEPS)
        switches = await asyncio.gather(*[switch(THREAD_SWITCHES) for _ in range(THREAD_TASKS)])
        await chains_done
        return switches

    switches = loop.run_until_complete(main())
    return callbacks[0], switches


def _in_threads(count: int, body: Callable[[Callable[[], object]], T]) -> list[T]:
    """Run body(ready) in count threads at once; return their results in order.

    Each body does its untimed set-up, calls ready() (which returns once every thread
    is ready), then does the work. The first failure is raised here: a WorkloadError or
    NotImplementedError as it is, anything else as a WorkloadError.
    """
    start = threading.Barrier(count)
    outcomes: list[T | BaseException | None] = [None] * count

    def worker(index: int) -> None:
        try:
            outcomes[index] = body(start.wait)
        except BaseException as exc:  # handed to the main thread, never lost
            start.abort()  # the others must not wait for this one
            outcomes[index] = exc

    workers = [threading.Thread(target=worker, args=(i,), name=f"bench-{i}")
               for i in range(count)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    # The first real failure, not a BrokenBarrierError it caused in the others.
    failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    failures.sort(key=lambda exc: isinstance(exc, threading.BrokenBarrierError))
    if failures:
        if isinstance(failures[0], (NotImplementedError, WorkloadError)):
            raise failures[0]
        raise WorkloadError(f"a thread failed: {failures[0]!r}") from failures[0]
    results: list[T] = []
    for outcome in outcomes:
        if outcome is None or isinstance(outcome, BaseException):
            raise WorkloadError("a thread finished without an outcome")
        results.append(outcome)
    return results


def threads(factory: LoopFactory, threads: int = 1) -> int:
    """Run the program on `threads` fresh loops in as many threads, all started
    together; check every thread's callbacks and switches."""

    def body(ready: Callable[[], object]) -> tuple[int, list[int]]:
        loop = factory()
        try:
            ready()  # every loop is made before any starts running
            return _program(loop)
        finally:
            loop.close()

    for index, (callbacks, switches) in enumerate(_in_threads(threads, body)):
        _check(f"thread {index}: callbacks run", callbacks, THREAD_CHAINS * THREAD_CHAIN_STEPS)
        _check(f"thread {index}: switches per task", switches, [THREAD_SWITCHES] * THREAD_TASKS)
    return threads * THREAD_OPS


def _plain(ready: Callable[[], object]) -> int:
    """The control's work in one thread: function calls and a counter, no loop."""
    calls = [0]

    def callback() -> None:
        calls[0] += 1

    ready()
    for _ in range(PLAIN_CALLS):
        callback()
    return calls[0]


def control(threads: int, repeat: int = 3) -> tuple[float, float]:
    """Time plain Python (no event loop) in 1 thread and in `threads` at once, best of
    repeat each; return both times. Their ratio is the most scaling any loop could show
    in this process on this machine now (busy cores, or a GIL, cap it)."""
    best = {1: float("inf"), threads: float("inf")}
    for _ in range(repeat):
        for count in best:
            began = time.perf_counter()
            done = _in_threads(count, _plain)
            best[count] = min(best[count], time.perf_counter() - began)
            _check("plain calls per thread", done, [PLAIN_CALLS] * count)
    return best[1], best[threads]


THREADS_WORKLOADS = [
    # In the default comparison on free-threaded builds only: with a GIL, the threads
    # take turns and the rows would cost (1 + N) runs' time to say "about 1x".
    Workload("threads", threads, f"a loop per thread, each {THREAD_CHAINS} call_soon "
             f"chains x {THREAD_CHAIN_STEPS // 1000}k + {THREAD_TASKS} tasks x "
             f"{THREAD_SWITCHES // 1000}k sleep(0); 1 thread, then N (--threads)",
             THREAD_OPS, makes_loops=True, scales=True, extra=not free_threaded()),
]

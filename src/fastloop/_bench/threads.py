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
"""

from __future__ import annotations

import asyncio
import os
import sys
import sysconfig
import threading
from typing import TYPE_CHECKING

from .base import Workload, WorkloadError, check as _check

if TYPE_CHECKING:
    from .base import LoopFactory

__all__ = ["THREADS_WORKLOADS", "default_threads", "free_threaded", "gil_enabled"]

# Per thread: 10 call_soon chains of 10k callbacks each, interleaved with 10 tasks of 4k
# sleep(0) switches each; 140k operations, about 0.1 s on stock asyncio with one thread.
THREAD_CHAINS = 10
THREAD_CHAIN_STEPS = 10_000
THREAD_TASKS = 10
THREAD_SWITCHES = 4_000
THREAD_OPS = THREAD_CHAINS * THREAD_CHAIN_STEPS + THREAD_TASKS * THREAD_SWITCHES


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

    async def switcher() -> int:
        switches = 0
        for _ in range(THREAD_SWITCHES):
            await asyncio.sleep(0)
            switches += 1
        return switches

    async def main() -> list[int]:
        for _ in range(THREAD_CHAINS):
            loop.call_soon(step, THREAD_CHAIN_STEPS)
        switches = await asyncio.gather(*[switcher() for _ in range(THREAD_TASKS)])
        await chains_done
        return switches

    switches = loop.run_until_complete(main())
    return callbacks[0], switches


def threads(factory: LoopFactory, threads: int = 1) -> int:
    """Run the program on `threads` fresh loops in as many threads, all started
    together; check every thread's callbacks and switches."""
    start = threading.Barrier(threads)
    outcomes: list[tuple[int, list[int]] | BaseException | None] = [None] * threads

    def worker(index: int) -> None:
        try:
            loop = factory()
            try:
                start.wait()  # every loop is made before any starts running
                outcomes[index] = _program(loop)
            finally:
                loop.close()
        except BaseException as exc:  # handed to the main thread, never lost
            start.abort()  # the others must not wait for this one
            outcomes[index] = exc

    workers = [threading.Thread(target=worker, args=(i,), name=f"loop-{i}")
               for i in range(threads)]
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
        raise WorkloadError(f"a loop's thread failed: {failures[0]!r}") from failures[0]
    for index, outcome in enumerate(outcomes):
        if not isinstance(outcome, tuple):
            raise WorkloadError(f"thread {index} finished without an outcome")
        callbacks, switches = outcome
        _check(f"thread {index}: callbacks run", callbacks, THREAD_CHAINS * THREAD_CHAIN_STEPS)
        _check(f"thread {index}: switches per task", switches, [THREAD_SWITCHES] * THREAD_TASKS)
    return threads * THREAD_OPS


THREADS_WORKLOADS = [
    # In the default comparison on free-threaded builds only: with a GIL, the threads
    # take turns and the rows would cost (1 + N) runs' time to say "about 1x".
    Workload("threads", threads, f"a loop per thread, each {THREAD_CHAINS} call_soon "
             f"chains x {THREAD_CHAIN_STEPS // 1000}k + {THREAD_TASKS} tasks x "
             f"{THREAD_SWITCHES // 1000}k sleep(0); 1 thread, then N (--threads)",
             THREAD_OPS, makes_loops=True, scales=True, extra=not free_threaded()),
]

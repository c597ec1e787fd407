"""The timed programs: each drives one hot path of the loop and checks its own outcome.

A workload is a function `run(loop) -> int` that uses a fresh, not yet running loop
and returns how many operations it completed. It raises `WorkloadError` when the loop
produced the wrong outcome (a callback lost or run twice, a cancelled timer fired), so
a fast but wrong loop can never post a number. Checks are explicit `raise`s rather than
`assert`s so that they survive `python -O`. (`base.Workload` describes the variations:
an untimed `setup`, a workload that makes its own loops, or its own loops in threads.)
A loop that lacks a feature a workload needs raises `NotImplementedError`: the runner
reports that pair as skipped.

Sizes are module constants: every loop runs exactly the same program, and results of
different runs stay comparable.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
from typing import TYPE_CHECKING, Any

from . import echo as _echo
from . import httpd as _httpd
from . import subproc as _subproc
from . import threads as _threads
from .base import Workload, WorkloadError, switch
from .base import check as _check

if TYPE_CHECKING:
    from .base import LoopFactory

__all__ = ["WORKLOADS", "Workload", "WorkloadError", "get"]

# 100k operations per workload: long enough (tens to hundreds of milliseconds on stock
# asyncio) that timer resolution and process noise are small, short enough that the
# comparison runner can afford fresh processes for every sample.
CALL_SOON_COUNT = 100_000
TIMER_COUNT = 100_000
RESCHEDULE_COUNT = 100_000
SLEEP_TASKS = 10
SLEEP_SWITCHES = 10_000
THREADSAFE_THREADS = 4
THREADSAFE_PER_THREAD = 25_000
CHAIN_COUNT = 50_000
# Idle timers far in the future: enough that a heap whose cost grew with its size
# (linear scans, a sorted list) would show, and all of them outlive the run.
IDLE_TIMERS = 100_000
IDLE_DELAY = 3600.0
PINGPONG_COUNT = 50_000
GATHER_TASKS = 100_000
STARTSTOP_COUNT = 500


def call_soon(loop: asyncio.AbstractEventLoop) -> int:
    """Schedule 100k callbacks, then run them all in one go."""
    done = [0]

    def callback() -> None:
        done[0] += 1

    for _ in range(CALL_SOON_COUNT):
        loop.call_soon(callback)
    loop.call_soon(loop.stop)
    loop.run_forever()
    _check("callbacks run", done[0], CALL_SOON_COUNT)
    return CALL_SOON_COUNT


def call_soon_context(loop: asyncio.AbstractEventLoop) -> int:
    """call_soon as above, each callback given an explicit context= to run in."""
    done = [0]
    context = contextvars.copy_context()

    def callback() -> None:
        done[0] += 1

    for _ in range(CALL_SOON_COUNT):
        loop.call_soon(callback, context=context)
    loop.call_soon(loop.stop)
    loop.run_forever()
    _check("callbacks run", done[0], CALL_SOON_COUNT)
    return CALL_SOON_COUNT


def timers(loop: asyncio.AbstractEventLoop) -> int:
    """Schedule 100k call_later timers in scrambled order, cancel half, fire the rest."""
    fired = [0]
    wrong = [0]
    expected = TIMER_COUNT - TIMER_COUNT // 2

    def fire(keep: bool) -> None:
        if not keep:
            wrong[0] += 1
        fired[0] += 1
        if fired[0] == expected:
            loop.stop()

    handles: list[asyncio.TimerHandle] = []
    for i in range(TIMER_COUNT):
        # A multiplicative scramble spreads the deadlines over 0..1 ms out of insertion
        # order, so the heap does real sifting; all are due by the time the loop runs.
        delay = ((i * 7919) % TIMER_COUNT) * 1e-8
        handles.append(loop.call_later(delay, fire, i % 2 == 0))
    for handle in handles[1::2]:
        handle.cancel()
    loop.run_forever()
    _check("timers fired", fired[0], expected)
    _check("cancelled timers fired", wrong[0], 0)
    return TIMER_COUNT


def reschedule(loop: asyncio.AbstractEventLoop) -> int:
    """One callback that re-schedules itself 100k times: one loop iteration each."""
    done = [0]

    def callback() -> None:
        done[0] += 1
        if done[0] < RESCHEDULE_COUNT:
            loop.call_soon(callback)
        else:
            loop.stop()

    loop.call_soon(callback)
    loop.run_forever()
    _check("iterations", done[0], RESCHEDULE_COUNT)
    return RESCHEDULE_COUNT


def _chain(loop: asyncio.AbstractEventLoop, idle: list[Any] | None = None) -> int:
    """A timer callback that re-arms itself with call_later(0) 50k times."""
    done = [0]

    def callback() -> None:
        done[0] += 1
        if done[0] < CHAIN_COUNT:
            loop.call_later(0, callback)
        else:
            loop.stop()

    loop.call_later(0, callback)
    loop.run_forever()
    _check("timer iterations", done[0], CHAIN_COUNT)
    if idle is not None:
        _check("far-future timers that fired", idle[0], 0)
        _check("far-future timers still pending",
               sum(not handle.cancelled() for handle in idle[1]), IDLE_TIMERS)
    return CHAIN_COUNT


def timer_chain(loop: asyncio.AbstractEventLoop) -> int:
    """The timer chain on an otherwise empty timer heap: the baseline of the next one."""
    return _chain(loop)


def _idle_timers(loop: asyncio.AbstractEventLoop) -> list[Any]:
    """Untimed set-up: schedule 100k far-future timers; return [fired count, handles]."""
    idle: list[Any] = [0, []]  # [int, list[asyncio.TimerHandle]]

    def fired() -> None:
        idle[0] += 1

    for i in range(IDLE_TIMERS):
        delay = IDLE_DELAY + ((i * 7919) % IDLE_TIMERS) * 1e-3  # scrambled, as in timers
        idle[1].append(loop.call_later(delay, fired))
    return idle


def timer_chain_idle(loop: asyncio.AbstractEventLoop, idle: list[Any]) -> int:
    """The timer chain while 100k idle far-future timers wait in the heap."""
    return _chain(loop, idle)


def sleep0(loop: asyncio.AbstractEventLoop) -> int:
    """10 tasks each awaiting asyncio.sleep(0) 10k times: task switches."""

    async def main() -> list[int]:
        return await asyncio.gather(*[switch(SLEEP_SWITCHES) for _ in range(SLEEP_TASKS)])

    counts = loop.run_until_complete(main())
    _check("switches per task", counts, [SLEEP_SWITCHES] * SLEEP_TASKS)
    return SLEEP_TASKS * SLEEP_SWITCHES


def pingpong(loop: asyncio.AbstractEventLoop) -> int:
    """Two tasks hand a value back and forth through futures 50k times."""
    # The ponger awaits inbox[0]; the pinger resolves it with (value, reply future).
    # The ponger installs its next inbox before replying, so none is ever missed.
    inbox = [loop.create_future()]

    async def ponger() -> int:
        count = 0
        while True:
            value, reply = await inbox[0]
            if reply is None:
                return count
            inbox[0] = loop.create_future()
            reply.set_result(value + 1)
            count += 1

    async def pinger() -> int:
        wrong = 0
        for i in range(PINGPONG_COUNT):
            reply = loop.create_future()
            inbox[0].set_result((i, reply))
            if await reply != i + 1:
                wrong += 1
        inbox[0].set_result((None, None))
        return wrong

    async def main() -> tuple[int, int]:
        return await asyncio.gather(pinger(), ponger())

    wrong, count = loop.run_until_complete(main())
    _check("round trips the ponger answered", count, PINGPONG_COUNT)
    _check("wrong answers", wrong, 0)
    return PINGPONG_COUNT


def gather(loop: asyncio.AbstractEventLoop) -> int:
    """asyncio.gather of 100k tasks that each yield once and return their number."""

    async def job(i: int) -> int:
        await asyncio.sleep(0)
        return i

    async def main() -> list[int]:
        return await asyncio.gather(*[job(i) for i in range(GATHER_TASKS)])

    results = loop.run_until_complete(main())
    if results != list(range(GATHER_TASKS)):
        raise WorkloadError("gather's results are not the tasks' numbers in order")
    return GATHER_TASKS


def _open_fds() -> int:
    """Return how many file descriptors this process has open."""
    folder = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
    return len(os.listdir(folder))


def _run_empty(factory: LoopFactory) -> None:
    """asyncio.run(empty()) on a loop made by factory (set-up, run, shutdown, close)."""

    async def empty() -> None:
        pass

    if hasattr(asyncio, "Runner"):  # 3.11+: asyncio.run's own machinery
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(empty())
        return
    # 3.10: asyncio.run takes its loop from the policy.
    class Policy(asyncio.DefaultEventLoopPolicy):
        def new_event_loop(self) -> asyncio.AbstractEventLoop:
            return factory()

    old = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(Policy())
    try:
        asyncio.run(empty())
    finally:
        asyncio.set_event_loop_policy(old)


def startstop(factory: LoopFactory) -> int:
    """asyncio.run of an empty coroutine 500 times, each on a new loop; no fd may leak."""
    # Counted from after the first run: a loop may open a few process-wide fds once
    # (a signal pipe, a thread pool's), which are not a per-loop leak.
    _run_empty(factory)
    before = _open_fds()
    for _ in range(STARTSTOP_COUNT - 1):
        _run_empty(factory)
    _check(f"file descriptors left open by {STARTSTOP_COUNT - 1} runs",
           _open_fds() - before, 0)
    return STARTSTOP_COUNT


def threadsafe(loop: asyncio.AbstractEventLoop) -> int:
    """4 threads each send 25k call_soon_threadsafe callbacks while the loop runs."""
    total = THREADSAFE_THREADS * THREADSAFE_PER_THREAD
    done = [0]
    errors: list[BaseException] = []

    def callback() -> None:
        done[0] += 1
        if done[0] == total:
            loop.stop()

    def producer() -> None:
        try:
            send = loop.call_soon_threadsafe
            for _ in range(THREADSAFE_PER_THREAD):
                send(callback)
        except BaseException as exc:  # reported to the loop's thread, never lost
            errors.append(exc)
            loop.call_soon_threadsafe(loop.stop)

    threads = [threading.Thread(target=producer) for _ in range(THREADSAFE_THREADS)]

    def start() -> None:
        for thread in threads:
            thread.start()

    loop.call_soon(start)
    try:
        loop.run_forever()
    finally:
        for thread in threads:
            thread.join()
    if errors:
        raise WorkloadError(f"producer thread failed: {errors[0]!r}") from errors[0]
    _check("threadsafe callbacks run", done[0], total)
    return total


WORKLOADS = {
    w.name: w
    for w in [
        Workload("call_soon", call_soon, "100k call_soon, then run them", CALL_SOON_COUNT),
        Workload("call_soon_ctx", call_soon_context, "100k call_soon(context=), then run "
                 "them", CALL_SOON_COUNT),
        Workload("timers", timers, "100k call_later, cancel half, fire rest", TIMER_COUNT),
        Workload("reschedule", reschedule, "callback re-scheduling itself 100k times",
                 RESCHEDULE_COUNT),
        Workload("timer_chain", timer_chain, "timer re-arming itself (call_later(0)) "
                 "50k times", CHAIN_COUNT),
        Workload("timer_chain_idle", timer_chain_idle, "the same with 100k idle "
                 "far-future timers pending", CHAIN_COUNT, setup=_idle_timers),
        Workload("sleep0", sleep0, "10 tasks x 10k asyncio.sleep(0)",
                 SLEEP_TASKS * SLEEP_SWITCHES),
        Workload("pingpong", pingpong, "2 tasks x 50k future round trips", PINGPONG_COUNT),
        # One run takes over a second, and a first run is no slower than the next (so
        # no warm-up): more runs in a process would cost time, not precision.
        Workload("gather", gather, "gather of 100k tasks, each yielding once",
                 GATHER_TASKS, max_repeat=1, warmup=False),
        Workload("threadsafe", threadsafe, "4 threads x 25k call_soon_threadsafe",
                 THREADSAFE_THREADS * THREADSAFE_PER_THREAD),
        Workload("startstop", startstop, "500 x asyncio.run(empty()), no fd left open",
                 STARTSTOP_COUNT, makes_loops=True),
        # N loops in N threads (threads.py), timed at 1 thread and at N: the scaling.
        *_threads.THREADS_WORKLOADS,
        # Networking (echo.py): an echo server on the loop, a client in another process.
        *_echo.ECHO_WORKLOADS,
        # HTTP/1.1 on httptools (httpd.py), the client another process as for echo.
        *_httpd.HTTP_WORKLOADS,
        # Child processes (subproc.py): spawn-and-wait, and bulk data through cat.
        *_subproc.SUBPROCESS_WORKLOADS,
    ]
}


def get(name: str) -> Workload:
    """Return the workload called name, or "<name>_<n>" for a scaling workload run by n
    threads (KeyError lists the known ones)."""
    if name in WORKLOADS:
        return WORKLOADS[name]
    base, _, count = name.rpartition("_")
    if base in WORKLOADS and WORKLOADS[base].scales and count.isdigit() and int(count) > 0:
        return WORKLOADS[base].with_threads(int(count))
    raise KeyError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")

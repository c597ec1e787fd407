"""The timed programs: each drives one hot path of the loop and checks its own outcome.

A workload is a function `run(loop) -> int` that uses a fresh, not yet running loop
and returns how many operations it completed. It raises `WorkloadError` when the loop
produced the wrong outcome (a callback lost or run twice, a cancelled timer fired), so
a fast but wrong loop can never post a number. Checks are explicit `raise`s rather than
`assert`s so that they survive `python -O`.

Sizes are module constants: every loop runs exactly the same program, and results of
different runs stay comparable.
"""

import asyncio
import threading

from . import echo as _echo

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


class WorkloadError(RuntimeError):
    """The loop under test produced a wrong outcome."""


class Workload:
    """A named timed program with a one-line description."""

    __slots__ = ("name", "run", "description", "ops")

    def __init__(self, name, run, description, ops):
        self.name = name
        self.run = run
        self.description = description
        self.ops = ops

    def __repr__(self):
        return f"<Workload {self.name}>"


def _check(what, got, expected):
    """Raise WorkloadError unless got == expected."""
    if got != expected:
        raise WorkloadError(f"{what}: expected {expected}, got {got}")


def call_soon(loop):
    """Schedule 100k callbacks, then run them all in one go."""
    done = [0]

    def callback():
        done[0] += 1

    for _ in range(CALL_SOON_COUNT):
        loop.call_soon(callback)
    loop.call_soon(loop.stop)
    loop.run_forever()
    _check("callbacks run", done[0], CALL_SOON_COUNT)
    return CALL_SOON_COUNT


def timers(loop):
    """Schedule 100k call_later timers in scrambled order, cancel half, fire the rest."""
    fired = [0]
    wrong = [0]
    expected = TIMER_COUNT - TIMER_COUNT // 2

    def fire(keep):
        if not keep:
            wrong[0] += 1
        fired[0] += 1
        if fired[0] == expected:
            loop.stop()

    handles = []
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


def reschedule(loop):
    """One callback that re-schedules itself 100k times: one loop iteration each."""
    done = [0]

    def callback():
        done[0] += 1
        if done[0] < RESCHEDULE_COUNT:
            loop.call_soon(callback)
        else:
            loop.stop()

    loop.call_soon(callback)
    loop.run_forever()
    _check("iterations", done[0], RESCHEDULE_COUNT)
    return RESCHEDULE_COUNT


def sleep0(loop):
    """10 tasks each awaiting asyncio.sleep(0) 10k times: task switches."""

    async def worker():
        n = 0
        for _ in range(SLEEP_SWITCHES):
            await asyncio.sleep(0)
            n += 1
        return n

    async def main():
        return await asyncio.gather(*[worker() for _ in range(SLEEP_TASKS)])

    counts = loop.run_until_complete(main())
    _check("switches per task", counts, [SLEEP_SWITCHES] * SLEEP_TASKS)
    return SLEEP_TASKS * SLEEP_SWITCHES


def threadsafe(loop):
    """4 threads each send 25k call_soon_threadsafe callbacks while the loop runs."""
    total = THREADSAFE_THREADS * THREADSAFE_PER_THREAD
    done = [0]
    errors = []

    def callback():
        done[0] += 1
        if done[0] == total:
            loop.stop()

    def producer():
        try:
            send = loop.call_soon_threadsafe
            for _ in range(THREADSAFE_PER_THREAD):
                send(callback)
        except BaseException as exc:  # reported to the loop's thread, never lost
            errors.append(exc)
            loop.call_soon_threadsafe(loop.stop)

    threads = [threading.Thread(target=producer) for _ in range(THREADSAFE_THREADS)]

    def start():
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
        Workload("timers", timers, "100k call_later, cancel half, fire rest", TIMER_COUNT),
        Workload("reschedule", reschedule, "callback re-scheduling itself 100k times",
                 RESCHEDULE_COUNT),
        Workload("sleep0", sleep0, "10 tasks x 10k asyncio.sleep(0)",
                 SLEEP_TASKS * SLEEP_SWITCHES),
        Workload("threadsafe", threadsafe, "4 threads x 25k call_soon_threadsafe",
                 THREADSAFE_THREADS * THREADSAFE_PER_THREAD),
        # Networking (echo.py): an echo server on the loop, a client in another process.
        *[Workload(*spec) for spec in _echo.ECHO_WORKLOADS],
    ]
}


def get(name):
    """Return the workload called name (KeyError lists the known ones)."""
    try:
        return WORKLOADS[name]
    except KeyError:
        raise KeyError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}") from None

"""Small helpers for running a loop in tests, with deadlines instead of hangs."""

from __future__ import annotations

import asyncio
import importlib
import os
import threading
import time

import pytest

# Generous deadline for anything that waits on the loop: the suite runs on a loaded
# two-core machine, so it bounds a hang, never measures speed.
DEADLINE = 30.0

# The loops a behaviour test runs on, and the cores a white-box test runs on.
CORE_KINDS = ["cy", "py"]
LOOP_KINDS = ["cy", "py", "aio"]
if os.environ.get("FASTLOOP_BACKEND") == "io_uring":
    # The io_uring run of the suite (.ci/run): fastloop's loops are made on io_uring,
    # which only the Cython core has; the other runs cover `py` and `aio`.
    CORE_KINDS = LOOP_KINDS = ["cy"]


def run_briefly(loop, n: int = 1) -> None:
    """Run `n` loop iterations (stop() before run_forever runs exactly one)."""
    for _ in range(n):
        loop.stop()
        loop.run_forever()


def run_until(loop, predicate, timeout: float = DEADLINE) -> None:
    """Run the loop until `predicate()` is true; fail after `timeout` seconds."""
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        loop.run_until_complete(asyncio.sleep(0.005))


def run(loop, coro, timeout: float = DEADLINE):
    """run_until_complete with a deadline, so a hang fails instead of blocking."""
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def wait_until_polling(thread: threading.Thread) -> None:
    """Return once `thread` sleeps in epoll_wait (io_uring_enter's io_cqring_wait on the
    io_uring backend), so that a signal sent now interrupts a loop's poll rather than
    landing in a callback; where the kernel does not tell
    (no /proc, or a wchan hidden as "0" even while the thread sleeps), after a moment
    that is most likely enough."""
    task = f"/proc/self/task/{thread.native_id}"
    deadline = time.monotonic() + DEADLINE  # then the test fails, showing where it landed
    while time.monotonic() < deadline:
        try:
            with open(f"{task}/wchan") as f:
                wchan = f.read()
            with open(f"{task}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            wchan, state = "0", "S"
        if "epoll_wait" in wchan or "io_cqring_wait" in wchan:  # epoll, io_uring
            return
        if wchan == "0" and state == "S":  # asleep, but the kernel does not say where
            time.sleep(0.05)
            return
        time.sleep(0.001)


def import_core(kind: str):
    """Import the core module for `kind`, skipping the test (with why) when it cannot."""
    try:
        return importlib.import_module(f"fastloop._{kind}")
    except ImportError as exc:
        if kind == "cy":
            pytest.skip(f"fastloop._cy cannot be imported (not built?): {exc!r}")
        raise


def loop_class(kind: str):
    """The fastloop loop class over the core `kind` ('cy' or 'py')."""
    core = import_core(kind)
    from fastloop._loop import loop_class_for

    return loop_class_for(core)

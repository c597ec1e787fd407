"""Leak checks: what a loop opens, its close() gives back."""

from __future__ import annotations

import asyncio
import gc
import os
import sys

import pytest

FD_DIR = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"


def _open_fds() -> int:
    return len(os.listdir(FD_DIR))


@pytest.mark.skipif(sys.platform == "win32", reason="counts fds through /proc or /dev/fd")
@pytest.mark.parametrize("run", [False, True], ids=["idle", "ran"])
def test_loops_created_and_closed_leak_no_fds(make_loop, run):
    # Not make_loop() itself: it keeps every loop for teardown; these die at once.
    factory = make_loop.factory
    warm = factory()  # first use may import and cache things; not a leak
    warm.close()
    gc.collect()
    before = _open_fds()
    for _ in range(200):
        loop = factory()
        if run:
            loop.call_soon(lambda: None)
            loop.call_later(3600, lambda: None)  # a pending timer dropped by close()
            loop.run_until_complete(asyncio.sleep(0))
        loop.close()
    del loop
    gc.collect()
    assert _open_fds() == before

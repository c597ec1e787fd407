"""How fastloop learns that a child exited (fastloop only: asyncio uses child watchers).

The notifier (pidfd on Linux, kqueue on macOS/BSD) is the normal path and is covered by
test_subprocess.py; here: the thread fallback, a refused pidfd, children reaped by
someone else, and children still running when the loop closes.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import threading
import warnings
from subprocess import DEVNULL

import pytest

from helpers import loop_class, run
from nethelpers import open_fds
from test_subprocess import _reaped, _wait_reaped

from fastloop import _subprocess


@pytest.fixture(params=["cy", "py"])
def loop(request):
    loop = loop_class(request.param)()
    yield loop
    loop.close()


@pytest.fixture
def threads_only(monkeypatch):
    """Wait for every child with a thread, as where neither pidfd nor kqueue exists."""
    monkeypatch.setattr(_subprocess, "use_exit_notifier", False)


async def _spawn_all(n, code="import sys; sys.exit(5)"):
    procs = [await asyncio.create_subprocess_exec(sys.executable, "-c", code)
             for _ in range(n)]
    return [p.pid for p in procs], await asyncio.gather(*(p.wait() for p in procs))


def test_thread_fallback(loop, threads_only):
    fds = open_fds()
    pids, codes = run(loop, _spawn_all(20))
    assert codes == [5] * 20 and all(_reaped(pid) for pid in pids)
    assert not loop._children
    gc.collect()
    assert open_fds() == fds


def test_pidfd_refused_falls_back_to_a_thread(loop, monkeypatch):
    if not hasattr(os, "pidfd_open"):
        pytest.skip("no os.pidfd_open on this platform")

    def refused(pid, flags=0):
        raise PermissionError(1, "Operation not permitted (a seccomp filter)")

    monkeypatch.setattr(os, "pidfd_open", refused)
    before = threading.active_count()

    async def main():
        # A child that lives until told to exit: one that exits on its own (a short
        # sleep) may be gone, its watcher thread with it, before the count on a busy
        # machine.
        proc = await asyncio.create_subprocess_exec("cat", stdin=asyncio.subprocess.PIPE)
        during = threading.active_count()
        proc.stdin.close()
        return during, await proc.wait()

    during, code = run(loop, main())
    assert code == 0 and during == before + 1


def test_notifier_is_used_where_available(loop):
    if not (hasattr(os, "pidfd_open") or sys.platform == "darwin" or "bsd" in sys.platform):
        pytest.skip("no pidfd or kqueue: the thread fallback is the only path")

    async def main():
        proc = await asyncio.create_subprocess_exec("sleep", "0.2")
        (_, notifier), = loop._children.values()
        return notifier, await proc.wait()

    notifier, code = run(loop, main())
    assert code == 0 and notifier is not None and not loop._children


@pytest.mark.parametrize("watch", ["notifier", "thread"])
def test_reaped_by_popen_keeps_the_real_returncode(loop, monkeypatch, watch):
    # transport.close() polls its Popen, which may reap the child before the loop
    # does; the status Popen read is then the one reported.
    monkeypatch.setattr(_subprocess, "use_exit_notifier", watch == "notifier")

    async def main():
        transport, _ = await loop.subprocess_exec(
            asyncio.SubprocessProtocol, sys.executable, "-c", "import sys; sys.exit(9)")
        popen = transport.get_extra_info("subprocess")
        popen.wait()  # reaps it: os.waitpid(pid) now fails for everyone else
        code = await transport._wait()
        transport.close()
        return code

    assert run(loop, main()) == 9


def test_reaped_by_foreign_code_reports_255(loop, caplog):
    async def main():
        transport, _ = await loop.subprocess_exec(asyncio.SubprocessProtocol, "sleep", "0.2")
        os.waitpid(transport.get_pid(), 0)  # as code calling waitpid(-1) would
        code = await transport._wait()
        transport.close()
        return code

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        assert run(loop, main()) == _subprocess.UNKNOWN_RETURNCODE
    assert any("reaped elsewhere" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("watch", ["notifier", "thread"])
@pytest.mark.parametrize("kind", ["cy", "py"])
def test_close_with_a_live_child_leaves_no_zombie(kind, monkeypatch, caplog, watch):
    monkeypatch.setattr(_subprocess, "use_exit_notifier", watch == "notifier")
    fds = open_fds()
    loop = loop_class(kind)()

    async def main():
        proc = await asyncio.create_subprocess_exec("sleep", "60")
        return proc, proc.pid

    proc, pid = run(loop, main())
    transport = proc._transport
    del proc
    loop.close()
    assert not loop._children
    # Unclosed, as in asyncio: collecting the transport warns and kills the child
    # (its Popen and pipes warn too, as they do in asyncio).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del transport
        gc.collect()
    assert any("unclosed transport" in str(w.message) for w in caught), caught
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        _wait_reaped(pid)
        # The thread that reaped it logs, like asyncio's threaded watcher.
        for thread in threading.enumerate():
            if thread.name == f"fastloop-waitpid-{pid}":
                thread.join(5)
    assert any(f"handles pid {pid} is closed" in r.getMessage() for r in caplog.records)
    gc.collect()
    assert open_fds() == fds


def test_close_after_the_child_was_killed(loop):
    # The child is dead but not yet reported when the loop closes.
    async def main():
        transport, _ = await loop.subprocess_exec(
            asyncio.SubprocessProtocol, "sleep", "60",
            stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL)
        transport.send_signal(signal.SIGKILL)
        return transport

    transport = run(loop, main())
    pid = transport.get_pid()
    with warnings.catch_warnings(record=True):
        # Its Popen warns 'still running' when collected, unless close() happened to
        # reap the child itself (timing): either way it must not stay a zombie.
        warnings.simplefilter("always")
        transport.close()
        loop.close()
        del transport
        gc.collect()
    _wait_reaped(pid)

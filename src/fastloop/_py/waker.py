"""Waker: lets other threads (and signal handlers) interrupt a sleeping poll.

An eventfd where the OS has one (Linux), else a non-blocking pipe. Wake-ups are
coalesced: ``wake()`` writes only when no wake-up is pending, so a burst of
call_soon_threadsafe() calls costs one write and one read.

Why the pending flag never loses a wake-up. The loop calls ``drain()`` when the
fd polls readable: it reads first and clears ``_pending`` second, and only then
counts the ready queue. A thread appends its callback first and calls ``wake()``
second. If ``wake()`` sees ``_pending`` set and skips the write, the flag was not
yet cleared, so the append happened before the loop's clear, which happens before
the loop counts the ready queue: the callback runs in this very iteration. If it
sees the flag clear, it writes, and the next poll returns at once. Clearing
before reading would be wrong: a write between the two would be read away with
the flag left set, and no later wake() would ever write again.

"Happened before" needs an order between one thread's append-then-read-the-flag
and the loop's clear-then-count. The GIL gives it; without the GIL each side may
see the other's first step late, and both would miss. So on free-threaded builds
``wake()`` reads the flag only under ``_lock``, which ``drain()`` also takes to
clear it: the lock orders the two. With the GIL a set flag is trusted without
the lock. Writes to the fd and ``close()`` always hold the lock, so no thread
ever writes to a closed fd, or to a file that reuses its number (os.close()
releases the GIL, so the GIL alone would not prevent that).
"""

from __future__ import annotations

import os
import sysconfig
import threading

# Built without the GIL (3.13t+): the flag must not be read outside the lock.
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))

if hasattr(os, "eventfd"):
    # An eventfd: one fd, one 8-byte counter that a read resets.

    def _open() -> tuple[int, int]:
        fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        return fd, fd

    def _write(fd: int) -> None:
        os.eventfd_write(fd, 1)

    def _drain(fd: int) -> None:
        try:
            os.eventfd_read(fd)
        except BlockingIOError:  # nothing to read: a spurious event
            pass

else:
    # A non-blocking pipe: a byte written per wake-up, all read at once.

    def _open() -> tuple[int, int]:
        rfd, wfd = os.pipe()
        # os.pipe() fds are already non-inheritable (PEP 446).
        os.set_blocking(rfd, False)
        os.set_blocking(wfd, False)
        return rfd, wfd

    def _write(fd: int) -> None:
        os.write(fd, b"\0")

    def _drain(fd: int) -> None:
        try:
            while os.read(fd, 4096):
                pass
        except BlockingIOError:
            pass


class Waker:
    """An eventfd (Linux) or a non-blocking pipe: wake() makes fileno() readable."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rfd = self._wfd = -1
        self._pending = False
        self._rfd, self._wfd = _open()

    def fileno(self) -> int:
        return self._rfd

    def wake(self) -> None:
        """Make the fd readable, unless a wake-up is already pending."""
        if self._pending and not FREE_THREADED:
            return
        with self._lock:
            if self._pending or self._wfd < 0:
                return
            self._pending = True
            try:
                _write(self._wfd)
            except OSError:  # a full pipe is readable anyway
                pass

    def drain(self) -> None:
        """Consume every wake-up; the next wake() writes again."""
        _drain(self._rfd)
        with self._lock:
            self._pending = False

    def close(self) -> None:
        with self._lock:
            # A set flag turns later wake() calls into no-ops.
            self._pending = True
            if self._rfd >= 0:
                os.close(self._rfd)
                if self._wfd != self._rfd:
                    os.close(self._wfd)
                self._rfd = self._wfd = -1

    __del__ = close  # raw fds: nothing else would ever close them

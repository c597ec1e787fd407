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
the flag left set, and no later wake() would ever write again. Every step is one
bytecode-level operation under the GIL; two threads that both see the flag clear
both write, which costs one spurious read, never a lost wake-up.
"""

from __future__ import annotations

import os

if hasattr(os, "eventfd"):

    class Waker:
        """An eventfd: one fd, one 8-byte counter that a read resets."""

        def __init__(self) -> None:
            self._fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            self._pending = False

        def fileno(self) -> int:
            return self._fd

        def wake(self) -> None:
            """Make the fd readable, unless a wake-up is already pending."""
            if self._pending:
                return
            self._pending = True
            try:
                os.eventfd_write(self._fd, 1)
            except OSError:  # closed by another thread meanwhile
                pass

        def drain(self) -> None:
            """Consume every wake-up; the next wake() writes again."""
            try:
                os.eventfd_read(self._fd)
            except BlockingIOError:  # nothing to read: a spurious event
                pass
            self._pending = False

        def close(self) -> None:
            # A set flag turns later wake() calls into no-ops, so they never write
            # to the closed fd, or to whatever file reuses its number.
            self._pending = True
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

        __del__ = close  # a raw fd: nothing else would ever close it

else:

    class Waker:
        """A non-blocking pipe: a byte written per wake-up, all read at once."""

        def __init__(self) -> None:
            self._rfd, self._wfd = os.pipe()
            # os.pipe() fds are already non-inheritable (PEP 446).
            os.set_blocking(self._rfd, False)
            os.set_blocking(self._wfd, False)
            self._pending = False

        def fileno(self) -> int:
            return self._rfd

        def wake(self) -> None:
            """Make the fd readable, unless a wake-up is already pending."""
            if self._pending:
                return
            self._pending = True
            try:
                os.write(self._wfd, b"\0")
            except OSError:  # full (then readable anyway) or closed meanwhile
                pass

        def drain(self) -> None:
            """Consume every wake-up; the next wake() writes again."""
            try:
                while os.read(self._rfd, 4096):
                    pass
            except BlockingIOError:
                pass
            self._pending = False

        def close(self) -> None:
            # See the eventfd Waker: a set flag keeps later wake() calls silent.
            self._pending = True
            if self._rfd >= 0:
                os.close(self._rfd)
                os.close(self._wfd)
                self._rfd = self._wfd = -1

        __del__ = close  # raw fds: nothing else would ever close them

"""Unix signal handling: ``add_signal_handler`` and ``remove_signal_handler``.

Python's C-level signal handler writes each signal number as one byte to the
fd given to ``signal.set_wakeup_fd``; the loop reads those bytes and queues the
Python callback registered for the signal. The core's waker cannot carry them:
on Linux it is an eventfd, whose writes are 8-byte counter increments, so the
signal numbers would be lost. Signals therefore get a non-blocking socketpair of
their own, made on the first ``add_signal_handler`` and read by an ordinary
reader callback. Errors and their messages are asyncio's
(``asyncio/unix_events.py``).
"""

from __future__ import annotations

import errno
import signal
import socket
import sys
import warnings
from asyncio import coroutines
from asyncio.log import logger
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

    # What the mixin is combined with (fastloop._loop.loop_class_for): the core.
    from ._cy.core import CoreLoop as _CoreLoop
    from ._cy.core import Handle
else:
    _CoreLoop = object

# The public name warns from 3.14 (deprecated); asyncio itself calls the private one there.
_iscoroutinefunction = getattr(coroutines, "_iscoroutinefunction", coroutines.iscoroutinefunction)


def _check_signal(sig: object) -> None:
    """Raise TypeError or ValueError, like asyncio, for a bad signal number."""
    if not isinstance(sig, int):
        raise TypeError(f"sig must be an int, not {sig!r}")
    if sig not in signal.valid_signals():
        raise ValueError(f"invalid signal number {sig}")


def _noop_signal_handler(signum: int, frame: FrameType | None) -> None:
    """Stand in as the Python-level handler; the wakeup fd does the work."""


class SignalMixin(_CoreLoop):
    """The signal half of the loop; needs the core's add/remove_reader and Handle."""

    # The core's Handle class, set by loop_class_for.
    _Handle: type[Handle]

    def __init__(self, *, backend: str | None = None) -> None:
        super().__init__(backend=backend)
        self._signal_handlers: dict[int, Handle] = {}  # signal number -> core Handle
        # (read end, write end) once a handler was added
        self._signal_sockets: tuple[socket.socket, socket.socket] | None = None

    def add_signal_handler(self, sig: int, callback: Callable[..., object], *args: Any) -> None:
        """Run ``callback(*args)`` from the loop whenever signal ``sig`` arrives."""
        if coroutines.iscoroutine(callback) or _iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        _check_signal(sig)
        self._check_closed()
        try:
            # set_wakeup_fd() raises ValueError outside the main thread, so this
            # call doubles as asyncio's "main thread only" check.
            signal.set_wakeup_fd(self._signal_wakeup_fd())
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc))

        self._signal_handlers[sig] = self._Handle(callback, args, self, None)
        try:
            signal.signal(sig, _noop_signal_handler)
            # SA_RESTART: fewer system calls interrupted with EINTR.
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            if not self._signal_handlers:
                self._clear_wakeup_fd()
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig} cannot be caught")
            raise

    def remove_signal_handler(self, sig: int) -> bool:
        """Remove the handler of ``sig``; return whether there was one."""
        _check_signal(sig)
        try:
            del self._signal_handlers[sig]
        except KeyError:
            return False
        # SIGINT goes back to raising KeyboardInterrupt, as at interpreter start.
        default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, default)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig} cannot be caught")
            raise
        if not self._signal_handlers:
            self._clear_wakeup_fd()
        return True

    def _signal_wakeup_fd(self) -> int:
        """Return the fd signals are written to, making the socketpair on first use."""
        if self._signal_sockets is None:
            rsock, wsock = socket.socketpair()
            rsock.setblocking(False)
            # The C signal handler must never block on a full buffer.
            wsock.setblocking(False)
            self.add_reader(rsock.fileno(), self._read_signals)
            self._signal_sockets = rsock, wsock
        return self._signal_sockets[1].fileno()

    def _read_signals(self) -> None:
        """Queue the handle of every signal number waiting in the socketpair."""
        # Set before this reader was added, cleared only after it was removed.
        assert self._signal_sockets is not None
        rsock = self._signal_sockets[0]
        while True:
            try:
                data = rsock.recv(4096)
            except BlockingIOError:
                return
            for sig in data:
                handle = self._signal_handlers.get(sig)
                if handle is None:
                    continue  # removed after the signal arrived
                if handle.cancelled():
                    self.remove_signal_handler(sig)
                else:
                    # Runs on the next iteration, as asyncio's does.
                    self._add_callback(handle)

    def _close_signals(self) -> None:
        """Remove every signal handler and close the socketpair (from ``close``)."""
        if sys.is_finalizing():
            # signal.signal() may no longer work at this stage; asyncio warns too.
            if self._signal_handlers:
                warnings.warn(
                    f"Closing the loop {self!r} on interpreter shutdown stage, "
                    f"skipping signal handlers removal",
                    ResourceWarning,
                    source=self,
                )
                self._signal_handlers.clear()
                # Unlike asyncio, whose self-pipe outlives this, our socketpair is
                # closed below: a signal must not be written to a reused fd.
                self._clear_wakeup_fd()
        else:
            for sig in list(self._signal_handlers):
                self.remove_signal_handler(sig)
        if self._signal_sockets is not None:
            rsock, wsock = self._signal_sockets
            self._signal_sockets = None
            self.remove_reader(rsock.fileno())
            rsock.close()
            wsock.close()

    @staticmethod
    def _clear_wakeup_fd() -> None:
        """Stop Python writing signal numbers anywhere; log (as asyncio) on failure."""
        try:
            signal.set_wakeup_fd(-1)
        except (ValueError, OSError) as exc:
            logger.info("set_wakeup_fd(-1) failed: %s", exc)

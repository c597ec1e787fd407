"""CoreLoop: the hot half of the loop — ready queue, timers, fd callbacks, one iteration.

Semantics and error messages are asyncio's (base_events.py, selector_events.py);
docs/core.md is the contract. The mixin in fastloop/_loop.py adds run_forever()
and everything else around it.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
import weakref
from asyncio import base_events as aio_base_events
from asyncio import coroutines as aio_coroutines
from asyncio.log import logger
from collections import deque
from contextvars import Context, copy_context
from math import ceil, inf
from typing import TYPE_CHECKING, Any

from .._backend import open_poller
from . import fork as _fork
from .datagram import DatagramTransport
from .handles import (
    THREADSAFE_NATIVE,
    Handle,
    TimerHandle,
    _ThreadSafeHandle,
    new_handle,
    new_threadsafe_handle,
    new_timer,
    run_threadsafe_handle,
)
from .pipe import ReadPipeTransport, WritePipeTransport
from .poller import READ, WRITE, Poller
from .stats import Counters, counters
from .stream import SocketTransport
from .timers import TimerQueue
from .waker import Waker

# The public name warns from 3.14 (deprecated); asyncio itself calls the private one there.
_iscoroutinefunction = getattr(
    aio_coroutines, "_iscoroutinefunction", aio_coroutines.iscoroutinefunction
)
# What call_soon_threadsafe returns where asyncio has it (3.12.8+, 3.13.1+, 3.14):
# asyncio's own handle, whose lock makes cancel() from another thread wait for a
# running callback; CPython's tests check its type. handles.py makes and runs it
# without its Python methods.

if TYPE_CHECKING:
    import asyncio
    import socket
    from collections.abc import Callable
    from typing import TypeAlias

    from _typeshed import FileDescriptorLike

    _Bytes: TypeAlias = bytes | bytearray | memoryview

    from .transport import _Transport

_monotonic = time.monotonic
_new = object.__new__

# asyncio's MAXIMUM_SELECT_TIMEOUT: the longest single poll, in seconds. It also
# keeps a huge or infinite deadline from overflowing the poll's timeout.
MAX_POLL_TIMEOUT = 24 * 3600

_PY312 = sys.version_info >= (3, 12)


def _fileobj_int(fileobj: FileDescriptorLike) -> int:
    """Return the fd number of ``fileobj`` (an int, or an object with fileno()).

    A negative number passes: asyncio checks the object before the loop's state,
    and the number only after.
    """
    if isinstance(fileobj, int):
        return fileobj
    try:
        return int(fileobj.fileno())
    except (AttributeError, TypeError, ValueError):
        raise ValueError(f"Invalid file object: {fileobj!r}") from None


def _mask(entry: list[Any]) -> int:
    """Return the READ|WRITE mask an ``_fds`` entry needs."""
    return (READ if entry[0] is not None else 0) | (WRITE if entry[1] is not None else 0)


class CoreLoop:
    """Ready queue, timers and fd callbacks of an asyncio loop, and its iteration."""

    if TYPE_CHECKING:
        # Provided by the mixin (fastloop/_loop.py) that every loop class adds.
        def create_future(self) -> asyncio.Future[Any]: ...
        def call_exception_handler(self, context: dict[str, Any]) -> None: ...
        def _slow_callback(self, handle: Handle, duration: float) -> None: ...

    def __init__(self, *, backend: str | None = None) -> None:
        self._debug = False
        self.slow_callback_duration = 0.1
        self._slow_threshold = inf  # off; see set_slow_callback_hook (_loop.py)
        self._thread_id: int | None = None
        self._stopping = False
        # Closed until the poller and waker are open: if either fails (an unavailable
        # backend, EMFILE), __del__ finds a closed loop and has nothing to do.
        self._closed = True
        self._current_handle: Handle | None = None
        self._clock_resolution = time.get_clock_info("monotonic").resolution
        self._ready: deque[Handle] = deque()
        self._timers = TimerQueue()
        # fd -> [reader Handle or None, writer Handle or None, the object it was added as];
        # entry[READ - 1] is the reader, entry[WRITE - 1] the writer.
        self._fds: dict[int, list[Any]] = {}
        self._poller = open_poller(Poller, backend)
        self._waker = Waker()
        self._poller.modify(self._waker.fileno(), READ)
        self._closed = False
        self._forks = _fork.count  # fork.py: the poller and waker are this process's
        # fd -> the transport that owns it (weak: a dropped transport lets go).
        self._transports: weakref.WeakValueDictionary[int, _Transport] = (
            weakref.WeakValueDictionary()
        )
        # The read buffer every transport of this loop reads into (transport.py).
        self._read_view: memoryview | None = None
        self._stats = Counters()

    # --- state ----------------------------------------------------------------

    def time(self) -> float:
        """Return the loop's clock: time.monotonic()."""
        return _monotonic()

    def get_debug(self) -> bool:
        return self._debug

    @property
    def backend(self) -> str:
        """The kernel facility the loop polls with: "epoll", "kqueue" or "io_uring"."""
        return self._poller.name

    def is_running(self) -> bool:
        """Return True if the event loop is running."""
        return self._thread_id is not None

    def is_closed(self) -> bool:
        """Return True if the event loop was closed."""
        return self._closed

    def _check_closed(self) -> None:
        if self._closed:
            raise RuntimeError("Event loop is closed")

    def _check_thread(self) -> None:
        """Raise unless called from the thread running the loop (debug mode only)."""
        if self._thread_id is None:
            return
        if threading.get_ident() != self._thread_id:
            raise RuntimeError(
                "Non-thread-safe operation invoked on an event loop other than the current one"
            )

    def _check_callback(self, callback: object, method: str) -> None:
        if aio_coroutines.iscoroutine(callback) or _iscoroutinefunction(callback):
            raise TypeError(f"coroutines cannot be used with {method}()")
        if not callable(callback):
            raise TypeError(f"a callable object was expected by {method}(), got {callback!r}")

    # --- callbacks ------------------------------------------------------------

    def call_soon(
        self, callback: Callable[..., object], *args: Any, context: Context | None = None
    ) -> Handle:
        """Arrange for a callback to be called as soon as possible (FIFO)."""
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_soon")
            handle = Handle(callback, args, self, context)
            del handle._source_traceback[-1]
        else:
            # new_handle() written out: this is the hottest entry point of all
            # (every task step comes through here), and a call less is ~10% of it.
            handle = _new(Handle)
            handle._callback = callback
            handle._args = args
            handle._cancelled = False
            handle._loop = self
            handle._repr = None
            handle._context = copy_context() if context is None else context
            handle._source_traceback = None
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(
        self, callback: Callable[..., object], *args: Any, context: Context | None = None
    ) -> Any:  # a Handle, or asyncio's _ThreadSafeHandle (unknown to typeshed)
        """Like call_soon(), but callable from any thread: wakes the loop."""
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self._debug:
            self._check_callback(callback, "call_soon_threadsafe")
        handle: Any
        if THREADSAFE_NATIVE and not self._debug:
            handle = new_threadsafe_handle(callback, args, self, context)
        elif _ThreadSafeHandle is not None:
            handle = _ThreadSafeHandle(callback, args, self, context)
            if handle._source_traceback:
                # This method's frame and the subclass's __init__, as asyncio drops.
                del handle._source_traceback[-2:]
        elif self._debug:
            handle = Handle(callback, args, self, context)
            del handle._source_traceback[-1]
        else:
            handle = new_handle(callback, args, self, context)
        # Append first, wake second: the order waker.py's proof relies on.
        self._ready.append(handle)
        self._waker.wake()
        return handle

    def call_later(
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        context: Context | None = None,
    ) -> TimerHandle:
        """Arrange for a callback to be called ``delay`` seconds from now."""
        if delay is None:
            raise TypeError("delay must not be None")
        when = self.time() + delay
        # call_at() written out (one call less per timer), with its checks and
        # its method name in messages, as asyncio's call_later goes through call_at.
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_at")
            timer = TimerHandle(when, callback, args, self, context)
            del timer._source_traceback[-1]
        else:
            timer = new_timer(when, callback, args, self, context)
        self._timers.push(timer)
        return timer

    def call_at(
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: Context | None = None,
    ) -> TimerHandle:
        """Arrange for a callback to be called at ``when``, on the clock of time()."""
        if when is None:
            raise TypeError("when cannot be None")
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_at")
            timer = TimerHandle(when, callback, args, self, context)
            del timer._source_traceback[-1]
        else:
            timer = new_timer(when, callback, args, self, context)
        self._timers.push(timer)
        return timer

    def _add_callback(self, handle: Handle) -> None:
        """Queue an existing Handle, unless it is cancelled."""
        if not handle._cancelled:
            self._ready.append(handle)

    def _timer_handle_cancelled(self, handle: TimerHandle) -> None:
        """Called by TimerHandle.cancel(): one more dead entry in the heap."""
        self._timers.note_cancelled(handle)

    def _write_to_self(self) -> None:
        """Wake a sleeping poll (coalesced)."""
        self._waker.wake()

    # --- file descriptors -----------------------------------------------------

    # The public four refuse an fd a live transport owns; the private twins,
    # used by transports and the sock_* methods, do not check.

    def add_reader(
        self, fd: FileDescriptorLike, callback: Callable[..., object], *args: Any
    ) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is readable."""
        self._ensure_fd_no_transport(fd)
        self._add_fd(fd, READ, callback, args)

    def add_writer(
        self, fd: FileDescriptorLike, callback: Callable[..., object], *args: Any
    ) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is writable."""
        self._ensure_fd_no_transport(fd)
        self._add_fd(fd, WRITE, callback, args)

    def remove_reader(self, fd: FileDescriptorLike) -> bool:
        """Stop watching ``fd`` for reading; return whether it was watched."""
        self._ensure_fd_no_transport(fd)
        return self._remove_fd(fd, READ)

    def remove_writer(self, fd: FileDescriptorLike) -> bool:
        """Stop watching ``fd`` for writing; return whether it was watched."""
        self._ensure_fd_no_transport(fd)
        return self._remove_fd(fd, WRITE)

    def _add_reader(
        self, fd: FileDescriptorLike, callback: Callable[..., object], *args: Any
    ) -> Handle:
        """add_reader() without the transport check; return the Handle."""
        return self._add_fd(fd, READ, callback, args)

    def _add_writer(
        self, fd: FileDescriptorLike, callback: Callable[..., object], *args: Any
    ) -> Handle:
        """add_writer() without the transport check; return the Handle."""
        return self._add_fd(fd, WRITE, callback, args)

    def _remove_reader(self, fd: FileDescriptorLike) -> bool:
        return self._remove_fd(fd, READ)

    def _remove_writer(self, fd: FileDescriptorLike) -> bool:
        return self._remove_fd(fd, WRITE)

    def _ensure_fd_no_transport(self, fd: FileDescriptorLike) -> None:
        """Raise RuntimeError if a transport that is not closing owns ``fd``."""
        fileno = _fileobj_int(fd)
        transport = self._transports.get(fileno)
        if transport is not None and not transport.is_closing():
            raise RuntimeError(f"File descriptor {fd!r} is used by transport {transport!r}")

    def _add_fd(
        self,
        fileobj: FileDescriptorLike,
        event: int,
        callback: Callable[..., object],
        args: tuple[Any, ...],
    ) -> Handle:
        """Install the reader (``event`` READ) or writer (WRITE) Handle of ``fileobj``."""
        fd = _fileobj_int(fileobj)
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if fd < 0:
            raise ValueError(f"Invalid file descriptor: {fd}")
        handle = Handle(callback, args, self, None)
        entry = self._fds.get(fd)
        if entry is None:
            entry = [None, None, fileobj]
            old = None
        else:
            old = entry[event - 1]
        if self._forks != _fork.count:
            self._leave_parent()
        # The poller first: if it refuses the fd (EPERM), nothing changed.
        self._poller.modify(fd, _mask(entry) | event)
        entry[event - 1] = handle
        self._fds[fd] = entry
        if old is not None:
            old.cancel()
        return handle

    def _remove_fd(self, fileobj: FileDescriptorLike, event: int) -> bool:
        """Drop the reader (``event`` READ) or writer (WRITE) of ``fileobj``.

        Return True if there was one.
        """
        if self._closed:
            _fileobj_int(fileobj)  # asyncio rejects a bad file object even then
            return False
        if self._forks != _fork.count:
            self._leave_parent()
        fd = self._lookup_fd(fileobj)
        entry = self._fds.get(fd)
        if entry is None:
            return False
        old = entry[event - 1]
        entry[event - 1] = None
        events = _mask(entry)
        if not events:
            del self._fds[fd]
        self._poller.modify(fd, events)
        if old is None:
            return False
        old.cancel()
        return True

    def _lookup_fd(self, fileobj: FileDescriptorLike) -> int:
        """Return the fd of ``fileobj``, or of the registration made with this very object.

        As with selectors, a socket closed since it was added (fileno() -1) is
        still found by identity, so that it can be removed.
        """
        try:
            fd = _fileobj_int(fileobj)
            if fd < 0:
                raise ValueError(f"Invalid file descriptor: {fd}")
            return fd
        except ValueError:
            for fd, entry in self._fds.items():
                if entry[2] is fileobj:
                    return fd
            raise

    # --- transports -----------------------------------------------------------

    # asyncio checks the fd is free when making these from 3.12 on.

    def _make_socket_transport(
        self,
        sock: socket.socket,
        protocol: Any,
        waiter: asyncio.Future[Any] | None = None,
        *,
        extra: dict[str, Any] | None = None,
        server: Any = None,
    ) -> SocketTransport:
        if _PY312:
            self._ensure_fd_no_transport(sock)
        return SocketTransport(self, sock, protocol, waiter, extra, server)

    def _make_datagram_transport(
        self,
        sock: socket.socket,
        protocol: Any,
        address: Any = None,
        waiter: asyncio.Future[Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> DatagramTransport:
        if _PY312:
            self._ensure_fd_no_transport(sock)
        return DatagramTransport(self, sock, protocol, address, waiter, extra)

    def _make_read_pipe_transport(
        self,
        pipe: Any,
        protocol: Any,
        waiter: asyncio.Future[Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> ReadPipeTransport:
        return ReadPipeTransport(self, pipe, protocol, waiter, extra)

    def _make_write_pipe_transport(
        self,
        pipe: Any,
        protocol: Any,
        waiter: asyncio.Future[Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> WritePipeTransport:
        return WritePipeTransport(self, pipe, protocol, waiter, extra)

    # --- sock_* coroutines ----------------------------------------------------
    # Each tries its syscall first; only when that would block does it make a
    # future and register a reader/writer that retries (_sock_wait). Cancelling
    # the future unregisters it.

    def _check_sock(self, sock: socket.socket) -> None:
        aio_base_events._check_ssl_socket(sock)  # type: ignore[attr-defined]
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")

    async def sock_recv(self, sock: socket.socket, n: int) -> bytes:
        """Receive up to ``n`` bytes from ``sock``."""
        self._check_sock(sock)
        try:
            return sock.recv(n)
        except (BlockingIOError, InterruptedError):
            pass
        return await self._sock_wait(READ, sock, _sock_retry, sock, "recv", n)

    async def sock_recv_into(self, sock: socket.socket, buf: bytearray | memoryview) -> int:
        """Receive into ``buf``; return the number of bytes received."""
        self._check_sock(sock)
        try:
            return sock.recv_into(buf)
        except (BlockingIOError, InterruptedError):
            pass
        return await self._sock_wait(READ, sock, _sock_retry, sock, "recv_into", buf)

    async def sock_recvfrom(self, sock: socket.socket, bufsize: int) -> tuple[bytes, Any]:
        """Receive a datagram of up to ``bufsize`` bytes; return ``(data, address)``."""
        self._check_sock(sock)
        try:
            return sock.recvfrom(bufsize)
        except (BlockingIOError, InterruptedError):
            pass
        return await self._sock_wait(READ, sock, _sock_retry, sock, "recvfrom", bufsize)

    async def sock_recvfrom_into(
        self, sock: socket.socket, buf: bytearray | memoryview, nbytes: int = 0
    ) -> tuple[int, Any]:
        """Receive a datagram into ``buf``; return ``(nbytes, address)``."""
        self._check_sock(sock)
        if not nbytes:
            nbytes = len(buf)
        try:
            return sock.recvfrom_into(buf, nbytes)
        except (BlockingIOError, InterruptedError):
            pass
        return await self._sock_wait(READ, sock, _sock_retry, sock, "recvfrom_into", buf, nbytes)

    async def sock_sendall(self, sock: socket.socket, data: _Bytes) -> None:
        """Send all of ``data``; return None."""
        self._check_sock(sock)
        try:
            n = sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        if n == len(data):
            return
        # pos: a list, so the retries share their progress.
        return await self._sock_wait(WRITE, sock, _sock_sendall_more, sock, memoryview(data), [n])

    async def sock_sendto(self, sock: socket.socket, data: _Bytes, address: Any) -> int:
        """Send a datagram to ``address``; return the number of bytes sent."""
        self._check_sock(sock)
        try:
            return sock.sendto(data, address)
        except (BlockingIOError, InterruptedError):
            pass
        return await self._sock_wait(WRITE, sock, _sock_retry, sock, "sendto", data, 0, address)

    def _sock_wait(
        self, event: int, sock: socket.socket, callback: Callable[..., None], *args: Any
    ) -> asyncio.Future[Any]:
        """Return a future that ``callback(fut, *args)`` settles on ``sock``'s readiness."""
        fut = self.create_future()
        fd = sock.fileno()
        self._ensure_fd_no_transport(fd)
        handle = self._add_fd(fd, event, callback, (fut, *args))
        fut.add_done_callback(functools.partial(self._sock_done, fd, event, handle))
        return fut

    def _sock_done(self, fd: int, event: int, handle: Handle, fut: asyncio.Future[Any]) -> None:
        # Unless something else replaced our registration (cancelling our handle).
        if not handle._cancelled:
            self._remove_fd(fd, event)

    # --- running --------------------------------------------------------------

    def stop(self) -> None:
        """Stop the loop after the current iteration's callbacks have run."""
        self._stopping = True

    def _run_until_stopped(self) -> None:
        """Run iterations until stop() was called, then clear the stop request."""
        try:
            self._iterate_until_stopped()
        finally:
            self._stopping = False
            self._stats.run_ended(self.time())

    def _iterate_until_stopped(self) -> None:
        # A frame of its own: CPython 3.12-3.14 leave some backward jump of a loop,
        # where Ctrl+C's KeyboardInterrupt can be raised, outside the exception table
        # of a try around it in the same function (gh-130279), and the finally would
        # not run. The call above is always covered.
        while True:
            self._run_once()
            if self._stopping:
                return

    def _stats_counters(self) -> dict[str, Any]:
        """The core's fields of loop.stats(), as a dict; any thread may call it."""
        return counters(self)

    def _reset_stats(self) -> None:
        """Zero the counters, the lag maximum and histogram (the loop's thread only)."""
        self._stats.reset()

    def close(self) -> None:
        """Close the loop: drop callbacks and timers, close the poller and waker."""
        if self._thread_id is not None:
            raise RuntimeError("Cannot close a running event loop")
        if self._closed:
            return
        self._closed = True
        self._ready.clear()
        self._timers.clear()
        self._fds.clear()
        self._poller.close()
        self._waker.close()

    def _idle_now(self) -> bool:
        """True when the next iteration would only poll: nothing ready, no timer due.

        A transport that just handled a read may then read again at once instead of
        asking the poller first; nothing else could have run in between.
        """
        if self._ready or self._stopping or self._debug:
            return False
        deadline = self._timers.first_deadline()
        return deadline is None or deadline > self.time() + self._clock_resolution

    def _run_once(self) -> None:
        """One iteration: poll, queue fd callbacks and due timers, run what is ready."""
        ready = self._ready
        timers = self._timers

        # 1. How long to poll. A clock read costs as much as running a small callback:
        # it is read before the poll only for timers or a poll that may block, and
        # once after it (for the statistics and the due timers).
        now = None
        timeout: float
        if ready or self._stopping:
            timeout = 0
        else:
            deadline = timers.first_deadline()
            if deadline is None:
                timeout = -1
            else:
                now = self.time()
                timeout = deadline - now
                if timeout <= 0:
                    timeout = 0
                elif timeout > MAX_POLL_TIMEOUT:
                    timeout = MAX_POLL_TIMEOUT
                else:
                    # Whole milliseconds, rounded up: never wake before the deadline
                    # only to poll again with a zero timeout.
                    timeout = ceil(timeout * 1000) / 1000

        # 2. Poll; turn events into ready handles. With nothing but the waker
        # registered, a zero-timeout poll could only report the waker, whose sole
        # job is to end a sleep: skip that syscall, as the Cython twin does. (A
        # pending wake-up stays readable and ends the next sleeping poll at once.)
        # For stats.py: a poll that cannot block counts as busy time, unclocked.
        carried = bool(ready)
        poll_start = (self.time() if now is None else now) if timeout else 0.0
        if timeout or self._fds:
            if self._forks != _fork.count:
                self._leave_parent()
            now = None  # the poll took time: read the clock again
            events = self._poller.poll(timeout)
            if events:
                self._process_events(events)

        # 3. Due timers.
        if now is None:
            now = self.time()
        stats = self._stats
        if timers._heap:
            ready_since = stats.ready_since(carried, timers.first_deadline(), now)
            timers.pop_due(now + self._clock_resolution, ready.append)
        else:
            ready_since = stats.ready_since(carried, None, now)

        # 4. Run what is ready now; what these callbacks queue waits for the next turn.
        ntodo = len(ready)
        stats.iteration(poll_start, now, ready_since, ntodo)
        if self._debug or self._slow_threshold != inf:
            self._run_ready_debug(ntodo)
            return
        popleft = ready.popleft
        for _ in range(ntodo):
            handle = popleft()
            if handle._cancelled:
                continue
            if handle.__class__ is not Handle and handle.__class__ is not TimerHandle:
                # A foreign handle runs as it says, as in the Cython twin;
                # asyncio's _ThreadSafeHandle the way its _run would.
                if handle.__class__ is _ThreadSafeHandle and THREADSAFE_NATIVE:
                    run_threadsafe_handle(handle)
                else:
                    handle._run()
                continue
            # Handle._run() written out: a call less per callback. Read in this
            # order, see Handle._run.
            args = handle._args
            callback = handle._callback
            try:
                if not args:
                    handle._context.run(callback)
                elif len(args) == 1:  # future callbacks: cb(fut)
                    handle._context.run(callback, args[0])
                else:
                    handle._context.run(callback, *args)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                if callback is not None or not handle._cancelled:
                    handle._report(exc)  # else: cancelled meanwhile, never started
        # An exception's traceback would otherwise keep them alive.
        handle = args = callback = None  # type: ignore[assignment]

    def _process_events(self, events: list[tuple[int, int]]) -> None:
        """Queue the reader/writer Handles of the polled ``(fd, events)`` pairs."""
        fds = self._fds
        append = self._ready.append
        waker_fd = self._waker.fileno()
        stale = False
        nevents = 0
        for fd, mask in events:
            if fd == waker_fd:
                self._waker.drain()
                continue
            entry = fds.get(fd)
            if entry is None:
                stale = True
                continue
            nevents += 1
            reader, writer = entry[0], entry[1]
            if mask & READ and reader is not None:
                if reader._cancelled:
                    self._remove_fd(fd, READ)
                else:
                    append(reader)
            if mask & WRITE and writer is not None:
                if writer._cancelled:
                    self._remove_fd(fd, WRITE)
                else:
                    append(writer)
        self._stats.io_events += nevents
        if stale:
            self._replace_poller()

    def _replace_poller(self) -> None:
        """Move the waker and every fd of the table to a fresh Poller; close the old one.

        The cure for a stale registration: epoll watches file descriptions, so an fd
        closed while registered stays in the set as long as a dup of it lives, and
        keeps reporting under its old number. That entry cannot be removed by number:
        EPOLL_CTL_DEL fails with EBADF once the number is closed, and once the number
        is reused it names the new file (ENOENT, or that file's own entry). Left
        alone, a level-triggered entry that stays ready makes every poll return at
        once (the loop spins) and fires the callbacks of whatever fd reuses the
        number. Only closing the epoll instance drops it. kqueue drops an fd's
        filters when it is closed, so there this never runs. As the Cython twin does;
        docs/core.md, "Stale fds are forgotten".
        """
        self._rebuild_poller(close_old=True)

    def _rebuild_poller(self, close_old: bool) -> None:
        """A fresh Poller with the waker and every fd of the table in it; the old one
        closed (``close_old``), or else let go of (kept in fork.abandoned)."""
        old = self._poller
        new = Poller(old.name)
        new.modify(self._waker.fileno(), READ)
        for fd, entry in self._fds.items():
            try:
                new.modify(fd, _mask(entry))
            except OSError:
                # Closed while registered (the user's bug): no longer watchable. It
                # stays in the table, so that remove_reader() still finds it.
                pass
        self._poller = new
        if close_old:
            old.close()
        else:
            _fork.abandoned.append(old)

    def _leave_parent(self) -> None:
        """In a fork() child, before the loop's first syscall there: stop sharing the
        parent's poller and waker (fork.py says why), taking the fd table along."""
        self._forks = _fork.count
        old_waker, self._waker = self._waker, Waker()
        old_waker.close()  # the child's copies only: the parent's fds stay open
        # A thread's wake-up may have gone to the old waker: one spare ends any doubt.
        self._waker.wake()
        # Closing the child's copy of an inherited epoll fd leaves the parent's
        # instance alone; a kqueue fd was not inherited, and its number may be reused.
        self._rebuild_poller(close_old=self._poller.name == "epoll")

    def _run_ready_debug(self, ntodo: int) -> None:
        """Step 4 timed: in debug mode track _current_handle and warn about slow
        callbacks; report them to the slow-callback hook if one is set."""
        popleft = self._ready.popleft
        debug = self._debug
        for _ in range(ntodo):
            handle = popleft()
            if handle._cancelled:
                continue
            try:
                if debug:
                    self._current_handle = handle
                t0 = self.time()
                handle._run()
                dt = self.time() - t0
                if debug and dt >= self.slow_callback_duration:
                    logger.warning(
                        "Executing %s took %.3f seconds",
                        aio_base_events._format_handle(handle),  # type: ignore[attr-defined]
                        dt,
                    )
                if dt >= self._slow_threshold:
                    self._slow_callback(handle, dt)
            finally:
                if debug:
                    self._current_handle = None
        # The last handle would stay in this frame, which the traceback of an
        # exception raised in its callback holds (through f_back): a cycle when the
        # handle's arguments hold that exception (a failed future). As _run_once does.
        handle = None  # type: ignore[assignment]


def _sock_retry(fut: asyncio.Future[Any], sock: socket.socket, method: str, *args: Any) -> None:
    """Readiness callback of the sock_* methods: retry ``sock.<method>(*args)`` into ``fut``."""
    if fut.done():  # cancelled meanwhile; the done callback unregisters
        return
    try:
        # Looked up anew each time, as asyncio does (a wrapper may swap the method).
        result = getattr(sock, method)(*args)
    except (BlockingIOError, InterruptedError):
        return  # spurious readiness: wait for the next event
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        fut.set_exception(exc)
        # The future now holds the traceback, which holds this frame: no cycle.
        fut = None  # type: ignore[assignment]
    else:
        fut.set_result(result)


def _sock_sendall_more(
    fut: asyncio.Future[None], sock: socket.socket, view: memoryview, pos: list[int]
) -> None:
    """Writability callback of sock_sendall: send the next part of ``view``."""
    if fut.done():
        return
    start = pos[0]
    try:
        n = sock.send(view[start:])
    except (BlockingIOError, InterruptedError):
        return
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        fut.set_exception(exc)
        fut = None  # type: ignore[assignment]  # as in _sock_retry
        return
    start += n
    if start == len(view):
        fut.set_result(None)
    else:
        pos[0] = start

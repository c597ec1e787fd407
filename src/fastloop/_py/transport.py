"""Transports of the pure-Python core, what they share: helpers, the bases, the
asyncio twins. The kinds are in ``stream.py``, ``datagram.py`` and ``pipe.py``.

Everything observable is asyncio's (``selector_events._SelectorSocketTransport``,
``_SelectorDatagramTransport``, ``unix_events._UnixReadPipeTransport`` and
``_UnixWritePipeTransport`` of the running interpreter); docs/transports.md is
the contract and lists where we differ on purpose. The code is our own, shaped
for the hot path: one syscall per readiness event, writes tried at once, bound
socket methods, a running count of buffered bytes.

The transports talk to the core only through ``loop._add_reader/_add_writer``,
``loop._remove_reader/_remove_writer``, ``loop.call_soon``, ``loop._transports``
and (for ``__repr__``) the fd table ``loop._fds``.
"""

from __future__ import annotations

import collections
import os
import socket
import sys
import warnings
from asyncio import constants as aio_constants
from asyncio import futures as aio_futures
from asyncio import protocols as aio_protocols
from asyncio import transports as aio_transports
from asyncio import trsock as aio_trsock
from asyncio.log import logger
from typing import TYPE_CHECKING, Any

from .poller import READ, WRITE

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

    from _typeshed import ReadableBuffer

    from .coreloop import CoreLoop

MAX_SIZE = 256 * 1024  # bytes asked of one recv()/read()

# write() calls after the connection was lost that pass silently before each
# further one logs a warning.
_CONNLOST_LOG = aio_constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES

try:  # how many buffers one sendmsg() may gather
    SC_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(socket.socket, "sendmsg") else 0
except OSError:
    SC_IOV_MAX = 0

_PY312 = sys.version_info >= (3, 12)
_PY313 = sys.version_info >= (3, 13)


_set_result_unless_cancelled = (
    aio_futures._set_result_unless_cancelled  # type: ignore[attr-defined]
)
_BufferedProtocol = aio_protocols.BufferedProtocol
_os_readv = os.readv
_os_write = os.write


def _read_view(loop: CoreLoop) -> memoryview:
    """Return the loop's read buffer (made on first use), a memoryview of MAX_SIZE bytes.

    Reads land there and only what arrived is copied out into a fresh bytes
    object, before any protocol code runs (so one buffer serves every transport
    of the loop). asyncio's recv(256 KiB) instead allocates 256 KiB per call and
    shrinks it: measured 4-7x slower for 100 B to 250 KiB messages.
    """
    view = loop._read_view
    if view is None:
        view = loop._read_view = memoryview(bytearray(MAX_SIZE))
    return view


def _polling(loop: CoreLoop, fd: int, event: int) -> bool:
    """Return whether ``loop`` watches ``fd`` for ``event`` (READ or WRITE)."""
    entry = loop._fds.get(fd)
    return entry is not None and entry[event - 1] is not None


def _unsent(data: ReadableBuffer, n: int) -> bytes | memoryview:
    """Return ``data`` from byte ``n`` on, in a form the caller can no longer change.

    bytes are immutable, so a view is enough; bytearrays and other buffers are
    copied (asyncio 3.12 keeps a view, so a caller reusing its bytearray would
    change queued data, or fail to resize it). Multi-byte formats (array('i'))
    become byte views, so that len() counts bytes.
    """
    if isinstance(data, bytes):
        return memoryview(data)[n:] if n else data
    view = memoryview(data)
    if view.itemsize != 1 or view.ndim != 1:
        view = view.cast("B")
    if view.readonly and isinstance(view.obj, bytes):
        return view[n:]
    return bytes(view[n:])


class _Transport:
    """What every transport has: extra info, protocol, closing state."""

    # __dict__: as on asyncio's transports, a test may replace a method on one
    # instance (transport.pause_reading = Mock()).
    __slots__ = ("_extra", "_loop", "_protocol", "_closing", "__weakref__", "__dict__")

    _extra: dict[str, Any]
    # The loop and the protocol are let go (None) once connection_lost() ran;
    # only a closed transport's __repr__ and close() still look.
    _loop: Any
    _protocol: Any
    _closing: bool

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Return optional transport information (``socket``, ``peername``, ``pipe``...)."""
        return self._extra.get(name, default)

    def get_protocol(self) -> Any:
        return self._protocol

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol

    def is_closing(self) -> bool:
        """Return True if the transport is closing or closed."""
        return self._closing

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        # isinstance(transport, asyncio.Transport) (see _asyncio_twin).
        return _ASYNCIO_TWINS.get(type(self), type(self))

    def _report(self, message: str, exc: BaseException) -> None:
        """Hand ``exc`` to the loop's exception handler, as asyncio's transports do."""
        self._loop.call_exception_handler(
            {"message": message, "exception": exc, "transport": self, "protocol": self._protocol}
        )


class _FlowControl(_Transport):
    """Write flow control, as asyncio's transports._FlowControlMixin.

    pause_writing() once when the buffer grows above the high mark,
    resume_writing() once when it drains to the low mark or below.
    """

    __slots__ = ("_protocol_paused", "_high_water", "_low_water")

    _protocol_paused: bool
    _high_water: int
    _low_water: int

    if TYPE_CHECKING:

        def get_write_buffer_size(self) -> int: ...  # each transport's own

    def _init_flow_control(self) -> None:
        self._protocol_paused = False
        self._set_write_buffer_limits()

    def _maybe_pause_protocol(self) -> None:
        if self.get_write_buffer_size() <= self._high_water or self._protocol_paused:
            return
        self._protocol_paused = True
        try:
            self._protocol.pause_writing()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._report("protocol.pause_writing() failed", exc)

    def _maybe_resume_protocol(self) -> None:
        if self._protocol_paused and self.get_write_buffer_size() <= self._low_water:
            self._protocol_paused = False
            try:
                self._protocol.resume_writing()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._report("protocol.resume_writing() failed", exc)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """Return ``(low, high)``."""
        return (self._low_water, self._high_water)

    def _set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high_water = high
        self._low_water = low

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the marks; default high is 64 KiB, low is high // 4."""
        self._set_write_buffer_limits(high=high, low=low)
        self._maybe_pause_protocol()


class _Reader(_Transport):
    """Pausing and resuming reads: what the socket and read pipe transports share."""

    __slots__ = ()

    _paused: bool

    def _reading_fd(self) -> int:
        raise NotImplementedError

    def _read_ready(self) -> None:
        raise NotImplementedError

    def _start_reading(self) -> None:
        if self.is_reading():
            self._loop._add_reader(self._reading_fd(), self._read_ready)

    def is_reading(self) -> bool:
        return not self._closing and not self._paused

    def pause_reading(self) -> None:
        if not self.is_reading():
            return
        self._paused = True
        self._loop._remove_reader(self._reading_fd())
        if self._loop.get_debug():
            logger.debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._start_reading()
        if self._loop.get_debug():
            logger.debug("%r resumes reading", self)


class _SocketBase(_FlowControl, _Reader):
    """What stream and datagram socket transports share (asyncio's _SelectorTransport).

    ``_buffer`` is a deque of queued writes, ``_buffer_size`` their size in bytes.
    ``_conn_lost`` counts from the moment connection_lost() is scheduled.
    """

    __slots__ = (
        "_sock",
        "_sock_fd",
        "_server",
        "_buffer",
        "_buffer_size",
        "_conn_lost",
        "_paused",
        "_rbuf",
    )

    _sock: Any  # the socket.socket, None once closed
    _sock_fd: int
    _server: Any
    _buffer: collections.deque[Any]
    _buffer_size: int
    _conn_lost: int
    _paused: bool
    _rbuf: memoryview

    max_size = MAX_SIZE  # what one read may return (read-only here: the buffer's size)

    if TYPE_CHECKING:

        def _read_ready(self) -> None: ...  # stream or datagram

    def _init_socket(
        self,
        loop: CoreLoop,
        sock: socket.socket,
        protocol: Any,
        extra: dict[str, Any] | None,
        server: Any,
    ) -> None:
        self._extra = {} if extra is None else extra
        self._loop = loop
        self._init_flow_control()
        self._extra["socket"] = aio_trsock.TransportSocket(sock)
        try:
            self._extra["sockname"] = sock.getsockname()
        except OSError:
            self._extra["sockname"] = None
        if "peername" not in self._extra:
            try:
                self._extra["peername"] = sock.getpeername()
            except OSError:
                self._extra["peername"] = None
        self._sock = sock
        self._sock_fd = sock.fileno()
        self.set_protocol(protocol)
        self._server = server
        self._buffer = collections.deque()
        self._buffer_size = 0
        self._conn_lost = 0
        self._closing = False
        self._paused = False
        self._rbuf = _read_view(loop)
        if server is not None:
            if _PY313:
                server._attach(self)
            else:
                server._attach()
        loop._transports[self._sock_fd] = self

    def _start(self, waiter: asyncio.Future[Any] | None) -> None:
        """Schedule connection_made, then reading, then the waiter: asyncio's order."""
        call_soon = self._loop.call_soon
        call_soon(self._protocol.connection_made, self)
        # Only read once connection_made() has run.
        call_soon(self._start_reading)
        if waiter is not None:
            call_soon(_set_result_unless_cancelled, waiter, None)

    def _reading_fd(self) -> int:
        return self._sock_fd

    def __repr__(self) -> str:
        info = [self.__class__.__name__]
        if self._sock is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._sock_fd}")
        loop = self._loop
        if loop is not None and not loop.is_closed():
            reading = _polling(loop, self._sock_fd, READ)
            info.append("read=polling" if reading else "read=idle")
            writing = "polling" if _polling(loop, self._sock_fd, WRITE) else "idle"
            info.append(f"write=<{writing}, bufsize={self.get_write_buffer_size()}>")
        return "<{}>".format(" ".join(info))

    def get_write_buffer_size(self) -> int:
        return self._buffer_size

    def abort(self) -> None:
        """Close at once: buffered data is lost, connection_lost(None) follows."""
        self._force_close(None)

    def close(self) -> None:
        """Stop reading; connection_lost(None) once the buffer is flushed."""
        if self._closing:
            return
        self._closing = True
        self._loop._remove_reader(self._sock_fd)
        if not self._buffer:
            self._conn_lost += 1
            self._loop._remove_writer(self._sock_fd)
            self._loop.call_soon(self._call_connection_lost, None)

    def __del__(self, _warn: Callable[..., object] = warnings.warn) -> None:
        sock = getattr(self, "_sock", None)  # None too if __init__ failed early
        if sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            sock.close()
            server = getattr(self, "_server", None)
            if _PY313 and server is not None:
                server._detach(self)

    def _fatal_error(self, exc: BaseException, message: str = "Fatal error on transport") -> None:
        # OSErrors (resets, broken pipes) are the peer's doing: debug log only.
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._report(message, exc)
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        if self._buffer:
            self._buffer.clear()
            self._buffer_size = 0
            self._loop._remove_writer(self._sock_fd)
        if not self._closing:
            self._closing = True
            self._loop._remove_reader(self._sock_fd)
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._sock.close()
            self._sock = None
            self._protocol = None
            self._loop = None
            server = self._server
            if server is not None:
                if _PY313:
                    server._detach(self)
                else:
                    server._detach()
                self._server = None


# The Cython twin cannot derive from asyncio's Python transport classes, so neither
# does this one, yet programs (and CPython's tests) check isinstance(transport,
# asyncio.Transport). isinstance() falls back to obj.__class__ when type(obj) is not
# a subclass (how unittest.mock's spec objects pass): each transport's __class__ is a
# Python twin, of the same name, that derives from the public asyncio classes the
# stdlib's own transport derives from.
_ASYNCIO_TWINS: dict[type, type] = {}


def _asyncio_twin(cls: type, stdlib_cls: type) -> type:
    """Make isinstance(an instance of cls, C) true for each public asyncio transport
    class C that stdlib_cls derives from (which ones varies by version); return the twin."""
    public = [c for c in (aio_transports.Transport, aio_transports.DatagramTransport,
                          aio_transports.ReadTransport, aio_transports.WriteTransport)
              if issubclass(stdlib_cls, c)]
    bases = tuple(c for c in public if not any(o is not c and issubclass(o, c) for o in public))
    twin = type(cls.__name__, bases, {
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
        "__slots__": (),
    })
    _ASYNCIO_TWINS[cls] = twin
    return twin

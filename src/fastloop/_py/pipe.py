"""Pipe transports of the pure-Python core: either end of a pipe, FIFO, socket or
character device."""

from __future__ import annotations

import errno
import os
import stat
import sys
import warnings
from asyncio import unix_events as aio_unix_events
from asyncio.log import logger
from typing import TYPE_CHECKING, Any

from .poller import READ, WRITE
from .transport import (
    _CONNLOST_LOG,
    MAX_SIZE,
    _asyncio_twin,
    _FlowControl,
    _os_readv,
    _os_write,
    _polling,
    _read_view,
    _Reader,
    _set_result_unless_cancelled,
)

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Iterable

    from _typeshed import ReadableBuffer

    from .coreloop import CoreLoop


def _pipe_mode(fd: int) -> int:
    return os.fstat(fd).st_mode


class ReadPipeTransport(_Reader):
    """Read side of a pipe, FIFO, character device or socket."""

    __slots__ = ("_pipe", "_fileno", "_paused", "_rbuf")

    _pipe: Any  # None once closed, as are _fileno and _protocol
    _fileno: Any
    _paused: bool
    _rbuf: memoryview

    max_size = MAX_SIZE

    def __init__(
        self,
        loop: CoreLoop,
        pipe: Any,
        protocol: Any,
        waiter: asyncio.Future[Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self._extra = {} if extra is None else extra
        self._extra["pipe"] = pipe
        self._loop = loop
        # The fd first: a pipe that has none leaves no half-open transport to warn of.
        self._fileno = pipe.fileno()
        self._pipe = pipe
        self._protocol = protocol
        self._closing = False
        self._paused = False
        self._rbuf = _read_view(loop)
        mode = _pipe_mode(self._fileno)
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
            self._pipe = self._fileno = self._protocol = None
            raise ValueError("Pipe transport is for pipes/sockets only.")
        os.set_blocking(self._fileno, False)
        loop.call_soon(protocol.connection_made, self)
        loop.call_soon(self._start_reading)  # after connection_made()
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter, None)

    def _reading_fd(self) -> int:
        return int(self._fileno)

    def __repr__(self) -> str:
        info = [self.__class__.__name__]
        if self._pipe is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._fileno}")
        # A closed loop polls nothing: asyncio then says 'open'.
        if self._pipe is not None and self._loop is not None and not self._loop.is_closed():
            info.append("polling" if _polling(self._loop, self._fileno, READ) else "idle")
        elif self._pipe is not None:
            info.append("open")
        else:
            info.append("closed")
        return "<{}>".format(" ".join(info))

    def _read_ready(self) -> None:
        try:
            n = _os_readv(self._fileno, [self._rbuf])  # see _read_view
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            self._fatal_error(exc, "Fatal read error on pipe transport")
        else:
            if n:
                self._protocol.data_received(self._rbuf[:n].tobytes())
                return
            if self._loop.get_debug():
                logger.info("%r was closed by peer", self)
            self._closing = True
            self._loop._remove_reader(self._fileno)
            self._loop.call_soon(self._protocol.eof_received)
            self._loop.call_soon(self._call_connection_lost, None)

    def close(self) -> None:
        if not self._closing:
            self._close(None)

    def __del__(self, _warn: Callable[..., object] = warnings.warn) -> None:
        pipe = getattr(self, "_pipe", None)
        if pipe is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            pipe.close()

    def _fatal_error(
        self, exc: BaseException, message: str = "Fatal error on pipe transport"
    ) -> None:
        # EIO: the other end of a pty went away, an ordinary end.
        if isinstance(exc, OSError) and exc.errno == errno.EIO:
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._report(message, exc)
        self._close(exc)

    def _close(self, exc: BaseException | None) -> None:
        self._closing = True
        self._loop._remove_reader(self._fileno)
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._pipe.close()
            self._pipe = None
            self._protocol = None
            self._loop = None


class WritePipeTransport(_FlowControl):
    """Write side of a pipe, FIFO, character device or socket."""

    __slots__ = ("_pipe", "_fileno", "_buffer", "_conn_lost")

    _pipe: Any  # None once closed, as are _fileno and _protocol
    _fileno: Any
    _buffer: bytearray
    _conn_lost: int

    def __init__(
        self,
        loop: CoreLoop,
        pipe: Any,
        protocol: Any,
        waiter: asyncio.Future[Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self._extra = {} if extra is None else extra
        self._loop = loop
        self._init_flow_control()
        self._extra["pipe"] = pipe
        self._fileno = pipe.fileno()  # first, as in ReadPipeTransport
        self._pipe = pipe
        self._protocol = protocol
        self._buffer = bytearray()
        self._conn_lost = 0
        self._closing = False  # close() or write_eof() was called
        mode = _pipe_mode(self._fileno)
        is_fifo = stat.S_ISFIFO(mode)
        is_socket = stat.S_ISSOCK(mode)
        if not (stat.S_ISCHR(mode) or is_fifo or is_socket):
            self._pipe = self._fileno = self._protocol = None
            raise ValueError("Pipe transport is only for pipes, sockets and character devices")
        os.set_blocking(self._fileno, False)
        loop.call_soon(protocol.connection_made, self)
        # The read end going away makes our end readable (EOF / hang-up): watch for
        # it, to report a broken pipe without waiting for a write. (AIX: sockets only.)
        if is_socket or (is_fifo and not sys.platform.startswith("aix")):
            loop.call_soon(loop._add_reader, self._fileno, self._read_ready)
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter, None)

    def __repr__(self) -> str:
        info = [self.__class__.__name__]
        if self._pipe is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._fileno}")
        # A closed loop polls nothing: asyncio then says 'open'.
        if self._pipe is not None and self._loop is not None and not self._loop.is_closed():
            info.append("polling" if _polling(self._loop, self._fileno, WRITE) else "idle")
            info.append(f"bufsize={self.get_write_buffer_size()}")
        elif self._pipe is not None:
            info.append("open")
        else:
            info.append("closed")
        return "<{}>".format(" ".join(info))

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    def _read_ready(self) -> None:
        # The reader went away.
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        if self._buffer:
            self._close(BrokenPipeError())
        else:
            self._close()

    # What asyncio's write pipe transport inherits from asyncio.ReadTransport unchanged.
    def is_reading(self) -> bool:
        raise NotImplementedError

    def pause_reading(self) -> None:
        raise NotImplementedError

    def resume_reading(self) -> None:
        raise NotImplementedError

    def write(self, data: ReadableBuffer) -> None:
        """Write ``data`` now if possible; buffer what the pipe does not take."""
        assert isinstance(data, (bytes, bytearray, memoryview)), repr(data)
        if not isinstance(data, bytes):
            data = memoryview(data)
            if data.itemsize != 1 or data.ndim != 1:
                data = data.cast("B")  # len() must count bytes
        if not data:
            return
        if self._conn_lost or self._closing:
            if self._conn_lost >= _CONNLOST_LOG:
                logger.warning("pipe closed by peer or os.write(pipe, data) raised exception.")
            self._conn_lost += 1
            return
        if not self._buffer:
            try:
                n = _os_write(self._fileno, data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._conn_lost += 1
                self._fatal_error(exc, "Fatal write error on pipe transport")
                return
            if n == len(data):
                return
            if n > 0:
                data = memoryview(data)[n:]
            self._loop._add_writer(self._fileno, self._write_ready)
        self._buffer += data  # a copy: the caller may reuse its buffer
        self._maybe_pause_protocol()

    def _write_ready(self) -> None:
        """The fd is writable: flush as much of the buffer as the pipe takes."""
        try:
            n = _os_write(self._fileno, self._buffer)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._buffer.clear()
            self._conn_lost += 1
            # _fatal_error() does not remove the writer when the buffer is empty.
            self._loop._remove_writer(self._fileno)
            self._fatal_error(exc, "Fatal write error on pipe transport")
            return
        if n == len(self._buffer):
            self._buffer.clear()
            self._loop._remove_writer(self._fileno)
            self._maybe_resume_protocol()  # may write more
            if self._closing:
                self._loop._remove_reader(self._fileno)
                self._call_connection_lost(None)
        elif n > 0:
            del self._buffer[:n]

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """Close the pipe once the buffer is flushed."""
        if self._closing:
            return
        assert self._pipe
        self._closing = True
        if not self._buffer:
            self._loop._remove_reader(self._fileno)
            self._loop.call_soon(self._call_connection_lost, None)

    def writelines(self, list_of_data: Iterable[ReadableBuffer]) -> None:
        self.write(b"".join(list_of_data))

    def close(self) -> None:
        if self._pipe is not None and not self._closing:
            self.write_eof()  # all a write pipe needs to close

    def __del__(self, _warn: Callable[..., object] = warnings.warn) -> None:
        pipe = getattr(self, "_pipe", None)
        if pipe is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            pipe.close()

    def abort(self) -> None:
        self._close(None)

    def _fatal_error(
        self, exc: BaseException, message: str = "Fatal error on pipe transport"
    ) -> None:
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._report(message, exc)
        self._close(exc)

    def _close(self, exc: BaseException | None = None) -> None:
        self._closing = True
        if self._buffer:
            self._loop._remove_writer(self._fileno)
        self._buffer.clear()
        self._loop._remove_reader(self._fileno)
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._pipe.close()
            self._pipe = None
            self._protocol = None
            self._loop = None


# (typeshed leaves out these private classes.)
_asyncio_twin(ReadPipeTransport, aio_unix_events._UnixReadPipeTransport)  # type: ignore[attr-defined]
_asyncio_twin(WritePipeTransport, aio_unix_events._UnixWritePipeTransport)  # type: ignore[attr-defined]

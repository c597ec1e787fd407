"""Datagram transports of the pure-Python core: UDP and Unix datagram sockets."""

from __future__ import annotations

import socket
from asyncio import selector_events as aio_selector_events
from asyncio.log import logger
from typing import TYPE_CHECKING, Any

from .transport import _CONNLOST_LOG, _PY313, _asyncio_twin, _SocketBase

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

    from _typeshed import ReadableBuffer

    from .coreloop import CoreLoop


# 3.13 counts 8 bytes of header per queued datagram and lets empty datagrams through.
_DGRAM_HEADER = 8 if _PY313 else 0
# At most this many datagrams are read per readiness report (libuv reads up to 32).
DGRAMS_PER_WAKEUP = 16


class DatagramTransport(_SocketBase):
    """Transport over a datagram socket (UDP or Unix), connected or not."""

    __slots__ = ("_address", "_recvfrom_into")

    _address: Any
    _recvfrom_into: Callable[[Any], tuple[int, Any]]

    def __init__(
        self,
        loop: CoreLoop,
        sock: socket.socket,
        protocol: Any,
        address: Any = None,
        waiter: asyncio.Future[Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self._recvfrom_into = sock.recvfrom_into
        self._init_socket(loop, sock, protocol, extra, None)
        self._address = address
        self._start(waiter)

    def _read_ready(self) -> None:
        """The fd is readable: datagrams to the protocol.

        While the loop has nothing else to do, the next datagram is read at once: the
        poll in between would only report this socket again. Bounded, so that a flood
        cannot keep other sockets waiting long.
        """
        if self._conn_lost:
            return
        for i in range(DGRAMS_PER_WAKEUP):
            if i and (self._closing or self._paused or not self._loop._idle_now()):
                return
            try:
                n, addr = self._recvfrom_into(self._rbuf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal read error on datagram transport")
                return
            self._protocol.datagram_received(self._rbuf[:n].tobytes(), addr)

    def _send_one(self, data: ReadableBuffer, addr: Any) -> None:
        if self._extra["peername"]:
            self._sock.send(data)
        else:
            self._sock.sendto(data, addr)

    # What asyncio's datagram transport inherits from asyncio.WriteTransport unchanged.
    def write(self, data: ReadableBuffer) -> None:
        raise NotImplementedError

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        raise NotImplementedError

    def can_write_eof(self) -> bool:
        raise NotImplementedError

    def sendto(self, data: ReadableBuffer, addr: Any = None) -> None:
        """Send one datagram, at once if nothing is queued."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        if not data and not _PY313:
            return
        if self._address:
            if addr not in (None, self._address):
                raise ValueError(f"Invalid address: must be None or {self._address}")
            addr = self._address
        if self._conn_lost and self._address:
            if self._conn_lost >= _CONNLOST_LOG:
                logger.warning("socket.send() raised exception.")
            self._conn_lost += 1
            return
        if not self._buffer:
            try:
                self._send_one(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                self._loop._add_writer(self._sock_fd, self._sendto_ready)
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on datagram transport")
                return
        data = bytes(data)  # our own copy: the caller may reuse its buffer
        self._buffer.append((data, addr))
        self._buffer_size += len(data) + _DGRAM_HEADER
        self._maybe_pause_protocol()

    def _sendto_ready(self) -> None:
        """The fd is writable: send queued datagrams until the socket would block."""
        buffer = self._buffer
        while buffer:
            data, addr = buffer[0]
            try:
                self._send_one(data, addr)
            except (BlockingIOError, InterruptedError):
                break  # try again on the next writable event
            except OSError as exc:
                self._dequeue()
                self._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._dequeue()
                self._fatal_error(exc, "Fatal write error on datagram transport")
                return
            self._dequeue()
        self._maybe_resume_protocol()  # may send more
        if not buffer:
            self._loop._remove_writer(self._sock_fd)
            if self._closing:
                self._conn_lost += 1  # see SocketTransport._write_ready
                self._call_connection_lost(None)

    def _dequeue(self) -> None:
        data, _ = self._buffer.popleft()
        self._buffer_size -= len(data) + _DGRAM_HEADER


# (typeshed leaves out this private class.)
_asyncio_twin(DatagramTransport, aio_selector_events._SelectorDatagramTransport)  # type: ignore[attr-defined]

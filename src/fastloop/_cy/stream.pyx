# Stream transports: TCP and Unix stream sockets (transport.pyx has the bases).

from types import SimpleNamespace as types_SimpleNamespace

cdef str write_type_error():
    """The start of the TypeError asyncio's stream write() raises for a non-buffer.

    gh-138703 reworded it within release series ("a bytes-like object" became "a
    bytes, bytearray, or memoryview object" in 3.14), so the running asyncio is
    asked: its write() checks the type first, before it touches `self`.
    """
    try:
        asyncio.selector_events._SelectorSocketTransport.write(None, None)
    except TypeError as exc:
        start, sep, _ = str(exc).rpartition(', not ')
        if sep:
            return start
    return 'data argument must be a bytes-like object'


cdef str WRITE_TYPE_ERROR = write_type_error()


cdef bint writelines_checks_lost_items():
    """Whether asyncio's writelines() checks its items on a lost connection too.

    3.12's makes a memoryview() of each before it looks at the connection; later
    releases (3.14, some of 3.13) drop the write first. The running asyncio is asked,
    with a stand-in whose connection is lost and an item that is not bytes-like.
    """
    lost = types_SimpleNamespace(_eof=False, _empty_waiter=None, _conn_lost=1, _buffer=[])
    try:
        asyncio.selector_events._SelectorSocketTransport.writelines(lost, [None])
    except TypeError:
        return True
    return False


cdef bint WRITELINES_CHECKS_LOST = PY312 and writelines_checks_lost_items()


@cython.final
cdef class SocketTransport(SelectorTransportBase):
    """A stream transport over a connected TCP or Unix socket."""

    _start_tls_compatible = True
    _sendfile_compatible = aio_SendfileMode_TRY_NATIVE

    def __init__(self, loop, sock, protocol, waiter=None, extra=None, server=None):
        cdef CoreLoop core = loop
        self.init_selector(core, sock, protocol, extra, server)
        # Small writes leave at once instead of waiting for the peer's ACK.
        aio_set_nodelay(sock)
        core.call_soon_c(protocol.connection_made, (self,))
        # Reading starts only once connection_made() has run.
        core.call_soon_c(self._start_reading, ())
        if waiter is not None:
            # The waiter wakes only once connection_made() has run.
            core.call_soon_c(aio_set_result_unless_cancelled, (waiter, None))

    def set_protocol(self, protocol):
        self.buffered = isinstance(protocol, aio_BufferedProtocol)
        self._protocol = protocol
        self.protocol_connected = True

    cdef Py_ssize_t buffer_size_c(self):
        return self.wsize

    # -- reading --

    cdef int read_ready(self) except -1:
        if self.completion_reads:
            self.rqueued = False
            return self.deliver_received()
        if self.buffered:
            return self.read_buffered()
        return self.read_data()

    cdef int read_data(self) except -1:
        cdef char *buf
        cdef Py_ssize_t n
        cdef int err
        if self._conn_lost:
            return 0
        if 0 < self.max_size <= MAX_RECV_SIZE:
            buf = self._loop.get_recv_buf()
            n = fl_recv(self.fd, buf, self.max_size)
            if n < 0:
                err = errno
                if not fl_would_block(err):
                    self.fatal_error(oserror(err), 'Fatal read error on socket transport')
                return 0
            if n == 0:
                return self.on_eof()
            data = PyBytes_FromStringAndSize(buf, n)
        else:
            # An odd max_size someone set: socket.recv() has the rules for it.
            try:
                data = self._sock.recv(self.max_size)
            except (BlockingIOError, InterruptedError):
                return 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self.fatal_error(exc, 'Fatal read error on socket transport')
                return 0
            if not data:
                return self.on_eof()
        return self.call_data_received(data)

    cdef int call_data_received(self, object data) except -1:
        try:
            self._protocol.data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.fatal_error(exc, 'Fatal error: protocol.data_received() call failed.')
        return 0

    cdef int call_buffer_updated(self, Py_ssize_t n) except -1:
        try:
            self._protocol.buffer_updated(n)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.fatal_error(exc, 'Fatal error: protocol.buffer_updated() call failed.')
        return 0

    cdef int protocol_buffer(self, Py_buffer *view) except -1:
        """Fill view with the protocol's get_buffer(); 0 (the transport closing) if it fails."""
        try:
            buf = self._protocol.get_buffer(-1)
            if not len(buf):
                raise RuntimeError('get_buffer() returned an empty buffer')
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.fatal_error(exc, 'Fatal error: protocol.get_buffer() call failed.')
            return 0
        try:
            PyObject_GetBuffer(buf, view, PyBUF_WRITABLE)
        except BaseException as exc:
            # What socket.recv_into() raises for a read-only or odd buffer.
            self.fatal_error(exc, 'Fatal read error on socket transport')
            return 0
        return 1

    cdef int read_buffered(self) except -1:
        cdef Py_buffer view
        cdef Py_ssize_t n
        cdef int err = 0
        if self._conn_lost or not self.protocol_buffer(&view):
            return 0
        n = fl_recv(self.fd, <char *>view.buf, view.len)
        if n < 0:
            err = errno
        PyBuffer_Release(&view)
        if n < 0:
            if not fl_would_block(err):
                self.fatal_error(oserror(err), 'Fatal read error on socket transport')
            return 0
        if n == 0:
            return self.on_eof()
        return self.call_buffer_updated(n)

    # Completion reads (the io_uring backend, includes/poll_uring.h): the kernel
    # receives on its own and the loop hands each arrival to received(), in the
    # iteration's event order; the read handle then delivers what arrived as reads on
    # readiness would have (deliver_received). Paused, it waits.

    cdef int add_reader_c(self) except -1:
        need_loop(self, '_add_reader')
        self._loop.check_closed()
        if not self._loop.recv_ok or self._sock.family not in (socket_AF_INET, socket_AF_INET6):
            # Unix sockets stay on readiness: closing one with bytes unread resets its
            # peer, which a receive that emptied the socket would hide (see
            # _call_connection_lost for how TCP keeps that).
            return SelectorTransportBase.add_reader_c(self)
        self.completion_reads = True
        # A new handle each time, as a new reader would be: the current context.
        self.rhandle = new_io_handle(self._loop, self, False)
        self.rqueued = False
        self._loop.recv_start(self)
        if self.rchunks or self.rend:
            self.queue_delivery()
        return 0

    cdef int stop_reading_c(self, bint pause) except -1:
        if not self.completion_reads:
            return self._loop.remove_fd(self.fd_obj, FL_READ)
        self._loop.recv_stop(self, not pause)
        # As a removed reader's handle is: a delivery queued already does not run.
        if self.rhandle is not None:
            self.rhandle._cancel_c()
        self.rqueued = False
        if not pause:
            # For good: the handle (which holds the transport) goes too.
            if self.rchunks:
                self.unread = True
            self.rchunks = None
            self.rend = 0
            self.rhandle = None
        return 0

    cdef int received(self, const char *buf, int res) except -1:
        if res > 0:
            data = PyBytes_FromStringAndSize(buf, res)
            if self.rchunks is None:
                self.rchunks = [data]
            else:
                self.rchunks.append(data)
        else:
            self.rend = 1 if res == 0 else res
        self.queue_delivery()
        return 0

    cdef int queue_delivery(self) except -1:
        if not self.rqueued and not self._paused and not self._closing:
            if self._loop.catching_up:
                self._loop.recv_again.append(self)  # reported at the next poll
                return 0
            self.rqueued = True
            ready_push_locked(self._loop, self.rhandle)
        return 0

    cdef int deliver_received(self) except -1:
        """One read's worth, as one recv() on readiness would take: up to max_size
        bytes (one get_buffer() for a BufferedProtocol); EOF or an error only once
        the bytes before it are taken. The rest is reported again at the next poll."""
        cdef int end
        if self._conn_lost or self._closing or self._paused:
            return 0
        # What arrived since the poll too, as recv() now would take it.
        self._loop.recv_catch_up()
        if self.rchunks:
            if self.buffered:
                self.feed_buffered()
            else:
                self.feed_data()
            if (self.rchunks or self.rend) and not self._closing:
                self._loop.recv_again.append(self)
            return 0
        if self.rend:
            end, self.rend = self.rend, 0
            if end == 1:
                return self.on_eof()
            self.fatal_error(oserror(-end), 'Fatal read error on socket transport')
        return 0

    cdef bytes take_received(self, Py_ssize_t limit):
        """Up to `limit` bytes from the front of rchunks (which is not empty)."""
        cdef list chunks = self.rchunks
        data = chunks[0] if len(chunks) == 1 else b''.join(chunks)
        if len(data) > limit:
            self.rchunks = [data[limit:]]
            return data[:limit]
        self.rchunks = None
        return data

    cdef int feed_data(self) except -1:
        data = self.take_received(self.max_size if self.max_size > 0 else MAX_RECV_SIZE)
        return self.call_data_received(data)

    cdef int feed_buffered(self) except -1:
        cdef Py_buffer view
        cdef Py_ssize_t n
        if not self.protocol_buffer(&view):
            return 0
        try:
            data = self.take_received(view.len)
            n = len(data)
            memcpy(view.buf, PyBytes_AS_STRING(data), n)
        finally:
            PyBuffer_Release(&view)
        return self.call_buffer_updated(n)

    cdef int on_eof(self) except -1:
        if self._loop._debug:
            aio_logger.debug("%r received EOF", self)
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.fatal_error(exc, 'Fatal error: protocol.eof_received() call failed.')
            return 0
        if keep_open:
            # Half-open: the protocol may still write, but nothing more arrives.
            self.stop_reading_c(False)
        else:
            self.close()
        return 0

    # -- the write queue --

    cdef int queue_bytes(self, object data, Py_ssize_t offset) except -1:
        """Queue data[offset:] (a bytes object, so immutable) without copying it."""
        if self.wqueue is None:
            self.wqueue = []
        if self.whead == len(self.wqueue):
            self.woffset = offset
        else:
            assert offset == 0
        self.wqueue.append(data)
        self.wsize += PyBytes_GET_SIZE(data) - offset
        return 0

    cdef int queue_copy(self, const char *p, Py_ssize_t n) except -1:
        return self.queue_bytes(PyBytes_FromStringAndSize(p, n), 0)

    cdef int clear_queue(self) except -1:
        if self.wqueue is not None:
            del self.wqueue[:]
        self.whead = self.woffset = self.wsize = 0
        return 0

    cdef Py_ssize_t send_queue(self) noexcept:
        """One send()/sendmsg() of the queue's head; bytes sent, or -1 with errno."""
        cdef iovec iov[FL_IOV_BATCH]
        cdef list queue = self.wqueue
        cdef Py_ssize_t i, count = len(queue) - self.whead
        cdef object item = queue[self.whead]
        if count == 1:
            return fl_send(self.fd, PyBytes_AS_STRING(item) + self.woffset,
                           PyBytes_GET_SIZE(item) - self.woffset)
        if count > FL_IOV_BATCH:
            count = FL_IOV_BATCH
        iov[0].iov_base = PyBytes_AS_STRING(item) + self.woffset
        iov[0].iov_len = PyBytes_GET_SIZE(item) - self.woffset
        for i in range(1, count):
            item = queue[self.whead + i]
            iov[i].iov_base = PyBytes_AS_STRING(item)
            iov[i].iov_len = PyBytes_GET_SIZE(item)
        return fl_sendv(self.fd, iov, <int>count)

    cdef int consume(self, Py_ssize_t n) except -1:
        """Drop n sent bytes from the head of the queue."""
        cdef list queue = self.wqueue
        cdef Py_ssize_t avail
        self.wsize -= n
        while n > 0:
            avail = PyBytes_GET_SIZE(queue[self.whead]) - self.woffset
            if n < avail:
                self.woffset += n
                break
            n -= avail
            queue[self.whead] = None
            self.whead += 1
            self.woffset = 0
        if self.whead == len(queue):
            del queue[:]
            self.whead = 0
        elif self.whead >= 64 and self.whead * 2 >= len(queue):
            del queue[:self.whead]
            self.whead = 0
        return 0

    cdef int flush(self) except -1:
        """Send what the queue holds: _write_sendmsg/_write_send of asyncio."""
        cdef Py_ssize_t n
        cdef int err
        if self._conn_lost:
            return 0
        n = self.send_queue()
        if n < 0:
            err = errno
            if not fl_would_block(err):
                self.fail_write(oserror(err))
            return 0
        self.consume(n)
        self.maybe_resume_protocol()  # may queue more
        if not self.wsize:
            self._loop.remove_fd(self.fd_obj, FL_WRITE)
            if self._empty_waiter is not None:
                self._empty_waiter.set_result(None)
            if self._closing:
                # Counted, so that a later abort() cannot call connection_lost again.
                self._conn_lost += 1
                self._call_connection_lost(None)
            elif self._eof:
                self._sock.shutdown(socket_SHUT_WR)
        return 0

    cdef int fail_write(self, object exc) except -1:
        """Sending failed with exc: drop what waits, and the connection."""
        self._loop.remove_fd(self.fd_obj, FL_WRITE)
        self.clear_queue()
        self.fatal_error(exc, 'Fatal write error on socket transport')
        if self._empty_waiter is not None:
            self._empty_waiter.set_exception(exc)
        return 0

    cdef int write_ready(self) except -1:
        if self.wsize:
            self.flush()
        return 0

    # -- writing --

    def write(self, data):
        """Send data: at once if nothing waits, else after what was queued before."""
        cdef Py_buffer view
        cdef const char *p = NULL
        cdef Py_ssize_t size = 0, n = 0
        cdef bint is_bytes = PyBytes_CheckExact(data)
        cdef bint has_view = False
        cdef int err
        if is_bytes:
            p = PyBytes_AS_STRING(data)
            size = PyBytes_GET_SIZE(data)
        elif isinstance(data, (bytes, bytearray, memoryview)):
            is_bytes = PyBytes_Check(data)
        else:
            raise TypeError(f'{WRITE_TYPE_ERROR}, not {type(data).__name__!r}')
        if self._eof:
            raise RuntimeError('Cannot call write() after write_eof()')
        if self._empty_waiter is not None:
            raise RuntimeError('unable to write; sendfile is in progress')
        if not is_bytes or not PyBytes_CheckExact(data):
            if not data:
                return
            try:
                PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
            except BaseException as exc:
                # What socket.send() raises for a non-contiguous memoryview.
                if self._conn_lost:
                    return
                self.fatal_error(exc, 'Fatal write error on socket transport')
                return
            has_view = True
            p = <const char *>view.buf
            size = view.len
        try:
            if not size:
                return
            if self._conn_lost:
                self.drop_write()
                return
            if not self.wsize:
                # Nothing waits: try to send now, straight from the caller's buffer.
                n = fl_send(self.fd, p, size)
                if n < 0:
                    err = errno
                    if not fl_would_block(err):
                        self.fatal_error(oserror(err), 'Fatal write error on socket transport')
                        return
                    n = 0
                elif n == size:
                    return
                self.add_writer_c()
            if is_bytes:
                self.queue_bytes(data, n)
            else:
                self.queue_copy(p + n, size - n)
        finally:
            if has_view:
                PyBuffer_Release(&view)
        self.maybe_pause_protocol()

    def writelines(self, list_of_data):
        """Queue every buffer, then send them together (asyncio 3.12's behaviour)."""
        if not PY312:
            # asyncio 3.10 and 3.11 join and write(): their errors name write(), and
            # an item that is not bytes-like fails the join before anything else.
            self.write(b''.join(list_of_data))
            return
        if self._eof:
            raise RuntimeError('Cannot call writelines() after write_eof()')
        if self._empty_waiter is not None:
            raise RuntimeError('unable to writelines; sendfile is in progress')
        if not list_of_data:
            return
        if self._conn_lost:
            if WRITELINES_CHECKS_LOST:
                for data in list_of_data:
                    memoryview(data)  # asyncio's check, which raises TypeError
            self.drop_write()
            return
        items = []
        for data in list_of_data:
            if PyBytes_Check(data):
                items.append(data)
                continue
            # memoryview(): asyncio's check and error for a non-buffer.
            data = memoryview(data)
            if not (<memoryview>data).c_contiguous:
                # asyncio's writelines sends at once, and sendmsg() refuses the lot.
                self.fail_write(contiguity_error(data))
                return
            items.append(data)
        cdef bint was_idle = not self.wsize
        # Empty items are dropped: they would stay queued forever (asyncio spins).
        for data in items:
            if PyBytes_Check(data):
                if PyBytes_GET_SIZE(data):
                    self.queue_bytes(data, 0)
            elif (<memoryview>data).nbytes:
                # A copy: the caller may reuse its buffer.
                self.queue_bytes((<memoryview>data).tobytes(), 0)
        if was_idle and self.wsize:
            self.flush()
            # What could not be sent waits for the socket to become writable.
            if self.wsize:
                self.add_writer_c()
        self.maybe_pause_protocol()

    cdef int drop_write(self) except -1:
        # A write after the connection was lost: ignored, logged past a threshold.
        if self._conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES:
            aio_logger.warning('socket.send() raised exception.')
        self._conn_lost += 1
        return 0

    def write_eof(self):
        """Shut down the write side once the queue is sent."""
        if self._closing or self._eof:
            return
        self._eof = True
        if not self.wsize:
            self._sock.shutdown(socket_SHUT_WR)

    def can_write_eof(self):
        return True

    cdef int force_close(self, object exc) except -1:
        if self._conn_lost:
            return 0
        if self.wsize:
            self.clear_queue()
            self._loop.remove_fd(self.fd_obj, FL_WRITE)
        if not self._closing:
            self._closing = True
            self.stop_reading_c(False)
        self._conn_lost += 1
        self.schedule_connection_lost(exc)
        return 0

    def _call_connection_lost(self, exc):
        if self.completion_reads and (self.unread or self._loop.poller.recv_dropped(self.fd)):
            # Bytes the kernel received for us that the protocol never got would have
            # been unread in the socket on epoll, and a TCP socket closed with unread
            # bytes resets the connection: so does this one.
            fl_reset_on_close(self.fd)
        SelectorTransportBase._call_connection_lost(self, exc)
        waiter = self._empty_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(
                ConnectionError("Connection is closed by peer"))

    def _make_empty_waiter(self):
        if self._empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        self._empty_waiter = self._loop.create_future()
        if not self.wsize:
            self._empty_waiter.set_result(None)
        return self._empty_waiter

    def _reset_empty_waiter(self):
        self._empty_waiter = None


_asyncio_twin(SocketTransport, asyncio.selector_events._SelectorSocketTransport)

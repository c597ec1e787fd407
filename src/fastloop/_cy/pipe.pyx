# Pipe transports: either end of a pipe, FIFO, socket or character device
# (transport.pyx has the bases).

import stat

cdef object os_fstat = os.fstat
cdef object os_read = os.read
cdef object os_set_blocking = os.set_blocking
cdef object stat_S_ISFIFO = stat.S_ISFIFO
cdef object stat_S_ISSOCK = stat.S_ISSOCK
cdef object stat_S_ISCHR = stat.S_ISCHR


@cython.final
cdef class ReadPipeTransport(TransportBase):
    """The read end of a pipe, FIFO, socket or character device."""

    def __init__(self, loop, pipe, protocol, waiter=None, extra=None):
        cdef CoreLoop core = loop
        self.max_size = MAX_RECV_SIZE
        self.extra = {} if extra is None else extra
        self.extra['pipe'] = pipe
        self._loop = core
        # The fd first: a pipe that has none leaves no half-open transport to warn of.
        self._fileno = pipe.fileno()
        self._pipe = pipe
        self.fd_obj = self._fileno
        self.fd = self._fileno
        self._protocol = protocol
        mode = os_fstat(self._fileno).st_mode
        if not (stat_S_ISFIFO(mode) or stat_S_ISSOCK(mode) or stat_S_ISCHR(mode)):
            self._pipe = None
            self._fileno = None
            self._protocol = None
            raise ValueError("Pipe transport is for pipes/sockets only.")
        os_set_blocking(self._fileno, False)
        core.call_soon_c(protocol.connection_made, (self,))
        # Reading starts only once connection_made() has run.
        core.call_soon_c(self._start_reading, ())
        if waiter is not None:
            core.call_soon_c(aio_set_result_unless_cancelled, (waiter, None))

    def __repr__(self):
        info = [type(self).__name__]
        if self._pipe is None:
            info.append('closed')
        elif self._closing:
            info.append('closing')
        info.append(f'fd={self._fileno}')
        # asyncio asks the loop's selector, which a closed loop no longer has.
        if self._pipe is not None and self._loop is not None and not self._loop._closed:
            if self._loop.fd_polling(self.fd, FL_READ):
                info.append('polling')
            else:
                info.append('idle')
        elif self._pipe is not None:
            info.append('open')
        else:
            info.append('closed')
        return '<{}>'.format(' '.join(info))

    cdef int read_ready(self) except -1:
        cdef char *buf
        cdef Py_ssize_t n
        cdef int err
        if 0 < self.max_size <= MAX_RECV_SIZE:
            buf = self._loop.get_recv_buf()
            n = fl_read(self.fd, buf, self.max_size)
            if n < 0:
                err = errno
                if not fl_would_block(err):
                    self.fatal_error(oserror(err), 'Fatal read error on pipe transport')
                return 0
            data = PyBytes_FromStringAndSize(buf, n)
        else:
            try:
                data = os_read(self.fd, self.max_size)
            except (BlockingIOError, InterruptedError):
                return 0
            except OSError as exc:
                self.fatal_error(exc, 'Fatal read error on pipe transport')
                return 0
        if data:
            # Errors here reach the loop's exception handler through the handle.
            self._protocol.data_received(data)
            return 0
        if self._loop._debug:
            aio_logger.info("%r was closed by peer", self)
        self._closing = True
        self._loop.remove_fd(self.fd_obj, FL_READ)
        self._loop.call_soon_c(self._protocol.eof_received, ())
        self.schedule_connection_lost(None)
        return 0

    def close(self):
        if not self._closing:
            self.force_close(None)

    def __del__(self):
        if self._pipe is not None:
            warnings_warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._pipe.close()

    cdef int fatal_error(self, object exc, object message) except -1:
        # EIO is how a pty's master reports that the other side closed.
        need_loop(self, 'get_debug' if isinstance(exc, OSError) and exc.errno == EIO
                  else 'call_exception_handler')
        if isinstance(exc, OSError) and exc.errno == EIO:
            if self._loop._debug:
                aio_logger.debug("%r: %s", self, message, exc_info=exc)
        else:
            self._loop.call_exception_handler({
                'message': message,
                'exception': exc,
                'transport': self,
                'protocol': self._protocol,
            })
        self.force_close(exc)
        return 0

    def _fatal_error(self, exc, message='Fatal error on pipe transport'):
        self.fatal_error(exc, message)

    cdef int force_close(self, object exc) except -1:
        # asyncio's _close(exc)
        self._closing = True
        need_loop(self, '_remove_reader')
        self._loop.remove_fd(self.fd_obj, FL_READ)
        self.schedule_connection_lost(exc)
        return 0

    def _close(self, exc):
        self.force_close(exc)

    def _call_connection_lost(self, exc):
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._pipe.close()
            self._pipe = None
            self._protocol = None
            self._loop = None


@cython.final
cdef class WritePipeTransport(FlowControlTransport):
    """The write end of a pipe, FIFO, socket or character device."""

    def __init__(self, loop, pipe, protocol, waiter=None, extra=None):
        cdef CoreLoop core = loop
        self.extra = {} if extra is None else extra
        self._loop = core
        self.set_limits_c(None, None)
        self.extra['pipe'] = pipe
        self._fileno = pipe.fileno()  # first, as in ReadPipeTransport
        self._pipe = pipe
        self.fd_obj = self._fileno
        self.fd = self._fileno
        self._protocol = protocol
        self.pbuffer = bytearray()
        mode = os_fstat(self._fileno).st_mode
        is_char = stat_S_ISCHR(mode)
        is_fifo = stat_S_ISFIFO(mode)
        is_socket = stat_S_ISSOCK(mode)
        if not (is_char or is_fifo or is_socket):
            self._pipe = None
            self._fileno = None
            self._protocol = None
            raise ValueError("Pipe transport is only for "
                             "pipes, sockets and character devices")
        os_set_blocking(self._fileno, False)
        core.call_soon_c(protocol.connection_made, (self,))
        # Watching the fd for reads tells when the reading end goes away (a pipe
        # or socket becomes readable then: EOF or an error). On AIX only sockets
        # report it.
        if is_socket or (is_fifo and not sys.platform.startswith("aix")):
            core.call_soon_c(self._start_reading, ())
        if waiter is not None:
            core.call_soon_c(aio_set_result_unless_cancelled, (waiter, None))

    def _start_reading(self):
        self.add_reader_c()

    def __repr__(self):
        info = [type(self).__name__]
        if self._pipe is None:
            info.append('closed')
        elif self._closing:
            info.append('closing')
        info.append(f'fd={self._fileno}')
        if self._pipe is not None and self._loop is not None and not self._loop._closed:
            if self._loop.fd_polling(self.fd, FL_WRITE):
                info.append('polling')
            else:
                info.append('idle')
            info.append(f'bufsize={self.buffer_size_c()}')
        elif self._pipe is not None:
            info.append('open')
        else:
            info.append('closed')
        return '<{}>'.format(' '.join(info))

    cdef Py_ssize_t buffer_size_c(self):
        return PyByteArray_GET_SIZE(self.pbuffer)

    cdef int read_ready(self) except -1:
        # The pipe was closed by the reader.
        if self._loop._debug:
            aio_logger.info("%r was closed by peer", self)
        if self.buffer_size_c():
            self.close_c(BrokenPipeError())
        else:
            self.close_c(None)
        return 0

    # What asyncio's write pipe transport inherits from asyncio.ReadTransport unchanged.
    def is_reading(self):
        raise NotImplementedError

    def pause_reading(self):
        raise NotImplementedError

    def resume_reading(self):
        raise NotImplementedError

    def write(self, data):
        """Write data to the pipe: at once if nothing waits, else after the rest."""
        cdef Py_buffer view
        cdef Py_ssize_t n
        cdef int err
        assert isinstance(data, (bytes, bytearray, memoryview)), repr(data)
        if not data:
            return
        if self._conn_lost or self._closing:
            if self._conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                aio_logger.warning('pipe closed by peer or '
                                   'os.write(pipe, data) raised exception.')
            self._conn_lost += 1
            return
        try:
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        except BufferError as exc:  # a non-contiguous memoryview
            if PyByteArray_GET_SIZE(self.pbuffer):
                raise  # as asyncio's `buffer += data` does
            # asyncio's os.write(data) fails with it: a fatal write error.
            self._conn_lost += 1
            self.fatal_error(exc, 'Fatal write error on pipe transport')
            return
        try:
            if not PyByteArray_GET_SIZE(self.pbuffer):
                # Nothing waits: try to write now.
                n = fl_write(self.fd, <const char *>view.buf, view.len)
                if n < 0:
                    err = errno
                    if not fl_would_block(err):
                        self._conn_lost += 1
                        self.fatal_error(oserror(err), 'Fatal write error on pipe transport')
                        return
                    n = 0
                if n == view.len:
                    return
                self.add_writer_c()
            else:
                n = 0
            self.pbuffer += (<const char *>view.buf)[n:view.len]
        finally:
            PyBuffer_Release(&view)
        self.maybe_pause_protocol()

    cdef int write_ready(self) except -1:
        cdef bytearray buffer = self.pbuffer
        cdef Py_ssize_t size = PyByteArray_GET_SIZE(buffer)
        assert size, 'Data should not be empty'
        cdef Py_ssize_t n = fl_write(self.fd, PyByteArray_AS_STRING(buffer), size)
        cdef int err
        if n < 0:
            err = errno
            if fl_would_block(err):
                return 0
            del buffer[:]
            self._conn_lost += 1
            # _fatal_error() does not remove the writer: the buffer is empty now.
            self._loop.remove_fd(self.fd_obj, FL_WRITE)
            self.fatal_error(oserror(err), 'Fatal write error on pipe transport')
            return 0
        if n == size:
            del buffer[:]
            self._loop.remove_fd(self.fd_obj, FL_WRITE)
            self.maybe_resume_protocol()  # may queue more
            if self._closing:
                self._loop.remove_fd(self.fd_obj, FL_READ)
                self._call_connection_lost(None)
            return 0
        if n > 0:
            del buffer[:n]
        return 0

    def writelines(self, list_of_data):
        self.write(b''.join(list_of_data))

    def can_write_eof(self):
        return True

    def write_eof(self):
        if self._closing:
            return
        assert self._pipe
        self._closing = True
        if not PyByteArray_GET_SIZE(self.pbuffer):
            self._loop.remove_fd(self.fd_obj, FL_READ)
            self.schedule_connection_lost(None)

    def close(self):
        if self._pipe is not None and not self._closing:
            # write_eof() is all a write pipe needs to close.
            self.write_eof()

    def __del__(self):
        if self._pipe is not None:
            warnings_warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._pipe.close()

    def abort(self):
        self.close_c(None)

    def _fatal_error(self, exc, message='Fatal error on pipe transport'):
        self.fatal_error(exc, message)

    cdef int force_close(self, object exc) except -1:
        return self.close_c(exc)

    cdef int close_c(self, object exc) except -1:
        self._closing = True
        need_loop(self, '_remove_reader')
        if PyByteArray_GET_SIZE(self.pbuffer):
            self._loop.remove_fd(self.fd_obj, FL_WRITE)
        del self.pbuffer[:]
        self._loop.remove_fd(self.fd_obj, FL_READ)
        self.schedule_connection_lost(exc)
        return 0

    def _close(self, exc=None):
        self.close_c(exc)

    def _call_connection_lost(self, exc):
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._pipe.close()
            self._pipe = None
            self._protocol = None
            self._loop = None


_asyncio_twin(ReadPipeTransport, asyncio.unix_events._UnixReadPipeTransport)
_asyncio_twin(WritePipeTransport, asyncio.unix_events._UnixWritePipeTransport)

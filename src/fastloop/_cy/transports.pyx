# Transports: stream, datagram and pipe transports over the core (docs/transports.md).
#
# Everything observable is asyncio's (selector_events._SelectorSocketTransport and
# friends, unix_events._Unix{Read,Write}PipeTransport); the difference is how the
# bytes move:
# - reads: one recv() per readiness event into the loop's own 256 KiB buffer, then
#   one bytes object of the received length (socket.recv() would allocate 256 KiB
#   and shrink it); BufferedProtocol reads land in the protocol's buffer. Datagrams
#   likewise, with recvfrom() and, for IP, the sender's address made in C (net.h);
#   while the loop has nothing else to do, the next datagram is read at once.
# - writes: send() straight from the caller's buffer; only the unsent tail is kept
#   (a bytes object is kept as is, with an offset, other buffers are copied, so a
#   caller may reuse its bytearray at once); queued buffers leave with one sendmsg().
# - the reader/writer handles are IoHandles: queued like any Handle, so callbacks
#   keep asyncio's order, but they call the transport's C method directly.
#
# Errors from a syscall become the OSError subclass Python would raise
# (OSError(errno, strerror) picks it), so protocols see the same exceptions.

import asyncio.constants
import asyncio.futures
import asyncio.protocols
import asyncio.selector_events
import asyncio.transports
import asyncio.trsock
import asyncio.unix_events
import collections
import functools
import socket
import stat
import warnings
import weakref

from cpython.buffer cimport (PyBUF_SIMPLE, PyBUF_WRITABLE, PyBUF_WRITE, PyObject_GetBuffer,
                             PyBuffer_Release)
from cpython.bytes cimport (PyBytes_AS_STRING, PyBytes_Check, PyBytes_CheckExact,
                            PyBytes_FromStringAndSize, PyBytes_GET_SIZE)
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.memoryview cimport PyMemoryView_FromMemory

cdef object aio_BufferedProtocol = asyncio.protocols.BufferedProtocol
cdef object aio_Future = asyncio.futures.Future
cdef object aio_TransportSocket = asyncio.trsock.TransportSocket
cdef object aio_set_nodelay = asyncio.base_events._set_nodelay
cdef object aio_set_result_unless_cancelled = asyncio.futures._set_result_unless_cancelled
cdef object aio_SendfileMode_TRY_NATIVE = asyncio.constants._SendfileMode.TRY_NATIVE
cdef Py_ssize_t LOG_THRESHOLD_FOR_CONNLOST_WRITES = \
    asyncio.constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES
cdef object col_deque = collections.deque
cdef object socket_socket = socket.socket
cdef object socket_SHUT_WR = socket.SHUT_WR
cdef object socket_AF_INET = socket.AF_INET
cdef object socket_AF_INET6 = socket.AF_INET6
cdef object os_fstat = os.fstat
cdef object os_read = os.read
cdef object os_set_blocking = os.set_blocking
cdef object stat_S_ISFIFO = stat.S_ISFIFO
cdef object stat_S_ISSOCK = stat.S_ISSOCK
cdef object stat_S_ISCHR = stat.S_ISCHR
cdef object warnings_warn = warnings.warn
cdef object weakref_WeakValueDictionary = weakref.WeakValueDictionary

try:
    import ssl
    ssl_SSLSocket = ssl.SSLSocket
except ImportError:
    ssl_SSLSocket = None

cdef bint PY312 = sys_version_info >= (3, 12)
cdef bint PY313 = sys_version_info >= (3, 13)


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
# 3.13 sends empty datagrams and counts 8 header bytes per queued datagram (only
# when queueing it: asyncio's own accounting, kept as is).
cdef Py_ssize_t DGRAM_HEADER = 8 if PY313 else 0
# At most this many datagrams are read per readiness report (libuv reads up to 32).
cdef Py_ssize_t DGRAMS_PER_WAKEUP = 16

# Flow control's default marks (asyncio's _FlowControlMixin: 64 KiB, a quarter of
# it): made once, so that transports share these int objects.
cdef object DEFAULT_HIGH_WATER = 64 * 1024
cdef object DEFAULT_LOW_WATER = DEFAULT_HIGH_WATER // 4


cdef bint check_sock_fd_layout():
    """Whether fl_sock_fd() reads socket.socket's fd (see includes/net.h)."""
    a, b = socket.socketpair()
    try:
        return (fl_sock_fd(<PyObject *>a) == a.fileno()
                and fl_sock_fd(<PyObject *>b) == b.fileno())
    finally:
        a.close()
        b.close()

cdef bint SOCK_FD_LAYOUT_OK = check_sock_fd_layout()


cdef inline int sock_fd(object sock) except? -2:
    """sock.fileno(), without the call for a plain socket.socket."""
    if SOCK_FD_LAYOUT_OK and type(sock) is socket_socket:
        return fl_sock_fd(<PyObject *>sock)
    return sock.fileno()


cdef inline object oserror(int err):
    # OSError(errno, strerror) returns the subclass Python raises for that errno.
    return OSError(err, os_strerror(err))


cdef object contiguity_error(object view):
    """The BufferError that sending view (not C-contiguous) raises, as socket.send's."""
    cdef Py_buffer buf
    try:
        PyObject_GetBuffer(view, &buf, PyBUF_SIMPLE)
    except BufferError as exc:
        return exc
    PyBuffer_Release(&buf)
    raise AssertionError('a C-contiguous buffer')


cdef object check_ssl_socket(object sock):
    # asyncio.base_events._check_ssl_socket, inline.
    if ssl_SSLSocket is not None and isinstance(sock, ssl_SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")


# -- the sock_* fast paths (CoreLoop.sock_recv and friends) -----------------------

cdef object sock_recv_now(CoreLoop loop, object sock, object n):
    """sock.recv(n), or None when it would block."""
    cdef Py_ssize_t got
    cdef int err
    cdef char *buf
    # n == 0 goes to sock.recv(), which returns b'' without asking the kernel.
    if type(sock) is socket_socket and type(n) is int and 0 < n <= MAX_RECV_SIZE:
        buf = loop.get_recv_buf()
        got = fl_recv(sock_fd(sock), buf, <Py_ssize_t>n)
        if got >= 0:
            return PyBytes_FromStringAndSize(buf, got)
        err = errno
        if fl_would_block(err):
            return None
        raise oserror(err)
    try:
        return sock.recv(n)
    except (BlockingIOError, InterruptedError):
        return None


cdef object sock_recv_into_now(CoreLoop loop, object sock, object buf):
    """sock.recv_into(buf), or None when it would block."""
    cdef Py_buffer view
    cdef Py_ssize_t got
    cdef int err = 0
    # The fast path takes a non-empty bytearray only: the socket module answers an
    # empty buffer at once and raises its own errors for unwritable ones.
    if (type(sock) is socket_socket and type(buf) is bytearray and len(buf) > 0
            and PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE) == 0):
        got = fl_recv(sock_fd(sock), <char *>view.buf, view.len)
        if got < 0:
            err = errno
        PyBuffer_Release(&view)
        if got >= 0:
            return got
        if fl_would_block(err):
            return None
        raise oserror(err)
    # Not a plain socket, or not a writable buffer: recv_into() raises its own error.
    try:
        return sock.recv_into(buf)
    except (BlockingIOError, InterruptedError):
        return None


cdef object sock_send_now(CoreLoop loop, object sock, object data):
    """One sock.send(data): None if it took everything, else the bytes it took."""
    cdef Py_ssize_t n
    cdef int err
    if type(sock) is socket_socket and PyBytes_CheckExact(data):
        n = fl_send(sock_fd(sock), PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
        if n < 0:
            err = errno
            if not fl_would_block(err):
                raise oserror(err)
            n = 0
        return None if n == PyBytes_GET_SIZE(data) else n
    try:
        n = sock.send(data)
    except (BlockingIOError, InterruptedError):
        n = 0
    return None if n == len(data) else n


@cython.final
cdef class SockDone:
    """Done callback of a sock_* future: unregister its reader or writer."""

    def __call__(self, fut):
        # Unless something else replaced the registration (cancelling our handle).
        if not self.handle._cancelled:
            self.loop.remove_fd(self.sock, self.event)


cdef SockDone new_sock_done(CoreLoop loop, object sock, int event, Handle handle):
    cdef SockDone done = SockDone.__new__(SockDone)
    done.loop = loop
    done.sock = sock
    done.event = event
    done.handle = handle
    return done


# -- handles --------------------------------------------------------------------

@cython.final
cdef class IoHandle(Handle):
    """A transport's reader or writer Handle: queued like any other, but run as a
    direct C call of the transport's read_ready/write_ready.

    Its _callback field stays None (a bound method per handle would cost memory
    on every idle connection); repr() and error reports see the transport's bound
    _read_ready/_write_ready method, as asyncio's handles hold.
    """

    cdef object bound_callback(self):
        return self.transport._write_ready if self.writer else self.transport._read_ready

    cdef int _run_c(self) except -1:
        cdef object context = self._context
        cdef TransportBase transport = self.transport
        if self._cancelled:
            return 0
        try:
            PyContext_Enter(context)
            try:
                if self.writer:
                    transport.write_ready()
                else:
                    transport.read_ready()
            finally:
                PyContext_Exit(context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._report(exc)
        return 0

    def _repr_info(self):
        if not self._cancelled:
            self._callback = self.bound_callback()
        try:
            info = aio_Handle_repr_info(self)
        finally:
            self._callback = None
        info[0] = 'Handle'
        return info

    def _report(self, exc):
        self._callback = self.bound_callback()
        try:
            Handle._report(self, exc)
        finally:
            self._callback = None


cdef IoHandle new_io_handle(CoreLoop loop, TransportBase transport, bint writer):
    # Unlike new_handle's, these stay tracked by the cycle collector: the fd table
    # holds them for as long as the transport polls.
    cdef IoHandle handle = IoHandle.__new__(IoHandle)
    handle._args = ()
    handle._loop = loop
    handle._context = PyContext_CopyCurrent()
    if loop._debug:
        handle._source_traceback = aio_extract_stack(sys_getframe(0))
    handle.transport = transport
    handle.writer = writer
    return handle


# -- the shared base ------------------------------------------------------------

cdef inline int need_loop(TransportBase transport, str attr) except -1:
    # After connection_lost() a transport drops its loop; asyncio's code then fails
    # with this AttributeError where ours would follow a NULL pointer.
    if transport._loop is None:
        raise AttributeError(f"'NoneType' object has no attribute '{attr}'")
    return 0


cdef class TransportBase:
    """What every transport has: loop, protocol, extra info, closing state."""

    def __init__(self, *args, **kwargs):
        raise TypeError(f'{type(self).__name__} cannot be created directly')

    def get_extra_info(self, name, default=None):
        """Information about the transport or its socket/pipe ('peername', ...)."""
        return self.extra_get(name, default)

    cdef object extra_get(self, object name, object default):
        return self.extra.get(name, default)

    cdef dict extra_dict(self):
        return self.extra

    @property
    def _extra(self):
        return self.extra_dict()

    def is_closing(self):
        return self._closing

    @property
    def __class__(self):
        # isinstance(transport, asyncio.Transport) (see _asyncio_twin).
        return ASYNCIO_TWINS.get(type(self), type(self))

    def set_protocol(self, protocol):
        self._protocol = protocol

    def get_protocol(self):
        return self._protocol

    # Reading, for the transports that read (the write pipe's raise NotImplementedError).
    def _start_reading(self):
        # Scheduled by the constructor, after connection_made().
        if not self._closing and not self._paused:
            self.add_reader_c()

    def is_reading(self):
        return not self._closing and not self._paused

    def pause_reading(self):
        if self._closing or self._paused:
            return
        self._paused = True
        self._loop.remove_fd(self.fd_obj, FL_READ)
        if self._loop._debug:
            aio_logger.debug("%r pauses reading", self)

    def resume_reading(self):
        if self._closing or not self._paused:
            return
        self._paused = False
        self.add_reader_c()
        if self._loop._debug:
            aio_logger.debug("%r resumes reading", self)

    cdef int read_ready(self) except -1:
        return 0

    cdef int write_ready(self) except -1:
        return 0

    cdef int add_reader_c(self) except -1:
        """Start polling for reads, as loop._add_reader(fd, self._read_ready)."""
        need_loop(self, '_add_reader')
        self._loop.check_closed()
        self._loop.add_io(self.fd_obj, self.fd, FL_READ, new_io_handle(self._loop, self, False))
        return 0

    cdef int add_writer_c(self) except -1:
        """Start polling for writes, as loop._add_writer(fd, self._write_ready)."""
        need_loop(self, '_add_writer')
        self._loop.check_closed()
        self._loop.add_io(self.fd_obj, self.fd, FL_WRITE, new_io_handle(self._loop, self, True))
        return 0

    def _read_ready(self):
        self.read_ready()

    def _write_ready(self):
        self.write_ready()

    def _fatal_error(self, exc, message='Fatal error on transport'):
        self.fatal_error(exc, message)

    def _force_close(self, exc):
        self.force_close(exc)

    cdef int fatal_error(self, object exc, object message) except -1:
        # Connection-level OSErrors (resets, broken pipes...) are the peer's doing:
        # asyncio logs them in debug mode only.
        need_loop(self, 'get_debug' if isinstance(exc, OSError) else 'call_exception_handler')
        if isinstance(exc, OSError):
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

    cdef int force_close(self, object exc) except -1:
        return 0

    cdef int schedule_connection_lost(self, object exc) except -1:
        self._loop.call_soon_c(self._call_connection_lost, (exc,))
        return 0


cdef class FlowControlTransport(TransportBase):
    """asyncio.transports._FlowControlMixin: pause_writing above the high-water
    mark, resume_writing at or below the low-water mark, each exactly once."""

    cdef Py_ssize_t buffer_size_c(self):
        return 0

    cdef int set_limits_c(self, object high, object low) except -1:
        if high is None:
            if low is None:
                high = DEFAULT_HIGH_WATER
            else:
                high = 4 * low
        if low is None:
            low = DEFAULT_LOW_WATER if high is DEFAULT_HIGH_WATER else high // 4
        if not high >= low >= 0:
            raise ValueError(f'high ({high!r}) must be >= low ({low!r}) must be >= 0')
        self.high_water = high
        self.low_water = low
        self.high_obj = high
        self.low_obj = low
        return 0

    @property
    def _high_water(self):
        return self.high_obj

    @property
    def _low_water(self):
        return self.low_obj

    cdef int maybe_pause_protocol(self) except -1:
        if self.buffer_size_c() <= self.high_water:
            return 0
        if not self._protocol_paused:
            self._protocol_paused = True
            try:
                self._protocol.pause_writing()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._loop.call_exception_handler({
                    'message': 'protocol.pause_writing() failed',
                    'exception': exc,
                    'transport': self,
                    'protocol': self._protocol,
                })
        return 0

    cdef int maybe_resume_protocol(self) except -1:
        if self._protocol_paused and self.buffer_size_c() <= self.low_water:
            self._protocol_paused = False
            try:
                self._protocol.resume_writing()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._loop.call_exception_handler({
                    'message': 'protocol.resume_writing() failed',
                    'exception': exc,
                    'transport': self,
                    'protocol': self._protocol,
                })
        return 0

    def _maybe_pause_protocol(self):
        self.maybe_pause_protocol()

    def _maybe_resume_protocol(self):
        self.maybe_resume_protocol()

    def get_write_buffer_limits(self):
        return (self.low_obj, self.high_obj)

    def set_write_buffer_limits(self, high=None, low=None):
        self.set_limits_c(high, low)
        self.maybe_pause_protocol()

    def get_write_buffer_size(self):
        return self.buffer_size_c()


# -- sockets ----------------------------------------------------------------------

cdef class SelectorTransportBase(FlowControlTransport):
    """selector_events._SelectorTransport: a socket's extra info, closing, reading."""

    cdef int init_selector(self, CoreLoop loop, object sock, object protocol,
                           object extra, object server) except -1:
        self._loop = loop
        self.max_size = MAX_RECV_SIZE
        self.set_limits_c(None, None)
        self.trsock = sock
        try:
            sockname = sock.getsockname()
        except OSError:
            sockname = None
        # Shared with the loop's previous transport when equal (core.pxd, CoreLoop).
        if sockname == loop.last_sockname:
            sockname = loop.last_sockname
        else:
            loop.last_sockname = sockname
        self.sockname = sockname
        if extra is not None and 'peername' in extra:
            peername = extra['peername']
            # The extra info the accept path passes, {'peername': addr}, is all ours.
            if len(extra) == 1:
                extra = None
        else:
            try:
                peername = sock.getpeername()
            except OSError:
                peername = None
            if peername == loop.last_peername:
                peername = loop.last_peername
            else:
                loop.last_peername = peername
        self.peername = peername
        self.extra = extra
        self._sock = sock
        self.fd = sock_fd(sock)
        self.fd_obj = self.fd
        self.set_protocol(protocol)
        self._server = server
        if server is not None:
            if PY313:
                server._attach(self)
            else:
                server._attach()
        loop._transports[self.fd_obj] = self
        return 0

    @property
    def _sock_fd(self):
        return self.fd_obj

    def set_protocol(self, protocol):
        self._protocol = protocol
        self.protocol_connected = True

    cdef object extra_get(self, object name, object default):
        if name == 'peername':
            return self.peername
        if name == 'sockname':
            return self.sockname
        if name == 'socket':
            if type(self.trsock) is not aio_TransportSocket:
                self.trsock = aio_TransportSocket(self.trsock)
            return self.trsock
        if self.extra is None:
            hash(name)  # an unhashable name raises TypeError, as a dict lookup does
            return default
        return self.extra.get(name, default)

    cdef dict extra_dict(self):
        d = {} if self.extra is None else dict(self.extra)
        d['socket'] = self.extra_get('socket', None)
        d['sockname'] = self.sockname
        d['peername'] = self.peername
        return d

    def __repr__(self):
        info = [type(self).__name__]
        if self._sock is None:
            info.append('closed')
        elif self._closing:
            info.append('closing')
        info.append(f'fd={self.fd}')
        if self._loop is not None and not self._loop._closed:
            if self._loop.fd_polling(self.fd, FL_READ):
                info.append('read=polling')
            else:
                info.append('read=idle')
            state = 'polling' if self._loop.fd_polling(self.fd, FL_WRITE) else 'idle'
            info.append(f'write=<{state}, bufsize={self.buffer_size_c()}>')
        return '<{}>'.format(' '.join(info))

    def __del__(self):
        if self._sock is not None:
            warnings_warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._sock.close()
            if PY313 and self._server is not None:
                self._server._detach(self)

    def abort(self):
        self.force_close(None)

    def close(self):
        if self._closing:
            return
        self._closing = True
        self._loop.remove_fd(self.fd_obj, FL_READ)
        if not self.buffer_size_c():
            self._conn_lost += 1
            self._loop.remove_fd(self.fd_obj, FL_WRITE)
            self.schedule_connection_lost(None)

    def _call_connection_lost(self, exc):
        try:
            if self.protocol_connected:
                self._protocol.connection_lost(exc)
        finally:
            self._sock.close()
            self._sock = None
            self._protocol = None
            self._loop = None
            server = self._server
            if server is not None:
                if PY313:
                    server._detach(self)
                else:
                    server._detach()
                self._server = None


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
        try:
            self._protocol.data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.fatal_error(exc, 'Fatal error: protocol.data_received() call failed.')
        return 0

    cdef int read_buffered(self) except -1:
        cdef Py_buffer view
        cdef Py_ssize_t n
        cdef int err = 0
        if self._conn_lost:
            return 0
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
            PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE)
        except BaseException as exc:
            # What socket.recv_into() raises for a read-only or odd buffer.
            self.fatal_error(exc, 'Fatal read error on socket transport')
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
        try:
            self._protocol.buffer_updated(n)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.fatal_error(exc, 'Fatal error: protocol.buffer_updated() call failed.')
        return 0

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
            self._loop.remove_fd(self.fd_obj, FL_READ)
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
        if self._eof:
            raise RuntimeError('Cannot call writelines() after write_eof()')
        if self._empty_waiter is not None:
            raise RuntimeError('unable to writelines; sendfile is in progress')
        if not list_of_data:
            return
        if self._conn_lost:
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
            self._loop.remove_fd(self.fd_obj, FL_READ)
        self._conn_lost += 1
        self.schedule_connection_lost(exc)
        return 0

    def _call_connection_lost(self, exc):
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


@cython.final
cdef class DatagramTransport(SelectorTransportBase):
    """A datagram transport over a UDP (or Unix datagram) socket."""

    def __init__(self, loop, sock, protocol, address=None, waiter=None, extra=None):
        cdef CoreLoop core = loop
        self.init_selector(core, sock, protocol, extra, None)
        self._address = address
        self.dbuffer = col_deque()
        self.inet = sock.family in (socket_AF_INET, socket_AF_INET6)
        core.call_soon_c(protocol.connection_made, (self,))
        core.call_soon_c(self._start_reading, ())
        if waiter is not None:
            core.call_soon_c(aio_set_result_unless_cancelled, (waiter, None))

    cdef Py_ssize_t buffer_size_c(self):
        return self._buffer_size

    cdef int read_ready(self) except -1:
        cdef char *buf = NULL
        cdef Py_ssize_t i
        if self._conn_lost:
            return 0
        if 0 < self.max_size <= MAX_RECV_SIZE:
            # Into the loop's buffer, then a bytes object of the datagram's length:
            # socket.recvfrom(256 KiB) would allocate (mmap) 256 KiB per datagram.
            buf = self._loop.get_recv_buf()
        # While the loop has nothing else to do, the next datagram is read at once:
        # the poll in between would only report this socket again. Bounded, so that
        # a flood cannot keep other sockets waiting long.
        for i in range(DGRAMS_PER_WAKEUP):
            if i and (self._closing or self._paused or not self._loop.idle_now()):
                break
            if not self.read_one(buf):
                break
        return 0

    cdef bint read_one(self, char *buf) except -1:
        """One datagram to the protocol; False if none came (would block, error)."""
        cdef sockaddr_storage sa
        cdef socklen_t salen
        cdef Py_ssize_t n
        cdef int err
        if buf is NULL or not self.inet:
            # An odd max_size someone set, or AF_UNIX and others: the socket module
            # has the rules for the one and makes the addresses of the others.
            return self.read_with_socket(buf)
        n = fl_recvfrom(self.fd, buf, self.max_size, &sa, &salen)
        if n < 0:
            err = errno
            if not fl_would_block(err):
                self._protocol.error_received(oserror(err))
            return False
        data = PyBytes_FromStringAndSize(buf, n)
        if self.peer_addr is None or not fl_same_sockaddr(&sa, salen, &self.peer_sa,
                                                          self.peer_salen):
            self.peer_addr = fl_inet_sockaddr(&sa, salen)
            self.peer_sa = sa
            self.peer_salen = salen
        # Errors here reach the loop's exception handler through the handle.
        self._protocol.datagram_received(data, self.peer_addr)
        return True

    cdef bint read_with_socket(self, char *buf) except -1:
        """One datagram by socket.recvfrom_into(buf), or by recvfrom() if buf is NULL."""
        cdef Py_ssize_t n
        try:
            if buf is NULL:
                data, addr = self._sock.recvfrom(self.max_size)
            else:
                n, addr = self._sock.recvfrom_into(
                    PyMemoryView_FromMemory(buf, self.max_size, PyBUF_WRITE))
                data = PyBytes_FromStringAndSize(buf, n)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            self._protocol.error_received(exc)
            return False
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.fatal_error(exc, 'Fatal read error on datagram transport')
            return False
        self._protocol.datagram_received(data, addr)
        return True

    # What asyncio's datagram transport inherits from asyncio.WriteTransport unchanged.
    def write(self, data):
        raise NotImplementedError

    def writelines(self, list_of_data):
        self.write(b''.join(list_of_data))

    def write_eof(self):
        raise NotImplementedError

    def can_write_eof(self):
        raise NotImplementedError

    def sendto(self, data, addr=None):
        """Send one datagram to addr (or the connected address)."""
        cdef Py_ssize_t n
        cdef int err
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f'data argument must be a bytes-like object, '
                            f'not {type(data).__name__!r}')
        if not PY313 and not data:
            return
        if self._address:
            if addr not in (None, self._address):
                raise ValueError(f'Invalid address: must be None or {self._address}')
            addr = self._address
        if self._conn_lost and self._address:
            if self._conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                aio_logger.warning('socket.send() raised exception.')
            self._conn_lost += 1
            return
        if not self.dbuffer and PyBytes_CheckExact(data) and (
                self.peername or (addr is not None and addr is self.peer_addr)):
            # Nothing waits, and the socket is connected or the address is the last
            # sender's tuple, whose sockaddr is at hand: no tuple to parse.
            if self.peername:
                n = fl_send(self.fd, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
            else:
                n = fl_sendto(self.fd, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data),
                              &self.peer_sa, self.peer_salen)
            if n >= 0:
                return
            err = errno
            if not fl_would_block(err):
                self._protocol.error_received(oserror(err))
                return
            self.add_writer_c()
        elif not self.dbuffer:
            # Nothing waits: try to send it right away.
            try:
                if self.peername:
                    self._sock.send(data)
                else:
                    self._sock.sendto(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                self.add_writer_c()
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self.fatal_error(exc, 'Fatal write error on datagram transport')
                return
        # What waits must not change under us: keep a copy.
        self.dbuffer.append((bytes(data), addr))
        self._buffer_size += len(data) + DGRAM_HEADER
        self.maybe_pause_protocol()

    cdef int write_ready(self) except -1:
        buffer = self.dbuffer
        while buffer:
            data, addr = buffer[0]
            try:
                if self.peername:
                    self._sock.send(data)
                else:
                    self._sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                break  # try again on the next writable event
            except OSError as exc:
                self.dequeue()
                self._protocol.error_received(exc)
                return 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self.dequeue()
                self.fatal_error(exc, 'Fatal write error on datagram transport')
                return 0
            self.dequeue()
        self.maybe_resume_protocol()  # may queue more
        if not buffer:
            self._loop.remove_fd(self.fd_obj, FL_WRITE)
            if self._closing:
                self._conn_lost += 1  # see SocketTransport.flush
                self._call_connection_lost(None)
        return 0

    def _sendto_ready(self):
        self.write_ready()

    cdef int dequeue(self) except -1:
        # The header bytes counted when queueing (3.13) leave with the datagram.
        data, _ = self.dbuffer.popleft()
        self._buffer_size -= len(data) + DGRAM_HEADER
        return 0

    cdef int force_close(self, object exc) except -1:
        if self._conn_lost:
            return 0
        if self.dbuffer:
            self.dbuffer.clear()
            self._loop.remove_fd(self.fd_obj, FL_WRITE)
        if not self._closing:
            self._closing = True
            self._loop.remove_fd(self.fd_obj, FL_READ)
        self._conn_lost += 1
        self.schedule_connection_lost(exc)
        return 0

    def get_write_buffer_size(self):
        return self._buffer_size


# -- pipes ----------------------------------------------------------------------

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


# A cdef class cannot derive from asyncio's Python transport classes, yet programs (and
# CPython's tests) check isinstance(transport, asyncio.Transport). isinstance() falls
# back to obj.__class__ when type(obj) is not a subclass (how unittest.mock's spec
# objects pass): each transport's __class__ is a Python twin, of the same name, that
# derives from the public asyncio classes the stdlib's own transport derives from.
cdef dict ASYNCIO_TWINS = {}  # transport class -> its twin


def _asyncio_twin(cls, stdlib_cls):
    """Make isinstance(an instance of cls, C) true for each public asyncio transport
    class C that stdlib_cls derives from (which ones varies by version); return the twin."""
    public = [c for c in (asyncio.transports.Transport, asyncio.transports.DatagramTransport,
                          asyncio.transports.ReadTransport, asyncio.transports.WriteTransport)
              if issubclass(stdlib_cls, c)]
    bases = tuple(c for c in public if not any(o is not c and issubclass(o, c) for o in public))
    twin = type(cls.__name__, bases, {
        '__module__': cls.__module__,
        '__qualname__': cls.__qualname__,
        '__doc__': cls.__doc__,
        '__slots__': (),
    })
    ASYNCIO_TWINS[cls] = twin
    return twin


_asyncio_twin(SocketTransport, asyncio.selector_events._SelectorSocketTransport)
_asyncio_twin(DatagramTransport, asyncio.selector_events._SelectorDatagramTransport)
_asyncio_twin(ReadPipeTransport, asyncio.unix_events._UnixReadPipeTransport)
_asyncio_twin(WritePipeTransport, asyncio.unix_events._UnixWritePipeTransport)

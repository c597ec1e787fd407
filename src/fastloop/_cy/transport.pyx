# Transports, what they share: the bases, the readers' and writers' IoHandles, helpers
# for the sock_* methods, and the asyncio twins. The kinds are in stream.pyx,
# datagram.pyx and pipe.pyx (docs/transports.md).
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
import socket
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
cdef object warnings_warn = warnings.warn
cdef object weakref_WeakValueDictionary = weakref.WeakValueDictionary

try:
    import ssl
    ssl_SSLSocket = ssl.SSLSocket
except ImportError:
    ssl_SSLSocket = None

cdef bint PY312 = sys_version_info >= (3, 12)
cdef bint PY313 = sys_version_info >= (3, 13)


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
        self.stop_reading_c(True)
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

    cdef int stop_reading_c(self, bint pause) except -1:
        """Stop reading, as loop._remove_reader(fd); for a pause or for good."""
        self._loop.remove_fd(self.fd_obj, FL_READ)
        return 0

    cdef int received(self, const char *buf, int res) except -1:
        """A completion read (io_uring): res bytes at buf, 0 at EOF, or -errno."""
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
            if (self._loop.fd_polling(self.fd, FL_READ)
                    or self.completion_reads and not self._paused):
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
        self.stop_reading_c(False)
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

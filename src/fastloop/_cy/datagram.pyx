# Datagram transports: UDP and Unix datagram sockets (transport.pyx has the bases).

# 3.13 sends empty datagrams and counts 8 header bytes per queued datagram (only
# when queueing it: asyncio's own accounting, kept as is).
cdef Py_ssize_t DGRAM_HEADER = 8 if PY313 else 0
# At most this many datagrams are read per readiness report (libuv reads up to 32).
cdef Py_ssize_t DGRAMS_PER_WAKEUP = 16


@cython.final
@cython.auto_pickle(False)  # a transport is not picklable (nor are its C arrays)
cdef class DatagramTransport(SelectorTransportBase):
    """A datagram transport over a UDP (or Unix datagram) socket."""

    def __init__(self, loop, sock, protocol, address=None, waiter=None, extra=None):
        cdef CoreLoop core = loop
        self.init_selector(core, sock, protocol, extra, None)
        self._address = address
        self.dbuffer = col_deque()
        self.inet = sock.family in (socket_AF_INET, socket_AF_INET6)
        self.peer_addrs = [None] * PEER_CACHE
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
        self.note_peer(&sa, salen)
        # Errors here reach the loop's exception handler through the handle.
        self._protocol.datagram_received(data, self.peer_addr)
        return True

    cdef int note_peer(self, sockaddr_storage *sa, socklen_t salen) except -1:
        """Make peer_addr sa's address tuple: a recent sender's, or a new one."""
        cdef int i
        for i in range(PEER_CACHE):
            if fl_same_sockaddr(sa, salen, &self.peer_sas[i], self.peer_salens[i]):
                break
        else:
            i = self.peer_next
            self.peer_addrs[i] = fl_inet_sockaddr(sa, salen)
            self.peer_sas[i] = sa[0]
            self.peer_salens[i] = salen
            self.peer_next = (i + 1) % PEER_CACHE
        self.peer_last = i
        self.peer_addr = self.peer_addrs[i]
        return 0

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
        if not self.dbuffer and not self._conn_lost and PyBytes_CheckExact(data) and (
                self.peername or (addr is not None and addr is self.peer_addr)):
            # Nothing waits, and the socket is connected or the address is the last
            # sender's tuple, whose sockaddr is at hand: no tuple to parse. Not once
            # the transport is closing: its socket (self.fd) may be closed, its number
            # even reused; the socket object's calls fail as asyncio's do.
            if self.peername:
                n = fl_send(self.fd, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
            else:
                n = fl_sendto(self.fd, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data),
                              &self.peer_sas[self.peer_last],
                              self.peer_salens[self.peer_last])
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


_asyncio_twin(DatagramTransport, asyncio.selector_events._SelectorDatagramTransport)

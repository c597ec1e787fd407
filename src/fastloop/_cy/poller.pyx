# Poller: the kernel readiness facility behind one small interface.
#
# The backend is C: the platform's (epoll or kqueue, chosen in includes/compat.h),
# or io_uring on request (includes/poll_uring.h; fastloop/_backend.py decides). The
# loop uses ctl(), forget_c() and wait() and reads the `events` buffer;
# modify/poll/invalidate are the Python-visible interface shared with the
# pure-Python core.


cdef int seconds_to_ms(object timeout) except? -2:
    """A poll timeout in whole milliseconds, rounded up; -1 blocks."""
    if timeout is None:
        return -1
    cdef double seconds = timeout
    if seconds != seconds:
        return 0
    if seconds < 0:
        return -1
    if seconds > MAX_POLL_TIMEOUT:
        seconds = MAX_POLL_TIMEOUT
    return <int>ceil(seconds * 1000.0)


@cython.final
cdef class Poller:
    """epoll (Linux) or kqueue (macOS, BSD), or io_uring (Linux, when `backend` is
    "io_uring"); READ|WRITE interest per fd."""

    def __cinit__(self, backend=None):
        cdef const char *why = NULL
        cdef int err
        self.fd = -1
        self.events = <fl_event *>PyMem_Malloc(POLL_MAX_EVENTS * sizeof(fl_event))
        if self.events is NULL:
            raise MemoryError()
        if backend == 'io_uring':
            self.uring = <fl_uring *>PyMem_Malloc(sizeof(fl_uring))
            if self.uring is NULL:
                raise MemoryError()
            if fl_uring_open(self.uring, &why) < 0:
                err = errno
                PyMem_Free(self.uring)
                self.uring = NULL
                raise OSError(err, f'{why.decode()}: {os_strerror(err)}')
            self.fd = self.uring.ring_fd
            return
        if backend is not None and backend != FL_POLLER_NAME.decode():
            raise ValueError(f'unknown poller backend {backend!r}')
        cdef int fd = fl_poller_open()
        if fd < 0:
            PyErr_SetFromErrno(OSError)
        self.fd = fd

    def __dealloc__(self):
        self.close()
        PyMem_Free(self.events)

    @property
    def name(self):
        return 'io_uring' if self.uring is not NULL else FL_POLLER_NAME.decode()

    def fileno(self):
        return self.fd

    def close(self):
        """Close the kernel object; an inherited io_uring is left without a submission."""
        if self.uring is not NULL:
            if self.fd >= 0:
                fl_uring_close(self.uring)
            PyMem_Free(self.uring)
            self.uring = NULL
        elif self.fd >= 0:
            close(self.fd)
        self.fd = -1

    def modify(self, int fd, int events):
        """Watch fd for `events` (READ|WRITE); 0 forgets it."""
        self.ctl(fd, FL_UNKNOWN, events)

    def invalidate(self, int fd):
        """The fd is closing: forget it now, so that a dup of it cannot report events."""
        self.forget_c(fd)

    def poll(self, timeout=None):
        """Wait up to `timeout` seconds (None or negative: forever); [(fd, events)]."""
        cdef int i, n = self.wait(seconds_to_ms(timeout))
        return [(self.events[i].fd, self.events[i].events) for i in range(n)]

    cdef int ctl(self, int fd, int old_events, int new_events) except -1:
        cdef int r
        if self.fd < 0:
            raise ValueError('I/O operation on closed poller')
        if self.uring is not NULL:
            r = fl_uring_ctl(self.uring, fd, old_events, new_events)
        else:
            r = fl_poller_ctl(self.fd, fd, old_events, new_events)
        if r < 0:
            PyErr_SetFromErrno(OSError)
        return 0

    cdef void forget_c(self, int fd) noexcept:
        """Drop fd from the kernel's set, ignoring errors (it may be closed already)."""
        if self.fd < 0:
            return
        if self.uring is not NULL:
            fl_uring_forget(self.uring, fd)
        else:
            fl_poller_forget(self.fd, fd)

    cdef inline int wait_nogil(self, int timeout_ms) noexcept nogil:
        if self.uring is not NULL:
            return fl_uring_wait(self.uring, self.events, POLL_MAX_EVENTS, timeout_ms)
        return fl_poller_wait(self.fd, self.events, POLL_MAX_EVENTS, timeout_ms)

    cdef int wait(self, int timeout_ms) except -1:
        cdef int n, err = 0
        if self.fd < 0:
            raise ValueError('I/O operation on closed poller')
        if timeout_ms == 0:
            n = self.wait_nogil(0)
            if n < 0:
                err = errno
        else:
            # Other threads run while we sleep (call_soon_threadsafe wakes us).
            with nogil:
                n = self.wait_nogil(timeout_ms)
                if n < 0:
                    err = errno
        if n >= 0:
            return n
        if err == EINTR:
            # A signal arrived: run the Python handlers now (KeyboardInterrupt
            # propagates from here) and let the loop iterate with no events.
            PyErr_CheckSignals()
            return 0
        raise OSError(err, os_strerror(err))

    cdef int recv_ctl(self, int fd, bint want, bint discard) except -1:
        """io_uring: start or stop completion reads on fd (includes/poll_uring.h)."""
        if self.fd < 0:
            raise ValueError('I/O operation on closed poller')
        if fl_uring_recv_ctl(self.uring, fd, want, discard) < 0:
            PyErr_SetFromErrno(OSError)
        return 0

    cdef int catch_up(self) except -1:
        """io_uring: completions since the last wait into `events` (fl_uring_catch_up)."""
        cdef int n = fl_uring_catch_up(self.uring, self.events, POLL_MAX_EVENTS)
        if n < 0:
            PyErr_SetFromErrno(OSError)
        return n

    cdef bint recv_dropped(self, int fd) except -1:
        """io_uring: whether a discarded receive on fd had taken bytes (and forget it)."""
        return self.fd >= 0 and fl_uring_recv_dropped(self.uring, fd)

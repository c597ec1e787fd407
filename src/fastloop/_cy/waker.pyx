# Waker: lets other threads interrupt a sleeping poll.
#
# Coalescing: wake() writes only when no wake-up is pending, so a burst of
# call_soon_threadsafe costs one syscall. Why no wake-up is ever lost: wake() and
# drain() both run with the GIL held and release it nowhere, so each is atomic with
# respect to the other and to itself. drain() empties the fd and clears `pending`
# in one such step. Hence, whenever the loop thread releases the GIL to sleep in
# the poll, either `pending` is false (the next wake() writes, the fd becomes
# readable and the poll returns) or it is true and nothing drained the fd since the
# write that set it (the fd is readable and the poll returns at once). A callback
# appended before wake() is therefore seen by the iteration after that wake-up, or
# earlier: the loop decides to sleep only after looking at its ready queue.


@cython.final
cdef class Waker:
    """eventfd (Linux) or a non-blocking pipe: wake() makes fileno() readable."""

    def __cinit__(self):
        self.rfd = self.wfd = -1
        cdef int rfd = -1, wfd = -1
        if fl_waker_open(&rfd, &wfd) < 0:
            PyErr_SetFromErrno(OSError)
        self.rfd = rfd
        self.wfd = wfd

    def __dealloc__(self):
        self.close_fds()

    def fileno(self):
        return self.rfd

    def wake(self):
        self.wake_c()

    def drain(self):
        self.drain_c()

    def close(self):
        self.close_fds()

    cdef void wake_c(self) noexcept:
        if not self.pending and self.wfd >= 0:
            self.pending = True
            fl_waker_wake(self.wfd)

    cdef void drain_c(self) noexcept:
        if self.rfd >= 0:
            fl_waker_drain(self.rfd)
        self.pending = False

    cdef void close_fds(self) noexcept:
        if self.wfd >= 0 and self.wfd != self.rfd:
            close(self.wfd)
        if self.rfd >= 0:
            close(self.rfd)
        self.rfd = self.wfd = -1

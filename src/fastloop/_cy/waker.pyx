# Waker: lets other threads interrupt a sleeping poll.
#
# Coalescing: wake() writes only when no wake-up is pending, so a burst of
# call_soon_threadsafe costs one syscall. Why no wake-up is ever lost, with or
# without the GIL. The loop makes every wake_c() call holding its lock (the
# CoreLoop's critical section on free-threaded builds, the GIL otherwise), after
# pushing the callback under that same lock. drain_c() runs on the loop's thread:
# it empties the fd first and clears `pending` second, and only then does the loop
# count its ready queue, under the lock. Two cases, by the order of that count and
# a thread's push (the lock orders them):
# - the count comes later: it sees the callback, which runs in this iteration;
# - the count comes first: then the clearing of `pending` came before it, and so
#   before the thread's lock section, whose wake_c() sees `pending` clear (or set
#   again by a later wake_c() that writes) and writes. The fd turns readable, and
#   the next poll returns at once.
# Clearing before reading would be wrong: a write between the two would be read
# away with the flag left set, and no later wake() would ever write again. Two
# wake-ups that both see the flag clear both write, which costs one spurious read.
#
# close_fds() runs under the loop's lock too (CoreLoop.close), and wake_c() checks
# wfd under it: no thread ever writes to a closed fd, or to one that reuses its
# number. The Python-level wake/drain/close exist for tests; they do not lock.


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
        # The caller holds the loop's lock; drain_c() may clear the flag meanwhile.
        if not fl_load_int(&self.pending) and self.wfd >= 0:
            fl_store_int(&self.pending, True)
            fl_waker_wake(self.wfd)

    cdef void drain_c(self) noexcept:
        if self.rfd >= 0:
            fl_waker_drain(self.rfd)
        fl_store_int(&self.pending, False)

    cdef void close_fds(self) noexcept:
        if self.wfd >= 0 and self.wfd != self.rfd:
            close(self.wfd)
        if self.rfd >= 0:
            close(self.rfd)
        self.rfd = self.wfd = -1

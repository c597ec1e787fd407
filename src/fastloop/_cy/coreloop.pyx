# CoreLoop: the hot part of the event loop (docs/core.md is the contract).
#
# The ready queue is a ring buffer of Handle pointers, each owning a reference; it
# may hold any object with asyncio's Handle interface (_add_callback accepts
# foreign handles), and ours are run without a Python-level method call.
#
# Other threads push onto it (call_soon_threadsafe), so on free-threaded builds every
# access goes through the loop's lock (ready_push_locked, ready_pop_locked, ...);
# with the GIL those locks compile to nothing. docs/free-threading.md.


# The ring's own functions report running out of memory by returning False instead
# of raising: their callers hold the loop's lock, and raise once they let go of it.

cdef bint ready_grow(ReadyQueue *q, Py_ssize_t need=0) noexcept:
    """Double the ring's capacity, or more until it holds `need` handles."""
    cdef Py_ssize_t i, capacity = q.capacity * 2 if q.capacity else READY_INITIAL_CAPACITY
    while capacity < need:
        capacity *= 2
    cdef PyObject **items = <PyObject **>PyMem_Malloc(capacity * sizeof(PyObject *))
    if items is NULL:
        return False
    for i in range(q.size):
        items[i] = q.items[(q.head + i) % q.capacity]
    PyMem_Free(q.items)
    q.items = items
    q.head = 0
    q.capacity = capacity
    return True


cdef inline bint ready_push(ReadyQueue *q, object handle) noexcept:
    if q.size == q.capacity and not ready_grow(q):
        return False
    cdef Py_ssize_t tail = q.head + q.size
    if tail >= q.capacity:
        tail -= q.capacity
    q.items[tail] = <PyObject *>handle
    fl_incref(<PyObject *>handle)
    q.size += 1
    return True


cdef inline bint ready_reserve(ReadyQueue *q, Py_ssize_t extra) noexcept:
    """Make room for `extra` more handles, so that ready_push_steal cannot fail."""
    return q.size + extra <= q.capacity or ready_grow(q, q.size + extra)


cdef inline void ready_push_steal(ReadyQueue *q, PyObject *handle) noexcept:
    """Append `handle`, taking over the caller's reference; room was reserved."""
    cdef Py_ssize_t tail = q.head + q.size
    if tail >= q.capacity:
        tail -= q.capacity
    q.items[tail] = handle
    q.size += 1


cdef inline PyObject *ready_pop(ReadyQueue *q) noexcept:
    """Take the oldest handle (the caller owns its reference), or NULL."""
    if q.size == 0:
        return NULL
    cdef PyObject *item = q.items[q.head]
    q.head += 1
    if q.head == q.capacity:
        q.head = 0
    q.size -= 1
    if q.size:
        # Its callback runs next: overlap fetching that handle with running this one.
        fl_prefetch(q.items[q.head])
    return item


cdef inline int ready_push_locked(CoreLoop loop, object handle) except -1:
    fl_mutex_lock(&loop.lock)
    cdef bint pushed = ready_push(&loop.ready, handle)
    fl_mutex_unlock(&loop.lock)
    if not pushed:
        raise MemoryError()
    return 0


cdef inline PyObject *ready_pop_locked(CoreLoop loop) noexcept:
    fl_mutex_lock(&loop.lock)
    cdef PyObject *item = ready_pop(&loop.ready)
    fl_mutex_unlock(&loop.lock)
    return item


cdef inline Py_ssize_t ready_size_locked(CoreLoop loop) noexcept:
    fl_mutex_lock(&loop.lock)
    cdef Py_ssize_t size = loop.ready.size
    fl_mutex_unlock(&loop.lock)
    return size


cdef int drop_pool(SparePool *pool) except -1:
    """Release every handle a spare pool holds (its array stays)."""
    cdef Py_ssize_t i, n = pool.size
    pool.size = 0
    for i in range(n):
        fl_decref(pool.items[i])
    return 0


cdef int ready_release(ReadyQueue *q) except -1:
    """Drop every handle of a ring detached from its loop, and the ring."""
    cdef Py_ssize_t i
    for i in range(q.size):
        rejoin_gc_if_shared(q.items[(q.head + i) % q.capacity])
        fl_decref(q.items[(q.head + i) % q.capacity])
    PyMem_Free(q.items)
    return 0


cdef object check_callback(object callback, str method):
    if aio_iscoroutine(callback) or aio_iscoroutinefunction(callback):
        raise TypeError(f'coroutines cannot be used with {method}()')
    if not callable(callback):
        raise TypeError(f'a callable object was expected by {method}(), got {callback!r}')


cdef inline double deadline_to_double(object when) except? -1.0:
    """A deadline as a C double; an int beyond the float range is -inf or inf."""
    if type(when) is float:
        return <double>when
    try:
        return <double>when
    except OverflowError:
        if isinstance(when, int):
            return -INFINITY if when < 0 else INFINITY
        raise


cdef object fileobj_to_fd(object fileobj):
    """selectors' rule: an int, or an object whose fileno() gives one."""
    if isinstance(fileobj, int):
        return fileobj
    try:
        return int(fileobj.fileno())
    except (AttributeError, TypeError, ValueError):
        raise ValueError(f'Invalid file object: {fileobj!r}') from None


@cython.final
cdef class FdWatch:
    """What the loop watches on one fd: the interest mask and its two handles."""


# no_gc_clear: gcsupport.pyx gives the loop its own tp_traverse and tp_clear.
@cython.no_gc_clear
cdef class CoreLoop:
    """The event loop's hot core: callbacks, timers, fd readiness, the iteration."""

    def __cinit__(self, *args, **kwargs):
        self._debug = False
        self.slow_callback_duration = 0.1
        self._slow_threshold = INFINITY
        self._clock_resolution = time_get_clock_info('monotonic').resolution
        self.timers = TimerQueue()
        # Closed until the poller and waker are open: if either fails (an unavailable
        # backend, EMFILE), __del__ finds a closed loop and has nothing to do.
        self._closed = True
        self.poller = open_poller(Poller, kwargs.get('backend'))
        self.waker = Waker()
        self.poller.ctl(self.waker.rfd, 0, FL_READ)
        self._closed = False
        self.fds = {}
        self.recvs = {}
        self.recv_again = []
        self.held = []
        self.recv_ok = self.poller.uring is not NULL and self.poller.uring.recv_ok
        self.dormant = []
        self._transports = weakref_WeakValueDictionary()
        self.transports_data = self._transports.data
        self.spare.items = <PyObject **>PyMem_Malloc(SPARE_HANDLES * sizeof(PyObject *))
        self.spare_timers.items = <PyObject **>PyMem_Malloc(
            SPARE_HANDLES * sizeof(PyObject *))
        if self.spare.items is NULL or self.spare_timers.items is NULL:
            raise MemoryError()
        self.gc_seen_runs = -1
        self.forks = fork_count
        gc_register(self)

    def __dealloc__(self):
        gc_unregister(self)
        cdef ReadyQueue ready = self.detach_ready()
        ready_release(&ready)
        PyMem_Free(self.recv_buf)
        self.drop_spares()
        PyMem_Free(self.spare.items)
        PyMem_Free(self.spare_timers.items)

    # -- state ------------------------------------------------------------------

    def time(self):
        return fl_monotonic()

    def get_debug(self):
        return self._debug

    def __init__(self, *, backend=None):
        # `backend` was read by __cinit__: the poller exists before any method runs.
        pass

    @property
    def backend(self):
        """The kernel facility the loop polls with: "epoll", "kqueue" or "io_uring"."""
        return self.poller.name

    def is_running(self):
        return self._thread_id is not None

    def is_closed(self):
        return self._closed

    def _check_closed(self):
        self.check_closed()

    def _check_thread(self):
        self.check_thread()

    def _check_callback(self, callback, method):
        check_callback(callback, method)

    cdef int check_closed(self) except -1:
        if self._closed:
            raise RuntimeError('Event loop is closed')
        return 0

    cdef int check_thread(self) except -1:
        if self._thread_id is not None and threading_get_ident() != self._thread_id:
            raise RuntimeError('Non-thread-safe operation invoked on an event loop '
                               'other than the current one')
        return 0

    def stop(self):
        self._stopping = True

    def close(self):
        if self._thread_id is not None:
            raise RuntimeError('Cannot close a running event loop')
        cdef ReadyQueue ready
        # One step under the lock that call_soon_threadsafe takes: a thread calling it
        # either queued its callback before (dropped here, as asyncio drops it) or
        # finds the loop closed, and none writes to the waker's fd once it is closed.
        fl_mutex_lock(&self.lock)
        if self._closed:
            fl_mutex_unlock(&self.lock)
            return
        self._closed = True
        ready = self.detach_ready()
        self.waker.close_fds()
        fl_mutex_unlock(&self.lock)
        ready_release(&ready)
        self.drop_spares()
        self.timers.clear_c()
        self.fds = {}
        self.recvs = {}
        self.recv_again = []
        self.held = []
        self.dormant = []
        self.poller.close()

    # -- callbacks --------------------------------------------------------------

    cdef Handle new_handle(self, object callback, tuple args, object context):
        cdef Handle handle
        cdef PyObject *spare = self.take_spare(&self.spare)
        if spare is not NULL:
            handle = <Handle>spare  # a new reference...
            fl_decref(spare)        # ...that replaces the pool's
        else:
            handle = Handle.__new__(Handle)
            # The handle, a context copied for it and its args tuple start outside
            # the cycle collector; see rejoin_gc_if_shared in handles.pyx.
            if not FL_FREE_THREADED:
                PyObject_GC_UnTrack(<PyObject *>handle)
        self.fill_handle(handle, callback, args, context)
        return handle

    cdef TimerHandle new_timer(self, double when, object callback, tuple args,
                               object context):
        cdef TimerHandle timer
        cdef PyObject *spare = self.take_spare(&self.spare_timers)
        if spare is not NULL:
            timer = <TimerHandle>spare
            fl_decref(spare)
        else:
            timer = TimerHandle.__new__(TimerHandle)
            if not FL_FREE_THREADED:
                PyObject_GC_UnTrack(<PyObject *>timer)
        timer.when_c = when
        self.fill_handle(timer, callback, args, context)
        return timer

    # Handle reuse. A handle the loop has run (or skipped as cancelled) usually dies
    # at once: the queue held the only reference. Freeing it and allocating the next
    # one costs more than the rest of a call_soon, and the free-threaded build has no
    # freelist at all, so the loop keeps up to SPARE_HANDLES of them per type (Handle,
    # TimerHandle), emptied, and new_handle and new_timer refill one. Only when
    # nothing else can ever see the difference: exactly a Handle or TimerHandle (not
    # a subclass), the loop's reference the only one (fl_sole_ref: on free-threaded
    # builds also owned by this thread and unknown to others), no weak reference to
    # it, and out of the collector while spare, so that gc.get_objects() cannot hand
    # it out. The pools themselves are touched only by the thread running the loop
    # (spare_tid; with the GIL by whoever holds it), and their handles refer to
    # nothing (not even the loop: no cycle keeps a loop alive).

    cdef inline PyObject *take_spare(self, SparePool *pool) noexcept:
        """A handle from `pool` (the pool's reference, fields None), or NULL."""
        if pool.size == 0 or (FL_FREE_THREADED and self.spare_tid != fl_thread_id()):
            return NULL
        pool.size -= 1
        cdef PyObject *spare = pool.items[pool.size]
        if FL_FREE_THREADED:
            PyObject_GC_Track(spare)  # tracked there, as asyncio's handles are
        return spare

    cdef bint keep_spare(self, PyObject *handle) except -1:
        """Take `handle` into its pool if nothing else can reach it; True if taken.

        The caller keeps its own reference either way.
        """
        cdef SparePool *pool
        if fl_type(handle) is <void *>Handle:
            pool = &self.spare
        elif fl_type(handle) is <void *>TimerHandle:
            pool = &self.spare_timers  # off the heap: _scheduled is False
        else:
            return False
        if (pool.size == SPARE_HANDLES
                or (FL_FREE_THREADED and self.spare_tid != fl_thread_id())
                or not fl_sole_ref(handle) or fl_has_weakrefs(handle)):
            return False
        PyObject_GC_UnTrack(handle)  # a no-op for an untracked object
        # What its deallocation would do, in the same order (Handle.__dealloc__, then
        # the fields). Releasing them may run finalizers, which may schedule
        # callbacks (new_handle) but can never reach this handle.
        cdef Handle h = <Handle>handle
        track_context(h._context)
        release_args(h._args)
        h._cancelled = False
        h._callback = None
        h._args = None
        h._loop = None
        if h._source_traceback is not None:  # debug mode only
            h._source_traceback = None
        h._context = None
        if h._repr is not None:  # cancelled in debug mode
            h._repr = None
        if pool.size == SPARE_HANDLES:  # filled by those finalizers meanwhile
            return False
        fl_incref(handle)
        pool.items[pool.size] = handle
        pool.size += 1
        return True

    cdef int drop_spares(self) except -1:
        drop_pool(&self.spare)
        drop_pool(&self.spare_timers)
        return 0

    cdef inline int fill_handle(self, Handle handle, object callback, tuple args,
                                object context) except -1:
        handle._callback = callback
        handle._args = args
        untrack_args(args)
        handle._loop = self
        if context is None:
            context = PyContext_CopyCurrent()
            if not FL_FREE_THREADED:
                PyObject_GC_UnTrack(<PyObject *>context)
        handle._context = context
        if self._debug:
            # No Python frame stands for Cython code, so frame 0 is the caller.
            handle._source_traceback = aio_extract_stack(sys_getframe(0))
        return 0

    cdef int push_ready(self, Handle handle) except -1:
        return ready_push_locked(self, handle)

    cdef ReadyQueue detach_ready(self) noexcept:
        """Take the ring away, leaving an empty one; the caller holds the lock.

        Detached first and released later (ready_release), outside the lock:
        releasing a handle may run code that schedules callbacks.
        """
        cdef ReadyQueue old = self.ready
        self.ready.items = NULL
        self.ready.head = self.ready.size = self.ready.capacity = 0
        return old

    def call_soon(self, callback, *args, context=None):
        """Arrange for callback(*args) to be called soon, in FIFO order."""
        if self._closed:
            raise RuntimeError('Event loop is closed')
        if self._debug:
            self.check_thread()
            check_callback(callback, 'call_soon')
        cdef Handle handle = self.new_handle(callback, args, context)
        ready_push_locked(self, handle)
        return handle

    cdef Handle call_soon_c(self, object callback, tuple args):
        """call_soon(callback, *args) for the core's own callers (transports)."""
        if self._closed:
            raise RuntimeError('Event loop is closed')
        if self._debug:
            self.check_thread()
            check_callback(callback, 'call_soon')
        cdef Handle handle = self.new_handle(callback, args, None)
        ready_push_locked(self, handle)
        return handle

    def call_soon_threadsafe(self, callback, *args, context=None):
        """Like call_soon(), but callable from any thread: wakes the loop."""
        if self._closed:
            raise RuntimeError('Event loop is closed')
        if self._debug:
            check_callback(callback, 'call_soon_threadsafe')
        cdef object handle
        if TSH_NATIVE and not self._debug:
            handle = new_threadsafe_handle(callback, args, self, context)
        elif aio_ThreadSafeHandle is not None:
            handle = aio_ThreadSafeHandle(callback, args, self, context)
            if handle._source_traceback:
                # Its __init__'s frame (this method has none: it is Cython).
                handle._source_traceback.pop()
        else:
            handle = self.new_handle(callback, args, context)
        cdef bint closed, pushed = False
        # Checked again under the lock: close() may have run in another thread since.
        # Queue first, wake second: the order waker.pyx's proof relies on.
        fl_mutex_lock(&self.lock)
        closed = self._closed
        if not closed:
            pushed = ready_push(&self.ready, handle)
            if pushed:
                self.waker.wake_c()
        fl_mutex_unlock(&self.lock)
        if closed:
            raise RuntimeError('Event loop is closed')
        if not pushed:
            raise MemoryError()
        return handle

    def call_later(self, delay, callback, *args, context=None):
        """Arrange for callback(*args) to be called after `delay` seconds."""
        if delay is None:
            raise TypeError('delay must not be None')
        if type(delay) is float:
            return self.schedule(fl_monotonic() + <double>delay, callback, args, context)
        if type(delay) is int:
            # Directly: <double> would convert through a float object.
            return self.schedule(fl_monotonic() + PyLong_AsDouble(delay), callback, args,
                                 context)
        # Let Python raise the exact error asyncio's time() + delay raises.
        when = fl_monotonic() + delay
        self.check_closed()
        return self.schedule(deadline_to_double(when), callback, args, context)

    def call_at(self, when, callback, *args, context=None):
        """Arrange for callback(*args) to be called at loop time `when`."""
        if when is None:
            raise TypeError('when cannot be None')
        # Closed first: asyncio reports a closed loop whatever the deadline.
        self.check_closed()
        return self.schedule(deadline_to_double(when), callback, args, context)

    cdef TimerHandle schedule(self, double when, object callback, tuple args,
                              object context):
        if self._closed:
            raise RuntimeError('Event loop is closed')
        if self._debug:
            self.check_thread()
            check_callback(callback, 'call_at')
        cdef TimerHandle timer = self.new_timer(when, callback, args, context)
        self.timers.push_c(timer)
        return timer

    def _add_callback(self, handle):
        """Queue an existing handle (signal dispatch)."""
        if not handle._cancelled:
            ready_push_locked(self, handle)

    def _timer_handle_cancelled(self, handle):
        """TimerHandle.cancel() of a foreign handle type reports here."""
        if handle._scheduled:
            fl_add_ssize(&self.timers.ncancelled, 1)

    def _write_to_self(self):
        # Under the lock, as in call_soon_threadsafe: close() cannot close the fd
        # between the waker's check and its write.
        fl_mutex_lock(&self.lock)
        self.waker.wake_c()
        fl_mutex_unlock(&self.lock)

    # -- file descriptors -------------------------------------------------------

    # The public four refuse an fd that a live transport owns; the private twins,
    # used by transports, the sock_* methods and asyncio's borrowed code, do not.

    def add_reader(self, fd, callback, *args):
        """Call callback(*args) whenever fd is readable."""
        self.ensure_fd_no_transport(fd)
        self.add_fd(fd, FL_READ, callback, args)

    def add_writer(self, fd, callback, *args):
        """Call callback(*args) whenever fd is writable."""
        self.ensure_fd_no_transport(fd)
        self.add_fd(fd, FL_WRITE, callback, args)

    def remove_reader(self, fd):
        """Stop watching fd for reading; True if a reader was registered."""
        self.ensure_fd_no_transport(fd)
        return self.remove_fd(fd, FL_READ)

    def remove_writer(self, fd):
        """Stop watching fd for writing; True if a writer was registered."""
        self.ensure_fd_no_transport(fd)
        return self.remove_fd(fd, FL_WRITE)

    def _add_reader(self, fd, callback, *args):
        """add_reader() without the transport check; return the Handle."""
        return self.add_fd(fd, FL_READ, callback, args)

    def _add_writer(self, fd, callback, *args):
        """add_writer() without the transport check; return the Handle."""
        return self.add_fd(fd, FL_WRITE, callback, args)

    def _remove_reader(self, fd):
        return self.remove_fd(fd, FL_READ)

    def _remove_writer(self, fd):
        return self.remove_fd(fd, FL_WRITE)

    def _ensure_fd_no_transport(self, fd):
        """RuntimeError if a transport that is not closing owns fd."""
        self.ensure_fd_no_transport(fd)

    cdef int ensure_fd_no_transport(self, object fd) except -1:
        fileno = fileobj_to_fd(fd)
        # The WeakValueDictionary's own dict, read without a Python-level call.
        ref = self.transports_data.get(fileno)
        if ref is None:
            return 0
        transport = ref()
        if transport is not None and not transport.is_closing():
            raise RuntimeError(f'File descriptor {fd!r} is used by transport {transport!r}')
        return 0

    cdef bint fd_polling(self, int fd, int event):
        cdef FdWatch watch = self.fds.get(fd)
        return watch is not None and (watch.events & event) != 0

    cdef char *get_recv_buf(self) except NULL:
        if self.recv_buf is NULL:
            self.recv_buf = <char *>PyMem_Malloc(MAX_RECV_SIZE)
            if self.recv_buf is NULL:
                raise MemoryError()
        return self.recv_buf

    cdef object lookup_fd(self, object fileobj):
        # As with selectors, a socket closed since it was registered (fileno() now
        # -1) is still found by identity, so that it can be removed.
        cdef FdWatch watch
        try:
            fd = fileobj_to_fd(fileobj)
            if fd < 0:
                raise ValueError(f'Invalid file descriptor: {fd}')
            return fd
        except ValueError:
            for fd, watch in self.fds.items():
                if watch.fileobj is fileobj:
                    return fd
            raise

    cdef Handle add_fd(self, object fileobj, int event, object callback, tuple args):
        fd_obj = fileobj_to_fd(fileobj)
        self.check_closed()
        if fd_obj < 0:
            raise ValueError(f'Invalid file descriptor: {fd_obj}')
        cdef int fd = fd_obj
        cdef Handle handle = self.new_handle(callback, args, None)
        track_handle(<PyObject *>handle)  # it lives in the fd table, shared with users
        self.install_handle(fileobj, fd, event, handle)
        return handle

    cdef int add_io(self, object fd_obj, int fd, int event, Handle handle) except -1:
        """Make `handle` fd's reader or writer (a transport's; the loop is open)."""
        return self.install_handle(fd_obj, fd, event, handle)

    cdef int install_handle(self, object fileobj, int fd, int event,
                            Handle handle) except -1:
        if self.forks != fork_count:
            self.leave_parent()
        cdef FdWatch watch = self.fds.get(fd)
        cdef int want
        # The poller first: if it refuses the fd (EPERM, EBADF), nothing changed.
        if watch is None:
            self.poller.ctl(fd, 0, event)
            watch = FdWatch.__new__(FdWatch)
            # An int fileobj is the key as is: one int object less per fd.
            self.fds[fileobj if type(fileobj) is int else fd] = watch
            want = event
        else:
            want = watch.events | event
            if watch.events == 0 and (watch.fileobj is not fileobj
                                      or isinstance(fileobj, int)):
                # Dormant (see remove_fd), and the number may name another file
                # by now: tell the poller afresh whatever it still holds.
                self.poller.ctl(fd, FL_UNKNOWN, want)
            elif watch.kernel != want:
                self.poller.ctl(fd, watch.kernel, want)
        watch.kernel = want
        watch.fileobj = fileobj
        watch.events = want
        if event == FL_READ:
            old, watch.reader = watch.reader, handle
        else:
            old, watch.writer = watch.writer, handle
        if old is not None:
            (<Handle>old)._cancel_c()
        return 0

    cdef bint remove_fd(self, object fileobj, int event) except -1:
        if self._closed:
            fileobj_to_fd(fileobj)  # asyncio rejects a bad file object even then
            return False
        if self.forks != fork_count:
            self.leave_parent()
        fd_obj = self.lookup_fd(fileobj)
        # Numbers no fd can have (2**31) are simply not in the table.
        cdef FdWatch watch = self.fds.get(fd_obj)
        if watch is None:
            return False
        cdef int fd = fd_obj
        cdef int new_events = watch.events & ~event
        if new_events != watch.events:
            if new_events:
                self.poller.ctl(fd, watch.kernel, new_events)
                watch.kernel = new_events
            else:
                # The last handle left: the fd stays in the poller, dormant, until
                # the next poll. sock_recv() after sock_recv() on one socket, the
                # usual case, re-arms it within the iteration without a syscall.
                self.dormant.append(fd)
            watch.events = new_events
        if event == FL_READ:
            old, watch.reader = watch.reader, None
        else:
            old, watch.writer = watch.writer, None
        if old is None:
            return False
        (<Handle>old)._cancel_c()
        return True

    cdef int fd_ready(self, int fd, int events) except -1:
        """Queue the handles fd's events call for; 1 if fd is stale (not in the table)."""
        if fd == self.waker.rfd:
            self.waker.drain_c()
            return 0
        cdef FdWatch watch = self.fds.get(fd)
        if watch is None:
            return 1
        self.st.io_events += 1
        cdef Handle reader = watch.reader, writer = watch.writer
        if events & FL_READ and reader is not None:
            if reader._cancelled:
                self.remove_fd(fd, FL_READ)
            else:
                ready_push_locked(self, reader)
        if events & FL_WRITE and writer is not None:
            if writer._cancelled:
                self.remove_fd(fd, FL_WRITE)
            else:
                ready_push_locked(self, writer)
        return 0

    # -- completion reads (io_uring; includes/poll_uring.h) ------------------------

    cdef int recv_start(self, TransportBase transport) except -1:
        """Have the poller receive for `transport` and report what arrives."""
        if self.forks != fork_count:
            self.leave_parent()
        self.poller.recv_ctl(transport.fd, True, False)
        self.recvs[transport.fd_obj] = transport
        return 0

    cdef int recv_stop(self, TransportBase transport, bint discard) except -1:
        """Stop receiving for `transport`; what arrived before the stop is still
        reported, unless `discard` (it is closing)."""
        if self._closed:
            return 0
        if self.forks != fork_count:
            self.leave_parent()
        self.poller.recv_ctl(transport.fd, False, discard)
        if discard:
            self.recvs.pop(transport.fd_obj, None)
        return 0

    cdef int recv_done(self, fl_event *event) except -1:
        cdef Poller poller = self.poller
        cdef object transport = self.recvs.get(event.fd)
        try:
            if transport is not None:
                self.st.io_events += 1
                (<TransportBase>transport).received(
                    fl_uring_buf(poller.uring, event.bid) if event.bid >= 0 else NULL,
                    event.res)
        finally:
            if event.bid >= 0:
                fl_uring_buf_give(poller.uring, event.bid)
        return 0

    cdef int recv_catch_up(self) except -1:
        """Before a transport delivers: what completed since the poll (a receive for
        bytes this thread sent meanwhile, say), as epoll's reader would read it now.
        Bytes go to their transports, delivered from the next poll (the caller's now);
        readiness is held for the next poll to report, as epoll would."""
        cdef int i, n = self.poller.catch_up()
        if n == 0:
            return 0
        cdef fl_event *events = self.poller.events
        self.catching_up = True
        try:
            for i in range(n):
                if events[i].events == FL_RECV:
                    self.recv_done(&events[i])
                else:
                    self.held.append((events[i].fd, events[i].events))
        finally:
            self.catching_up = False
        return 0

    cdef int recv_requeue(self) except -1:
        """At the poll: a transport that delivered part of what it holds is reported
        again, as a socket with unread bytes is by a level-triggered poll."""
        cdef list again = self.recv_again
        self.recv_again = []
        for transport in again:
            if (<SocketTransport>transport).rchunks or (<SocketTransport>transport).rend:
                (<SocketTransport>transport).queue_delivery()
        return 0

    cdef int replace_poller(self) except -1:
        """Move the waker and every fd of the table to a fresh poller; close the old one.

        The cure for a stale registration: epoll watches file descriptions, so an fd
        closed while registered stays in the set as long as a dup of it lives, and
        keeps reporting under its old number. That entry cannot be removed by number:
        EPOLL_CTL_DEL fails with EBADF once the number is closed, and once the number
        is reused it names the new file (ENOENT, or that file's own entry). Left
        alone, a level-triggered entry that stays ready makes every poll return at
        once (the loop spins) and fires the callbacks of whatever fd reuses the
        number. Only closing the epoll instance drops it. kqueue drops an fd's
        filters when it is closed, so there this never runs. docs/core.md, "Stale
        fds are forgotten".
        """
        self.forget_dormant()
        return self.rebuild_poller(True)

    cdef int rebuild_poller(self, bint close_old) except -1:
        """A fresh Poller with the waker and every fd of the table in it; the old one
        closed (close_old), or else only let go of."""
        cdef Poller old = self.poller, new = Poller(old.name)
        cdef FdWatch watch
        new.ctl(self.waker.rfd, 0, FL_READ)
        for fd, transport in self.recvs.items():
            if not (<TransportBase>transport)._paused:
                new.recv_ctl(fd, True, False)
        for fd, watch in self.fds.items():
            watch.kernel = watch.events
            try:
                new.ctl(fd, 0, watch.events)
            except OSError:
                # Closed while registered (the user's bug): no longer watchable. It
                # stays in the table, so that remove_reader() still finds it.
                pass
        self.poller = new
        if close_old:
            old.close()
        else:
            old.fd = -1
        return 0

    cdef int leave_parent(self) except -1:
        """In a fork() child, before the loop's first syscall there: stop sharing the
        parent's poller and waker (fork.pyx says why), taking the fd table along."""
        self.forks = fork_count
        cdef Waker old_waker, new_waker = Waker()
        cdef fl_lock_t cs
        fl_lock(&cs, self)  # as in close(): call_soon_threadsafe reads the waker under it
        old_waker = self.waker
        self.waker = new_waker
        old_waker.close_fds()  # the child's copies only: the parent's fds stay open
        # A thread's wake-up may have gone to the old waker: one spare ends any doubt.
        new_waker.wake_c()
        fl_unlock(&cs)
        # Dormant fds leave the table without a word to the kernel: EPOLL_CTL_DEL on
        # the inherited instance would delete the parent's registration.
        self.forget_dormant(False)
        # Closing the child's copy of an inherited epoll fd leaves the parent's
        # instance alone; a kqueue fd was not inherited, and its number may be reused.
        return self.rebuild_poller(FL_POLLER_INHERITED)

    cdef int forget_dormant(self, bint tell_poller=True) except -1:
        """Drop the fds whose handles all left since the last poll from the table, and
        from the poller (tell_poller)."""
        cdef FdWatch watch
        cdef list dormant = self.dormant
        self.dormant = []
        for fd in dormant:
            watch = self.fds.get(fd)
            if watch is not None and watch.events == 0:
                del self.fds[fd]
                if tell_poller:
                    # Errors are ignored: a closed fd has left the poller already.
                    self.poller.forget_c(fd)
        return 0

    # -- the iteration ----------------------------------------------------------

    cdef int poll_timeout_ms(self, double *now) except? -2:
        """The poll's timeout; sets *now when it read the clock to compute it."""
        cdef double when = self.timers.first_when_c()
        # Read without the lock: a handle another thread queues meanwhile comes with
        # a wake-up that ends the poll (waker.pyx).
        if fl_load_ssize(&self.ready.size) or self._stopping or self.recv_again or self.held:
            return 0
        if self.timers.size == 0:
            return -1
        now[0] = fl_monotonic()
        cdef double delay = when - now[0]
        if delay <= 0:
            return 0
        if delay > MAX_POLL_TIMEOUT:
            delay = MAX_POLL_TIMEOUT
        # Round up: waking a little late is fine, waking early means spinning.
        return <int>ceil(delay * 1000.0)

    cdef bint idle_now(self) except -1:
        """True when the next iteration would only poll: nothing ready, no timer due.

        A transport that just handled a read may then read again at once instead of
        asking the poller first; nothing else could have run in between.
        """
        if fl_load_ssize(&self.ready.size) or self._stopping or self._debug:
            return False
        return self.timers.first_when_c() > fl_monotonic() + self._clock_resolution

    cdef int run_once(self) except -1:
        cdef Py_ssize_t i, n
        cdef PyObject *item
        cdef TimerHandle timer
        cdef fl_event *events

        # Run the Python handlers of signals that arrived while C code ran (a SIGINT
        # during a chain of C callbacks, say): asyncio's iteration is Python code, in
        # which the interpreter runs them; without this check a busy loop never
        # would, and a blocking poll would first wait for its timeout or an event.
        PyErr_CheckSignals()
        if self.forks != fork_count:
            self.leave_parent()
        self.timers.compact_if_worth_it()
        if self.dormant:
            self.forget_dormant()
        # A clock read costs about as much as running a small callback (60-70 ns on
        # a VM's TSC): the iteration reads it before the poll only when timers are
        # scheduled or the poll may block, and once after it (the statistics' lag and
        # busy time, and the due timers, all use that one reading).
        cdef double now = NAN
        cdef int timeout_ms = self.poll_timeout_ms(&now)
        if timeout_ms != 0:
            self.busy_iterations = 0  # the poll may block: it releases the GIL
        else:
            self.busy_iterations += 1
            if self.busy_iterations == GIL_RELEASE_ITERATIONS:
                self.busy_iterations = 0
                # A thread waiting for the GIL takes it here (CPython's forced switch).
                with nogil:
                    pass
        # For stats.pyx: a poll that cannot block counts as busy time, unclocked.
        cdef bint carried = fl_load_ssize(&self.ready.size) != 0
        cdef double poll_start = 0.0
        if timeout_ms != 0:
            poll_start = fl_monotonic() if isnan(now) else now
        # With nothing but the waker registered (no fd, no completion read), a
        # zero-timeout poll can only report the waker, whose sole job is to end a
        # sleep; skip that syscall.
        if timeout_ms != 0 or self.fds or self.recvs or self.held:
            now = NAN  # the poll took time: read the clock again
            stale = False
            if self.held:
                held, self.held = self.held, []
                for fd, mask in held:
                    if self.fd_ready(fd, mask):
                        stale = True
            n = self.poller.wait(timeout_ms)
            events = self.poller.events
            for i in range(n):
                if events[i].events == FL_RECV:
                    self.recv_done(&events[i])
                elif self.fd_ready(events[i].fd, events[i].events):
                    stale = True
            if self.recv_again:
                self.recv_requeue()
            if stale:
                self.replace_poller()

        if isnan(now):
            now = fl_monotonic()
        # The heap's top as poll_timeout_ms left it, cancelled tops dropped. Only a
        # finalizer run during the poll could have cancelled it since, which would
        # only make the statistics count this batch's lag from that timer's deadline.
        cdef double ready_since = stats_ready_since(
            &self.st, carried, self.timers.heap[0].when if self.timers.size else INFINITY, now)
        if self.timers.size:
            self.timers.pop_due_into(self, now + self._clock_resolution)

        # Run exactly the callbacks ready now; those they schedule wait a turn.
        # Counted under the lock, after the waker was drained (waker.pyx).
        n = ready_size_locked(self)
        stats_iteration(&self.st, poll_start, now, ready_since, n)
        cdef bint timed = self._slow_threshold != INFINITY
        for i in range(n):
            item = ready_pop_locked(self)
            if item is NULL:
                break
            obj = <object>item
            fl_decref(item)  # `obj` holds the queue's reference now
            if not isinstance(obj, Handle):
                self.run_foreign(obj)
            elif not (<Handle>obj)._cancelled:
                if self._debug or timed:
                    self.run_debug(obj)
                else:
                    (<Handle>obj)._run_c()
            if not self.keep_spare(item):  # `obj` still holds the queue's reference
                rejoin_gc_if_shared(item)
        return 0

    cdef int run_foreign(self, object handle) except -1:
        """Run a handle of another type: asyncio's _ThreadSafeHandle, or _add_callback's."""
        cdef bint timed = self._debug or self._slow_threshold != INFINITY
        if type(handle) is ThreadSafeHandle:
            rejoin_threadsafe_context(<PyObject *>handle)  # before anything can raise
            if not timed:
                return run_threadsafe_handle(handle)  # checks _cancelled under its lock
        if handle._cancelled:
            return 0
        if timed:
            self.run_debug(handle)
        else:
            handle._run()
        return 0

    cdef int run_debug(self, object handle) except -1:
        """Run a handle timed: debug mode's warning, and the slow-callback hook if set."""
        cdef bint debug = self._debug
        if debug:
            self._current_handle = handle
        try:
            t0 = fl_monotonic()
            if isinstance(handle, Handle):
                (<Handle>handle)._run_c()
            else:
                handle._run()
            dt = fl_monotonic() - t0
            if debug and dt >= self.slow_callback_duration:
                aio_logger.warning('Executing %s took %.3f seconds',
                                   aio_format_handle(handle), dt)
            if dt >= self._slow_threshold:
                self._slow_callback(handle, dt)
        finally:
            if debug:
                self._current_handle = None
        return 0

    def _run_until_stopped(self):
        """Run iterations until stop() was called."""
        self.spare_tid = fl_thread_id()
        self.runs += 1
        try:
            while True:
                self.run_once()
                if self._stopping:
                    break
        finally:
            self.spare_tid = 0
            self._stopping = False
            stats_run_ended(&self.st)

    # -- statistics (stats.pyx) ---------------------------------------------------

    def _stats_counters(self):
        """The core's fields of loop.stats(), as a dict; any thread may call it."""
        return stats_counters(self)

    def _reset_stats(self):
        """Zero the counters, the lag maximum and histogram (the loop's thread only)."""
        stats_reset(&self.st)

    # -- transports ---------------------------------------------------------------

    def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None,
                               server=None):
        if PY312:
            self.ensure_fd_no_transport(sock)
        return SocketTransport(self, sock, protocol, waiter, extra, server)

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None,
                                 extra=None):
        if PY312:
            self.ensure_fd_no_transport(sock)
        return DatagramTransport(self, sock, protocol, address, waiter, extra)

    def _make_read_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        return ReadPipeTransport(self, pipe, protocol, waiter, extra)

    def _make_write_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        return WritePipeTransport(self, pipe, protocol, waiter, extra)

    # -- sock_* coroutines ----------------------------------------------------------
    # Each tries its syscall first (on the fd itself for a plain socket.socket);
    # only when that would block does it make a future and register a reader or
    # writer that retries. Whatever settles the future (result, error,
    # cancellation) unregisters it (SockDone).

    cdef int check_sock(self, object sock) except -1:
        if type(sock) is not socket_socket:
            check_ssl_socket(sock)
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        return 0

    cdef object sock_wait(self, int event, object sock, object callback, tuple args):
        """A future that callback(fut, *args) settles when sock is ready."""
        fut = aio_Future(loop=self)
        fd = sock.fileno()
        self.ensure_fd_no_transport(fd)
        # Registered under the socket object: a sock_recv() that follows on the same
        # socket finds it dormant and re-arms it without a syscall (install_handle).
        handle = self.add_fd(sock, event, callback, (fut,) + args)
        fut.add_done_callback(new_sock_done(self, sock, event, handle))
        return fut

    async def sock_recv(self, sock, n):
        """Receive up to n bytes from sock."""
        self.check_sock(sock)
        data = sock_recv_now(self, sock, n)
        if data is not None:
            return data
        return await self.sock_wait(FL_READ, sock, self._sock_recv, (sock, n))

    def _sock_recv(self, fut, sock, n):
        if fut.done():
            return
        try:
            data = sock_recv_now(self, sock, n)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
            return
        if data is not None:
            fut.set_result(data)

    async def sock_recv_into(self, sock, buf):
        """Receive into buf; return the number of bytes received."""
        self.check_sock(sock)
        nbytes = sock_recv_into_now(self, sock, buf)
        if nbytes is not None:
            return nbytes
        return await self.sock_wait(FL_READ, sock, self._sock_recv_into, (sock, buf))

    def _sock_recv_into(self, fut, sock, buf):
        if fut.done():
            return
        try:
            nbytes = sock_recv_into_now(self, sock, buf)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
            return
        if nbytes is not None:
            fut.set_result(nbytes)

    async def sock_recvfrom(self, sock, bufsize):
        """Receive a datagram of up to bufsize bytes; return (data, address)."""
        self.check_sock(sock)
        try:
            return sock.recvfrom(bufsize)
        except (BlockingIOError, InterruptedError):
            pass
        return await self.sock_wait(FL_READ, sock, self._sock_retry,
                                    (sock, 'recvfrom', bufsize))

    async def sock_recvfrom_into(self, sock, buf, nbytes=0):
        """Receive a datagram into buf; return (nbytes, address)."""
        self.check_sock(sock)
        if not nbytes:
            nbytes = len(buf)
        try:
            return sock.recvfrom_into(buf, nbytes)
        except (BlockingIOError, InterruptedError):
            pass
        return await self.sock_wait(FL_READ, sock, self._sock_retry,
                                    (sock, 'recvfrom_into', buf, nbytes))

    async def sock_sendall(self, sock, data):
        """Send all of data; return None."""
        self.check_sock(sock)
        n = sock_send_now(self, sock, data)
        if n is None:
            return
        # pos: a list, so that the retries share their progress.
        return await self.sock_wait(FL_WRITE, sock, self._sock_sendall,
                                    (sock, memoryview(data), [n]))

    def _sock_sendall(self, fut, sock, view, pos):
        if fut.done():
            return
        start = pos[0]
        try:
            n = sock.send(view[start:])
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
            return
        start += n
        if start == len(view):
            fut.set_result(None)
        else:
            pos[0] = start

    async def sock_sendto(self, sock, data, address):
        """Send a datagram to address; return the number of bytes sent."""
        self.check_sock(sock)
        try:
            return sock.sendto(data, address)
        except (BlockingIOError, InterruptedError):
            pass
        return await self.sock_wait(FL_WRITE, sock, self._sock_retry,
                                    (sock, 'sendto', data, 0, address))

    def _sock_retry(self, fut, sock, method, *args):
        """Readiness callback: retry sock.<method>(*args) into fut."""
        if fut.done():
            return
        try:
            # Looked up each time, as asyncio does (tests patch the socket's methods).
            result = getattr(sock, method)(*args)
        except (BlockingIOError, InterruptedError):
            return  # spurious readiness: wait for the next event
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(result)


# Handle and TimerHandle: asyncio.Handle and asyncio.TimerHandle as cdef classes.
#
# The loop makes them through CoreLoop.new_handle/new_timer, which skip __init__;
# the constructors below exist for code that builds handles itself. Their repr is
# asyncio's own (_repr_info is borrowed, not rewritten).

# asyncio 3.13 formats callbacks differently in debug mode.
cdef bint FORMAT_TAKES_DEBUG = sys_version_info >= (3, 13)


cdef object format_callback(object handle):
    if FORMAT_TAKES_DEBUG:
        return aio_format_callback_source(handle._callback, handle._args,
                                          debug=handle._loop.get_debug())
    return aio_format_callback_source(handle._callback, handle._args)


cdef int call_in_context(object callback, object args, object context) except -1:
    """callback(*args) in `context`, as asyncio's Handle._run does it."""
    if type(args) is not tuple:
        args = tuple(args)
    if not PyContext_CheckExact(context):
        # A duck-typed context: asyncio only ever calls its run() method.
        context.run(callback, *args)
        return 0
    PyContext_Enter(context)
    try:
        if len(<tuple>args) == 0:
            PyObject_CallNoArgs(callback)
        else:
            PyObject_Call(callback, args, NULL)
    finally:
        PyContext_Exit(context)
    return 0


cdef int report_exception(object handle, object exc) except -1:
    """Hand an exception raised by handle's callback to its loop's exception handler."""
    context = {
        'message': f'Exception in callback {format_callback(handle)}',
        'exception': exc,
        'handle': handle,
    }
    if handle._source_traceback:
        context['source_traceback'] = handle._source_traceback
    handle._loop.call_exception_handler(context)
    return 0


# Most handles live and die inside the loop: the queue holds the only reference
# from call_soon() to the callback's return. Tracking each one (and the context
# copied for it) in the cycle collector costs far more than running it, since
# 100k queued handles make the collector sweep them again and again. So the
# loop's factories untrack both (coreloop.pyx), and a handle goes back to the
# collector, with its context, at the moment the loop drops its reference while
# someone else still holds one: only from then on can it be part of a cycle the
# loop does not keep alive anyway.
#
# Free-threaded builds skip all of this (FL_FREE_THREADED; handles stay tracked, as
# asyncio's are): there Py_REFCNT of an object other threads hold is not exact
# (biased reference counting merges their counts lazily), and tracking sets the
# object's GC bits by a load and a store, which can undo a bit its owning thread
# sets meanwhile. docs/free-threading.md, "GC tracking".

cdef inline void track_context(object context) noexcept:
    # CPython's Context dealloc unlinks the object from the collector
    # unconditionally: an untracked Context must be tracked again before it dies.
    if (not FL_FREE_THREADED and PyContext_CheckExact(context)
            and not PyObject_GC_IsTracked(<PyObject *>context)):
        PyObject_GC_Track(<PyObject *>context)


# The same holds for the tuple of arguments that call_soon(cb, *args) made for the
# handle: untracked while only the handle holds it, tracked again whenever the
# handle rejoins the collector or lets go of a tuple someone else still holds.
# (An untracked tuple is only ever kept alive too long, never freed too early.)

cdef inline void untrack_args(object args) noexcept:
    # Two references: the *args tuple's owner (the method wrapper) and the handle.
    # A tuple that more code shares is left alone.
    if (not FL_FREE_THREADED and type(args) is tuple and PyTuple_GET_SIZE(args)
            and fl_refcnt(<PyObject *>args) <= 2 and PyObject_GC_IsTracked(<PyObject *>args)):
        PyObject_GC_UnTrack(<PyObject *>args)


cdef inline void track_args(object args) noexcept:
    # Never the empty tuple: a static singleton on newer Pythons.
    if (not FL_FREE_THREADED and type(args) is tuple and PyTuple_GET_SIZE(args)
            and not PyObject_GC_IsTracked(<PyObject *>args)):
        PyObject_GC_Track(<PyObject *>args)


cdef inline void release_args(object args) noexcept:
    """Call when a handle is about to drop its reference to `args`."""
    if not FL_FREE_THREADED and args is not None and fl_refcnt(<PyObject *>args) > 1:
        track_args(args)


cdef inline void track_handle(PyObject *handle) noexcept:
    if FL_FREE_THREADED or PyObject_GC_IsTracked(handle):
        return
    if fl_type(handle) is <void *>Handle or fl_type(handle) is <void *>TimerHandle:
        PyObject_GC_Track(handle)
        track_context((<Handle>handle)._context)
        track_args((<Handle>handle)._args)
    elif fl_type(handle) is <void *>ThreadSafeHandle:
        PyObject_GC_Track(handle)  # its args were never untracked
        rejoin_threadsafe_context(handle)


cdef inline void rejoin_gc_if_shared(PyObject *handle) noexcept:
    """Call when the loop is about to drop its one reference to `handle`."""
    if FL_FREE_THREADED:
        return
    if fl_type(handle) is <void *>ThreadSafeHandle:
        rejoin_threadsafe_context(handle)
    if fl_refcnt(handle) > 1:
        track_handle(handle)


cdef inline bint mark_cancelled(Handle handle) noexcept:
    """Set `_cancelled`; False if it was set already (by this thread or another)."""
    cdef fl_lock_t cs
    cdef bint first
    fl_lock(&cs, handle)
    first = not handle._cancelled
    handle._cancelled = True
    fl_unlock(&cs)
    return first


cdef inline int drop_callback(Handle handle) except -1:
    """The rest of cancel(): release callback and arguments, as asyncio does."""
    cdef object callback, args
    cdef fl_lock_t cs
    if loop_debug(handle._loop):
        # Keep callback and arguments visible, e.g. for "Executing <Handle ...>".
        handle._repr = repr(handle)
    release_args(handle._args)
    # Swapped out under the lock, released after it: a reader holding the lock
    # (_run_c, the attribute getters) has its own reference by then.
    fl_lock(&cs, handle)
    callback = handle._callback
    args = handle._args
    handle._callback = None
    handle._args = None
    fl_unlock(&cs)
    return 0


cdef tuple callback_and_args(Handle handle):
    """(_callback, _args), read together under the handle's lock."""
    cdef fl_lock_t cs
    fl_lock(&cs, handle)
    callback = handle._callback
    args = handle._args
    fl_unlock(&cs)
    return callback, args


cdef inline bint loop_debug(object loop) except -1:
    if isinstance(loop, CoreLoop):
        return (<CoreLoop>loop)._debug
    return loop.get_debug()


@cython.freelist(256)
cdef class Handle:
    """Object returned by callback registration methods."""

    def __init__(self, callback, args, loop, context=None):
        if context is None:
            context = PyContext_CopyCurrent()
        self._context = context
        self._loop = loop
        self._callback = callback
        release_args(self._args)  # re-initialised: see untrack_args
        self._args = args
        self._cancelled = False
        self._repr = None
        if loop_debug(loop):
            # No Python frame stands for this Cython method, so frame 0 is the caller.
            self._source_traceback = aio_extract_stack(sys_getframe(0))
        else:
            self._source_traceback = None

    def __dealloc__(self):
        track_context(self._context)
        release_args(self._args)

    def _repr_info(self):
        return aio_Handle_repr_info(self)

    def __repr__(self):
        if self._repr is not None:
            return self._repr
        return '<{}>'.format(' '.join(self._repr_info()))

    def cancel(self):
        self._cancel_c()

    cdef int _cancel_c(self) except -1:
        if mark_cancelled(self):
            drop_callback(self)
        return 0

    def cancelled(self):
        return self._cancelled

    def get_context(self):
        return self._context

    def _run(self):
        self._run_c()

    cdef int _run_c(self) except -1:
        # Locals keep callback and arguments alive even if the callback cancels us
        # (or another thread does: it then finds the handle started, too late).
        cdef object callback, args, context
        cdef fl_lock_t cs
        # No lock needed when the caller's reference is the only one (the loop's, for
        # a handle nobody kept): then no other thread can be cancelling it.
        cdef bint locked = FL_FREE_THREADED and not fl_sole_ref(<PyObject *>self)
        if locked:
            fl_lock(&cs, self)
        if FL_FREE_THREADED and self._cancelled:
            # Cancelled by another thread after the loop looked, before it started.
            if locked:
                fl_unlock(&cs)
            return 0
        callback = self._callback
        args = self._args
        context = self._context
        if locked:
            fl_unlock(&cs)
        if type(args) is tuple and PyContext_CheckExact(context):
            # The usual case, without a `try` (includes/call.h says why).
            if fl_run_in_context(<PyObject *>callback, <PyObject *>args,
                                 <PyObject *>context) == 0:
                return 0
            return self.report_raised()
        try:
            call_in_context(callback, args, context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._report(exc)
        return 0

    cdef int report_raised(self) except -1:
        """_run_c's `except` clauses, for the exception its callback left set."""
        try:
            fl_reraise()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._report(exc)
        return 0

    def _report(self, exc):
        """Hand an exception raised by the callback to the loop's exception handler."""
        report_exception(self, exc)


# Cython keeps freelists for base classes only; timers come from the general allocator.
cdef class TimerHandle(Handle):
    """Object returned by timed callback registration methods.

    The deadline is kept as a C double, so when() is always a float.
    """

    def __init__(self, when, callback, args, loop, context=None):
        self.when_c = when
        Handle.__init__(self, callback, args, loop, context)
        self._scheduled = False

    @property
    def _when(self):
        return self.when_c

    def when(self):
        """Return the scheduled time, on the loop.time() clock."""
        return self.when_c

    def _repr_info(self):
        info = aio_Handle_repr_info(self)
        info.insert(2 if self._cancelled else 1, f'when={self.when_c}')
        return info

    cdef int _cancel_c(self) except -1:
        if not mark_cancelled(self):
            return 0
        loop = self._loop
        if isinstance(loop, CoreLoop):
            # Read without the heap's owner: a race with the loop taking this timer
            # off the heap can miscount it by one, which only moves the moment of the
            # next compaction (which recounts). docs/free-threading.md, "Timers".
            if self._scheduled:
                fl_add_ssize(&(<CoreLoop>loop).timers.ncancelled, 1)
        else:
            loop._timer_handle_cancelled(self)
        return drop_callback(self)

    def __hash__(self):
        return hash(self.when_c)

    def __eq__(self, other):
        cdef TimerHandle o
        if not isinstance(other, TimerHandle):
            return NotImplemented
        o = <TimerHandle>other
        if self.when_c != o.when_c:
            return False
        # Snapshots: another thread's cancel() must not release what is compared.
        mine, theirs = callback_and_args(self), callback_and_args(o)
        return (mine[0] == theirs[0] and mine[1] == theirs[1]
                and self._cancelled == o._cancelled)

    def __lt__(self, other):
        if not isinstance(other, TimerHandle):
            return NotImplemented
        return self.when_c < (<TimerHandle>other).when_c

    def __le__(self, other):
        if not isinstance(other, TimerHandle):
            return NotImplemented
        return self.when_c < (<TimerHandle>other).when_c or self == other

    def __gt__(self, other):
        if not isinstance(other, TimerHandle):
            return NotImplemented
        return self.when_c > (<TimerHandle>other).when_c

    def __ge__(self, other):
        if not isinstance(other, TimerHandle):
            return NotImplemented
        return self.when_c > (<TimerHandle>other).when_c or self == other


# asyncio's _ThreadSafeHandle (3.12.8+, 3.13.1+, 3.14), which call_soon_threadsafe
# returns: made and run here without its Python __init__ and _run, which cost five
# times the rest of a call (Python frames, super() and threading.RLock() each time).
# Its fields are __slots__, written and read at the offsets their member descriptors
# give (includes/slots.h). What asyncio's methods do is kept: every slot set as
# __init__ sets it outside debug mode (debug mode calls the class), and the callback
# runs holding the handle's lock, _cancelled checked under it, so that a cancel()
# from another thread waits for a running callback. Only where the class still has
# exactly the slots and lock type known here; otherwise the loop uses the class.
#
# The handle is an instance of ThreadSafeHandle, a subclass of asyncio's with the same
# name and no slot of its own (isinstance, repr and every method stay asyncio's),
# whose two properties save what most calls never use (issue 12):
# - `_lock`: the RLock is made when first asked for, by cancel(), cancelled(), or the
#   loop running a handle someone else still holds. Most callers drop the handle, and
#   then nobody can ever ask: no RLock is made and freed for them. (GIL builds: on
#   free-threaded ones the loop always takes the lock, so it is made with the handle.)
# - `_context`: the copied context leaves the collector while the handle is queued,
#   as the core's own handles' do (above), so that a burst of calls does not leave a
#   tracked context per call for each collection to walk. A Context must never die
#   untracked, so its setter and deleter track the old one first, and the loop tracks
#   it again before it runs or drops the handle (run_foreign, rejoin_gc_if_shared),
#   while it still holds it.

cdef object thread_RLock = getattr(threading, '_CRLock', None)
cdef object rlock_acquire = thread_RLock.acquire if thread_RLock is not None else None
cdef object rlock_release = thread_RLock.release if thread_RLock is not None else None
cdef Py_ssize_t TSH_CALLBACK, TSH_ARGS, TSH_CANCELLED, TSH_LOOP, TSH_TRACEBACK
cdef Py_ssize_t TSH_REPR, TSH_CONTEXT, TSH_LOCK


cdef bint find_threadsafe_slots() except -1:
    global TSH_CALLBACK, TSH_ARGS, TSH_CANCELLED, TSH_LOOP, TSH_TRACEBACK
    global TSH_REPR, TSH_CONTEXT, TSH_LOCK
    if aio_ThreadSafeHandle is None or thread_RLock is None:
        return False
    if thread_RLock.__init__ is not object.__init__:  # fl_new_plain would skip it
        return False
    names = ('_callback', '_args', '_cancelled', '_loop', '_source_traceback', '_repr',
             '_context', '_lock')
    slots = set()
    for klass in aio_ThreadSafeHandle.__mro__:
        slots.update(klass.__dict__.get('__slots__', ()))
    if slots != set(names) | {'__weakref__'}:
        return False
    offsets = [fl_slot_offset(getattr(aio_ThreadSafeHandle, name)) for name in names]
    if -1 in offsets:
        return False
    (TSH_CALLBACK, TSH_ARGS, TSH_CANCELLED, TSH_LOOP, TSH_TRACEBACK, TSH_REPR,
     TSH_CONTEXT, TSH_LOCK) = offsets
    return True


cdef bint TSH_NATIVE = find_threadsafe_slots()


cdef object threadsafe_lock(object handle):
    """The handle's `_lock`, made on first use; the same one for every thread."""
    cdef PyObject *p = <PyObject *>handle
    cdef fl_lock_t cs
    fl_lock(&cs, handle)
    try:
        lock = fl_slot_get(p, TSH_LOCK)
        if lock is None:
            # Making it may run the collector and so other threads' code: whoever
            # stores a lock first wins, and every caller returns that one.
            lock = fl_new_plain(thread_RLock)
            if fl_slot(p, TSH_LOCK) == <PyObject *>None:
                fl_slot_replace(p, TSH_LOCK, lock)
            else:
                lock = fl_slot_get(p, TSH_LOCK)
    finally:
        fl_unlock(&cs)
    return lock


cdef object aio_lock_slot = aio_ThreadSafeHandle._lock if TSH_NATIVE else None
cdef object aio_context_slot = aio_ThreadSafeHandle._context if TSH_NATIVE else None


def _get_lock(self):
    return threadsafe_lock(self)


def _set_lock(self, value):
    aio_lock_slot.__set__(self, value)


def _del_lock(self):
    aio_lock_slot.__delete__(self)


def _get_context(self):
    return fl_slot_get(<PyObject *>self, TSH_CONTEXT)


def _set_context(self, value):
    rejoin_threadsafe_context(<PyObject *>self)
    aio_context_slot.__set__(self, value)


def _del_context(self):
    rejoin_threadsafe_context(<PyObject *>self)
    aio_context_slot.__delete__(self)


cdef object ThreadSafeHandle = None
if TSH_NATIVE:
    ThreadSafeHandle = type(aio_ThreadSafeHandle)('_ThreadSafeHandle', (aio_ThreadSafeHandle,), {
        '__slots__': (),
        '__module__': __name__,
        '__doc__': aio_ThreadSafeHandle.__doc__,
        '_lock': property(_get_lock, _set_lock, _del_lock),
        '_context': property(_get_context, _set_context, _del_context),
    })


cdef void use_threadsafe_dealloc():
    """Free ThreadSafeHandles through fl_slots_dealloc (includes/slots.h) where it can."""
    cdef Py_ssize_t offsets[8]
    offsets[:] = [TSH_CALLBACK, TSH_ARGS, TSH_CANCELLED, TSH_LOOP, TSH_TRACEBACK,
                  TSH_REPR, TSH_CONTEXT, TSH_LOCK]
    fl_use_slots_dealloc(ThreadSafeHandle, offsets, 8)


if TSH_NATIVE:
    use_threadsafe_dealloc()


cdef inline void rejoin_threadsafe_context(PyObject *handle) noexcept:
    """Call before the loop runs or drops a ThreadSafeHandle: see above."""
    cdef PyObject *context = fl_slot(handle, TSH_CONTEXT)
    if context is not NULL:
        track_context(<object>context)


cdef object new_threadsafe_handle(object callback, tuple args, object loop,
                                  object context):
    """_ThreadSafeHandle(callback, args, loop, context), outside debug mode."""
    handle = fl_new_instance(ThreadSafeHandle)
    cdef PyObject *p = <PyObject *>handle
    cdef bint copied = context is None
    if copied:
        context = PyContext_CopyCurrent()
    fl_slot_init(p, TSH_CONTEXT, context)
    fl_slot_init(p, TSH_LOOP, loop)
    fl_slot_init(p, TSH_CALLBACK, callback)
    fl_slot_init(p, TSH_ARGS, args)
    fl_slot_init(p, TSH_CANCELLED, False)
    fl_slot_init(p, TSH_REPR, None)
    fl_slot_init(p, TSH_TRACEBACK, None)
    # Free-threaded builds keep handles tracked, so the loop always takes the lock
    # (run_threadsafe_handle): made here, it costs no critical section to get.
    fl_slot_init(p, TSH_LOCK, fl_new_plain(thread_RLock) if FL_FREE_THREADED else None)
    if not FL_FREE_THREADED:
        # Out of the collector as the core's own handles are (see track_handle); the
        # args stay tracked, and so does a context the caller passed: it is theirs.
        PyObject_GC_UnTrack(p)
        if copied:
            PyObject_GC_UnTrack(<PyObject *>context)
    return handle


cdef inline bint unreachable(PyObject *obj) noexcept:
    """Nothing but the caller's reference leads to obj: no other reference, no weak
    one, and out of the collector (gc.get_objects() cannot hand it out)."""
    return (obj is not NULL and fl_sole_ref(obj) and not fl_has_weakrefs(obj)
            and not PyObject_GC_IsTracked(obj))


cdef int run_threadsafe_handle(object handle) except -1:
    """_ThreadSafeHandle._run(): the callback under the handle's lock, unless cancelled.

    The caller's reference to `handle` is the loop's own: the one the queue held.
    """
    cdef PyObject *p = <PyObject *>handle
    cdef PyObject *plock = fl_slot(p, TSH_LOCK)
    if unreachable(p) and (plock == <PyObject *>None or unreachable(plock)):
        # No other thread can cancel it or take its lock, so the lock could never
        # make anyone wait: run it without (making one, an acquire and a release
        # cost as much as the rest of the call). The usual case: the caller of
        # call_soon_threadsafe dropped the handle.
        if not fl_slot_get(p, TSH_CANCELLED):
            run_threadsafe_callback(handle)
        return 0
    lock = fl_slot_get(p, TSH_LOCK)
    if lock is None:
        lock = threadsafe_lock(handle)
    rlock_acquire(lock)
    try:
        if not fl_slot_get(p, TSH_CANCELLED):
            run_threadsafe_callback(handle)
    finally:
        rlock_release(lock)
    return 0


cdef int run_threadsafe_callback(object handle) except -1:
    """Handle._run() of a _ThreadSafeHandle: its callback in its context."""
    cdef PyObject *p = <PyObject *>handle
    callback = fl_slot_get(p, TSH_CALLBACK)
    args = fl_slot_get(p, TSH_ARGS)
    context = fl_slot_get(p, TSH_CONTEXT)
    if type(args) is tuple and PyContext_CheckExact(context):
        # Without a `try` on the way, as Handle._run_c (includes/call.h says why).
        if fl_run_in_context(<PyObject *>callback, <PyObject *>args,
                             <PyObject *>context) == 0:
            return 0
        try:
            fl_reraise()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            report_exception(handle, exc)
        return 0
    try:
        call_in_context(callback, args, context)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        report_exception(handle, exc)
    return 0

# The cycle collector and the loop's C containers.
#
# The ready ring and the timer heap hold handles through raw pointers, which
# Cython's generated tp_traverse cannot see, and the handles the loop makes are
# themselves outside the collector while queued (handles.pyx). So a dropped, unclosed
# loop with a queued handle (whose _loop leads back to it) was never collected, where
# asyncio's is: its __del__ warns "unclosed event loop" and closes it. What fixes it,
# at no cost to scheduling or running callbacks:
#
# 1. CoreLoop's tp_traverse also visits every queued handle (includes/gc.h): a
#    tracked one as usual, an untracked one the loop alone holds by reporting its
#    references as the loop's own; tp_clear drops the queued handles. Only in full
#    collections and only for a loop that is not running (a running loop is never
#    garbage): a young collection would otherwise walk a big queue each time a
#    freshly made loop is scheduled on, and skipping it only keeps objects alive.
# 2. An untracked handle that someone else holds too (the TimerHandle asyncio.sleep
#    keeps in its frame, a handle the user stored) cannot be seen through: its other
#    holders are unknown. Such handles are tracked, before a full collection, in
#    every open loop that has not run since the previous full collection. The
#    price: a dropped loop with such handles is freed by the second full collection
#    after it last ran, where asyncio's goes at the first. Tracking them at once
#    would instead make every full collection that comes while many shared handles
#    wait in an idle loop track them all (100k scheduled timers kept in a list cost
#    the timers benchmark a tenth more).
# 3. A registry of the loops, for 2: raw pointers, added in __cinit__, removed in
#    __dealloc__; and a gc.callbacks entry that does 2 and tells 1 when a full
#    collection runs. GIL builds only: free-threaded builds never untrack handles
#    (docs/free-threading.md), and there 1 visits the queues in every collection.

cdef fl_traverseproc cy_loop_traverse = fl_type_traverse(CoreLoop)
cdef bint gc_full = False           # a full collection is running (set by _gc_callback)
cdef PyObject **gc_loops = NULL     # every CoreLoop alive (borrowed), GIL builds
cdef Py_ssize_t gc_nloops = 0
cdef Py_ssize_t gc_loops_capacity = 0


cdef int traverse_ring(ReadyQueue *q, fl_visitproc visit, void *arg) noexcept:
    cdef Py_ssize_t i
    cdef int r
    for i in range(q.size):
        r = fl_visit_queued(q.items[(q.head + i) % q.capacity], visit, arg)
        if r:
            return r
    return 0


cdef int traverse_heap(PyObject *timers, fl_visitproc visit, void *arg) noexcept:
    cdef Py_ssize_t i, size = (<TimerQueue>timers).size
    cdef TimerEntry *heap = (<TimerQueue>timers).heap
    cdef int r
    for i in range(size):
        r = fl_visit_queued(heap[i].handle, visit, arg)
        if r:
            return r
    return 0


cdef int loop_traverse(PyObject *o, fl_visitproc visit, void *arg) noexcept:
    cdef int r = cy_loop_traverse(o, visit, arg)
    if r:
        return r
    # Through casts, not a CoreLoop variable: no reference counting inside a traverse.
    if not (gc_full or FL_FREE_THREADED) or (<CoreLoop>o)._thread_id is not None:
        return 0
    r = traverse_ring(&(<CoreLoop>o).ready, visit, arg)
    # The TimerQueue is the loop's alone (a C field no Python code can read), and not
    # a collector object itself: its heap is the loop's to report.
    cdef PyObject *timers = <PyObject *>(<CoreLoop>o).timers
    if r == 0 and timers != <PyObject *>None and fl_refcnt(timers) == 1:
        r = traverse_heap(timers, visit, arg)
    return r


cdef int loop_clear(PyObject *o) noexcept:
    # Only what the traverse above adds: the generated tp_clear (off, see CoreLoop's
    # no_gc_clear) would set the C-typed fields to None, under the C code's feet.
    cdef CoreLoop loop = <CoreLoop>o
    cdef fl_lock_t cs
    fl_lock(&cs, loop)
    cdef ReadyQueue ready = loop.detach_ready()
    fl_unlock(&cs)
    ready_release(&ready)
    if loop.timers is not None:
        loop.timers.clear_c()
    return 0


fl_set_gc_slots(CoreLoop, loop_traverse, loop_clear)


cdef inline void track_shared(PyObject *handle) noexcept:
    if not PyObject_GC_IsTracked(handle) and fl_refcnt(handle) > 1:
        track_handle(handle)


cdef void track_shared_queued() noexcept:
    """Point 2 at the top: track the shared handles of loops idle since the last time."""
    cdef Py_ssize_t i, j
    cdef CoreLoop loop
    cdef ReadyQueue *q
    cdef TimerQueue timers
    for i in range(gc_nloops):
        # No Python code runs in here: the registry cannot change under the loop.
        loop = <CoreLoop>gc_loops[i]
        if loop._closed or loop._thread_id is not None:
            continue
        if loop.gc_seen_runs != loop.runs:
            loop.gc_seen_runs = loop.runs
            continue
        q = &loop.ready
        for j in range(q.size):
            track_shared(q.items[(q.head + j) % q.capacity])
        timers = loop.timers
        for j in range(timers.size):
            track_shared(timers.heap[j].handle)


def _gc_callback(phase, info):
    """gc.callbacks entry: points 1 and 2 at the top of gcsupport.pyx."""
    global gc_full
    if phase == 'start':
        gc_full = info['generation'] == 2
        if gc_full:
            track_shared_queued()
    else:
        gc_full = False


cdef int gc_register(CoreLoop loop) except -1:
    global gc_loops, gc_loops_capacity, gc_nloops
    if FL_FREE_THREADED:
        return 0
    cdef PyObject **grown
    if gc_nloops == gc_loops_capacity:
        grown = <PyObject **>PyMem_Realloc(
            gc_loops, (gc_loops_capacity * 2 + 8) * sizeof(PyObject *))
        if grown is NULL:
            raise MemoryError()
        gc_loops = grown
        gc_loops_capacity = gc_loops_capacity * 2 + 8
    gc_loops[gc_nloops] = <PyObject *>loop
    gc_nloops += 1
    # Checked each time: a program may have emptied gc.callbacks since.
    if _gc_callback not in gc.callbacks:
        gc.callbacks.append(_gc_callback)
    return 0


cdef void gc_unregister(CoreLoop loop) noexcept:
    global gc_nloops
    cdef Py_ssize_t i
    for i in range(gc_nloops - 1, -1, -1):
        if gc_loops[i] == <PyObject *>loop:
            gc_nloops -= 1
            gc_loops[i] = gc_loops[gc_nloops]
            return

# TimerQueue: the scheduled TimerHandles as a binary min-heap of C structs.
#
# Entries are ordered by (when, seq): equal deadlines fire in scheduling order.
# Cancellation is lazy: a cancelled handle stays in the heap (counted in
# ncancelled) until it reaches the top or the heap is compacted.
#
# Only the loop's thread touches the heap. Other threads may cancel a timer, which
# adds to ncancelled (atomically on free-threaded builds); that count only decides
# when to compact, and compaction recounts. docs/free-threading.md, "Timers".
#
# Dropping a reference can run arbitrary Python code (a callback's __del__ may
# schedule a timer), so every method finishes editing the heap before it releases
# any handle.


cdef inline bint entry_before(TimerEntry *a, TimerEntry *b) noexcept nogil:
    return a.when < b.when or (a.when == b.when and a.seq < b.seq)


cdef inline void sift_up(TimerEntry *heap, Py_ssize_t pos) noexcept nogil:
    cdef TimerEntry item = heap[pos]
    cdef Py_ssize_t parent
    while pos > 0:
        parent = (pos - 1) >> 1
        if not entry_before(&item, &heap[parent]):
            break
        heap[pos] = heap[parent]
        pos = parent
    heap[pos] = item


cdef inline void sift_down(TimerEntry *heap, Py_ssize_t size, Py_ssize_t pos) noexcept nogil:
    cdef TimerEntry item = heap[pos]
    cdef Py_ssize_t child
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and entry_before(&heap[child + 1], &heap[child]):
            child += 1
        if not entry_before(&heap[child], &item):
            break
        heap[pos] = heap[child]
        pos = child
    heap[pos] = item


cdef inline void prefetch_handle(PyObject *handle) noexcept:
    # The collector's header sits just before the object; a TimerHandle's own
    # fields span two cache lines.
    fl_prefetch(<char *>handle - 16)
    fl_prefetch(handle)
    fl_prefetch(<char *>handle + 64)


@cython.final
cdef class TimerQueue:
    """Scheduled timers, earliest first; cancelled ones are dropped lazily."""

    def __dealloc__(self):
        cdef Py_ssize_t i
        for i in range(self.size):
            rejoin_gc_if_shared(self.heap[i].handle)
            fl_decref(self.heap[i].handle)
        PyMem_Free(self.heap)
        PyMem_Free(self.due)

    def __len__(self):
        return self.size

    def push(self, TimerHandle handle not None):
        self.push_c(handle)
        if handle._cancelled:
            fl_add_ssize(&self.ncancelled, 1)

    def note_cancelled(self, TimerHandle handle not None):
        """Count a handle cancelled while it waits in the heap."""
        if handle._scheduled:
            fl_add_ssize(&self.ncancelled, 1)

    def first_deadline(self):
        """The heap key of the earliest live timer, or None; drops cancelled ones on top."""
        cdef double when = self.first_when_c()
        return when if self.size else None

    def pop_due(self, double end, append):
        """Pass every live timer due before `end` to `append`, in (when, seq) order."""
        cdef TimerHandle handle
        while True:
            handle = self.pop_due_c(end)
            if handle is None:
                break
            append(handle)
            rejoin_gc_if_shared(<PyObject *>handle)

    def clear(self):
        self.clear_c()

    cdef int push_c(self, TimerHandle handle) except -1:
        cdef Py_ssize_t capacity
        cdef TimerEntry *grown
        if self.size == self.capacity:
            capacity = self.capacity * 2 if self.capacity else TIMERS_INITIAL_CAPACITY
            grown = <TimerEntry *>PyMem_Realloc(self.heap, capacity * sizeof(TimerEntry))
            if grown is NULL:
                raise MemoryError()
            self.heap = grown
            self.capacity = capacity
        cdef TimerEntry *entry = &self.heap[self.size]
        # A NaN deadline would break the heap order (every comparison is false);
        # it is due at once, like a deadline in the past.
        entry.when = handle.when_c if handle.when_c == handle.when_c else -INFINITY
        entry.seq = self.next_seq
        entry.handle = <PyObject *>handle
        self.next_seq += 1
        fl_incref(<PyObject *>handle)
        self.size += 1
        sift_up(self.heap, self.size - 1)
        handle._scheduled = True
        return 0

    cdef PyObject *remove_top(self) noexcept:
        """Take the top entry out of the heap; the caller owns its reference."""
        cdef PyObject *top = self.heap[0].handle
        self.size -= 1
        if self.size:
            self.heap[0] = self.heap[self.size]
            sift_down(self.heap, self.size, 0)
        return top

    cdef double first_when_c(self):
        cdef TimerHandle handle
        while self.size and (<TimerHandle>self.heap[0].handle)._cancelled:
            handle = <TimerHandle>self.remove_top()
            fl_decref(<PyObject *>handle)  # the cast above took its own reference
            handle._scheduled = False
            fl_add_ssize(&self.ncancelled, -1)
            rejoin_gc_if_shared(<PyObject *>handle)
        return self.heap[0].when if self.size else INFINITY

    cdef TimerHandle pop_due_c(self, double end):
        cdef TimerHandle handle
        while self.size and self.heap[0].when < end:
            handle = <TimerHandle>self.remove_top()
            fl_decref(<PyObject *>handle)
            handle._scheduled = False
            if handle._cancelled:
                fl_add_ssize(&self.ncancelled, -1)
                rejoin_gc_if_shared(<PyObject *>handle)
                continue
            return handle
        return None

    cdef int pop_due_into(self, CoreLoop loop, double end) except -1:
        """Append every live timer due before `end` to loop's ready queue, in
        (when, seq) order.

        With many timers due at once their handles are scattered over memory, and
        reading each one's flags is a cache miss. So the due entries are first taken
        off the heap (which reads only the heap array), then their handles are
        visited in order with a prefetch a few entries ahead.
        """
        if self.size == 0 or not self.heap[0].when < end:
            return 0
        cdef Py_ssize_t i, n = 0, ndropped = 0, capacity
        cdef PyObject **due
        cdef PyObject *item
        cdef ReadyQueue *ready = &loop.ready
        if self.due_capacity < self.size:
            due = <PyObject **>PyMem_Realloc(self.due, self.size * sizeof(PyObject *))
            if due is NULL:
                raise MemoryError()
            self.due = due
            self.due_capacity = self.size
        # The ring is the loop's, shared with other threads: locked from the room
        # made on it to the last handle placed, so that no one else takes that room.
        fl_mutex_lock(&loop.lock)
        # Room on the ready queue for all of them, so that nothing below can fail
        # with handles taken off the heap but not yet placed.
        if not ready_reserve(ready, self.size):
            fl_mutex_unlock(&loop.lock)
            raise MemoryError()
        due = self.due
        while self.size and self.heap[0].when < end:
            due[n] = self.remove_top()
            n += 1
        # No Python code runs in this loop: the heap's references move to the ready
        # queue (live timers) or stay in `due` (cancelled ones, moved to its front).
        for i in range(n):
            if i + 8 < n:
                prefetch_handle(due[i + 8])
            item = due[i]
            (<TimerHandle>item)._scheduled = False
            if (<TimerHandle>item)._cancelled:
                due[ndropped] = item
                ndropped += 1
            else:
                ready_push_steal(ready, item)
        fl_mutex_unlock(&loop.lock)
        if ndropped == 0:
            return 0
        fl_add_ssize(&self.ncancelled, -ndropped)
        # Releasing a cancelled timer may run arbitrary code (a __del__ scheduling
        # timers, which may grow `self.due`): work on a detached array.
        capacity = self.due_capacity
        self.due = NULL
        self.due_capacity = 0
        for i in range(ndropped):
            if i + 8 < ndropped:
                prefetch_handle(due[i + 8])
            rejoin_gc_if_shared(due[i])
            fl_decref(due[i])
        if self.due is NULL:
            self.due = due
            self.due_capacity = capacity
        else:
            PyMem_Free(due)
        return 0

    cdef int compact_if_worth_it(self) except -1:
        if (self.size > MIN_SCHEDULED_TO_COMPACT
                and fl_load_ssize(&self.ncancelled)
                    > self.size * MIN_CANCELLED_FRACTION_TO_COMPACT):
            self.compact_c()
        return 0

    cdef int compact_c(self) except -1:
        # Compaction is only an optimisation: without memory for the list of
        # dropped handles, skip it and let them leave through the top.
        cdef PyObject **dropped = <PyObject **>PyMem_Malloc(self.size * sizeof(PyObject *))
        if dropped is NULL:
            return 0
        cdef Py_ssize_t i, kept = 0, ndropped = 0
        for i in range(self.size):
            if (<Handle>self.heap[i].handle)._cancelled:
                dropped[ndropped] = self.heap[i].handle
                ndropped += 1
            else:
                self.heap[kept] = self.heap[i]
                kept += 1
        self.size = kept
        fl_store_ssize(&self.ncancelled, 0)
        for i in range(kept // 2 - 1, -1, -1):
            sift_down(self.heap, kept, i)
        for i in range(ndropped):
            (<TimerHandle>dropped[i])._scheduled = False
        for i in range(ndropped):
            rejoin_gc_if_shared(dropped[i])
            fl_decref(dropped[i])
        PyMem_Free(dropped)
        return 0

    cdef int clear_c(self) except -1:
        cdef TimerEntry *heap = self.heap
        cdef Py_ssize_t i, size = self.size
        self.heap = NULL
        self.size = self.capacity = 0
        fl_store_ssize(&self.ncancelled, 0)
        for i in range(size):
            (<TimerHandle>heap[i].handle)._scheduled = False
        for i in range(size):
            rejoin_gc_if_shared(heap[i].handle)
            fl_decref(heap[i].handle)
        PyMem_Free(heap)
        return 0

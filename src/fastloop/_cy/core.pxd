# Declarations of the Cython core: foreign C first, then one block per .pyx file
# in the order core.pyx includes them.

from cpython.object cimport PyObject


cdef extern from "Python.h":
    # Run callbacks in a context without going through Context.run (a Python call).
    object PyContext_CopyCurrent()
    int PyContext_Enter(object ctx) except -1
    int PyContext_Exit(object ctx) except -1
    object PyObject_CallNoArgs(object func)
    object PyObject_Call(object func, object args, PyObject *kwargs)
    bint PyContext_CheckExact(object o)
    int PyErr_CheckSignals() except -1
    # Reference counting on raw pointers held by the C containers (ring, heap).
    void fl_incref "Py_INCREF"(PyObject *o)
    void fl_decref "Py_DECREF"(PyObject *o)
    # Handles the loop makes are kept out of the cycle collector while only the
    # loop holds them (see new_handle in coreloop.pyx).
    Py_ssize_t fl_refcnt "Py_REFCNT"(PyObject *o)
    void *fl_type "Py_TYPE"(PyObject *o)
    int PyObject_GC_IsTracked(PyObject *o)
    void PyObject_GC_Track(PyObject *o)
    void PyObject_GC_UnTrack(PyObject *o)


cdef extern from "compat.h" nogil:
    enum:
        FL_READ
        FL_WRITE
        FL_RECV
        FL_UNKNOWN
    ctypedef struct fl_event:
        int fd
        int events
        int res
        int bid
    const char *FL_POLLER_NAME
    enum:
        FL_POLLER_INHERITED
    double fl_monotonic()
    void fl_prefetch(const void *p)
    int fl_poller_open()
    int fl_poller_ctl(int pfd, int fd, int old_events, int new_events)
    void fl_poller_forget(int pfd, int fd)
    int fl_poller_wait(int pfd, fl_event *out, int maxevents, int timeout_ms)
    # The opt-in io_uring backend (includes/poll_uring.h), the same shape.
    ctypedef struct fl_uring:
        int ring_fd
        int recv_ok
    int fl_uring_open(fl_uring *u, const char **why)
    void fl_uring_close(fl_uring *u)
    int fl_uring_ctl(fl_uring *u, int fd, int old_events, int new_events)
    void fl_uring_forget(fl_uring *u, int fd)
    int fl_uring_wait(fl_uring *u, fl_event *out, int maxevents, int timeout_ms)
    int fl_uring_recv_ctl(fl_uring *u, int fd, int want, int discard)
    int fl_uring_recv_dropped(fl_uring *u, int fd)
    int fl_uring_catch_up(fl_uring *u, fl_event *out, int maxevents)
    const char *fl_uring_buf(fl_uring *u, int bid)
    void fl_uring_buf_give(fl_uring *u, int bid)
    int fl_waker_open(int *rfd, int *wfd)
    void fl_waker_wake(int wfd)
    void fl_waker_drain(int rfd)


# Running a callback in its context (includes/call.h). Declared without an exception
# value: Handle._run_c checks the result itself.
cdef extern from "call.h":
    int fl_run_in_context(PyObject *callback, PyObject *args, PyObject *context)
    int fl_reraise() except -1


# The __slots__ of asyncio's _ThreadSafeHandle, at their offsets (includes/slots.h).
cdef extern from "slots.h":
    Py_ssize_t fl_slot_offset(object descr)
    object fl_new_instance(object type)
    object fl_new_plain(object type)
    PyObject *fl_slot(PyObject *obj, Py_ssize_t offset)
    void fl_slot_init(PyObject *obj, Py_ssize_t offset, object value)
    void fl_slot_replace(PyObject *obj, Py_ssize_t offset, object value)
    object fl_slot_get(PyObject *obj, Py_ssize_t offset)
    bint fl_use_slots_dealloc(object type, const Py_ssize_t *offsets, int n)


# Locks and atomics for free-threaded builds, no-ops on GIL builds
# (includes/freethreading.h; docs/free-threading.md says what each one guards).
cdef extern from "freethreading.h":
    enum:
        FL_FREE_THREADED
    ctypedef struct fl_lock_t:
        pass
    void fl_lock(fl_lock_t *cs, object obj)
    void fl_unlock(fl_lock_t *cs)
    ctypedef struct fl_mutex_t:
        pass
    void fl_mutex_lock(fl_mutex_t *m)
    void fl_mutex_unlock(fl_mutex_t *m)
    Py_ssize_t fl_load_ssize(Py_ssize_t *p)
    void fl_store_ssize(Py_ssize_t *p, Py_ssize_t v)
    void fl_add_ssize(Py_ssize_t *p, Py_ssize_t v)
    int fl_load_int(int *p)
    void fl_store_int(int *p, int v)
    bint fl_sole_ref(PyObject *obj)
    size_t fl_thread_id()
    bint fl_has_weakrefs(PyObject *obj)


# The cycle collector's view of the ring and the timer heap (includes/gc.h,
# gcsupport.pyx).
cdef extern from "gc.h":
    ctypedef int (*fl_visitproc)(PyObject *, void *) noexcept
    ctypedef int (*fl_traverseproc)(PyObject *, fl_visitproc, void *) noexcept
    ctypedef int (*fl_inquiry)(PyObject *) noexcept
    int fl_visit_queued(PyObject *o, fl_visitproc visit, void *arg) noexcept
    fl_traverseproc fl_type_traverse(object type)
    void fl_set_gc_slots(object type, fl_traverseproc traverse, fl_inquiry clear)


cdef extern from "net.h" nogil:
    enum:
        FL_IOV_BATCH
    struct iovec:
        void *iov_base
        size_t iov_len
    int fl_would_block(int err)
    Py_ssize_t fl_send(int fd, const char *p, Py_ssize_t n)
    Py_ssize_t fl_recv(int fd, char *p, Py_ssize_t n)
    int fl_reset_on_close(int fd)
    Py_ssize_t fl_sendv(int fd, iovec *iov, int n)
    ctypedef unsigned int socklen_t
    struct sockaddr_storage:
        pass
    Py_ssize_t fl_recvfrom(int fd, char *p, Py_ssize_t n, sockaddr_storage *addr,
                           socklen_t *addrlen)
    Py_ssize_t fl_sendto(int fd, const char *p, Py_ssize_t n, const sockaddr_storage *addr,
                         socklen_t addrlen)
    bint fl_same_sockaddr(const sockaddr_storage *a, socklen_t alen,
                          const sockaddr_storage *b, socklen_t blen)
    Py_ssize_t fl_read(int fd, char *p, Py_ssize_t n)
    Py_ssize_t fl_write(int fd, const char *p, Py_ssize_t n)
    int fl_sock_fd(PyObject *sock)

cdef extern from "net.h":
    object fl_inet_sockaddr(const sockaddr_storage *addr, socklen_t addrlen)


# handles.pyx

cdef class Handle:
    # The flag first: with the refcount and the callback it shares a cache line,
    # which is all that a pass over many queued handles reads.
    cdef readonly bint _cancelled
    cdef readonly object _callback
    cdef readonly object _args
    cdef readonly object _loop
    cdef readonly object _source_traceback
    cdef readonly object _context
    cdef object _repr
    cdef object __weakref__

    cdef int _run_c(self) except -1
    cdef int report_raised(self) except -1
    cdef int _cancel_c(self) except -1


cdef class TimerHandle(Handle):
    cdef double when_c
    cdef readonly bint _scheduled


# Finished handles of one type, emptied, for the loop to reuse (coreloop.pyx).

ctypedef struct SparePool:
    PyObject **items            # SPARE_HANDLES slots, each owning one reference
    Py_ssize_t size


# The ready queue (coreloop.pyx); declared here because TimerQueue fills it.

ctypedef struct ReadyQueue:
    PyObject **items            # a ring buffer of Handles, each owning one reference
    Py_ssize_t head
    Py_ssize_t size
    Py_ssize_t capacity


# timers.pyx

cdef class CoreLoop              # declared below; TimerQueue moves due timers onto its ring
cdef class TransportBase         # declared below; the loop hands completed reads to it


ctypedef struct TimerEntry:
    double when                 # the heap key: the deadline, NaN mapped to -inf
    unsigned long long seq      # ties fire in scheduling order
    PyObject *handle            # a TimerHandle; the heap owns one reference


cdef class TimerQueue:
    cdef TimerEntry *heap
    cdef Py_ssize_t size
    cdef Py_ssize_t capacity
    cdef Py_ssize_t ncancelled    # a hint for compaction; other threads add to it
    cdef unsigned long long next_seq
    cdef PyObject **due           # scratch array of pop_due_into, reused
    cdef Py_ssize_t due_capacity

    cdef int push_c(self, TimerHandle handle) except -1
    cdef PyObject *remove_top(self) noexcept
    cdef double first_when_c(self)
    cdef int compact_c(self) except -1
    cdef TimerHandle pop_due_c(self, double end)
    cdef int pop_due_into(self, CoreLoop loop, double end) except -1
    cdef int compact_if_worth_it(self) except -1
    cdef int clear_c(self) except -1


# poller.pyx

cdef class Poller:
    cdef int fd
    cdef fl_event *events
    cdef fl_uring *uring          # NULL unless the backend is io_uring

    cdef int ctl(self, int fd, int old_events, int new_events) except -1
    cdef void forget_c(self, int fd) noexcept
    cdef int wait_nogil(self, int timeout_ms) noexcept nogil
    cdef int wait(self, int timeout_ms) except -1
    cdef int recv_ctl(self, int fd, bint want, bint discard) except -1
    cdef bint recv_dropped(self, int fd) except -1
    cdef int catch_up(self) except -1


# waker.pyx

cdef class Waker:
    cdef int rfd
    cdef int wfd
    cdef int pending               # a wake-up is on its way (atomic: see waker.pyx)

    cdef void wake_c(self) noexcept
    cdef void drain_c(self) noexcept
    cdef void close_fds(self) noexcept


# stats.pyx

cdef enum:
    LAG_BUCKETS = 15              # the lag histogram: LAG_EDGES (stats.pyx) and one more


ctypedef struct LoopStats:        # written by the loop's thread only; seconds as doubles
    Py_ssize_t iterations
    Py_ssize_t callbacks          # handles taken from the ready queue to run
    Py_ssize_t io_events          # (fd, events) pairs of watched fds the poll reported
    double busy                   # time between a poll's return and the next poll
    double idle                   # time in the poll
    double poll_end               # when the last poll returned (0: never)
    double busy_since             # when the busy stretch began; 0 while not running
    double lag_latest
    double lag_max
    Py_ssize_t lag_hist[LAG_BUCKETS]


# coreloop.pyx

cdef class FdWatch:
    cdef object fileobj           # as registered: found by identity once closed
    cdef Handle reader
    cdef Handle writer
    cdef int events               # what the handles want; 0: dormant, see remove_fd
    cdef int kernel               # what the poller was last told


cdef class CoreLoop:
    cdef public bint _debug
    cdef public object slow_callback_duration
    cdef public object _thread_id
    cdef public bint _stopping
    cdef readonly bint _closed
    cdef public object _current_handle
    cdef public double _clock_resolution
    cdef public double _slow_threshold    # inf: off; see set_slow_callback_hook (_loop.py)

    # Guards the ready queue, the waker's fds and _closed against other threads
    # (call_soon_threadsafe, _write_to_self, close()); docs/free-threading.md.
    cdef fl_mutex_t lock
    cdef ReadyQueue ready
    cdef TimerQueue timers
    cdef Poller poller
    cdef Waker waker
    cdef dict fds                 # fd -> FdWatch, the waker's fd excluded
    cdef dict recvs               # fd -> transport reading on completions (io_uring)
    cdef list recv_again          # ... with more to deliver: queued again at the poll
    cdef list held                # (fd, events) reaped by recv_catch_up, for the next poll
    cdef bint catching_up         # in recv_catch_up: deliveries wait for the next poll
    cdef bint recv_ok             # the poller has completion reads (io_uring, 6.0+)
    cdef list dormant             # fds whose last handle left; forgotten before the poll
    cdef public object _transports  # weakref.WeakValueDictionary: fd -> transport
    cdef dict transports_data     # its .data: fd -> KeyedRef, read without a call
    cdef char *recv_buf           # MAX_RECV_SIZE bytes every recv() lands in first
    # The sockname and peername of the last socket transport made on this loop: the
    # next one shares the objects when its values are equal (init_selector). Per
    # loop, not per module: loops in other threads must not share them.
    cdef object last_sockname
    cdef object last_peername
    cdef LoopStats st             # stats.pyx
    # Finished handles kept for reuse (new_handle, new_timer, keep_spare in
    # coreloop.pyx): up to SPARE_HANDLES Handles and as many TimerHandles, each owning
    # one reference, touched by spare_tid's thread only.
    cdef SparePool spare
    cdef SparePool spare_timers
    cdef size_t spare_tid
    cdef Py_ssize_t runs          # _run_until_stopped calls, and their count at the
    cdef Py_ssize_t gc_seen_runs  # last full collection (gcsupport.pyx)
    cdef Py_ssize_t forks         # fork_count when the poller and waker were made (fork.pyx)
    cdef int busy_iterations      # iterations without a blocking poll (run_once)

    cdef int push_ready(self, Handle handle) except -1
    cdef ReadyQueue detach_ready(self) noexcept
    cdef int check_closed(self) except -1
    cdef int check_thread(self) except -1
    cdef Handle new_handle(self, object callback, tuple args, object context)
    cdef PyObject *take_spare(self, SparePool *pool) noexcept
    cdef bint keep_spare(self, PyObject *handle) except -1
    cdef int drop_spares(self) except -1
    cdef TimerHandle new_timer(self, double when, object callback, tuple args,
                               object context)
    cdef inline int fill_handle(self, Handle handle, object callback, tuple args,
                                object context) except -1
    cdef object lookup_fd(self, object fileobj)
    cdef Handle add_fd(self, object fileobj, int event, object callback, tuple args)
    cdef int install_handle(self, object fileobj, int fd, int event,
                            Handle handle) except -1
    cdef int add_io(self, object fd_obj, int fd, int event, Handle handle) except -1
    cdef bint fd_polling(self, int fd, int event)
    cdef int ensure_fd_no_transport(self, object fd) except -1
    cdef char *get_recv_buf(self) except NULL
    cdef Handle call_soon_c(self, object callback, tuple args)
    cdef bint remove_fd(self, object fileobj, int event) except -1
    cdef TimerHandle schedule(self, double when, object callback, tuple args,
                              object context)
    cdef int fd_ready(self, int fd, int events) except -1
    cdef int recv_start(self, TransportBase transport) except -1
    cdef int recv_stop(self, TransportBase transport, bint discard) except -1
    cdef int recv_done(self, fl_event *event) except -1
    cdef int recv_catch_up(self) except -1
    cdef int recv_requeue(self) except -1
    cdef int replace_poller(self) except -1
    cdef int rebuild_poller(self, bint close_old) except -1
    cdef int leave_parent(self) except -1
    cdef int forget_dormant(self, bint tell_poller=*) except -1
    cdef int check_sock(self, object sock) except -1
    cdef object sock_wait(self, int event, object sock, object callback, tuple args)
    cdef int poll_timeout_ms(self, double *now) except? -2
    cdef bint idle_now(self) except -1
    cdef int run_once(self) except -1
    cdef int run_foreign(self, object handle) except -1
    cdef int run_debug(self, object handle) except -1


# transport.pyx (the bases; the kinds in stream.pyx, datagram.pyx, pipe.pyx)

cdef class SockDone:
    cdef CoreLoop loop
    cdef object sock
    cdef int event
    cdef Handle handle


cdef class IoHandle(Handle):
    cdef TransportBase transport
    cdef bint writer

    cdef object bound_callback(self)


# Every idle connection costs one transport, so fields are packed: the flags of all
# subclasses live here, together, after the pointers.
cdef class TransportBase:
    cdef readonly CoreLoop _loop
    cdef readonly object _protocol
    cdef dict extra                 # the caller's extra info (plus 'pipe' for pipes)
    cdef object fd_obj              # fd as one int object, the key in the loop's tables
    cdef object __weakref__
    # As on asyncio's transports, a test may replace a method on one instance
    # (transport.pause_reading = Mock()); the dict is only made when that happens.
    cdef dict __dict__
    cdef readonly Py_ssize_t _conn_lost
    cdef int fd
    cdef readonly bint _closing
    cdef readonly bint _paused
    cdef readonly bint _protocol_paused
    cdef readonly bint _eof         # SocketTransport: write_eof() was called
    cdef bint protocol_connected
    cdef bint buffered              # SocketTransport: the protocol is a BufferedProtocol
    cdef bint completion_reads      # SocketTransport: reads on completions (io_uring)
    cdef bint rqueued               # SocketTransport: its rhandle is queued
    cdef bint unread                # SocketTransport: stopped for good with bytes undelivered

    cdef int read_ready(self) except -1
    cdef int write_ready(self) except -1
    cdef int add_reader_c(self) except -1
    cdef int stop_reading_c(self, bint pause) except -1
    cdef int received(self, const char *buf, int res) except -1
    cdef int add_writer_c(self) except -1
    cdef int fatal_error(self, object exc, object message) except -1
    cdef int force_close(self, object exc) except -1
    cdef int schedule_connection_lost(self, object exc) except -1
    cdef object extra_get(self, object name, object default)
    cdef dict extra_dict(self)


cdef class FlowControlTransport(TransportBase):
    cdef object high_obj
    cdef object low_obj
    cdef double high_water
    cdef double low_water

    cdef Py_ssize_t buffer_size_c(self)
    cdef int set_limits_c(self, object high, object low) except -1
    cdef int maybe_pause_protocol(self) except -1
    cdef int maybe_resume_protocol(self) except -1


cdef class SelectorTransportBase(FlowControlTransport):
    # Extra info in fields, not a dict: 'socket' is made on first use (a
    # TransportSocket only wraps sock_obj), sockname/peername are shared with the
    # previous transport when equal (every connection a server accepts has the
    # same sockname). A dict per connection would cost more than the rest.
    cdef object trsock              # the socket, until 'socket' wraps it once
    cdef object sockname
    cdef object peername
    cdef readonly object _sock
    cdef readonly object _server
    cdef public Py_ssize_t max_size   # bytes asked of one recv()

    cdef int init_selector(self, CoreLoop loop, object sock, object protocol,
                           object extra, object server) except -1


cdef class SocketTransport(SelectorTransportBase):
    cdef public object _empty_waiter
    cdef list wqueue                # bytes objects not sent yet, from index whead
    cdef Py_ssize_t whead
    cdef Py_ssize_t woffset         # bytes of wqueue[whead] already sent
    cdef Py_ssize_t wsize           # bytes queued (get_write_buffer_size)
    # Completion reads (io_uring): what arrived and awaits the read handle.
    cdef list rchunks               # bytes objects received
    cdef int rend                   # 0; 1 at EOF; else -errno of a failed receive
    cdef IoHandle rhandle           # queued when something arrived (rqueued)

    cdef int queue_delivery(self) except -1
    cdef int deliver_received(self) except -1
    cdef bytes take_received(self, Py_ssize_t limit)
    cdef int feed_data(self) except -1
    cdef int feed_buffered(self) except -1

    cdef int read_data(self) except -1
    cdef int read_buffered(self) except -1
    cdef int protocol_buffer(self, Py_buffer *view) except -1
    cdef int call_data_received(self, object data) except -1
    cdef int call_buffer_updated(self, Py_ssize_t n) except -1
    cdef int on_eof(self) except -1
    cdef int queue_bytes(self, object data, Py_ssize_t offset) except -1
    cdef int queue_copy(self, const char *p, Py_ssize_t n) except -1
    cdef int clear_queue(self) except -1
    cdef Py_ssize_t send_queue(self) noexcept
    cdef int consume(self, Py_ssize_t n) except -1
    cdef int flush(self) except -1
    cdef int fail_write(self, object exc) except -1
    cdef int drop_write(self) except -1


cdef enum:
    PEER_CACHE = 8                # recent senders whose address tuples a transport keeps


cdef class DatagramTransport(SelectorTransportBase):
    cdef readonly object _address
    cdef readonly Py_ssize_t _buffer_size
    cdef object dbuffer             # collections.deque of (bytes, addr)
    cdef bint inet                  # AF_INET(6): recvfrom() and its address made here
    # The recent senders: their sockaddrs and the address tuples made from them (a
    # list), replaced in turn. A datagram from one of them reuses its tuple (making one
    # costs more than the rest of a read), and peer_addr is the last sender's: a server
    # answering with that same tuple has sendto() use peer_sas[peer_last] instead of
    # parsing the tuple again. Zeroed slots hold None: an empty address's tuple.
    cdef list peer_addrs
    cdef sockaddr_storage peer_sas[PEER_CACHE]
    cdef socklen_t peer_salens[PEER_CACHE]
    cdef int peer_next              # the slot the next new sender takes
    cdef int peer_last              # the last sender's slot
    cdef object peer_addr           # peer_addrs[peer_last]; None before any datagram

    cdef int note_peer(self, sockaddr_storage *sa, socklen_t salen) except -1
    cdef bint read_one(self, char *buf) except -1
    cdef bint read_with_socket(self, char *buf) except -1
    cdef int dequeue(self) except -1


cdef class ReadPipeTransport(TransportBase):
    cdef public object _pipe
    cdef readonly object _fileno
    cdef public Py_ssize_t max_size


cdef class WritePipeTransport(FlowControlTransport):
    cdef public object _pipe
    cdef readonly object _fileno
    cdef bytearray pbuffer

    cdef int close_c(self, object exc) except -1

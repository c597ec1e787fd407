# Tunables of the Cython core, each with where its value comes from.

# Longest single poll, in seconds: asyncio's base_events.MAXIMUM_SELECT_TIMEOUT
# (one day). Also keeps a huge or infinite deadline from overflowing the int
# millisecond timeout that epoll_wait takes.
cdef double MAX_POLL_TIMEOUT = 24 * 3600.0

# Heap compaction: asyncio's _MIN_SCHEDULED_TIMER_HANDLES and
# _MIN_CANCELLED_TIMER_HANDLES_FRACTION. Rebuild the timer heap when more than this
# many timers are scheduled and more than this fraction of them are cancelled.
cdef Py_ssize_t MIN_SCHEDULED_TO_COMPACT = 100
cdef double MIN_CANCELLED_FRACTION_TO_COMPACT = 0.5

# Bytes asked of one recv()/read() by a transport: asyncio's
# selector_events._SelectorTransport.max_size (256 KiB). Also the size of the
# buffer each loop owns for those reads (transport.pyx).
cdef Py_ssize_t MAX_RECV_SIZE = 256 * 1024

cdef enum:
    # Events fetched by one epoll_wait/kevent. Level-triggered polling hands the rest
    # to the next wait; 256 keeps the kernel-side array on the stack small (3 KiB
    # with epoll, 8 KiB with kqueue) while one wait still serves a busy server.
    POLL_MAX_EVENTS = 256
    # First sizes of the ready ring and the timer heap; both grow by doubling.
    # 64 covers a typical iteration without growing (asyncio's deque blocks are 64).
    READY_INITIAL_CAPACITY = 64
    # Finished handles a loop keeps for reuse (coreloop.pyx, keep_spare): Cython's
    # freelist size for Handle, which the free-threaded build does not have.
    SPARE_HANDLES = 256
    TIMERS_INITIAL_CAPACITY = 64
    # Iterations in a row that never block in the poll (which releases the GIL)
    # before the loop releases it anyway, so that other threads run while it is busy
    # with C callbacks alone, as they do beside asyncio's Python-level loop (the
    # interpreter switches every sys.getswitchinterval()). 64 keeps the release, a
    # mutex round trip, out of the cost of an iteration.
    GIL_RELEASE_ITERATIONS = 64

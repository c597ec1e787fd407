# Loop statistics (docs/observability.md): counters in a C struct on the loop,
# written only by the thread that runs it, a few times per iteration (never per
# callback). stats() may read them from any thread: each is one machine word, so a
# snapshot taken from another thread can mix two iterations' values, nothing worse.
# The Python twin is _py/stats.py.

# Upper bounds, in seconds, of the lag histogram's buckets; the last bucket holds
# the rest. The same edges as fastloop._py.stats.LAG_EDGES.
cdef double LAG_EDGES_C[LAG_BUCKETS - 1]
LAG_EDGES_C[:] = [50e-6, 100e-6, 200e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 20e-3,
                  50e-3, 0.1, 0.2, 0.5, 1.0]
LAG_EDGES = tuple(LAG_EDGES_C)


cdef inline double stats_ready_since(LoopStats *s, bint carried, double first_due,
                                     double poll_end) noexcept:
    """When the oldest callback of this iteration's batch became ready, as known.

    Callbacks queued before the poll (by the previous batch, or another thread) count
    from the end of the previous poll, the start of the batch that queued them: an
    upper bound (a loop stopped in between counts the time it was stopped). A due
    timer counts from its deadline, but no earlier than the end of the previous poll
    (one due before then was scheduled since, or it would have run). An fd counts
    from the poll that reported it: the kernel does not say when it became ready.
    """
    if first_due > poll_end and not carried:
        return poll_end
    cdef double prev = s.poll_end if s.poll_end != 0 else poll_end
    if carried or first_due < prev:
        return prev
    return first_due


cdef inline void stats_iteration(LoopStats *s, double poll_start, double poll_end,
                                 double ready_since, Py_ssize_t ncallbacks) noexcept:
    """Account one iteration: the busy stretch before its poll, the poll, its batch.

    poll_start is 0 for a poll that could not block (zero timeout): busy time.
    """
    if poll_start == 0:
        poll_start = poll_end
    else:
        s.idle += poll_end - poll_start
    if s.busy_since != 0:
        s.busy += poll_start - s.busy_since
    s.poll_end = s.busy_since = poll_end
    s.iterations += 1
    if ncallbacks == 0:
        return
    s.callbacks += ncallbacks
    cdef double lag = poll_end - ready_since
    s.lag_latest = lag
    cdef int i = 0
    if lag != 0:  # I/O-only batches have none: skip the search
        while i < LAG_BUCKETS - 1 and lag > LAG_EDGES_C[i]:
            i += 1
        if lag > s.lag_max:
            s.lag_max = lag
    s.lag_hist[i] += 1


cdef inline void stats_run_ended(LoopStats *s) noexcept:
    """The loop stops: its last busy stretch ends now; time until the next run is neither."""
    if s.busy_since != 0:
        s.busy += fl_monotonic() - s.busy_since
        s.busy_since = 0


cdef void stats_reset(LoopStats *s) noexcept:
    cdef double poll_end = s.poll_end, busy_since = s.busy_since
    memset(s, 0, sizeof(LoopStats))
    s.poll_end = poll_end
    s.busy_since = busy_since


cdef dict stats_counters(CoreLoop loop):
    """The core's half of loop.stats(), as the keyword arguments of fastloop.LoopStats."""
    cdef LoopStats *s = &loop.st
    cdef FdWatch watch
    cdef Py_ssize_t readers = 0, writers = 0
    cdef Py_ssize_t ncancelled = fl_load_ssize(&loop.timers.ncancelled)
    # A copy first: from another thread, iterating the live dict could see it change.
    for watch in list(loop.fds.values()):
        readers += (watch.events & FL_READ) != 0
        writers += (watch.events & FL_WRITE) != 0
    return dict(
        iterations=s.iterations,
        callbacks=s.callbacks,
        io_events=s.io_events,
        busy_time=s.busy,
        idle_time=s.idle,
        ready=fl_load_ssize(&loop.ready.size),
        timers=max(loop.timers.size - ncancelled, 0),
        timers_cancelled=ncancelled,
        readers=readers,
        writers=writers,
        lag_latest=s.lag_latest,
        lag_max=s.lag_max,
        lag_histogram=tuple([s.lag_hist[i] for i in range(LAG_BUCKETS)]),
    )

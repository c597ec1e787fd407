"""Loop statistics (docs/observability.md): the Python twin of _cy/stats.pyx.

The loop's thread updates the counters a few times per iteration, never per
callback; stats() may read them from any thread (a snapshot taken from another
thread can mix two iterations' values).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .coreloop import CoreLoop

# Upper bounds, in seconds, of the lag histogram's buckets; the last bucket holds the
# rest. The same edges as the Cython core's.
LAG_EDGES = (50e-6, 100e-6, 200e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 20e-3,
             50e-3, 0.1, 0.2, 0.5, 1.0)
_LAST_BUCKET = len(LAG_EDGES)


class Counters:
    """What the loop counts; times in seconds of the loop's clock."""

    __slots__ = ("iterations", "callbacks", "io_events", "busy", "idle", "poll_end",
                 "busy_since", "lag_latest", "lag_max", "lag_hist")

    def __init__(self) -> None:
        self.poll_end = 0.0  # when the last poll returned (0: never)
        self.busy_since = 0.0  # when the busy stretch began; 0 while not running
        self.reset()

    def reset(self) -> None:
        """Zero everything but the running loop's place in its iteration."""
        self.iterations = 0
        self.callbacks = 0  # handles taken from the ready queue to run
        self.io_events = 0  # (fd, events) pairs of watched fds the poll reported
        self.busy = 0.0  # time between a poll's return and the next poll
        self.idle = 0.0  # time in the poll
        self.lag_latest = 0.0
        self.lag_max = 0.0
        self.lag_hist = [0] * (_LAST_BUCKET + 1)

    def ready_since(self, carried: bool, first_due: float | None, poll_end: float) -> float:
        """When the oldest callback of this iteration's batch became ready, as known.

        The rules of the Cython twin (stats_ready_since): callbacks queued before the
        poll count from the end of the previous poll; a due timer from its deadline,
        but no earlier than the end of the previous poll; an fd from the poll that
        reported it.
        """
        if not carried and (first_due is None or first_due > poll_end):
            return poll_end
        prev = self.poll_end or poll_end
        if carried or first_due is None or first_due < prev:
            return prev
        return first_due

    def iteration(
        self, poll_start: float, poll_end: float, ready_since: float, ncallbacks: int
    ) -> None:
        """Account one iteration: the busy stretch before its poll, the poll, its batch.

        poll_start is 0 for a poll that could not block (zero timeout): busy time.
        """
        if poll_start:
            self.idle += poll_end - poll_start
        else:
            poll_start = poll_end
        if self.busy_since:
            self.busy += poll_start - self.busy_since
        self.poll_end = self.busy_since = poll_end
        self.iterations += 1
        if not ncallbacks:
            return
        self.callbacks += ncallbacks
        lag = poll_end - ready_since
        self.lag_latest = lag
        i = 0
        if lag:  # I/O-only batches have none: skip the search
            while i < _LAST_BUCKET and lag > LAG_EDGES[i]:
                i += 1
            if lag > self.lag_max:
                self.lag_max = lag
        self.lag_hist[i] += 1

    def run_ended(self, now: float) -> None:
        """The loop stops: its last busy stretch ends now."""
        if self.busy_since:
            self.busy += now - self.busy_since
            self.busy_since = 0.0


def counters(loop: CoreLoop) -> dict[str, Any]:
    """The core's half of loop.stats(), as the keyword arguments of fastloop.LoopStats."""
    st = loop._stats
    readers = writers = 0
    # A copy first: from another thread, iterating the live dict could see it change.
    for entry in list(loop._fds.values()):
        readers += entry[0] is not None
        writers += entry[1] is not None
    timers = loop._timers
    ncancelled = timers._ncancelled
    return {
        "iterations": st.iterations,
        "callbacks": st.callbacks,
        "io_events": st.io_events,
        "busy_time": st.busy,
        "idle_time": st.idle,
        "ready": len(loop._ready),
        "timers": max(timers._size - ncancelled, 0),
        "timers_cancelled": ncancelled,
        "readers": readers,
        "writers": writers,
        "lag_latest": st.lag_latest,
        "lag_max": st.lag_max,
        "lag_histogram": tuple(st.lag_hist),
    }

"""``loop.stats()``: a snapshot of what the loop did and holds (docs/observability.md).

The counters live in each core (``_cy/stats.pyx``, ``_py/stats.py``); this module
turns them, with what the mixin knows (servers, transports), into a ``LoopStats``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ._py.stats import LAG_EDGES


@dataclasses.dataclass(frozen=True)
class LoopStats:
    """What a fastloop loop did since it was made (or since ``reset_stats()``) and holds now.

    Times are in seconds of the loop's clock (``time.monotonic``).
    """

    #: Loop iterations: each polls once, then runs the callbacks ready at that point.
    iterations: int
    #: Handles taken from the ready queue to run (one cancelled while queued included).
    callbacks: int
    #: Readiness events of watched fds the poll reported ((fd, events) pairs; the
    #: loop's own wake-ups are not counted).
    io_events: int
    #: Time from each poll's return to the next poll: queueing fd callbacks and due
    #: timers, and running callbacks.
    busy_time: float
    #: Time blocked in the poll, waiting for fds, timers or a wake-up.
    idle_time: float
    #: Callbacks in the ready queue now.
    ready: int
    #: Timers scheduled now, not counting cancelled ones.
    timers: int
    #: Cancelled timers still in the queue (dropped lazily when due, or on compaction).
    timers_cancelled: int
    #: Fds watched for reading / for writing now (transports' fds included).
    readers: int
    writers: int
    #: Socket transports (TCP, Unix, UDP) of this loop that are not closing.
    transports: int
    #: Servers accepting connections (``create_server``, ``create_unix_server``).
    servers: int
    #: Lag of the latest iteration that ran callbacks: how long its oldest callback
    #: had been ready when the loop turned to run them (docs/observability.md says
    #: how "ready" is known).
    lag_latest: float
    #: The largest lag since the loop was made or since ``reset_stats()``.
    lag_max: float
    #: Iterations that ran callbacks, counted by lag: ``lag_histogram[i]`` had a
    #: lag at most ``LAG_EDGES[i]`` (and above the edge before); the last bucket
    #: holds lags above ``LAG_EDGES[-1]``.
    lag_histogram: tuple[int, ...]
    #: Callbacks reported to the slow-callback hook (``loop.set_slow_callback_hook``).
    slow_callbacks: int = 0

    LAG_EDGES = LAG_EDGES

    @property
    def utilisation(self) -> float:
        """busy / (busy + idle): the share of time the loop was not waiting, 0 to 1."""
        total = self.busy_time + self.idle_time
        return self.busy_time / total if total > 0 else 0.0

    def lag_percentile(self, q: float) -> float:
        """The lag that ``q`` percent (0-100) of the histogram's iterations did not exceed.

        Resolved to the histogram's bucket edges (the upper edge of the bucket the
        percentile falls in), never above ``lag_max``; 0.0 without samples.
        """
        total = sum(self.lag_histogram)
        if not total:
            return 0.0
        rank = max(1, math.ceil(total * q / 100))
        seen = 0
        for count, edge in zip(self.lag_histogram, (*LAG_EDGES, math.inf)):
            seen += count
            if seen >= rank:
                return min(edge, self.lag_max)
        return self.lag_max

    def delta(self, earlier: LoopStats) -> LoopStats:
        """The counters since ``earlier`` (a snapshot of the same loop); the rest as now.

        ``lag_max`` stays the maximum since the last reset: a maximum cannot be
        subtracted.
        """
        return dataclasses.replace(
            self,
            iterations=self.iterations - earlier.iterations,
            callbacks=self.callbacks - earlier.callbacks,
            io_events=self.io_events - earlier.io_events,
            busy_time=self.busy_time - earlier.busy_time,
            idle_time=self.idle_time - earlier.idle_time,
            lag_histogram=tuple(
                now - then for now, then in zip(self.lag_histogram, earlier.lag_histogram)
            ),
            slow_callbacks=self.slow_callbacks - earlier.slow_callbacks,
        )


def snapshot(loop: Any) -> LoopStats:
    """Take ``loop.stats()``: the core's counters and the mixin's tables."""
    fields = loop._stats_counters()
    # Copies first (list() of a dict is one step): another thread may be reading.
    refs = list(loop._transports.data.values())
    fields["transports"] = sum(
        1 for ref in refs if (t := ref()) is not None and not t.is_closing()
    )
    serving = list(loop._serving.items())
    fields["servers"] = len({id(sock if server is None else server) for sock, server in serving})
    fields["slow_callbacks"] = loop._slow_count
    return LoopStats(**fields)

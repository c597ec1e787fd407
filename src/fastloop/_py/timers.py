"""TimerQueue: the loop's timers, ordered by deadline, then by scheduling order.

The queue is a binary heap of deadlines (plain floats, which heapq compares in C,
never calling ``TimerHandle.__lt__``) and a dict from each deadline to its timer,
or to a list of the timers that share it, in scheduling order. That gives the
(when, seq) order of the contract without allocating a ``(when, seq, handle)``
tuple per timer: the tuples cost more in allocations and garbage-collector
traversals than the dict costs in look-ups (about a third of the time of a
100k-timer run).

Cancelled timers stay in the queue (lazy deletion) until they reach the top, or
until they dominate it and the queue is rebuilt without them.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush
from math import isnan
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from .handles import TimerHandle

# asyncio's _MIN_SCHEDULED_TIMER_HANDLES and _MIN_CANCELLED_TIMER_HANDLES_FRACTION:
# rebuild the queue when it holds more than this many timers and more than half
# of them are cancelled.
MIN_SCHEDULED_TO_COMPACT = 100

_NEG_INF = float("-inf")
_INF = float("inf")


def _heap_key(when: float) -> float:
    """Return the heap key (a float) of a deadline that is not a plain, non-NaN float.

    NaN compares false with everything (it would break the heap order, and is
    no dict key either), so it sorts first: it fires at once. Keys are floats,
    so the loop's timeout arithmetic always works; like the C double of the
    Cython core, the conversion rejects what is not a real number (TypeError)
    an int beyond the float range is as far in the past or future as it gets.
    """
    try:
        return _NEG_INF if isnan(when) else float(when)
    except OverflowError:
        if isinstance(when, int):
            return _NEG_INF if when < 0 else _INF
        raise


class TimerQueue:
    """Timers ordered by (deadline, scheduling order), with lazy cancellation."""

    __slots__ = ("_heap", "_at", "_size", "_ncancelled")

    def __init__(self) -> None:
        # The loop tests ``_heap`` itself for emptiness: len() of the queue would
        # be a Python-level call on every iteration.
        self._heap: list[float] = []  # distinct heap keys
        # heap key -> TimerHandle, or list of TimerHandles (FIFO); Any, as mypy does
        # not narrow the ``entry.__class__ is list`` tests (cheaper than type()).
        self._at: dict[float, Any] = {}
        self._size = 0  # timers in the queue, cancelled ones included
        self._ncancelled = 0  # cancelled timers still in the queue

    def __len__(self) -> int:
        return self._size

    def push(self, handle: TimerHandle) -> None:
        """Schedule a TimerHandle at ``handle._when``."""
        when = handle._when
        if when.__class__ is not float or when != when:
            when = _heap_key(when)
        at = self._at
        entry = at.get(when)
        if entry is None:
            at[when] = handle
            heappush(self._heap, when)
        elif entry.__class__ is list:
            entry.append(handle)
        else:
            at[when] = [entry, handle]
        self._size += 1
        handle._scheduled = True
        if handle._cancelled:  # counted as the Cython twin does: it leaves as a dead entry
            self._ncancelled += 1

    def note_cancelled(self, handle: TimerHandle) -> None:
        """Count a timer cancelled while it waits in the queue.

        It may be called from another thread (TimerHandle.cancel()), racing with the
        loop taking the timer off: the count is then off by one. It only decides
        when to compact, and compaction recounts (docs/free-threading.md, "Timers").
        """
        if handle._scheduled:
            self._ncancelled += 1

    def first_deadline(self) -> float | None:
        """Return the heap key of the earliest live timer, or None if there is none.

        Deadlines whose timers are all cancelled are dropped on the way.
        """
        heap = self._heap
        at = self._at
        while heap:
            key = heap[0]
            entry = at[key]
            handles = entry if entry.__class__ is list else (entry,)
            for handle in handles:
                if not handle._cancelled:
                    return key
            # Every timer at this deadline is cancelled.
            heappop(heap)
            del at[key]
            for handle in handles:
                handle._scheduled = False
            self._size -= len(handles)
            self._ncancelled -= len(handles)
        return None

    def pop_due(self, end: float, append: Callable[[TimerHandle], object]) -> None:
        """Pass every live timer with a deadline before ``end`` to ``append``, in order."""
        if self._ncancelled * 2 > self._size > MIN_SCHEDULED_TO_COMPACT:
            self._compact()
        heap = self._heap
        at = self._at
        while heap and heap[0] < end:
            entry = at.pop(heappop(heap))
            for handle in entry if entry.__class__ is list else (entry,):
                handle._scheduled = False
                self._size -= 1
                if handle._cancelled:
                    self._ncancelled -= 1
                else:
                    append(handle)

    def _compact(self) -> None:
        """Rebuild the queue without its cancelled timers."""
        at: dict[float, Any] = {}
        size = 0
        for key, entry in self._at.items():
            live: list[TimerHandle] = []
            for handle in entry if entry.__class__ is list else (entry,):
                if handle._cancelled:
                    handle._scheduled = False
                else:
                    live.append(handle)
            if live:
                at[key] = live if len(live) > 1 else live[0]
                size += len(live)
        self._at = at
        self._heap = list(at)
        heapify(self._heap)
        # Counted, not derived from _ncancelled: other threads' cancel() may have
        # skewed that hint.
        self._size = size
        self._ncancelled = 0

    def clear(self) -> None:
        """Forget every timer (the loop is closing)."""
        for entry in self._at.values():
            for handle in entry if entry.__class__ is list else (entry,):
                handle._scheduled = False
        self._heap.clear()
        self._at.clear()
        self._size = 0
        self._ncancelled = 0

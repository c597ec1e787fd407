"""Slow-callback reports outside debug mode (``loop.set_slow_callback_hook``).

The core times each callback only while a threshold is set, and hands the ones
that reach it to ``LoopMixin._slow_callback``, which builds a ``SlowCallback``
here: the handle, how long it ran, and the task it ran a step of, with that
task's call graph. docs/observability.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from typing import Any

logger = logging.getLogger("fastloop")


@dataclasses.dataclass(frozen=True)
class SlowCallback:
    """One callback that ran for at least the loop's slow-callback threshold."""

    #: The handle that ran (its repr names the callback and where it was made).
    handle: Any
    #: How long the callback ran, in seconds.
    duration: float
    #: The task the callback ran a step of (or woke up), if it was one's.
    task: asyncio.Task[Any] | None
    #: That task's call graph as the step left it: where it awaits now, and who
    #: awaits it. On 3.14, asyncio.format_call_graph(); before, the chain of
    #: coroutines from the task's down to what the innermost one awaits.
    call_graph: str | None

    def format(self) -> str:
        """A few lines for a log or a report."""
        text = f"{self.handle!r} took {self.duration:.3f} seconds"
        if self.call_graph:
            text += "\n" + self.call_graph.rstrip("\n")
        return text


def task_of(handle: Any) -> asyncio.Task[Any] | None:
    """The task whose step (or wake-up) ``handle`` ran, or None.

    A task schedules its bound __step/__wakeup (the C tasks' wrappers have
    ``__self__`` too), so the callback's owner is the task.
    """
    owner = getattr(handle._callback, "__self__", None)
    if asyncio.isfuture(owner) and hasattr(owner, "get_coro"):
        return owner  # type: ignore[return-value]
    return None


def call_graph(task: asyncio.Task[Any]) -> str:
    """The task's call graph; a finished task (its last step was the slow one) has
    none, so its repr (which says how it finished) stands for it."""
    if task.done():
        # (3.14's format_call_graph() fails on a finished task: it has no frame.)
        return f"* {task!r}"
    return _call_graph(task)


if sys.version_info >= (3, 14):

    def _call_graph(task: asyncio.Task[Any]) -> str:
        """asyncio's own rendering of the task's call graph."""
        return asyncio.format_call_graph(task)

else:

    def _call_graph(task: asyncio.Task[Any]) -> str:
        """The task (its repr names what it waits for) and its coroutines, outermost first."""
        lines = [f"* {task!r}"]
        coro: Any = task.get_coro()
        # Down the awaits, as long as they are coroutines or generators with a frame
        # (a future's iterator has none: the task's repr shows that future).
        while (frame := getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)):
            code = frame.f_code
            name = getattr(code, "co_qualname", code.co_name)  # co_qualname: 3.11+
            lines.append(f"  {name}() at {code.co_filename}:{frame.f_lineno}")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        return "\n".join(lines)


def report(handle: Any, duration: float) -> SlowCallback:
    """Describe a slow callback that has just returned."""
    task = task_of(handle)
    return SlowCallback(handle, duration, task, call_graph(task) if task is not None else None)


def log_slow_callback(slow: SlowCallback) -> None:
    """The default hook: a warning on the ``fastloop`` logger."""
    logger.warning("Slow callback: %s", slow.format())

"""Handle and TimerHandle: asyncio-compatible callback records with ``__slots__``.

They behave like ``asyncio.events.Handle``/``TimerHandle`` (same attributes, repr,
error report) without inheriting from them, as the Cython twin cannot either.
"""

from __future__ import annotations

import sys
import threading
from asyncio import events as aio_events
from asyncio import format_helpers as aio_format_helpers
from contextvars import Context, copy_context
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from .coreloop import CoreLoop

_getframe = sys._getframe
_extract_stack = aio_format_helpers.extract_stack
_new = object.__new__

if sys.version_info >= (3, 13):

    def _format_callback(handle: Handle) -> str:
        return aio_format_helpers._format_callback_source(
            handle._callback, handle._args, debug=handle._loop.get_debug()
        )

else:  # no debug= parameter before 3.13

    def _format_callback(handle: Handle) -> str:
        return aio_format_helpers._format_callback_source(handle._callback, handle._args)


class Handle:
    """Object returned by callback registration methods."""

    __slots__ = (
        "_callback",
        "_args",
        "_cancelled",
        "_loop",
        "_source_traceback",
        "_repr",
        "_context",
        "__weakref__",
    )

    # cancel() sets both to None, as asyncio does, to free what they hold; only
    # handles that are not cancelled run, so everything else takes them as set.
    _callback: Callable[..., object]
    _args: tuple[Any, ...]
    _cancelled: bool
    _loop: CoreLoop
    _source_traceback: Any  # a traceback.StackSummary in debug mode, else None
    _repr: str | None
    _context: Context

    def __init__(
        self,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: CoreLoop,
        context: Context | None = None,
    ) -> None:
        self._callback = callback
        self._args = args
        self._cancelled = False
        self._loop = loop
        self._repr = None
        self._context = copy_context() if context is None else context
        # asyncio's frame accounting: frame 1 is whoever constructed the handle;
        # each loop method then deletes its own frame from the end.
        self._source_traceback = _extract_stack(_getframe(1)) if loop.get_debug() else None

    # asyncio's own formatting, reused so the repr matches on every version.
    _repr_info = aio_events.Handle._repr_info  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        if self._repr is not None:
            return self._repr
        return "<{}>".format(" ".join(self._repr_info()))

    def get_context(self) -> Context:
        return self._context

    def cancel(self) -> None:
        if not self._cancelled:
            self._cancelled = True
            if self._loop.get_debug():
                # Keep callback and arguments visible to later warnings
                # ("Executing <Handle ...> took 2.5 seconds").
                self._repr = repr(self)
            # This order: _run reads them the other way round.
            self._callback = None  # type: ignore[assignment]
            self._args = None  # type: ignore[assignment]

    def cancelled(self) -> bool:
        return self._cancelled

    def _run(self) -> None:
        # Another thread may cancel() between the loop's look at _cancelled and
        # these reads. cancel() clears _callback before _args, so args are read
        # first: a consistent pair, or a None callback, which fails at the call
        # before any user code runs; a cancelled handle then never started. (A
        # None callback given by the user fails the same way, and is reported.)
        args = self._args
        callback = self._callback
        try:
            # Calls with * cost ~150 ns more than plain ones through Context.run,
            # and most callbacks take no argument or one (a future).
            if not args:
                self._context.run(callback)
            elif len(args) == 1:
                self._context.run(callback, args[0])
            else:
                self._context.run(callback, *args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if callback is not None or not self._cancelled:
                self._report(exc)
        # A traceback raised below keeps this frame alive (through f_back) and with it
        # the handle, its callback and, for a task's step, the task: a cycle that would
        # delay "Task exception was never retrieved" until a collection. As asyncio.
        self = callback = args = None  # type: ignore[assignment]

    def _report(self, exc: BaseException) -> None:
        """Hand an exception raised by the callback to the loop's exception handler."""
        context: dict[str, Any] = {
            "message": f"Exception in callback {_format_callback(self)}",
            "exception": exc,
            "handle": self,
        }
        if self._source_traceback:
            context["source_traceback"] = self._source_traceback
        self._loop.call_exception_handler(context)


class TimerHandle(Handle):
    """Object returned by timed callback registration methods."""

    __slots__ = ("_when", "_scheduled")

    _when: float
    _scheduled: bool

    def __init__(
        self,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: CoreLoop,
        context: Context | None = None,
    ) -> None:
        # Handle.__init__ written out: the extra call would cost on every timer.
        self._callback = callback
        self._args = args
        self._cancelled = False
        self._loop = loop
        self._repr = None
        self._context = copy_context() if context is None else context
        self._source_traceback = _extract_stack(_getframe(1)) if loop.get_debug() else None
        self._when = when
        self._scheduled = False

    def _repr_info(self) -> list[str]:
        info: list[str] = aio_events.Handle._repr_info(self)  # type: ignore[attr-defined]
        info.insert(2 if self._cancelled else 1, f"when={self._when}")
        return info

    def __hash__(self) -> int:
        return hash(self._when)

    def __lt__(self, other: object) -> bool:
        if isinstance(other, TimerHandle):
            return self._when < other._when
        return NotImplemented

    def __le__(self, other: object) -> bool:
        if isinstance(other, TimerHandle):
            return self._when < other._when or self.__eq__(other)
        return NotImplemented

    def __gt__(self, other: object) -> bool:
        if isinstance(other, TimerHandle):
            return self._when > other._when
        return NotImplemented

    def __ge__(self, other: object) -> bool:
        if isinstance(other, TimerHandle):
            return self._when > other._when or self.__eq__(other)
        return NotImplemented

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TimerHandle):
            return (
                self._when == other._when
                and self._callback == other._callback
                and self._args == other._args
                and self._cancelled == other._cancelled
            )
        return NotImplemented

    def cancel(self) -> None:
        if not self._cancelled:
            self._loop._timer_handle_cancelled(self)
        Handle.cancel(self)

    def when(self) -> float:
        """Return the scheduled time, on the clock of loop.time()."""
        return self._when


# Factories for the loop's hot paths outside debug mode: they skip __init__ and its
# loop.get_debug() call (a third cheaper per handle), as the Cython core's cdef
# factories do. In debug mode the loop calls the classes, for _source_traceback.


def new_handle(
    callback: Callable[..., object], args: tuple[Any, ...], loop: CoreLoop, context: Context | None
) -> Handle:
    """Return Handle(callback, args, loop, context) for a loop not in debug mode."""
    handle = _new(Handle)
    handle._callback = callback
    handle._args = args
    handle._cancelled = False
    handle._loop = loop
    handle._repr = None
    handle._context = copy_context() if context is None else context
    handle._source_traceback = None
    return handle


def new_timer(
    when: float,
    callback: Callable[..., object],
    args: tuple[Any, ...],
    loop: CoreLoop,
    context: Context | None,
) -> TimerHandle:
    """Return TimerHandle(when, callback, args, loop, context) for a loop not in debug mode."""
    handle = _new(TimerHandle)
    handle._callback = callback
    handle._args = args
    handle._cancelled = False
    handle._loop = loop
    handle._repr = None
    handle._context = copy_context() if context is None else context
    handle._source_traceback = None
    handle._when = when
    handle._scheduled = False
    return handle


# asyncio's _ThreadSafeHandle (3.12.8+, 3.13.1+, 3.14), which call_soon_threadsafe
# returns: made and run without its __init__ and _run, three Python frames, super()
# and threading.RLock()'s wrapper each, as the Cython twin does. Every slot is set as
# __init__ sets it outside debug mode (debug mode calls the class), and the callback
# runs holding the handle's lock, _cancelled checked under it, so that a cancel()
# from another thread waits for a running callback. Only where the class has exactly
# the slots known here; otherwise the loop uses the class.
_ThreadSafeHandle: Any = getattr(aio_events, "_ThreadSafeHandle", None)
_RLock: Any = getattr(threading, "_CRLock", None)
_aio_handle_run = aio_events.Handle._run


def _threadsafe_slots_known() -> bool:
    if _ThreadSafeHandle is None or _RLock is None:
        return False
    slots: set[str] = set()
    for klass in _ThreadSafeHandle.__mro__:
        slots.update(klass.__dict__.get("__slots__", ()))
    return slots == {"_callback", "_args", "_cancelled", "_loop", "_source_traceback",
                     "_repr", "_context", "_lock", "__weakref__"}


THREADSAFE_NATIVE = _threadsafe_slots_known()


def new_threadsafe_handle(
    callback: Callable[..., object], args: tuple[Any, ...], loop: CoreLoop, context: Context | None
) -> Any:
    """Return _ThreadSafeHandle(callback, args, loop, context) for a loop not in debug mode."""
    handle = _new(_ThreadSafeHandle)
    handle._callback = callback
    handle._args = args
    handle._cancelled = False
    handle._loop = loop
    handle._repr = None
    handle._context = copy_context() if context is None else context
    handle._source_traceback = None
    handle._lock = _RLock()
    return handle


def run_threadsafe_handle(handle: Any) -> None:
    """_ThreadSafeHandle._run(): asyncio's Handle._run under the handle's lock."""
    with handle._lock:
        if not handle._cancelled:
            _aio_handle_run(handle)

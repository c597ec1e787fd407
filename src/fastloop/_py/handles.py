"""Handle and TimerHandle: asyncio-compatible callback records with ``__slots__``.

They behave like ``asyncio.events.Handle``/``TimerHandle`` (same attributes, repr,
error report) without inheriting from them, as the Cython twin cannot either.
"""

import sys
from asyncio import events as aio_events
from asyncio import format_helpers as aio_format_helpers
from contextvars import copy_context

_getframe = sys._getframe
_extract_stack = aio_format_helpers.extract_stack
_new = object.__new__

if sys.version_info >= (3, 13):

    def _format_callback(handle):
        return aio_format_helpers._format_callback_source(
            handle._callback, handle._args, debug=handle._loop.get_debug()
        )

else:  # no debug= parameter before 3.13

    def _format_callback(handle):
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

    def __init__(self, callback, args, loop, context=None):
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
    _repr_info = aio_events.Handle._repr_info

    def __repr__(self):
        if self._repr is not None:
            return self._repr
        return "<{}>".format(" ".join(self._repr_info()))

    def get_context(self):
        return self._context

    def cancel(self):
        if not self._cancelled:
            self._cancelled = True
            if self._loop.get_debug():
                # Keep callback and arguments visible to later warnings
                # ("Executing <Handle ...> took 2.5 seconds").
                self._repr = repr(self)
            self._callback = None
            self._args = None

    def cancelled(self):
        return self._cancelled

    def _run(self):
        args = self._args
        try:
            # Calls with * cost ~150 ns more than plain ones through Context.run,
            # and most callbacks take no argument or one (a future).
            if not args:
                self._context.run(self._callback)
            elif len(args) == 1:
                self._context.run(self._callback, args[0])
            else:
                self._context.run(self._callback, *args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._report(exc)

    def _report(self, exc):
        """Hand an exception raised by the callback to the loop's exception handler."""
        context = {
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

    def __init__(self, when, callback, args, loop, context=None):
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

    def _repr_info(self):
        info = aio_events.Handle._repr_info(self)
        info.insert(2 if self._cancelled else 1, f"when={self._when}")
        return info

    def __hash__(self):
        return hash(self._when)

    def __lt__(self, other):
        if isinstance(other, TimerHandle):
            return self._when < other._when
        return NotImplemented

    def __le__(self, other):
        if isinstance(other, TimerHandle):
            return self._when < other._when or self.__eq__(other)
        return NotImplemented

    def __gt__(self, other):
        if isinstance(other, TimerHandle):
            return self._when > other._when
        return NotImplemented

    def __ge__(self, other):
        if isinstance(other, TimerHandle):
            return self._when > other._when or self.__eq__(other)
        return NotImplemented

    def __eq__(self, other):
        if isinstance(other, TimerHandle):
            return (
                self._when == other._when
                and self._callback == other._callback
                and self._args == other._args
                and self._cancelled == other._cancelled
            )
        return NotImplemented

    def cancel(self):
        if not self._cancelled:
            self._loop._timer_handle_cancelled(self)
        Handle.cancel(self)

    def when(self):
        """Return the scheduled time, on the clock of loop.time()."""
        return self._when


# Factories for the loop's hot paths outside debug mode: they skip __init__ and its
# loop.get_debug() call (a third cheaper per handle), as the Cython core's cdef
# factories do. In debug mode the loop calls the classes, for _source_traceback.


def new_handle(callback, args, loop, context):
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


def new_timer(when, callback, args, loop, context):
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

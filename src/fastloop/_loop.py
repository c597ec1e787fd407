"""The part of the loop that is not hot, written once in Python over either core.

``loop_class_for(core)`` builds ``Loop(LoopMixin, core.CoreLoop,
asyncio.AbstractEventLoop)``; the core owns the ready queue, timers, poller and
``_run_until_stopped`` (see docs/core.md), ``LoopMixin`` everything around them.
Where asyncio's own ``BaseEventLoop`` method only touches state this mixin or the
core provides, it is bound here as is (see ``LoopMixin``'s borrowed block, and
``NetMixin``'s in _net.py for networking), so its behaviour follows the running
interpreter's version exactly.
"""

from __future__ import annotations

import asyncio
import functools
import math
import sys
import threading
import weakref
from asyncio import base_events, coroutines, events
from asyncio.log import logger
from typing import TYPE_CHECKING, Any, cast

from . import _impl, _slow, _stats
from ._net import NetMixin
from ._subprocess import SubprocessMixin
from ._unix import SignalMixin

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable
    from concurrent.futures import Executor
    from types import ModuleType

_BaseEventLoop = base_events.BaseEventLoop


class LoopMixin(NetMixin, SubprocessMixin, SignalMixin):
    """asyncio's loop API around a core: running, closing, tasks, executors, errors."""

    def __init__(self, *, backend: str | None = None) -> None:
        """``backend``: "io_uring" for the io_uring backend (fastloop/_backend.py);
        None for $FASTLOOP_BACKEND, or else the platform's (epoll, kqueue)."""
        super().__init__(backend=backend)
        self._exception_handler: (
            Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None
        ) = None
        self._task_factory: Callable[..., asyncio.Future[Any]] | None = None
        self._default_executor: Executor | None = None
        self._executor_shutdown_called = False
        # Async generators first iterated under this loop, finalised by
        # shutdown_asyncgens(); weak so that collected ones drop out.
        self._asyncgens: weakref.WeakSet[AsyncGenerator[Any, Any]] = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._coroutine_origin_tracking_enabled = False
        self._coroutine_origin_tracking_saved_depth: int | None = None
        self._old_agen_hooks: sys._asyncgen_hooks | None = None
        self._slow_hook: Callable[[_slow.SlowCallback], object] | None = None
        self._slow_hook_threshold = math.inf
        self._slow_count = 0  # callbacks reported as slow, for stats()
        # What this loop exports to OpenTelemetry (an _otel.LoopTelemetry), decided
        # whenever it starts running; None: nothing (and _otel is not imported).
        self._otel: Any = None
        # PYTHONASYNCIODEBUG or -X dev, read at construction as asyncio does. (The
        # cast: set_debug is BaseEventLoop's, and self an AbstractEventLoop only at
        # runtime, through loop_class_for.)
        cast("asyncio.AbstractEventLoop", self).set_debug(coroutines._is_debug_mode())

    # --- Borrowed from asyncio.base_events.BaseEventLoop ----------------------
    # Bound as they are, so each interpreter version gets its own semantics
    # (set_default_executor: DeprecationWarning on 3.10, TypeError later;
    # shutdown_default_executor: timeout= from 3.12; create_task: context= from
    # 3.11; call_exception_handler: runs the handler in the task's context on
    # 3.13). Besides the core's public methods, they read and write only:
    #   core:  _debug, _current_handle, slow_callback_duration, _check_closed()
    #   mixin: _exception_handler, _task_factory, _default_executor,
    #          _executor_shutdown_called, _asyncgens, _asyncgens_shutdown_called,
    #          _coroutine_origin_tracking_enabled and _saved_depth
    # and call each other (_check_default_executor, _check_running,
    # _do_shutdown, _getaddrinfo_debug) and the core's _check_callback (which
    # run_in_executor uses in debug mode). These are the names
    # their code objects use on 3.10 to 3.13 (checked via __code__.co_names).
    __repr__ = _BaseEventLoop.__repr__
    # ResourceWarning 'unclosed event loop', then close() if not running.
    __del__ = _BaseEventLoop.__del__
    create_future = _BaseEventLoop.create_future
    create_task = _BaseEventLoop.create_task
    set_task_factory = _BaseEventLoop.set_task_factory
    get_task_factory = _BaseEventLoop.get_task_factory
    run_until_complete = _BaseEventLoop.run_until_complete
    _check_running = _BaseEventLoop._check_running
    set_debug = _BaseEventLoop.set_debug
    _set_coroutine_origin_tracking = _BaseEventLoop._set_coroutine_origin_tracking
    get_exception_handler = _BaseEventLoop.get_exception_handler
    set_exception_handler = _BaseEventLoop.set_exception_handler
    call_exception_handler = _BaseEventLoop.call_exception_handler
    run_in_executor = _BaseEventLoop.run_in_executor
    set_default_executor = _BaseEventLoop.set_default_executor
    _check_default_executor = _BaseEventLoop._check_default_executor
    shutdown_default_executor = _BaseEventLoop.shutdown_default_executor
    _do_shutdown = _BaseEventLoop._do_shutdown
    getaddrinfo = _BaseEventLoop.getaddrinfo
    _getaddrinfo_debug = _BaseEventLoop._getaddrinfo_debug
    getnameinfo = _BaseEventLoop.getnameinfo
    shutdown_asyncgens = _BaseEventLoop.shutdown_asyncgens
    _asyncgen_firstiter_hook = _BaseEventLoop._asyncgen_firstiter_hook
    _asyncgen_finalizer_hook = _BaseEventLoop._asyncgen_finalizer_hook
    # --- end of borrowed block ------------------------------------------------

    def run_forever(self) -> None:
        """Run until stop() is called."""
        # Set up outside the try: if a check fails, nothing was changed, and
        # the finally must not clear the running loop of whoever is running.
        self._run_forever_setup()
        try:
            self._run_until_stopped()
        finally:
            self._run_forever_cleanup()

    def _run_forever_setup(self) -> None:
        """Check the loop may run, then make it the running loop of this thread.

        Named as in asyncio 3.13, where GUI integrations call it and
        _run_forever_cleanup around their own iteration.
        """
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self._debug)
        self._old_agen_hooks = sys.get_asyncgen_hooks()
        self._thread_id = threading.get_ident()
        sys.set_asyncgen_hooks(
            firstiter=self._asyncgen_firstiter_hook,
            finalizer=self._asyncgen_finalizer_hook,
        )
        events._set_running_loop(cast("asyncio.AbstractEventLoop", self))  # it is one
        # OpenTelemetry is looked for here, never per callback: a provider can only
        # be installed once the application imported it (docs/observability.md).
        if "opentelemetry" in sys.modules or self._otel is not None:
            self._otel_check()

    def _run_forever_cleanup(self) -> None:
        """Undo _run_forever_setup, also after an exception escaped a callback."""
        # The core clears _stopping only when _run_until_stopped returns.
        self._stopping = False
        self._thread_id = None
        events._set_running_loop(None)
        self._set_coroutine_origin_tracking(False)
        if self._old_agen_hooks is not None:
            sys.set_asyncgen_hooks(*self._old_agen_hooks)
            self._old_agen_hooks = None

    def stats(self) -> _stats.LoopStats:
        """A snapshot of the loop's statistics (docs/observability.md); any thread may call it."""
        return _stats.snapshot(self)

    def reset_stats(self) -> None:
        """Zero the counters, the lag maximum and histogram; from the loop's thread only."""
        self._reset_stats()
        self._slow_count = 0

    def set_slow_callback_hook(
        self,
        threshold: float | None,
        hook: Callable[[_slow.SlowCallback], object] | None = None,
    ) -> None:
        """Report every callback that runs for ``threshold`` seconds or more.

        Each one is passed to ``hook`` as a ``fastloop.SlowCallback`` (the handle,
        the duration, the task and its call graph), by default logged as a warning
        on the ``fastloop`` logger. ``threshold`` None turns reporting off. Works
        with or without debug mode, whose own warning is unchanged.
        """
        if threshold is None:
            self._slow_hook_threshold = math.inf
            self._slow_hook = None
        else:
            threshold = float(threshold)
            if not threshold >= 0:
                raise ValueError(f"threshold must be a number >= 0 or None, not {threshold!r}")
            self._slow_hook = _slow.log_slow_callback if hook is None else hook
            self._slow_hook_threshold = threshold
        self._set_slow_threshold()

    def _set_slow_threshold(self) -> None:
        """Time callbacks (in the core) against the lower of the hook's and OTel's thresholds."""
        otel = self._otel
        spans = otel is not None and otel.spans
        self._slow_threshold = min(
            self._slow_hook_threshold, self.slow_callback_duration if spans else math.inf
        )

    def _slow_callback(self, handle: Any, duration: float) -> None:
        """Called by the core after a callback ran for at least the threshold."""
        hook = self._slow_hook if duration >= self._slow_hook_threshold else None
        otel = self._otel
        if otel is not None and not (otel.spans and duration >= self.slow_callback_duration):
            otel = None
        if hook is None and otel is None:
            return
        self._slow_count += 1
        report = _slow.report(handle, duration)
        consumers: list[tuple[Callable[[_slow.SlowCallback], object], str]] = []
        if hook is not None:
            consumers.append((hook, "the slow-callback hook"))
        if otel is not None:
            consumers.append((otel.slow_callback, "exporting a slow callback to OpenTelemetry"))
        for consumer, what in consumers:
            try:
                consumer(report)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                cast("asyncio.AbstractEventLoop", self).call_exception_handler(
                    {"message": f"Exception in {what}", "exception": exc, "handle": handle}
                )

    def _otel_check(self) -> None:
        """Decide what this loop exports under the OpenTelemetry providers set now."""
        from . import _otel

        self._otel = _otel.attach(self, self._otel)
        self._set_slow_threshold()

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        """asyncio's (it logs the context), then an OpenTelemetry span if traced."""
        _BaseEventLoop.default_exception_handler(cast("_BaseEventLoop", self), context)
        otel = self._otel
        if otel is not None and otel.spans:
            try:
                otel.exception(context)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                # Not the exception handler again: it is what failed to export.
                logger.exception("Exception exporting an unhandled exception to OpenTelemetry")

    def close(self) -> None:
        """Close the loop: signal handlers, then the core, then the executor.

        The default executor is shut down without waiting for its threads;
        await shutdown_default_executor() first to wait for them.
        """
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        # Before the core closes, while remove_reader still reaches the poller.
        self._close_signals()
        self._close_children()
        if self._debug:
            logger.debug("Close %r", self)
        if self._otel is not None:
            from . import _otel

            _otel.detach(self)
            self._otel = None
        super().close()
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)


@functools.cache
def loop_class_for(core: ModuleType) -> type[asyncio.AbstractEventLoop]:
    """Return the Loop class over ``core`` (fastloop._py or fastloop._cy), made once."""
    return type(
        "Loop",
        (LoopMixin, core.CoreLoop, asyncio.AbstractEventLoop),
        {
            "__module__": __name__,
            "__doc__": "An asyncio event loop over fastloop's core.",
            # Signal handles must be the core's own: _add_callback queues only those.
            "_Handle": core.Handle,
        },
    )


Loop = loop_class_for(_impl.core)


def instrument_otel(loop: asyncio.AbstractEventLoop | None = None) -> bool:
    """Look for OpenTelemetry providers now, for ``loop`` (by default the running one).

    A fastloop loop does this by itself whenever it starts running; call this from
    the loop's thread after installing a provider inside a loop that already runs
    (say, in the main coroutine). True if the loop exports anything; False without
    ``opentelemetry``, without a provider, or for a loop that is not fastloop's.
    """
    if loop is None:
        loop = events.get_running_loop()
    if not isinstance(loop, LoopMixin):
        return False
    try:
        import opentelemetry  # noqa: F401 - asked for explicitly: import it if it is there
    except ImportError:
        return False
    loop._otel_check()
    return loop._otel is not None

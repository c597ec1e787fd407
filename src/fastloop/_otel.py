"""OpenTelemetry: the loops' stats as ``fastloop.*`` instruments, slow callbacks and
unhandled exceptions as spans (docs/observability.md, "OpenTelemetry").

Imported only once the application has imported ``opentelemetry`` itself: a loop
looks at ``sys.modules`` whenever it starts running (``LoopMixin._otel_check``), so
a program without the extra, or that never touches OpenTelemetry, imports nothing
of this. What a loop exports is decided then, from the global providers:

- a meter provider: the loop joins ``_loops``, which the observable instruments'
  callbacks read (``loop.stats()`` may be taken from the exporter's thread);
- a tracer provider: the loop times its callbacks against its
  ``slow_callback_duration`` and turns the slow ones into spans, and its default
  exception handler turns each context into a span.

OpenTelemetry's placeholders (the proxy and no-op providers, before one is set)
export nothing, so they count as no provider: nothing is timed or sampled for them.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace import Status, StatusCode

from . import _slow

NAME = "fastloop"
#: The attribute that tells the loops apart in every instrument and span.
LOOP_ATTRIBUTE = "fastloop.loop"
# Reprs and call graphs can be long (and hold application data): cut to this.
MAX_TEXT = 4096

# Metric name suffix (a LoopStats field), instrument kind, unit, description. Sums
# since the loop started are counters; what the loop holds now is an up-down
# counter (they add up across loops); lags are gauges (they do not).
INSTRUMENTS = [
    ("iterations", "counter", "{iteration}", "Loop iterations"),
    ("callbacks", "counter", "{callback}", "Callbacks taken from the ready queue to run"),
    ("io_events", "counter", "{event}", "Readiness events of watched fds reported by the poll"),
    ("busy_time", "counter", "s", "Time from each poll's return to the next poll"),
    ("idle_time", "counter", "s", "Time blocked in the poll"),
    ("slow_callbacks", "counter", "{callback}", "Callbacks reported as slow"),
    ("ready", "updown", "{callback}", "Callbacks queued now"),
    ("timers", "updown", "{timer}", "Timers scheduled now"),
    ("timers_cancelled", "updown", "{timer}", "Cancelled timers still queued"),
    ("readers", "updown", "{fd}", "Fds watched for reading"),
    ("writers", "updown", "{fd}", "Fds watched for writing"),
    ("transports", "updown", "{transport}", "Socket transports not closing"),
    ("servers", "updown", "{server}", "Servers accepting connections"),
    ("lag_latest", "gauge", "s", "Lag of the latest iteration that ran callbacks"),
    ("lag_max", "gauge", "s", "Largest lag since the loop started or reset_stats()"),
]

_lock = threading.Lock()  # _loops is added to on loops' threads, read on the exporter's
_loops: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()  # loop -> its id
_ids = itertools.count(1)
_registered: list[Any] = []  # the meter providers our instruments were made on


def meter_provider() -> Any | None:
    """The application's meter provider, or None while only a placeholder is set."""
    provider = metrics.get_meter_provider()
    # Before set_meter_provider(), the API hands out a proxy (a private class;
    # without it, every provider counts as real: its instruments would merely
    # record nothing).
    placeholders = (metrics.NoOpMeterProvider, *_proxy_meter_provider_class())
    return None if isinstance(provider, placeholders) else provider


def _proxy_meter_provider_class() -> tuple[type, ...]:
    from opentelemetry.metrics import _internal

    cls = getattr(_internal, "_ProxyMeterProvider", None)
    return (cls,) if isinstance(cls, type) else ()


def tracer_provider() -> Any | None:
    """The application's tracer provider, or None while only a placeholder is set."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None
    return provider


class LoopTelemetry:
    """What one loop exports: its id, and whether it makes spans."""

    def __init__(self, loop_id: int, spans: bool) -> None:
        self.loop_id = loop_id
        self.spans = spans

    def slow_callback(self, report: _slow.SlowCallback) -> None:
        """Export a slow callback as a span that covers the time it ran."""
        end = time.time_ns()
        attributes: dict[str, Any] = {
            LOOP_ATTRIBUTE: self.loop_id,
            "fastloop.callback": _text(report.handle),
            "fastloop.duration": report.duration,
        }
        if report.task is not None:
            attributes["fastloop.task"] = _text(report.task.get_name())
        if report.call_graph:
            attributes["fastloop.call_graph"] = _text(report.call_graph)
        span = _tracer().start_span(
            "fastloop.slow_callback", start_time=end - int(report.duration * 1e9),
            attributes=attributes,
        )
        # A warning, not an error: the status stays unset.
        span.end(end_time=end)

    def exception(self, context: dict[str, Any]) -> None:
        """Export what reached the default exception handler as an error span."""
        message = str(context.get("message") or "Unhandled exception in event loop")
        attributes: dict[str, Any] = {LOOP_ATTRIBUTE: self.loop_id, "fastloop.message": _text(message)}
        for key, value in context.items():
            if key not in ("message", "exception"):
                attributes[f"fastloop.context.{key}"] = _text(value)
        task = _task_in(context)
        if task is not None:
            attributes["fastloop.task"] = _text(task.get_name())
            attributes["fastloop.call_graph"] = _text(_slow.call_graph(task))
        span = _tracer().start_span("fastloop.unhandled_exception", attributes=attributes)
        exc = context.get("exception")
        if isinstance(exc, BaseException):
            span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, _text(message)))
        span.end()


def attach(loop: Any, before: LoopTelemetry | None) -> LoopTelemetry | None:
    """Decide what ``loop`` exports under the providers installed now (None: nothing).

    ``before`` is what it exported until now: the loop keeps its id.
    """
    loop_id = next(_ids) if before is None else before.loop_id
    with _lock:
        provider = meter_provider()
        if provider is None:
            _loops.pop(loop, None)
        else:
            _loops[loop] = loop_id
            if not any(p is provider for p in _registered):
                _register(provider)
    spans = tracer_provider() is not None
    if provider is None and not spans:
        return None
    return LoopTelemetry(loop_id, spans)


def detach(loop: Any) -> None:
    """Forget a closed loop."""
    with _lock:
        _loops.pop(loop, None)


def _register(provider: Any) -> None:
    """Make the observable instruments on ``provider`` (once per provider)."""
    meter = provider.get_meter(NAME)
    make = {
        "counter": meter.create_observable_counter,
        "updown": meter.create_observable_up_down_counter,
        "gauge": meter.create_observable_gauge,
    }
    for field, kind, unit, description in INSTRUMENTS:
        make[kind](f"{NAME}.{field}", callbacks=[_reader(field)], unit=unit, description=description)
    _registered.append(provider)


def _reader(field: str) -> Any:
    """The callback of the instrument for ``field``: one observation per live loop."""

    def observe(options: Any) -> Iterator[Any]:
        for loop, loop_id in _live_loops():
            yield metrics.Observation(getattr(loop.stats(), field), {LOOP_ATTRIBUTE: loop_id})

    return observe


def _live_loops() -> Iterable[tuple[Any, int]]:
    with _lock:
        pairs = list(_loops.items())
    return [(loop, loop_id) for loop, loop_id in pairs if not loop.is_closed()]


def _tracer() -> Any:
    return trace.get_tracer(NAME)


def _task_in(context: dict[str, Any]) -> asyncio.Task[Any] | None:
    """The task an exception context is about: its task or future, or its handle's."""
    for key in ("task", "future"):
        obj = context.get(key)
        if isinstance(obj, asyncio.Task):
            return obj
    handle = context.get("handle")
    return _slow.task_of(handle) if handle is not None else None


def _text(value: object) -> str:
    """A string attribute: ``value`` (or its repr), cut to MAX_TEXT characters."""
    try:
        text = value if isinstance(value, str) else repr(value)
    except Exception:
        text = f"<{type(value).__name__} object (repr failed)>"
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"

"""OpenTelemetry: stats as ``fastloop.*`` instruments, slow callbacks and unhandled
exceptions as spans, only while the application has installed a provider.

fastloop's own feature (asyncio exports nothing), so these run on the two cores. The
SDK's in-memory metric reader and span exporter stand for the application's setup;
without opentelemetry-sdk the tests that need it skip. The import-cost test runs
everywhere.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import subprocess
import sys
import time

import pytest

import fastloop
from conftest import CORE_KINDS, loops_of
from helpers import run, run_briefly

SLEEP = 0.02

# asyncio has no such feature: the cores only.
make_loop = loops_of(CORE_KINDS)


def test_nothing_imported_without_opentelemetry():
    # A program that never imports opentelemetry: fastloop imports none of it,
    # neither at import nor when a loop runs.
    code = (
        "import asyncio, sys, fastloop\n"
        "fastloop.run(asyncio.sleep(0))\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'fastloop._otel'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
    assert "opentelemetry" not in out.stderr  # -X importtime lists every import there
    assert "fastloop._slow" in out.stderr  # (it does list fastloop's own)


try:
    from opentelemetry import metrics, trace
    from opentelemetry.metrics import _internal as metrics_internal
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode
    from opentelemetry.util._once import Once
except ImportError:
    HAVE_SDK = False
else:
    HAVE_SDK = True

needs_sdk = pytest.mark.skipif(not HAVE_SDK, reason="opentelemetry-sdk is not installed")


def set_global_providers(meter_provider, tracer_provider):
    """Install (or with None, remove) the global providers.

    The API lets a process set each only once; tests reset its private globals,
    as OpenTelemetry's own test utilities do.
    """
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()
    metrics_internal._METER_PROVIDER = None
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    if meter_provider is not None:
        metrics.set_meter_provider(meter_provider)
    if tracer_provider is not None:
        trace.set_tracer_provider(tracer_provider)


class Telemetry:
    """What the application installed: an in-memory metric reader and span exporter."""

    def __init__(self, with_metrics: bool = True, with_traces: bool = True) -> None:
        self.reader = InMemoryMetricReader()
        self.spans = InMemorySpanExporter()
        self.meter_provider = MeterProvider([self.reader], shutdown_on_exit=False)
        self.tracer_provider = TracerProvider(shutdown_on_exit=False)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        set_global_providers(
            self.meter_provider if with_metrics else None,
            self.tracer_provider if with_traces else None,
        )

    def points(self, name: str) -> dict[int, float]:
        """The latest value of instrument ``name``, by loop id."""
        found: dict[int, float] = {}
        data = self.reader.get_metrics_data()
        for resource_metrics in data.resource_metrics if data else ():
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            found[point.attributes["fastloop.loop"]] = point.value
        return found

    def units(self) -> dict[str, str]:
        data = self.reader.get_metrics_data()
        return {
            m.name: m.unit
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        }

    def finished(self, name: str) -> list:
        return [span for span in self.spans.get_finished_spans() if span.name == name]

    def shutdown(self) -> None:
        set_global_providers(None, None)
        self.meter_provider.shutdown()
        self.tracer_provider.shutdown()


@pytest.fixture
def telemetry():
    if not HAVE_SDK:
        pytest.skip("opentelemetry-sdk is not installed")
    t = Telemetry()
    yield t
    t.shutdown()


def loop_id(loop) -> int:
    return loop._otel.loop_id


def test_stats_become_instruments(loop, telemetry):
    for _ in range(5):
        loop.call_soon(lambda: None)
    run_briefly(loop)
    st = loop.stats()
    assert telemetry.points("fastloop.iterations")[loop_id(loop)] == st.iterations > 0
    assert telemetry.points("fastloop.callbacks")[loop_id(loop)] == st.callbacks >= 5
    assert telemetry.points("fastloop.busy_time")[loop_id(loop)] == st.busy_time
    units = telemetry.units()
    assert units["fastloop.idle_time"] == units["fastloop.lag_max"] == "s"
    assert units["fastloop.ready"] == "{callback}"
    assert {name for name in units if name.startswith("fastloop.")} == {
        f"fastloop.{field}" for field in ("iterations", "callbacks", "io_events", "busy_time",
                                          "idle_time", "slow_callbacks", "ready", "timers",
                                          "timers_cancelled", "readers", "writers",
                                          "transports", "servers", "lag_latest", "lag_max")
    }


def test_a_reader_collecting_while_the_loop_runs(loop, telemetry):
    # The exporter's thread reads the live loop.
    async def main():
        timer = loop.call_later(3600, lambda: None)
        seen = await loop.run_in_executor(None, telemetry.points, "fastloop.timers")
        timer.cancel()
        return seen

    seen = run(loop, main())
    assert seen[loop_id(loop)] >= 1


def test_each_loop_is_its_own_series_and_a_closed_one_disappears(make_loop, telemetry):
    first, second = make_loop(), make_loop()
    for loop in (first, second):
        run_briefly(loop)
    assert loop_id(first) != loop_id(second)
    assert {loop_id(first), loop_id(second)} <= set(telemetry.points("fastloop.iterations"))
    gone = loop_id(first)
    first.close()
    assert gone not in telemetry.points("fastloop.iterations")
    assert loop_id(second) in telemetry.points("fastloop.iterations")


def test_a_dropped_loop_disappears(telemetry):
    from fastloop import _otel

    loop = fastloop.new_event_loop()
    run_briefly(loop)
    gone = loop_id(loop)
    loop._otel = None  # close() would forget it: dropping the loop must be enough
    loop.close()
    assert gone in _otel._loops.values()
    del loop
    gc.collect()
    assert gone not in _otel._loops.values()
    assert gone not in telemetry.points("fastloop.iterations")


def test_slow_callback_span_with_the_call_graph(loop, telemetry):
    loop.slow_callback_duration = SLEEP / 2

    async def blocking_step():
        time.sleep(SLEEP)
        await asyncio.sleep(0)

    async def handler():
        await blocking_step()

    run(loop, handler())
    [span] = telemetry.finished("fastloop.slow_callback")
    attrs = span.attributes
    assert attrs["fastloop.loop"] == loop_id(loop)
    assert attrs["fastloop.duration"] >= SLEEP
    assert span.end_time - span.start_time == int(attrs["fastloop.duration"] * 1e9)
    assert "handler" in attrs["fastloop.call_graph"]
    assert "blocking_step" in attrs["fastloop.call_graph"]
    assert span.status.status_code == StatusCode.UNSET
    assert loop.stats().slow_callbacks == 1
    assert telemetry.points("fastloop.slow_callbacks")[loop_id(loop)] == 1


def test_unhandled_exception_span_and_the_log_stays(loop, telemetry, caplog):
    loop.set_exception_handler(None)  # the default handler: asyncio's log, then the span

    def fail():
        raise ZeroDivisionError("boom")

    loop.call_soon(fail)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        run_briefly(loop)
    assert any("Exception in callback" in r.getMessage() for r in caplog.records)
    [span] = telemetry.finished("fastloop.unhandled_exception")
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["fastloop.loop"] == loop_id(loop)
    assert "fail" in span.attributes["fastloop.context.handle"]
    [event] = span.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "ZeroDivisionError"
    assert event.attributes["exception.message"] == "boom"


def test_a_failed_task_span_carries_the_task(loop, telemetry, caplog):
    loop.set_exception_handler(None)

    async def doomed():
        raise KeyError("lost")

    async def main():
        task = loop.create_task(doomed(), name="doomed-task")
        await asyncio.sleep(0)
        return task

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        task = run(loop, main())
        del task  # never retrieved: reported when the task is collected
        gc.collect()
    [span] = telemetry.finished("fastloop.unhandled_exception")
    assert span.attributes["fastloop.task"] == "doomed-task"
    assert "doomed" in span.attributes["fastloop.call_graph"]
    assert span.events[0].attributes["exception.type"] == "KeyError"


@needs_sdk
def test_metrics_only_times_no_callback(loop):
    t = Telemetry(with_traces=False)
    try:
        run_briefly(loop)
        assert loop._slow_threshold == float("inf")  # no per-callback clock reads
        assert loop_id(loop) in t.points("fastloop.iterations")
    finally:
        t.shutdown()


@needs_sdk
def test_no_provider_no_telemetry(loop):
    set_global_providers(None, None)  # opentelemetry imported, nothing installed
    loop.call_soon(time.sleep, SLEEP)
    run_briefly(loop)
    assert loop._otel is None
    assert loop._slow_threshold == float("inf")
    assert fastloop.instrument_otel(loop) is False


@needs_sdk
def test_provider_installed_inside_the_running_loop(loop):
    telemetry: list[Telemetry] = []

    async def main():
        telemetry.append(Telemetry())  # as logfire.configure() in main() would
        loop.slow_callback_duration = SLEEP / 2
        assert fastloop.instrument_otel() is True
        await asyncio.sleep(0)  # (this step started untimed)
        time.sleep(SLEEP)

    try:
        run(loop, main())
        assert len(telemetry[0].finished("fastloop.slow_callback")) == 1
    finally:
        telemetry[0].shutdown()


def test_instrument_otel_ignores_other_loops():
    loop = asyncio.SelectorEventLoop()
    try:
        assert fastloop.instrument_otel(loop) is False
    finally:
        loop.close()

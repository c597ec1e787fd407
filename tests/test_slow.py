"""loop.set_slow_callback_hook(): slow callbacks reported outside debug mode.

fastloop's own API (asyncio has only debug mode's warning, which test_debug.py keeps
identical), so these run on the two cores. A slow callback is made slow with
time.sleep(); thresholds are either 0 (everything is reported) or far below the sleep.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from conftest import CORE_KINDS, loops_of
from fastloop import SlowCallback
from helpers import run, run_briefly

SLEEP = 0.02


# asyncio has no such API: the cores only.
make_loop = loops_of(CORE_KINDS)


def test_reports_a_slow_callback(loop):
    reports: list[SlowCallback] = []
    loop.set_slow_callback_hook(SLEEP / 2, reports.append)
    handle = loop.call_soon(time.sleep, SLEEP)
    run_briefly(loop)
    [slow] = reports
    assert slow.handle is handle
    assert slow.duration >= SLEEP
    assert (slow.task, slow.call_graph) == (None, None)
    assert "took" in slow.format()
    assert loop.stats().slow_callbacks == 1


def test_threshold_zero_reports_every_callback_and_none_turns_it_off(loop):
    reports: list[SlowCallback] = []
    loop.set_slow_callback_hook(0, reports.append)
    handles = [loop.call_soon(lambda: None) for _ in range(3)]
    handles[1].cancel()  # never runs, never reported
    run_briefly(loop)
    assert [r.handle for r in reports] == [handles[0], handles[2]]
    assert loop.stats().slow_callbacks == 2
    loop.reset_stats()
    assert loop.stats().slow_callbacks == 0
    loop.set_slow_callback_hook(None)
    loop.call_soon(time.sleep, SLEEP)
    run_briefly(loop)
    assert len(reports) == 2


def run_task_reporting(loop, coro):
    """Run ``coro`` as a task with slow callbacks reported; return it and its one report."""
    reports: list[SlowCallback] = []

    async def main():
        loop.set_slow_callback_hook(SLEEP / 2, reports.append)
        task = loop.create_task(coro)
        await task
        loop.set_slow_callback_hook(None)
        return task

    task = run(loop, main())
    [slow] = reports
    assert slow.task is task
    return task, slow


def test_task_and_call_graph(loop):

    async def blocking_step():
        time.sleep(SLEEP)
        await asyncio.sleep(0)

    async def outer_coro():
        await blocking_step()

    task, slow = run_task_reporting(loop, outer_coro())
    assert slow.duration >= SLEEP
    # The graph as the step left the task: awaiting in blocking_step, under outer_coro.
    assert "outer_coro" in slow.call_graph
    assert "blocking_step" in slow.call_graph
    assert slow.call_graph in slow.format()


def test_a_task_whose_last_step_was_slow(loop):
    # The step finished the task: it has no frame left to draw (3.14's
    # format_call_graph would fail on it), so its repr stands for the graph.

    async def last_step_blocks():
        time.sleep(SLEEP)

    task, slow = run_task_reporting(loop, last_step_blocks())
    assert slow.call_graph == f"* {task!r}"
    assert "finished" in slow.call_graph


def test_default_hook_logs(loop, caplog):
    loop.set_slow_callback_hook(0)
    loop.call_soon(time.sleep, 0)
    with caplog.at_level(logging.WARNING, logger="fastloop"):
        run_briefly(loop)
    [record] = caplog.records
    assert record.name == "fastloop"
    assert "Slow callback" in record.getMessage()


def test_hook_error_goes_to_the_exception_handler(loop, exc_log):
    def hook(slow):
        raise ZeroDivisionError

    loop.set_slow_callback_hook(0, hook)
    handle = loop.call_soon(lambda: None)
    run_briefly(loop)
    context = exc_log.take_one()
    assert context["message"] == "Exception in the slow-callback hook"
    assert isinstance(context["exception"], ZeroDivisionError)
    assert context["handle"] is handle


def test_with_debug_mode_both_report(loop, caplog):
    reports: list[SlowCallback] = []
    loop.set_debug(True)
    loop.slow_callback_duration = SLEEP / 2
    loop.set_slow_callback_hook(SLEEP / 2, reports.append)
    loop.call_soon(time.sleep, SLEEP)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        run_briefly(loop)
    assert len(reports) == 1
    assert any("Executing" in r.getMessage() for r in caplog.records if r.name == "asyncio")
    loop.set_debug(False)


@pytest.mark.parametrize("threshold", [-1, float("nan")])
def test_bad_threshold(loop, threshold):
    with pytest.raises(ValueError):
        loop.set_slow_callback_hook(threshold)

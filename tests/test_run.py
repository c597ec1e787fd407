"""run_until_complete / run_forever, their errors, tasks on the loop, async generators."""

from __future__ import annotations

import asyncio
import gc

import pytest

from helpers import run, run_briefly


def test_run_until_complete_returns_result(loop):
    async def answer():
        await asyncio.sleep(0)
        return 42

    assert loop.run_until_complete(answer()) == 42


def test_run_until_complete_future(loop):
    fut = loop.create_future()
    loop.call_later(0.01, fut.set_result, "done")
    assert loop.run_until_complete(fut) == "done"


def test_run_until_complete_raises(loop):
    async def fail():
        raise LookupError("x")

    with pytest.raises(LookupError):
        loop.run_until_complete(fail())


def test_run_until_complete_non_awaitable(loop):
    with pytest.raises(TypeError):
        loop.run_until_complete(42)


def test_run_until_complete_stopped_early(loop):
    async def forever():
        loop.stop()
        await asyncio.sleep(3600)

    with pytest.raises(RuntimeError, match="Event loop stopped before Future completed"):
        loop.run_until_complete(forever())
    # Clean up the pending task.
    for task in asyncio.all_tasks(loop):
        task.cancel()
    run_briefly(loop, 2)


@pytest.mark.parametrize("nested_call", ["run_forever", "run_until_complete"])
def test_run_while_running(loop, nested_call):
    # One nested call per run: stock 3.13.0 forgets it is running after a failed nested
    # run_forever (its cleanup runs although setup failed), which is not what we test.
    errors = []

    def nested():
        coro = asyncio.sleep(0)
        try:
            if nested_call == "run_forever":
                loop.run_forever()
            else:
                loop.run_until_complete(coro)
        except RuntimeError as exc:
            errors.append(str(exc))
        finally:
            coro.close()
        loop.stop()

    loop.call_soon(nested)
    loop.run_forever()
    assert errors == ["This event loop is already running"]
    assert not loop.is_running()


def test_nested_loops(make_loop):
    outer = make_loop()
    inner = make_loop()
    errors = []

    def try_inner():
        try:
            inner.run_forever()
        except RuntimeError as exc:
            errors.append(str(exc))
        outer.stop()

    outer.call_soon(try_inner)
    outer.run_forever()
    assert errors == ["Cannot run the event loop while another loop is running"]


def test_running_loop_is_set_while_running(loop):
    async def get():
        return asyncio.get_running_loop()

    assert loop.run_until_complete(get()) is loop
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


def test_loop_reusable_after_run(loop):
    for i in range(3):
        assert loop.run_until_complete(asyncio.sleep(0, i)) == i


def test_tasks_and_sleep(loop):
    order = []

    async def worker(name, delay):
        await asyncio.sleep(delay)
        order.append(name)

    async def main():
        await asyncio.gather(worker("b", 0.02), worker("a", 0.01), worker("c", 0.03))

    run(loop, main())
    assert order == ["a", "b", "c"]


def test_create_task_name_and_cancel(loop):
    async def sleeper():
        await asyncio.sleep(3600)

    task = loop.create_task(sleeper(), name="sleeper")
    assert task.get_name() == "sleeper"
    loop.call_later(0.01, task.cancel)
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(task)


def test_task_factory(loop):
    made = []

    def factory(loop, coro, **kwargs):
        task = asyncio.Task(coro, loop=loop, **kwargs)
        made.append(task)
        return task

    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory
    loop.run_until_complete(asyncio.sleep(0))
    assert len(made) == 1
    loop.set_task_factory(None)


def test_wait_for_timeout(loop):
    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.sleep(3600), 0.01)

    run(loop, main())


def test_unretrieved_task_exception_reported(loop, exc_log):
    async def fail():
        raise ValueError("never retrieved")

    task = loop.create_task(fail())
    run_briefly(loop, 2)
    assert task.done()
    del task
    gc.collect()
    ctx = exc_log.take_one()
    assert ctx["message"] == "Task exception was never retrieved"
    assert isinstance(ctx["exception"], ValueError)


# --- async generators ------------------------------------------------------------------


def test_asyncgen_finalised_when_dropped(loop):
    events = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            events.append("finally")

    async def main():
        g = agen()
        assert await g.__anext__() == 1
        del g
        gc.collect()
        # The finaliser schedules aclose() as a task; let it run.
        for _ in range(5):
            await asyncio.sleep(0)

    run(loop, main())
    assert events == ["finally"]


def test_shutdown_asyncgens(loop):
    events = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            events.append("finally")

    keep = []

    async def main():
        g = agen()
        keep.append(g)  # stays alive: only shutdown_asyncgens can close it
        await g.__anext__()

    run(loop, main())
    assert events == []
    run(loop, loop.shutdown_asyncgens())
    assert events == ["finally"]


def test_shutdown_asyncgens_reports_errors(loop, exc_log):
    keep = []

    async def agen():
        try:
            yield 1
        finally:
            raise ZeroDivisionError

    async def main():
        g = agen()
        keep.append(g)
        await g.__anext__()

    run(loop, main())
    run(loop, loop.shutdown_asyncgens())
    ctx = exc_log.take_one()
    assert isinstance(ctx["exception"], ZeroDivisionError)
    assert "asynchronous generator" in ctx["message"]


def test_shutdown_asyncgens_with_none_open(loop):
    run(loop, loop.shutdown_asyncgens())


@pytest.mark.skipif(
    not hasattr(asyncio, "eager_task_factory"), reason="asyncio.eager_task_factory is new in 3.12"
)
def test_eager_task_factory_runs_the_first_step_at_once(loop):
    steps = []

    async def body(tag):
        steps.append(f"{tag} started")
        await asyncio.sleep(0)
        steps.append(f"{tag} resumed")
        return tag

    async def main():
        finished = asyncio.create_task(body("sync"))  # runs to its first await at once
        steps.append("after create_task")
        assert asyncio.current_task() is not finished
        return await finished

    loop.set_task_factory(asyncio.eager_task_factory)
    assert loop.get_task_factory() is asyncio.eager_task_factory
    assert run(loop, main()) == "sync"
    assert steps == ["sync started", "after create_task", "sync resumed"]


@pytest.mark.skipif(
    not hasattr(asyncio, "eager_task_factory"), reason="asyncio.eager_task_factory is new in 3.12"
)
def test_eager_task_that_never_suspends_is_done_at_creation(loop):
    async def immediate():
        return "now"

    async def main():
        task = asyncio.create_task(immediate())
        return task.done(), await task

    loop.set_task_factory(asyncio.eager_task_factory)
    assert run(loop, main()) == (True, "now")

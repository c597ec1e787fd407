"""What Python 3.14 added to asyncio around event loops, on each core and on asyncio.

- ``create_task(coro, **kwargs)``: keyword arguments, ``eager_start`` among them, go to
  the Task constructor or to the task factory (gh-128307).
- Call graph introspection: ``capture_call_graph``, ``format_call_graph`` and
  ``print_call_graph``, from a task and from a plain callback.
- ``python -m asyncio ps PID`` and ``pstree PID``, which read another process's memory
  (the tasks of every thread, linked in C by 3.14's asyncio).
- ``asyncio.all_tasks()``, kept per thread in C from 3.14.
- sendfile's fallback seeks to ``offset`` even when it is 0.
- The loop's private child watcher, ``loop._watcher``, chosen when the loop is made.

Each behaviour test runs on cy, py and aio (the ``loop`` fixture), so it checks that
our loop does what asyncio's does, not what we think it should.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from helpers import DEADLINE, run, run_briefly
from nethelpers import Recorder, net  # noqa: F401 - net is a fixture

PY314 = sys.version_info >= (3, 14)
needs_314 = pytest.mark.skipif(not PY314, reason="new in Python 3.14")


def _names(graph) -> list[str]:
    """The function names of a FutureCallGraph's call stack, innermost first."""
    return [entry.frame.f_code.co_name for entry in graph.call_stack]


# --- create_task(..., eager_start=) ------------------------------------------------------


@needs_314
def test_create_task_eager_start_runs_to_the_first_suspension(loop):
    steps = []

    async def child():
        steps.append(("start", asyncio.current_task()))
        await asyncio.sleep(0)
        steps.append(("end", asyncio.current_task()))
        return "done"

    async def main():
        task = loop.create_task(child(), eager_start=True, name="eager")
        # Ran synchronously up to its first await, as the current task.
        assert steps == [("start", task)]
        assert not task.done()
        assert await task == "done"
        assert steps == [("start", task), ("end", task)]
        assert task.get_name() == "eager"

    run(loop, main())


@needs_314
def test_create_task_eager_start_finishes_a_task_that_never_suspends(loop):
    async def child():
        return 42

    async def main():
        task = loop.create_task(child(), eager_start=True)
        assert task.done()
        assert task.result() == 42
        assert task not in asyncio.all_tasks()

    run(loop, main())


@needs_314
def test_create_task_eager_start_false_waits_for_the_loop(loop):
    steps = []

    async def child():
        steps.append("ran")

    async def main():
        loop.set_task_factory(asyncio.eager_task_factory)
        try:
            # The factory's own default (eager) is overridden by the keyword.
            task = loop.create_task(child(), eager_start=False)
            assert steps == []
            await task
            assert steps == ["ran"]
        finally:
            loop.set_task_factory(None)

    run(loop, main())


@needs_314
def test_create_task_eager_start_outside_a_running_loop_starts_later(loop):
    steps = []

    async def child():
        steps.append("ran")

    task = loop.create_task(child(), eager_start=True)
    # asyncio starts a task eagerly only while its loop runs.
    assert steps == [] and not task.done()
    loop.run_until_complete(task)
    assert steps == ["ran"]


@needs_314
def test_create_task_hands_every_keyword_to_the_task_factory(loop):
    seen = []

    def factory(loop_, coro, **kwargs):
        seen.append((loop_, kwargs))
        return asyncio.Task(coro, loop=loop_, **kwargs)

    async def child():
        return asyncio.current_task().get_name()

    loop.set_task_factory(factory)
    task = loop.create_task(child(), name="n", eager_start=False)
    assert loop.run_until_complete(task) == "n"
    assert seen == [(loop, {"name": "n", "eager_start": False})]
    # Without keywords the factory gets none (it may not take any).
    loop.run_until_complete(loop.create_task(child()))
    assert seen[-1] == (loop, {})


@needs_314
def test_asyncio_create_task_and_taskgroup_pass_eager_start(loop):
    steps = []

    async def child(tag):
        steps.append(tag)

    async def main():
        asyncio.create_task(child("module"), eager_start=True)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(child("group"), eager_start=True)
            assert steps == ["module", "group"]

    run(loop, main())


@pytest.mark.skipif(PY314, reason="3.14 accepts any keyword")
def test_create_task_refuses_eager_start_before_314(loop):
    async def child():
        pass

    coro = child()
    with pytest.raises(TypeError):
        loop.create_task(coro, eager_start=True)
    coro.close()


# --- call graphs ------------------------------------------------------------------------


@needs_314
def test_capture_call_graph_of_the_current_task(loop):
    async def inner():
        return asyncio.capture_call_graph(), asyncio.current_task()

    async def outer():
        return await inner()

    graph, task = loop.run_until_complete(loop.create_task(outer(), name="outer-task"))
    assert graph.future is task
    assert _names(graph) == ["inner", "outer"]
    assert graph.awaited_by == ()


@needs_314
def test_capture_call_graph_follows_awaiting_tasks(loop):
    async def child():
        return asyncio.capture_call_graph()

    async def parent():
        return await loop.create_task(child(), name="child")

    parent_task = loop.create_task(parent(), name="parent")
    graph = loop.run_until_complete(parent_task)
    assert graph.future.get_name() == "child"
    assert _names(graph) == ["child"]
    (awaiter,) = graph.awaited_by
    assert awaiter.future is parent_task
    assert _names(awaiter) == ["parent"]


@needs_314
def test_capture_call_graph_in_a_taskgroup(loop):
    async def child():
        return asyncio.capture_call_graph()

    async def main():
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(child(), name="member")
        return task.result(), asyncio.current_task()

    graph, main_task = loop.run_until_complete(loop.create_task(main()))
    assert graph.future.get_name() == "member"
    assert [g.future for g in graph.awaited_by] == [main_task]


@needs_314
def test_call_graph_from_a_plain_callback(loop):
    ready = asyncio.Event()
    release = asyncio.Event()

    async def waiter():
        ready.set()
        await release.wait()

    task = loop.create_task(waiter(), name="sleeper")
    loop.run_until_complete(ready.wait())
    seen = {}

    def callback():
        seen["current"] = asyncio.capture_call_graph()
        seen["graph"] = asyncio.capture_call_graph(task)
        seen["text"] = asyncio.format_call_graph(task)
        buf = io.StringIO()
        asyncio.print_call_graph(task, file=buf)
        seen["printed"] = buf.getvalue()

    loop.call_soon(callback)
    run_briefly(loop)
    # No task runs a plain callback: nothing to introspect without a future.
    assert seen["current"] is None
    graph = seen["graph"]
    assert graph.future is task
    # A suspended task's stack, outermost last: the Event.wait it awaits, then waiter.
    assert _names(graph) == ["wait", "waiter"]
    text = seen["text"]
    assert text.startswith(f"* Task(name='sleeper', id={id(task):#x})")
    assert "in async Event.wait()" in text
    assert "in async test_call_graph_from_a_plain_callback.<locals>.waiter()" in text
    assert seen["printed"] == text + "\n"
    release.set()
    loop.run_until_complete(task)


@needs_314
def test_format_and_print_call_graph_inside_a_task(loop):
    async def inner():
        buf = io.StringIO()
        asyncio.print_call_graph(file=buf)
        return asyncio.format_call_graph(), buf.getvalue()

    async def outer():
        return await inner()

    text, printed = loop.run_until_complete(loop.create_task(outer(), name="fmt"))
    lines = text.splitlines()
    assert lines[0].startswith("* Task(name='fmt', id=")
    assert lines[1] == "  + Call stack:"
    assert "in async test_format_and_print_call_graph_inside_a_task.<locals>.inner()" in lines[2]
    assert "in async test_format_and_print_call_graph_inside_a_task.<locals>.outer()" in lines[3]
    assert len(lines) == 4
    # print_call_graph's own frame is on the stack it prints (asyncio's doing): compare
    # the task line and the coroutines.
    printed_lines = printed.splitlines()
    assert printed_lines[0] == lines[0]
    assert [line.split(", in ")[-1] for line in printed_lines if "in async" in line] == [
        line.split(", in ")[-1] for line in lines[2:]
    ]


@needs_314
def test_capture_call_graph_without_a_running_loop_needs_a_future(loop):
    with pytest.raises(RuntimeError, match="outside of a running event loop"):
        asyncio.capture_call_graph()


# --- all_tasks() ----------------------------------------------------------------------


def test_all_tasks_lists_the_pending_tasks_of_our_loop(loop):
    release = asyncio.Event()

    async def sleeper():
        await release.wait()

    async def main():
        tasks = {loop.create_task(sleeper()) for _ in range(3)}
        await asyncio.sleep(0)
        assert asyncio.all_tasks() == tasks | {asyncio.current_task()}
        assert asyncio.all_tasks(loop) == asyncio.all_tasks()
        release.set()
        await asyncio.gather(*tasks)
        assert asyncio.all_tasks() == {asyncio.current_task()}

    # Not helpers.run: before 3.12 its wait_for() runs main() in a task of its own.
    loop.run_until_complete(main())


# --- sendfile's fallback and offset=0 ---------------------------------------------------


def _aio_seeks_to_zero() -> bool:
    """Whether the running asyncio's sendfile fallback seeks for offset=0.

    3.14's does, 3.12's does not; within 3.13 it depends on the release, so there the
    answer fastloop found is taken, and the run on `aio` checks that it is asyncio's.
    """
    if sys.version_info[:2] == (3, 13):
        from fastloop import _net

        return _net._SENDFILE_SEEKS_TO_ZERO
    return PY314


def test_sendfile_fallback_offset_zero(loop, net):
    server_factory = net.factory(Recorder)
    srv = net.server(server_factory)
    port = srv.sockets[0].getsockname()[1]
    tr, _ = net.connect(lambda: net.proto(Recorder), "127.0.0.1", port)
    net.until(lambda: server_factory.made and server_factory.made[0].transport is not None)
    received = server_factory.made[0].data
    # No fileno(): the native path is not available, the fallback runs.
    f = io.BytesIO(b"0123456789")
    f.seek(5)
    sent = net.run(loop.sendfile(tr, f))
    expected = b"0123456789" if _aio_seeks_to_zero() else b"56789"
    assert sent == len(expected)
    net.until(lambda: len(received) >= len(expected))
    assert bytes(received) == expected
    # Left at offset + bytes sent, whichever way it started.
    assert f.tell() == len(expected)


# --- python -m asyncio ps / pstree ------------------------------------------------------

TARGET = textwrap.dedent(
    """
    import asyncio, importlib, sys

    kind = sys.argv[1]
    if kind == "aio":
        factory = asyncio.EventLoop
    else:
        from fastloop._loop import loop_class_for
        factory = loop_class_for(importlib.import_module("fastloop._" + kind))

    async def leaf(ev):
        await ev.wait()

    async def worker(ev):
        await leaf(ev)

    async def main():
        ev = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(worker(ev), name="fl-worker-1")
            tg.create_task(worker(ev), name="fl-worker-2")
            await asyncio.sleep(0)
            print(type(asyncio.get_running_loop()).__module__, flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            ev.set()

    asyncio.run(main(), loop_factory=factory)
    print("finished", flush=True)
    """
)


def _introspection_unavailable() -> str | None:
    if not PY314:
        return "python -m asyncio ps/pstree are new in Python 3.14"
    if importlib.util.find_spec("_remote_debugging") is None:
        return "this interpreter was built without _remote_debugging"
    if not sys.platform.startswith("linux") and sys.platform != "darwin":
        return f"remote debugging is not supported on {sys.platform}"
    return None


@pytest.fixture(params=["cy", "py", "aio"])
def target_process(request, tmp_path):
    """A separate process whose loop (of the parametrised kind) has tasks waiting."""
    reason = _introspection_unavailable()
    if reason:
        pytest.skip(reason)
    kind = request.param
    if kind == "cy" and importlib.util.find_spec("fastloop._cy.core") is None:
        pytest.skip("fastloop._cy is not built")
    import fastloop

    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(os.path.abspath(fastloop.__file__)))
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    script = tmp_path / "target.py"
    script.write_text(TARGET)
    proc = subprocess.Popen(
        [sys.executable, str(script), kind],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env,
    )
    try:
        module = proc.stdout.readline().strip()
        assert module == ("asyncio.unix_events" if kind == "aio" else "fastloop._loop"), (
            module + proc.stderr.read())
        yield proc
        out, err = proc.communicate("\n", timeout=DEADLINE)
        assert proc.returncode == 0, err
        assert out.strip() == "finished"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _asyncio_tool(command: str, pid: int) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "asyncio", command, str(pid)],
        capture_output=True, text=True, timeout=DEADLINE,
    )
    output = done.stdout + done.stderr
    if "cannot be attached to due to insufficient permissions" in output:
        pytest.skip(f"reading another process's memory is refused here: {output.strip()}")
    assert done.returncode == 0, output
    return done.stdout


def test_asyncio_ps_lists_the_tasks_of_a_process(target_process):
    table = _asyncio_tool("ps", target_process.pid)
    rows = {line.split()[2]: line for line in table.splitlines()[2:] if line.strip()}
    assert set(rows) == {"Task-1", "fl-worker-1", "fl-worker-2"}
    for name in ("fl-worker-1", "fl-worker-2"):
        # coroutine stack, then the awaiter's chain and name
        assert "Event.wait -> leaf -> worker" in rows[name]
        assert rows[name].split()[-2:-1] == ["Task-1"]
    assert " main " in rows["Task-1"]


def test_asyncio_pstree_draws_the_task_tree_of_a_process(target_process):
    tree = _asyncio_tool("pstree", target_process.pid)
    lines = [line.rstrip() for line in tree.splitlines()]
    assert lines[0] == "└── (T) Task-1"
    assert lines[1].startswith("    └──  main ")
    assert sum("(T) fl-worker-" in line for line in lines) == 2
    assert sum(line.lstrip(" │├└─").startswith("leaf ") for line in lines) == 2
    assert sum(line.lstrip(" │├└─").startswith("Event.wait ") for line in lines) == 2


# --- a child's exit is published as it is reaped (gh-127049) ----------------------------


@needs_314
@pytest.mark.parametrize("watch", ["notifier", "thread"])
def test_no_signal_reaches_a_reaped_child(loop, loop_kind, monkeypatch, watch):
    """kill() between the reaping of a child and the publishing of its exit would signal
    a pid the kernel may already have given to another process; 3.14 leaves no such
    window (the thread watcher waits with WNOWAIT, the loop reaps and publishes)."""
    from fastloop import _subprocess

    assert _subprocess._PUBLISH_WITH_REAP
    if loop_kind == "aio" and watch == "thread":
        pytest.skip("asyncio picks its child watcher when the loop is made")
    monkeypatch.setattr(_subprocess, "use_exit_notifier", watch == "notifier")
    reaped, stale_kills = set(), []
    real_waitpid, real_kill = os.waitpid, os.kill

    def waitpid(pid, options):
        result = real_waitpid(pid, options)
        if result[0] != 0:
            reaped.add(result[0])
        return result

    def kill(pid, sig):
        if pid in reaped:
            stale_kills.append(pid)
        else:
            real_kill(pid, sig)

    monkeypatch.setattr(os, "waitpid", waitpid)
    monkeypatch.setattr(os, "kill", kill)

    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import time; time.sleep(60)")
        deadline = loop.time() + DEADLINE
        while proc.returncode is None:
            assert loop.time() < deadline, "the child's exit was not published"
            proc.kill()
            await asyncio.sleep(0)
        return await proc.wait()

    assert loop.run_until_complete(main()) == -9
    assert stale_kills == []


# --- the loop's child watcher (loop._watcher) -------------------------------------------


@needs_314
@pytest.mark.parametrize("pidfds", [True, False], ids=["pidfd", "threaded"])
def test_child_watcher_is_chosen_as_asyncio_chooses(make_loop, monkeypatch, pidfds):
    """3.14's Unix loop makes its private ``_watcher`` when it is made: a
    ``_PidfdChildWatcher`` where ``can_use_pidfd()``, else a ``_ThreadedChildWatcher``,
    whose thread for a running child is in its ``_threads`` (CPython's own tests read
    both). A threaded watcher's thread waits without reaping: the exit is published as
    the loop reaps the child."""
    from asyncio import unix_events

    if pidfds and not unix_events.can_use_pidfd():
        pytest.skip("this system has no usable pidfds")
    monkeypatch.setattr(unix_events, "can_use_pidfd", lambda: pidfds)
    loop = make_loop()
    expected = unix_events._PidfdChildWatcher if pidfds else unix_events._ThreadedChildWatcher
    assert type(loop._watcher) is expected

    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import time; time.sleep(60)")
        thread = None if pidfds else loop._watcher._threads.get(proc.pid)
        proc.kill()
        if thread is not None:
            thread.join(DEADLINE)
            assert not thread.is_alive()
            # Exited and waited for, but not reaped: the pid is still this child's.
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
            assert proc.returncode is None
        return thread, await proc.wait()

    thread, returncode = run(loop, main())
    assert returncode == -signal.SIGKILL
    assert (thread is None) == pidfds

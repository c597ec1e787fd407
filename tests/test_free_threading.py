"""Loops reached from other threads, with or without the GIL (docs/free-threading.md).

They run on every build. On free-threaded CPython (3.13t+, the GIL off) they exercise
the locks the audit describes; with the GIL they check the same behaviour, and on
`aio` that it is asyncio's. None measures time: every wait has a deadline that only
bounds a hang.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import subprocess
import sys
import sysconfig
import threading
import time

import pytest

from helpers import DEADLINE, import_core, run, run_briefly

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))

# Calls each of the 8 threads makes in test_threadsafe_from_8_threads. 100k takes, on two
# cores shared with other work (3.11, 3.14, 3.14t): cy 0.3-1.3 s, py 0.9-2.1 s, aio
# 2.2-5.4 s. FASTLOOP_FT_CALLS changes it.
CALLS_PER_THREAD = int(os.environ.get("FASTLOOP_FT_CALLS", "100000"))

# asyncio makes call_soon_threadsafe's handles safe to cancel from another thread only
# since 3.14 (and 3.13.1): events._ThreadSafeHandle.
AIO_THREADSAFE_CANCEL = hasattr(asyncio.events, "_ThreadSafeHandle")


def _start_threads(target, n, *args):
    threads = [threading.Thread(target=target, args=(i, *args)) for i in range(n)]
    for t in threads:
        t.start()
    return threads


def _join(threads):
    for t in threads:
        t.join(DEADLINE)
        assert not t.is_alive(), f"{t.name} still running"


# --- the GIL stays off --------------------------------------------------------------


@pytest.mark.skipif(not FREE_THREADED, reason="only a free-threaded build can run without the GIL")
def test_importing_and_running_fastloop_leaves_the_gil_disabled():
    # In a fresh interpreter: this one may have the GIL on for other reasons (PYTHON_GIL,
    # a module imported earlier). Both cores are imported and run explicitly.
    import_core("cy")  # skips, saying why, where the extension is not built
    code = (
        "import sys, asyncio\n"
        "import fastloop, fastloop._cy.core, fastloop._py\n"
        "from fastloop._loop import loop_class_for\n"
        "for core in (fastloop._cy, fastloop._py):\n"
        "    loop = loop_class_for(core)()\n"
        "    assert loop.run_until_complete(asyncio.sleep(0, 'ok')) == 'ok'\n"
        "    loop.close()\n"
        "print(sys._is_gil_enabled())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False", proc.stderr


# --- call_soon_threadsafe from many threads -----------------------------------------


def test_threadsafe_from_8_threads_each_runs_once_in_order(loop):
    # 8 threads call at once into a running loop, which meanwhile queues its own
    # callbacks alternately through call_soon and call_soon_threadsafe (as libraries
    # do): every callback runs exactly once, each thread's in the order it queued them.
    n_threads, per_thread = 8, CALLS_PER_THREAD
    loop_tid, loop_calls = n_threads, 2000
    total = n_threads * per_thread + loop_calls
    expected = [0] * (n_threads + 1)  # the next index due from each producer
    out_of_order = []
    ran = [0]
    start = threading.Event()

    def on_call(tid, i):
        if i != expected[tid]:
            out_of_order.append((tid, i, expected[tid]))
        expected[tid] = i + 1
        ran[0] += 1
        if ran[0] == total:
            loop.stop()

    def producer(tid):
        assert start.wait(DEADLINE)
        call = loop.call_soon_threadsafe
        for i in range(per_thread):
            call(on_call, tid, i)

    def from_the_loop():
        start.set()
        for i in range(loop_calls):
            (loop.call_soon if i % 2 else loop.call_soon_threadsafe)(on_call, loop_tid, i)

    threads = _start_threads(producer, n_threads)
    watchdog = loop.call_later(DEADLINE * 2, loop.stop)
    loop.call_soon(from_the_loop)
    loop.run_forever()
    watchdog.cancel()
    _join(threads)
    assert out_of_order == []
    assert ran[0] == total
    assert expected == [per_thread] * n_threads + [loop_calls]


def test_executor_completions_from_many_threads(loop):
    # run_in_executor's results come back through call_soon_threadsafe from the pool.
    async def main():
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futs = [loop.run_in_executor(pool, pow, i, 2) for i in range(2000)]
            return await asyncio.gather(*futs)

    assert run(loop, main()) == [i * i for i in range(2000)]


# --- cancelling from other threads ----------------------------------------------------


def test_cancelled_from_other_threads_before_start_never_runs(loop):
    # The loop is held inside a callback while threads queue handles, then other
    # threads cancel every other one (and every other timer the loop scheduled):
    # once released, exactly the handles not cancelled run, each once.
    n_threads, per_thread, n_timers = 4, 500, 400
    runs: dict = {}
    handles: list = []
    timers: list = []
    held, release = threading.Event(), threading.Event()

    def record(key):
        runs[key] = runs.get(key, 0) + 1

    def hold():
        now = loop.time()
        timers.extend(loop.call_at(now, record, ("timer", i)) for i in range(n_timers))
        held.set()
        assert release.wait(DEADLINE)

    def producer(tid):
        for i in range(per_thread):
            handles.append(loop.call_soon_threadsafe(record, (tid, i)))

    n_cancellers = 8

    def canceller(tid):
        # Every other handle, each taken by exactly one of the cancelling threads.
        for h in (handles + timers)[2 * tid :: 2 * n_cancellers]:
            h.cancel()

    def orchestrate():
        assert held.wait(DEADLINE)
        _join(_start_threads(producer, n_threads))
        _join(_start_threads(canceller, n_cancellers))
        release.set()
        loop.call_soon_threadsafe(loop.stop)

    loop.call_soon(hold)
    side = threading.Thread(target=orchestrate)
    side.start()
    loop.run_forever()
    side.join(DEADLINE)
    run_briefly(loop)  # the timers were due at once; one more turn in case
    everything = handles + timers
    assert len(everything) == n_threads * per_thread + n_timers
    assert [h.cancelled() for h in everything] == [i % 2 == 0 for i in range(len(everything))]
    assert runs == {h._args[0]: 1 for h in everything[1::2]}


def test_cancel_races_with_the_loop_running_the_handles(loop, loop_kind):
    if loop_kind == "aio" and not AIO_THREADSAFE_CANCEL:
        pytest.skip("asyncio before 3.13.1 does not make call_soon_threadsafe's handles "
                    "safe to cancel from another thread")
    # Threads queue handles while others cancel them as the loop runs them: no
    # crash, no error, and a handle that is not cancelled runs exactly once (a
    # cancelled one at most once: it may have started before the cancel).
    n_producers, per_thread = 4, 5000
    runs = [0] * (n_producers * per_thread)
    queued: list = []
    producers_done = threading.Event()

    def record(i):
        runs[i] += 1

    def producer(tid):
        for i in range(tid * per_thread, (tid + 1) * per_thread):
            queued.append(loop.call_soon_threadsafe(record, i))

    def canceller(tid):
        # Two handles of every three, each cancelling thread its own share, over and
        # over (most are cancelled already) until every handle is queued.
        while True:
            done = producers_done.is_set()
            for h in queued[tid::3]:
                h.cancel()
            if done:
                return

    def orchestrate():
        cancellers = _start_threads(canceller, 2)
        _join(_start_threads(producer, n_producers))
        producers_done.set()
        _join(cancellers)
        loop.call_soon_threadsafe(loop.stop)

    watchdog = loop.call_later(DEADLINE * 2, loop.stop)
    side = threading.Thread(target=orchestrate)
    loop.call_soon(side.start)
    loop.run_forever()
    side.join(DEADLINE)
    watchdog.cancel()
    assert len(queued) == len(runs)
    for h in queued:
        i = h._args[0] if h._args else None
        if not h.cancelled():
            assert runs[i] == 1
    assert max(runs) == 1


def test_timer_cancel_races_with_the_loop(loop, loop_kind):
    if loop_kind == "aio":
        pytest.skip("asyncio does not make TimerHandle.cancel() safe from another thread "
                    "(its handle may run a callback cleared meanwhile)")
    # The loop schedules batches of due timers while another thread cancels them: each
    # runs at most once, and one not cancelled exactly once.
    batches, per_batch = 200, 50
    runs: dict = {}
    timers: list = []
    scheduled = threading.Semaphore(0)
    finished = threading.Event()

    def record(key):
        runs[key] = runs.get(key, 0) + 1

    def schedule(b):
        now = loop.time()
        timers.extend(loop.call_at(now, record, (b, i)) for i in range(per_batch))
        # Far ones too, so that the heap keeps cancelled entries to compact.
        timers.extend(loop.call_later(3600, record, (b, -i)) for i in range(1, per_batch))
        scheduled.release()
        if b + 1 < batches:
            loop.call_soon(schedule, b + 1)
        else:
            finished.set()

    def canceller():
        for b in range(batches):
            assert scheduled.acquire(timeout=DEADLINE)
            start = b * (2 * per_batch - 1)
            for h in timers[start : start + 2 * per_batch - 1 : 2]:
                h.cancel()
        loop.call_soon_threadsafe(loop.stop)

    t = threading.Thread(target=canceller)
    t.start()
    watchdog = loop.call_later(DEADLINE * 2, loop.stop)
    loop.call_soon(schedule, 0)
    loop.run_forever()
    t.join(DEADLINE)
    watchdog.cancel()
    assert finished.is_set()
    run_briefly(loop, 2)
    assert max(runs.values()) == 1
    for h in timers:
        key = h._args[0] if h._args else None
        if not h.cancelled() and key[1] >= 0:
            assert runs.get(key) == 1
    for h in timers:
        h.cancel()
    run_briefly(loop, 2)


# --- one loop per thread ----------------------------------------------------------


# Stock asyncio before 3.14 fetches its child watcher inside warnings.catch_warnings(),
# which is not thread-safe: threads starting children at once can restore each other's
# filters, and its DeprecationWarning then meets this suite's "error" filter in a thread.
@pytest.mark.filterwarnings("ignore:.*get_child_watcher:DeprecationWarning")
def test_one_loop_per_thread_tcp_timers_and_subprocesses(make_loop):
    # Four loops, each in its own thread, at the same time: a TCP echo, a chain of
    # timers and a child process each. Nothing is shared but the interpreter.
    n_loops, messages = 4, 200
    loops = [make_loop() for _ in range(n_loops)]
    results: list = [None] * n_loops

    async def echo(reader, writer):
        while data := await reader.readline():
            writer.write(data)
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def work(i):
        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        echoed = []
        for m in range(messages):
            writer.write(b"%d %d\n" % (i, m))
            echoed.append(await reader.readline())
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

        fired = []
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        for k in range(100):
            loop.call_later(k * 0.0005, fired.append, k)
        loop.call_later(0.06, done.set_result, None)
        await done

        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", f"print({i} * 7)", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
        return echoed, fired, out, proc.returncode

    def in_thread(i):
        loop = loops[i]
        results[i] = loop.run_until_complete(asyncio.wait_for(work(i), DEADLINE))

    threads = _start_threads(in_thread, n_loops)
    _join(threads)
    for i, (echoed, fired, out, rc) in enumerate(results):
        assert echoed == [b"%d %d\n" % (i, m) for m in range(messages)]
        assert fired == list(range(100))
        assert (out, rc) == (b"%d\n" % (i * 7), 0)


# --- close() while other threads call in ------------------------------------------


def test_close_while_threads_call_threadsafe(loop):
    # Threads keep calling call_soon_threadsafe while the loop runs, stops and closes.
    # Each call either queues its callback or raises asyncio's RuntimeError; once
    # close() has returned, every call raises it; nothing is written to files that
    # reuse the closed loop's fd numbers.
    n_threads = 4
    closed = threading.Event()
    errors: list = [[] for _ in range(n_threads)]
    after_close = [0] * n_threads
    started = threading.Barrier(n_threads + 1)

    def noop():
        pass

    def caller(tid):
        started.wait(DEADLINE)
        n = 0
        while True:
            n += 1
            if n % 20 == 0:
                time.sleep(0.001)  # bounds the callbacks piling up while the loop waits
            was_closed = closed.is_set()
            try:
                loop.call_soon_threadsafe(noop)
            except RuntimeError as exc:
                errors[tid].append(str(exc))
                if was_closed:
                    after_close[tid] += 1
                    if after_close[tid] >= 200:
                        return
            else:
                assert not was_closed, "queued after close() returned"

    threads = _start_threads(caller, n_threads)
    started.wait(DEADLINE)
    run_briefly(loop, 20)
    loop.close()
    # Take the numbers the loop's fds had (and more): a stray wake-up would land here.
    pipes = [os.pipe() for _ in range(8)]
    closed.set()
    try:
        _join(threads)
        for r, w in pipes:
            os.set_blocking(r, False)
            with pytest.raises(BlockingIOError):
                os.read(r, 100)
    finally:
        for r, w in pipes:
            os.close(r)
            os.close(w)
    assert after_close == [200] * n_threads
    assert {msg for errs in errors for msg in errs} == {"Event loop is closed"}

"""Ctrl+C scenarios run in a child process by test_sigint.py; not a test module itself.

`python sigint_child.py KIND` (aio, cy or py) runs every scenario on that kind of loop
and prints one JSON line per scenario with what it observed: the exception the entry
point raised, what the main coroutine saw, whether cleanup ran, and the state left
behind. The parent compares cy and py with aio. A thread of this process sends SIGINT
to it while the loop sleeps in its poll, or, in the busy scenarios, while it runs a
callback chain that never lets it sleep.
"""

from __future__ import annotations

import asyncio
import faulthandler
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time

KIND = sys.argv[1]
if KIND == "py":
    os.environ["FASTLOOP_NO_EXTENSIONS"] = "1"
import fastloop  # noqa: E402 - after choosing the core
from helpers import wait_until_polling  # noqa: E402 - this script's directory: tests/

# A lost SIGINT would hang the child: dump where it is stuck, then exit.
faulthandler.dump_traceback_later(60, exit=True)


def interrupt_soon(busy: bool = False) -> None:
    """Send SIGINT to this process from a thread: once the loop sleeps in its poll, or,
    when it is `busy`, once it has run the spin chain a while."""

    def send() -> None:
        if busy:
            start = SPINS[0]
            while SPINS[0] < start + 100:
                time.sleep(0.001)
        else:
            wait_until_polling(threading.main_thread())
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=send, daemon=True).start()


def new_loop() -> asyncio.AbstractEventLoop:
    return asyncio.SelectorEventLoop() if KIND == "aio" else fastloop.new_event_loop()


SPINS = [0]  # callbacks the spin chain has run


def spin(loop: asyncio.AbstractEventLoop) -> None:
    """A callback chain that never lets the loop sleep in its poll."""
    SPINS[0] += 1
    loop.call_soon(spin, loop)


SENDERS: list[subprocess.Popen] = []  # waited for once they have sent


def c_spin(loop: asyncio.AbstractEventLoop) -> None:
    """A callback chain of C code only (p() is loop.call_soon(p)): no Python bytecode
    runs in which the interpreter could run a signal handler by itself. SIGINT comes
    from another process, which needs no share of this one's GIL (test_callbacks.py
    checks that threads get it)."""
    chain = functools.partial(int)
    chain.__setstate__((loop.call_soon, (chain,), {}, None))
    loop.call_soon(chain)
    sender = f"sleep 0.05; kill -INT {os.getpid()}"  # not a measurement: lands anywhere
    loop.call_soon(lambda: SENDERS.append(subprocess.Popen(["sh", "-c", sender])))


def executor_threads() -> int:
    # An executor shut down without waiting (asyncio.run on 3.10, when a second Ctrl+C
    # cuts its cleanup short, leaves it to close(): shutdown(wait=False)) has workers
    # that exit on their own a moment later, on asyncio as on fastloop; a busy machine
    # may count them first. A worker of an executor never shut down stays.
    for thread in threading.enumerate():
        if thread.name.startswith("asyncio_"):
            thread.join(timeout=5)
    return sum(t.name.startswith("asyncio_") for t in threading.enumerate())


async def ticker(log: list):
    try:
        while True:
            yield
    finally:
        log.append("agen closed")


async def main(log: list, state: dict, busy: bool, twice: bool) -> None:
    loop = asyncio.get_running_loop()
    state["loop"] = loop
    await loop.run_in_executor(None, time.sleep, 0)  # the default executor exists now
    state["agen"] = agen = ticker(log)  # kept alive: shutdown_asyncgens must close it
    await agen.__anext__()
    if busy:
        spin(loop)
    interrupt_soon(busy)
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        log.append("main: CancelledError")
        if twice:
            # A slow cleanup, cut short by a second Ctrl+C.
            interrupt_soon()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                log.append("cleanup: CancelledError")
                raise
        raise
    finally:
        log.append("main: finally")


def run_main(entry: str, coro) -> None:
    """Run `coro` the way `entry` names, on this process's kind of loop."""
    if KIND == "aio" or entry == "asyncio.run":
        if KIND == "aio":
            asyncio.run(coro)
        elif sys.version_info >= (3, 12):
            asyncio.run(coro, loop_factory=fastloop.new_event_loop)
        else:
            asyncio.set_event_loop_policy(fastloop.Policy())
            try:
                asyncio.run(coro)
            finally:
                asyncio.set_event_loop_policy(None)
    elif entry == "fastloop.run":
        fastloop.run(coro)
    elif entry == "asyncio.Runner" and sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=fastloop.new_event_loop) as runner:
            runner.run(coro)
    else:  # asyncio.Runner on 3.10: there is none, fastloop.run stands in
        fastloop.run(coro)


def runner_scenario(entry: str, busy: bool, twice: bool) -> dict:
    log: list = []
    state: dict = {}
    try:
        run_main(entry, main(log, state, busy, twice))
        raised = None
    except BaseException as exc:  # noqa: BLE001 - the observation
        raised = type(exc).__name__
    return {
        "raised": raised,
        "log": log,
        "loop closed": state["loop"].is_closed(),
        "executor threads left": executor_threads(),
        "SIGINT handler restored": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
    }


def loop_scenario(method: str, busy: str = "") -> dict:
    loop = new_loop()
    if busy == "in C":
        c_spin(loop)
    else:
        if busy:
            spin(loop)
        interrupt_soon(bool(busy))
    try:
        if method == "run_forever":
            loop.run_forever()
        else:
            loop.run_until_complete(asyncio.sleep(3600))
        raised = None
    except BaseException as exc:  # noqa: BLE001 - the observation
        raised = type(exc).__name__
    observed = {"raised": raised}
    for sender in SENDERS:
        sender.wait()
    if busy:
        # Landing anywhere in asyncio's own Python code, KeyboardInterrupt now and then
        # leaves its loop marked running: what holds for a busy loop is the exception
        # alone. The loop is left unclosed.
        if KIND == "aio":
            # On 3.14 it lands at run_forever's backward jump, which CPython leaves
            # outside its try (gh-130279): the finally never clears the running loop,
            # and the scenarios after this one could not start. fastloop's loops
            # always clear it, so only stock asyncio's is cleared here.
            asyncio.events._set_running_loop(None)
        return observed
    # Landing in the poll, it leaves the loop stopped, not broken: it runs again, and
    # then closes cleanly.
    observed["running after"] = loop.is_running()
    observed["runs again"] = loop.run_until_complete(asyncio.sleep(0, "yes"))
    for task in asyncio.all_tasks(loop):  # run_until_complete's, left pending
        task.cancel()
        loop.run_until_complete(asyncio.wait([task]))
    loop.close()
    return observed


SCENARIOS = {
    "run_until_complete, sleeping": lambda: loop_scenario("run_until_complete"),
    "run_forever, busy": lambda: loop_scenario("run_forever", busy="in Python"),
    "run_forever, busy in C": lambda: loop_scenario("run_forever", busy="in C"),
    "fastloop.run, sleeping": lambda: runner_scenario("fastloop.run", busy=False, twice=False),
    "asyncio.Runner, busy": lambda: runner_scenario("asyncio.Runner", busy=True, twice=False),
    "asyncio.run, twice": lambda: runner_scenario("asyncio.run", busy=False, twice=True),
}

if __name__ == "__main__":
    if KIND != "aio":
        expected = "python" if KIND == "py" else "cython"
        assert fastloop.IMPLEMENTATION == expected, fastloop.IMPLEMENTATION
    for name, scenario in SCENARIOS.items():
        print(json.dumps({"scenario": name, **scenario()}), flush=True)

"""Unix signal handlers: add/remove, delivery through os.kill, and the error cases."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from helpers import DEADLINE, import_core, run_until

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs Unix signals")


@pytest.fixture(autouse=True)
def _restore_signal_state():
    before = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGUSR2)}
    yield
    for s, h in before.items():
        signal.signal(s, h)


def test_signal_delivered_to_handler(loop):
    got = []
    loop.add_signal_handler(signal.SIGUSR1, got.append, "usr1")
    loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
    run_until(loop, lambda: got)
    assert got == ["usr1"]
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


def test_signal_wakes_a_sleeping_loop(loop):
    got = []
    loop.add_signal_handler(signal.SIGUSR1, lambda: (got.append(1), loop.stop()))
    # Raise the signal from a thread while the main thread sleeps in poll.
    timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR1))
    watchdog = loop.call_later(30, loop.stop)
    timer.start()
    loop.run_forever()
    timer.join()
    watchdog.cancel()
    assert got == [1]
    loop.remove_signal_handler(signal.SIGUSR1)


def test_two_signals_and_replacement(loop):
    got = []
    loop.add_signal_handler(signal.SIGUSR1, got.append, "old")
    loop.add_signal_handler(signal.SIGUSR1, got.append, "usr1")
    loop.add_signal_handler(signal.SIGUSR2, got.append, "usr2")
    os.kill(os.getpid(), signal.SIGUSR1)
    os.kill(os.getpid(), signal.SIGUSR2)
    run_until(loop, lambda: len(got) == 2)
    assert sorted(got) == ["usr1", "usr2"]
    assert loop.remove_signal_handler(signal.SIGUSR1)
    assert loop.remove_signal_handler(signal.SIGUSR2)


def test_remove_restores_default_disposition(loop):
    loop.add_signal_handler(signal.SIGUSR1, print)
    assert loop.remove_signal_handler(signal.SIGUSR1)
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_signal_handler_exception_goes_to_exception_handler(loop, exc_log):
    def boom():
        raise ZeroDivisionError

    loop.add_signal_handler(signal.SIGUSR1, boom)
    os.kill(os.getpid(), signal.SIGUSR1)
    run_until(loop, lambda: exc_log.contexts)
    ctx = exc_log.take_one()
    assert isinstance(ctx["exception"], ZeroDivisionError)
    loop.remove_signal_handler(signal.SIGUSR1)


@pytest.mark.parametrize("sig", ["SIGUSR1", 1.0, None], ids=["str", "float", "None"])
def test_non_int_signal(loop, sig):
    with pytest.raises(TypeError):
        loop.add_signal_handler(sig, print)
    with pytest.raises(TypeError):
        loop.remove_signal_handler(sig)


@pytest.mark.parametrize("sig", [0, -1, signal.NSIG, 10_000])
def test_signal_out_of_range(loop, sig):
    with pytest.raises(ValueError):
        loop.add_signal_handler(sig, print)
    with pytest.raises(ValueError):
        loop.remove_signal_handler(sig)


def test_sigkill_cannot_be_caught(loop):
    with pytest.raises(RuntimeError):
        loop.add_signal_handler(signal.SIGKILL, print)
    assert loop.remove_signal_handler(signal.SIGKILL) is False


def test_add_signal_handler_from_non_main_thread(loop):
    errors = []

    def in_thread():
        try:
            loop.add_signal_handler(signal.SIGUSR1, print)
        except BaseException as exc:  # noqa: BLE001 - recorded for the main thread
            errors.append(exc)

    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError), errors
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_coroutine_callback_rejected(loop):
    async def coro_fn():
        pass

    with pytest.raises(TypeError, match="coroutines cannot be used with add_signal_handler"):
        loop.add_signal_handler(signal.SIGUSR1, coro_fn)
    coro = coro_fn()
    try:
        with pytest.raises(TypeError):
            loop.add_signal_handler(signal.SIGUSR1, coro)
    finally:
        coro.close()


def test_add_signal_handler_on_closed_loop(loop):
    loop.close()
    with pytest.raises(RuntimeError):
        loop.add_signal_handler(signal.SIGUSR1, print)


def test_close_removes_signal_handlers(loop):
    loop.add_signal_handler(signal.SIGUSR1, print)
    loop.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


# --- a storm of signals -------------------------------------------------------------------


def test_signal_storm(loop, monkeypatch):
    """Thousands of SIGUSR1 from a thread while the loop runs. asyncio guarantees no
    callback per signal: the kernel merges a pending signal with the next, and each
    delivery writes one byte to the wakeup fd that becomes one callback. What holds:
    between 1 and N callbacks, a callback runs after the last signal was sent (none is
    lost at the end), and the loop keeps serving other work through the storm. When the
    storm outruns the loop, the wakeup socket fills up: Python drops that byte and
    reports that it ignored an exception writing to the signal wakeup fd
    (BlockingIOError) through sys.unraisablehook, for asyncio as for fastloop."""
    dropped: list = []
    monkeypatch.setattr(sys, "unraisablehook", dropped.append)
    sends = 2000
    sent = [0]
    seen_by_callbacks: list[int] = []
    loop.add_signal_handler(signal.SIGUSR1, lambda: seen_by_callbacks.append(sent[0]))
    midway = loop.create_future()

    def storm() -> None:
        for i in range(sends):
            sent[0] = i + 1
            os.kill(os.getpid(), signal.SIGUSR1)
            if i == sends // 2:
                loop.call_soon_threadsafe(midway.set_result, "served")

    thread = threading.Thread(target=storm)
    loop.call_soon(thread.start)
    assert loop.run_until_complete(midway) == "served"
    run_until(loop, lambda: seen_by_callbacks and seen_by_callbacks[-1] == sends)
    thread.join()
    assert 1 <= len(seen_by_callbacks) <= sends
    for report in dropped:
        assert type(report.exc_value) is BlockingIOError
        if sys.version_info >= (3, 12):
            assert "signal wakeup fd" in report.err_msg, report.err_msg
        else:  # 3.10 and 3.11 print that header to stderr and report with no message
            assert report.err_msg is None, report.err_msg
    assert loop.remove_signal_handler(signal.SIGUSR1)


# --- Ctrl+C, in child processes (tests/sigint_child.py) -----------------------------------

CHILD = os.path.join(os.path.dirname(__file__), "sigint_child.py")


def _ctrl_c_observations(kind: str) -> list[dict]:
    """Run every Ctrl+C scenario on `kind` in a child; return what each observed."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    env.pop("FASTLOOP_NO_EXTENSIONS", None)
    # The child gets SIGINT's default disposition even when pytest was started with
    # SIGINT ignored (a background job): Python then installs its KeyboardInterrupt.
    proc = subprocess.run(
        [sys.executable, CHILD, kind], env=env, capture_output=True, text=True,
        timeout=4 * DEADLINE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.fixture(scope="module")
def asyncio_ctrl_c():
    return _ctrl_c_observations("aio")


@pytest.mark.parametrize("kind", ["cy", "py"])
def test_ctrl_c_as_asyncio(kind, asyncio_ctrl_c):
    """SIGINT during run_until_complete/run_forever (polling, or busy in Python
    callbacks or in a chain of C callbacks, which the Cython core once never
    interrupted), fastloop.run, asyncio.Runner and asyncio.run (a second Ctrl+C cutting cleanup
    short): the same exception, what the main coroutine saw, finally blocks, async
    generators closed, executor threads gone, loop closed and the SIGINT handler
    restored, as stock asyncio on this Python (3.11+: the main task is cancelled,
    then KeyboardInterrupt; 3.10: KeyboardInterrupt from wherever it lands)."""
    import_core(kind)
    observed = _ctrl_c_observations(kind)
    assert [o["scenario"] for o in observed] == [o["scenario"] for o in asyncio_ctrl_c]
    for got, want in zip(observed, asyncio_ctrl_c):
        assert got == want
    # What asyncio does, spelled out.
    assert all(o["raised"] == "KeyboardInterrupt" for o in observed)
    if sys.version_info >= (3, 11):
        # The Runner cancels the main task at the first Ctrl+C; the second raises
        # KeyboardInterrupt, and close() still cancels, finalizes and shuts down.
        assert observed[-1]["log"] == [
            "main: CancelledError", "cleanup: CancelledError", "main: finally", "agen closed"]
    else:
        # The first KeyboardInterrupt leaves run_until_complete; asyncio.run's cleanup
        # cancels the main task, and the second leaves that cleanup where it was.
        assert observed[-1]["log"] == ["main: CancelledError"]

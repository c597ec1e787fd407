"""Unix signal handlers: add/remove, delivery through os.kill, and the error cases."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from helpers import run_until

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

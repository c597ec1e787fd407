"""Debug mode, the exception handler API, and bad inputs to the call_* family."""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import threading
import time

import pytest

from helpers import run_briefly

# --- debug mode -------------------------------------------------------------------------


def test_debug_flag(loop):
    loop.set_debug(True)
    assert loop.get_debug() is True
    loop.set_debug(False)
    assert loop.get_debug() is False


def slow_callback():
    time.sleep(0.06)


def test_slow_callback_warning(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.02
    loop.call_soon(slow_callback)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        run_briefly(loop)
    msgs = [r for r in caplog.records if r.name == "asyncio" and r.getMessage().startswith("Executing")]
    assert len(msgs) == 1, caplog.records
    assert "slow_callback" in msgs[0].getMessage()
    assert "seconds" in msgs[0].getMessage()


def test_no_slow_callback_warning_without_debug(loop, caplog):
    loop.slow_callback_duration = 0.0
    loop.call_soon(slow_callback)
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        run_briefly(loop)
    assert not [r for r in caplog.records if r.getMessage().startswith("Executing")]


def test_non_threadsafe_call_from_other_thread_raises_in_debug(loop):
    loop.set_debug(True)
    errors = []
    calls = {
        "call_soon": lambda: loop.call_soon(print),
        "call_later": lambda: loop.call_later(1, print),
        "call_at": lambda: loop.call_at(loop.time() + 1, print),
    }

    def in_thread():
        for name, call in calls.items():
            try:
                call()
            except RuntimeError as exc:
                errors.append((name, str(exc)))
        loop.call_soon_threadsafe(loop.stop)

    def start_thread():
        threading.Thread(target=in_thread).start()

    loop.call_soon(start_thread)
    watchdog = loop.call_later(30, loop.stop)
    loop.run_forever()
    watchdog.cancel()
    assert [name for name, _ in errors] == list(calls)
    for _, msg in errors:
        assert "Non-thread-safe operation" in msg


def test_call_from_other_thread_allowed_without_debug(loop):
    # Not thread-safe, but not checked either: asyncio only checks in debug mode.
    done = threading.Event()
    errors = []

    def in_thread():
        try:
            loop.call_soon_threadsafe(loop.stop)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        done.set()

    loop.call_soon(lambda: threading.Thread(target=in_thread).start())
    watchdog = loop.call_later(30, loop.stop)
    loop.run_forever()
    watchdog.cancel()
    assert done.wait(30) and not errors


def test_source_traceback_in_repr(loop):
    loop.set_debug(True)
    h = loop.call_soon(print)  # this line is the one the repr must point at
    line = sys._getframe().f_lineno - 1
    assert h._source_traceback
    assert f"created at {__file__}:{line}" in repr(h)
    h.cancel()
    # In debug mode the repr survives cancel with the callback still named.
    assert "print" in repr(h) and "cancelled" in repr(h)
    t = loop.call_later(10, print)
    assert "created at" in repr(t)
    t.cancel()


def test_no_source_traceback_without_debug(loop):
    h = loop.call_soon(print)
    assert h._source_traceback is None
    assert "created at" not in repr(h)
    h.cancel()


def test_debug_exception_context_has_source_traceback(loop, exc_log):
    loop.set_debug(True)

    def boom():
        raise ValueError("boom")

    loop.call_soon(boom)
    run_briefly(loop)
    ctx = exc_log.take_one()
    assert ctx["source_traceback"]
    assert isinstance(ctx["exception"], ValueError)


async def coro_fn():
    pass


@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe", "call_later", "call_at"])
def test_debug_rejects_coroutine_function_and_non_callable(loop, method):
    loop.set_debug(True)
    extra = () if method in ("call_soon", "call_soon_threadsafe") else (1,)
    call = getattr(loop, method)
    with pytest.raises(TypeError, match="coroutines cannot be used with"):
        call(*extra, coro_fn)
    coro = coro_fn()
    try:
        with pytest.raises(TypeError, match="coroutines cannot be used with"):
            call(*extra, coro)
    finally:
        coro.close()
    with pytest.raises(TypeError, match="a callable object was expected"):
        call(*extra, 42)


def test_non_callable_without_debug_fails_when_run(loop, exc_log):
    loop.call_soon(42)
    run_briefly(loop)
    ctx = exc_log.take_one()
    assert isinstance(ctx["exception"], TypeError)


# --- exception handler API ----------------------------------------------------------------


def test_exception_in_callback_reaches_handler(loop, exc_log):
    exc = ValueError("boom")

    def boom():
        raise exc

    h = loop.call_soon(boom)
    loop.call_soon(lambda: None)
    run_briefly(loop)
    ctx = exc_log.take_one()
    assert ctx["exception"] is exc
    assert ctx["handle"] is h
    assert ctx["message"].startswith("Exception in callback")
    assert "boom" in ctx["message"]


def test_exception_in_timer_reaches_handler(loop, exc_log):
    def boom():
        raise KeyError("t")

    t = loop.call_later(0, boom)
    run_briefly(loop)
    ctx = exc_log.take_one()
    assert ctx["handle"] is t
    assert isinstance(ctx["exception"], KeyError)


def test_loop_keeps_running_after_callback_exception(loop, exc_log):
    out = []
    loop.call_soon(lambda: 1 / 0)
    loop.call_soon(out.append, "next")
    run_briefly(loop)
    assert out == ["next"]
    assert len(exc_log.take()) == 1


def test_get_set_exception_handler(loop):
    def handler(loop, ctx):
        pass

    old = loop.get_exception_handler()
    loop.set_exception_handler(handler)
    assert loop.get_exception_handler() is handler
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None
    with pytest.raises(TypeError):
        loop.set_exception_handler(42)
    loop.set_exception_handler(old)


def test_default_exception_handler_logs(loop, caplog):
    loop.set_exception_handler(None)

    def boom():
        raise ValueError("logged")

    loop.call_soon(boom)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        run_briefly(loop)
    recs = [r for r in caplog.records if r.name == "asyncio"]
    assert len(recs) == 1
    assert "Exception in callback" in recs[0].getMessage()
    assert recs[0].exc_info and recs[0].exc_info[0] is ValueError


def test_call_exception_handler_directly(loop, exc_log):
    loop.call_exception_handler({"message": "hello", "extra": 1})
    assert exc_log.take_one() == {"message": "hello", "extra": 1}


def test_handler_raising_is_logged(loop, caplog):
    def bad_handler(loop, ctx):
        raise RuntimeError("handler broke")

    loop.set_exception_handler(bad_handler)
    loop.call_soon(lambda: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        run_briefly(loop)
    msgs = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert any("Unhandled error in exception handler" in m for m in msgs), msgs


def test_default_exception_handler_called_by_custom(loop, caplog):
    seen = []

    def handler(loop, ctx):
        seen.append(ctx["message"])
        loop.default_exception_handler(ctx)

    loop.set_exception_handler(handler)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(lambda: 1 / 0)
        run_briefly(loop)
    assert len(seen) == 1
    assert any("Exception in callback" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exceptions_propagate_out_of_the_loop(loop, exc_type):
    out = []

    def boom():
        raise exc_type

    loop.call_soon(boom)
    loop.call_soon(out.append, "after")
    with pytest.raises(exc_type):
        run_briefly(loop)
    assert not loop.is_running()
    # The loop is still usable; the callback after the failing one still runs later.
    run_briefly(loop)
    assert out == ["after"]


# --- bad delays -----------------------------------------------------------------------


def test_negative_delay_fires_at_once(loop):
    out = []
    loop.call_later(-10, out.append, "neg")
    loop.call_at(loop.time() - 100, out.append, "past")
    run_briefly(loop)
    assert sorted(out) == ["neg", "past"]


def test_nan_delay_fires_without_corrupting_timers(loop, loop_kind):
    if loop_kind == "aio" and sys.version_info >= (3, 13):
        pytest.skip("stock asyncio 3.13 fails on a NaN deadline (selectors: NaN to int)")
    out = []
    loop.call_later(0.001, out.append, "a")
    loop.call_later(math.nan, out.append, "nan")
    loop.call_later(0.002, out.append, "b")
    loop.call_later(0.003, out.append, "c")
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    assert "nan" in out
    out.remove("nan")
    assert out == ["a", "b", "c"]


@pytest.mark.parametrize("delay", [math.inf, 1e300, 2.0**64, 10**18], ids=["inf", "1e300", "2**64", "10**18"])
def test_huge_delay_never_fires_and_does_not_break_poll(loop, delay):
    out = []
    h = loop.call_later(delay, out.append, "never")
    loop.call_later(0.02, loop.stop)
    loop.run_forever()
    assert out == []
    assert not h.cancelled()
    h.cancel()


def test_call_at_inf(loop):
    out = []
    h = loop.call_at(math.inf, out.append, "never")
    assert h.when() == math.inf
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert out == []
    h.cancel()


def test_int_delay_too_large_for_float(loop):
    with pytest.raises(OverflowError):
        loop.call_later(10**400, print)


@pytest.mark.parametrize("method", ["call_later", "call_at"])
def test_none_delay(loop, method, loop_kind):
    if loop_kind == "aio" and method == "call_at" and sys.version_info < (3, 11):
        pytest.skip("stock asyncio before 3.11 accepts call_at(None): it has no None check")
    with pytest.raises(TypeError):
        getattr(loop, method)(None, print)


@pytest.mark.parametrize("bad", ["1", [1], object()], ids=["str", "list", "object"])
def test_non_number_delay(loop, bad):
    with pytest.raises(TypeError):
        loop.call_later(bad, print)


def test_closed_loop_rejects_calls(loop):
    loop.close()
    assert loop.is_closed()
    for call in (
        lambda: loop.call_soon(print),
        lambda: loop.call_later(1, print),
        lambda: loop.call_at(1, print),
        lambda: loop.call_soon_threadsafe(print),
        lambda: loop.add_reader(0, print),
        lambda: loop.add_writer(1, print),
        lambda: loop.run_forever(),
    ):
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            call()
    assert loop.remove_reader(0) is False
    assert loop.remove_writer(1) is False
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.run_until_complete(coro)
    coro.close()
    loop.close()  # closing twice is allowed
    loop.stop()  # and stop on a closed loop is harmless


def test_close_drops_pending_callbacks_and_timers(loop):
    out = []
    loop.call_soon(out.append, 1)
    loop.call_later(0, out.append, 2)
    loop.close()
    assert out == []


def test_close_running_loop_raises(loop):
    errors = []

    def try_close():
        try:
            loop.close()
        except RuntimeError as exc:
            errors.append(str(exc))
        loop.stop()

    loop.call_soon(try_close)
    loop.run_forever()
    assert errors == ["Cannot close a running event loop"]
    assert not loop.is_closed()

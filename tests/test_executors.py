"""run_in_executor, the default executor, and the DNS helpers that use it."""

from __future__ import annotations

import concurrent.futures
import socket
import sys
import threading

import pytest

from helpers import run


def test_run_in_default_executor(loop):
    main = threading.get_ident()
    result = run(loop, loop.run_in_executor(None, lambda x: (x * 2, threading.get_ident()), 21))
    assert result[0] == 42
    assert result[1] != main


def test_run_in_given_executor(loop):
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="given") as ex:
        name = run(loop, loop.run_in_executor(ex, lambda: threading.current_thread().name))
    assert name.startswith("given")


def test_run_in_executor_exception_propagates(loop):
    def fail():
        raise KeyError("x")

    with pytest.raises(KeyError):
        run(loop, loop.run_in_executor(None, fail))


def test_run_in_executor_rejects_coroutine_function_in_debug(loop):
    async def coro_fn():
        pass

    loop.set_debug(True)
    with pytest.raises(TypeError):
        loop.run_in_executor(None, coro_fn)


def test_set_default_executor(loop):
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mine") as ex:
        loop.set_default_executor(ex)
        name = run(loop, loop.run_in_executor(None, lambda: threading.current_thread().name))
        assert name.startswith("mine")
        run(loop, loop.shutdown_default_executor())


def test_set_default_executor_type_error(loop):
    class NotAThreadPool(concurrent.futures.Executor):
        pass

    if sys.version_info >= (3, 11):
        with pytest.raises(TypeError):
            loop.set_default_executor(NotAThreadPool())
    else:  # 3.10 only deprecates it
        with pytest.raises(DeprecationWarning):
            loop.set_default_executor(NotAThreadPool())


def test_shutdown_default_executor(loop):
    run(loop, loop.run_in_executor(None, int))
    run(loop, loop.shutdown_default_executor())
    with pytest.raises(RuntimeError, match="shutdown"):
        loop.run_in_executor(None, int)


def test_shutdown_default_executor_without_executor(loop):
    run(loop, loop.shutdown_default_executor())


def test_run_in_executor_on_closed_loop(loop):
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.run_in_executor(None, int)


def test_getaddrinfo_localhost(loop):
    infos = run(loop, loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM))
    assert infos
    family, type_, proto, canonname, sockaddr = infos[0]
    assert family == socket.AF_INET
    assert type_ == socket.SOCK_STREAM
    assert sockaddr == ("127.0.0.1", 80)
    # Same answer as the blocking call it wraps.
    assert infos == socket.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)


def test_getaddrinfo_localhost_name(loop):
    infos = run(loop, loop.getaddrinfo("localhost", 8080, proto=socket.IPPROTO_TCP))
    assert {info[4][1] for info in infos} == {8080}


def test_getaddrinfo_error(loop):
    with pytest.raises(socket.gaierror):
        # AI_NUMERICHOST: fails at once, without asking a resolver.
        run(loop, loop.getaddrinfo("not-an-address", 80, flags=socket.AI_NUMERICHOST))


def test_getnameinfo(loop):
    host, port = run(loop, loop.getnameinfo(("127.0.0.1", 80), socket.NI_NUMERICHOST))
    assert host == "127.0.0.1"
    assert port in ("80", "http")

"""Choosing the kernel facility a loop polls with: ``backend=`` and FASTLOOP_BACKEND.

asyncio has no such choice (its selector is picked by ``selectors``), so these tests
run on fastloop's two cores only. The whole suite runs on io_uring too, in .ci/run's
io_uring pass; here are the choice itself, its errors and its fallback.
"""

from __future__ import annotations

import gc
import socket
import sys
import warnings

import pytest

import fastloop
from fastloop import _backend
from helpers import loop_class

PLATFORM = "epoll" if sys.platform.startswith("linux") else "kqueue"


@pytest.fixture(params=["cy", "py"])
def kind(request):
    return request.param


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("FASTLOOP_BACKEND", raising=False)


@pytest.fixture
def fresh_warning(monkeypatch):
    """The fallback warns once per process: let this test see it again."""
    monkeypatch.setattr(_backend, "_warned", False)


def _io_uring_loop():
    """A Cython-core loop on io_uring, or a skip that says why it is unavailable here."""
    try:
        return loop_class("cy")(backend="io_uring")
    except RuntimeError as exc:
        pytest.skip(str(exc))


def _echo_once(loop) -> bytes:
    """Readiness, a callback and a timer on `loop`: one byte through a socketpair."""
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        got = loop.create_future()

        def readable():
            loop.remove_reader(a)
            got.set_result(a.recv(16))

        loop.add_reader(a, readable)
        loop.call_later(0.01, b.send, b"x")
        return loop.run_until_complete(got)


def test_default_is_the_platforms(kind, no_env):
    loop = loop_class(kind)()
    try:
        assert loop.backend == PLATFORM
    finally:
        loop.close()


def test_io_uring_on_request():
    loop = _io_uring_loop()
    try:
        assert loop.backend == "io_uring"
        assert _echo_once(loop) == b"x"
    finally:
        loop.close()


def test_new_event_loop_passes_the_choice_on(no_env):
    if fastloop.IMPLEMENTATION != "cython":
        pytest.skip("io_uring needs the Cython core, and this run uses the Python one")
    _io_uring_loop().close()  # skips where io_uring is unavailable
    loop = fastloop.new_event_loop(backend="io_uring")
    try:
        assert loop.backend == "io_uring"
    finally:
        loop.close()


def test_io_uring_refuses_what_epoll_refuses(tmp_path):
    """add_reader of a regular file fails with PermissionError, as epoll_ctl's EPERM."""
    loop = _io_uring_loop()
    try:
        with open(tmp_path / "file", "w") as f:
            with pytest.raises(PermissionError):
                loop.add_reader(f, lambda: None)
        with open("/dev/null", "rb") as f:
            with pytest.raises(PermissionError):
                loop.add_reader(f, lambda: None)
    finally:
        loop.close()


def test_python_core_has_no_io_uring():
    with pytest.raises(RuntimeError, match="io_uring backend is unavailable: .*Cython core"):
        loop_class("py")(backend="io_uring")


@pytest.mark.parametrize("name", ["kqueue" if PLATFORM == "epoll" else "epoll", "uring", ""])
def test_unknown_backend(kind, name):
    with pytest.raises(ValueError, match=r"unknown event loop backend in backend=.*expected"):
        loop_class(kind)(backend=name)


def test_unknown_backend_in_the_environment(kind, monkeypatch):
    monkeypatch.setenv("FASTLOOP_BACKEND", "fastest")
    with pytest.raises(ValueError, match="FASTLOOP_BACKEND=fastest"):
        loop_class(kind)()


def test_failed_construction_leaves_nothing_to_clean_up(kind):
    """No 'unclosed event loop' ResourceWarning from the half-made loop's __del__ (the
    suite turns warnings and unraisable exceptions into errors)."""
    with pytest.raises(ValueError):
        loop_class(kind)(backend="nonsense")
    gc.collect()


def test_environment_asks_for_io_uring(monkeypatch):
    monkeypatch.setenv("FASTLOOP_BACKEND", "io_uring")
    _io_uring_loop().close()  # skips where io_uring is unavailable
    loop = loop_class("cy")()
    try:
        assert loop.backend == "io_uring"
    finally:
        loop.close()


def test_environment_falls_back_with_one_warning(monkeypatch, fresh_warning):
    """Where io_uring is unavailable (here: the Python core) FASTLOOP_BACKEND=io_uring
    gives the platform's backend and one warning that says why, for the first loop."""
    monkeypatch.setenv("FASTLOOP_BACKEND", "io_uring")
    with pytest.warns(RuntimeWarning, match=r"FASTLOOP_BACKEND=io_uring: .*Cython core.*; using"):
        first = loop_class("py")()
    try:
        assert first.backend == PLATFORM
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            second = loop_class("py")()
        second.close()
    finally:
        first.close()


def test_explicit_choice_ignores_the_environment(kind, monkeypatch):
    monkeypatch.setenv("FASTLOOP_BACKEND", "io_uring")
    loop = loop_class(kind)(backend=PLATFORM)
    try:
        assert loop.backend == PLATFORM
    finally:
        loop.close()

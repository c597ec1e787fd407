"""Fixtures shared by the whole suite.

`loop` runs a behaviour test three times: on the Cython core (`cy`), on the pure-Python
core (`py`) and on stock asyncio (`aio`), the reference. A behaviour test that fails on
`aio` tests the wrong thing. `core` runs a white-box test on each core module.

Every loop made here gets a recording exception handler; teardown fails the test when
the handler fired and the test did not take the calls with `exc_log.take()`. Silent
exceptions in callbacks are exactly the bugs an event loop hides best.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import tempfile
import threading
import warnings

import pytest

from helpers import CORE_KINDS, LOOP_KINDS, import_core, loop_class

try:
    import fastloop  # noqa: F401
except ImportError:  # a source checkout run without PYTHONPATH=src
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "src"))

try:
    import hypothesis
    import hypothesis.configuration
except ImportError:  # tests/test_fuzz.py skips, saying so
    pass
else:
    # tests/test_fuzz.py: a bounded run in CI, FASTLOOP_FUZZ_EXAMPLES examples per test
    # for a long one. Every example starts loops and sockets and may wait on timers,
    # hence no deadline and no complaint that generation is slow next to it; no
    # example database, and hypothesis's caches under the temporary directory, so that
    # a run writes nothing into the checkout. The function-scoped fixture the fuzz
    # tests get is _restore_policy below (autouse), which no example needs afresh.
    hypothesis.configuration.set_hypothesis_home_dir(
        os.path.join(tempfile.gettempdir(), f"fastloop-hypothesis-{os.getuid()}"))
    hypothesis.settings.register_profile(
        "ci",
        max_examples=int(os.environ.get("FASTLOOP_FUZZ_EXAMPLES", "40")),
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[
            hypothesis.HealthCheck.too_slow,
            hypothesis.HealthCheck.function_scoped_fixture,
        ],
    )
    hypothesis.settings.load_profile("ci")

if os.environ.get("FASTLOOP_BACKEND") == "io_uring":
    # Tests that compare the cores still make pure-Python loops, which fall back to
    # epoll with one warning per process: given here, before any test records warnings.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        loop_class("py")().close()


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "cpython_suite: runs CPython's own test_asyncio against fastloop "
        "(deselect with -m 'not cpython_suite')",
    )
    config.addinivalue_line(
        "markers",
        "stress: a stress run with thousands of connections (tests/stress.py); CI runs "
        "it once per interpreter",
    )


def loop_factory_for(kind: str):
    if kind == "aio":
        # What asyncio.new_event_loop() makes by default on Unix, without going through
        # the policy (a test may have installed fastloop's; policies warn on 3.14+).
        return asyncio.SelectorEventLoop
    return loop_class(kind)


class ExceptionLog:
    """A loop exception handler that records every context it is given.

    A test that expects the handler to fire reads the contexts with `take()`; whatever
    is left at teardown fails the test.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.contexts: list[dict] = []

    def __call__(self, loop, context: dict) -> None:
        with self._lock:
            self.contexts.append(context)

    def take(self) -> list[dict]:
        """Return the recorded contexts and forget them."""
        with self._lock:
            taken, self.contexts = self.contexts, []
        return taken

    def take_one(self) -> dict:
        """Return the only recorded context (failing if there is not exactly one)."""
        taken = self.take()
        assert len(taken) == 1, f"expected one exception handler call, got {taken!r}"
        return taken[0]


class LoopMaker:
    """Makes loops of one kind, each with an ExceptionLog, and closes them at teardown."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.factory = loop_factory_for(kind)
        self.made: list[tuple[asyncio.AbstractEventLoop, ExceptionLog]] = []

    def __call__(self) -> asyncio.AbstractEventLoop:
        loop = self.factory()
        log = ExceptionLog()
        loop.set_exception_handler(log)
        self.made.append((loop, log))
        return loop

    def log_of(self, loop) -> ExceptionLog:
        for made, log in self.made:
            if made is loop:
                return log
        raise LookupError(loop)

    def close_all(self) -> list[str]:
        """Close every loop made; return a description of each unexpected handler call."""
        problems = []
        for loop, _ in self.made:
            if not loop.is_closed():
                if loop.is_running():
                    problems.append(f"{loop!r} still running at teardown")
                    continue
                loop.close()
        # Pending tasks and unclosed async generators report from __del__.
        gc.collect()
        for loop, log in self.made:
            for ctx in log.take():
                problems.append(f"unexpected exception handler call on {self.kind}: {ctx!r}")
        return problems


def loops_of(kinds: list[str]):
    """A `make_loop` fixture over `kinds`; a module narrows the suite's with its own."""

    @pytest.fixture(params=kinds)
    def make_loop(request):
        """A function that makes loops of the parametrised kind (closed at teardown)."""
        maker = LoopMaker(request.param)
        yield maker
        problems = maker.close_all()
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)

    return make_loop


make_loop = loops_of(LOOP_KINDS)


@pytest.fixture
def loop_kind(make_loop) -> str:
    return make_loop.kind


@pytest.fixture
def loop(make_loop):
    """A fresh loop of the parametrised kind: `cy`, `py` or `aio`."""
    loop = make_loop()
    yield loop
    if loop.is_running():  # a test that failed inside run_forever: do not hang teardown
        loop.stop()


@pytest.fixture
def exc_log(loop, make_loop) -> ExceptionLog:
    """The recording exception handler of `loop`."""
    return make_loop.log_of(loop)


@pytest.fixture(params=CORE_KINDS)
def core(request):
    """A core module (`fastloop._cy` or `fastloop._py`) for white-box tests."""
    return import_core(request.param)


@pytest.fixture(autouse=True)
def _restore_policy():
    """Leave the global event loop policy as the test found it."""
    before = asyncio.events._event_loop_policy
    yield
    asyncio.events._event_loop_policy = before

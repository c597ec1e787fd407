"""Run CPython's own test.test_asyncio modules with fastloop as the event loop.

    python tests/cpython_suite.py --core cy|py|aio [--json FILE] [modules...]

`aio` runs the same selection on stock asyncio, the baseline: a test that fails there
fails for a reason of this machine or interpreter, not of fastloop.

How the tests are made to use our loop (each path was checked in the 3.10-3.14 sources):
- Nearly every module ends with `set_event_loop_policy(None)` in tearDownModule (the
  private `events._set_event_loop_policy(None)` on 3.14), and asyncio then builds its
  default policy from `asyncio.DefaultEventLoopPolicy` (3.10-3.13) or from
  `asyncio.unix_events._DefaultEventLoopPolicy` (3.14, where the public name is a
  deprecated module `__getattr__` that reads it): that name is replaced by a policy
  whose new_event_loop() makes our loop. `asyncio.new_event_loop()` and `asyncio.run()`
  go through it.
- `unittest.IsolatedAsyncioTestCase` (test_locks, test_queues, test_timeouts, ...) makes its
  loop with `asyncio.Runner`, which calls `asyncio.new_event_loop()`; from 3.13 it passes
  its `loop_factory` class attribute (None by default), set here too. A test class that
  sets `loop_factory = asyncio.EventLoop` itself (3.14's test_taskgroups) gets ours.
- test_events and the networking modules in SELECTOR_LOOP_MODULES build loops with
  `asyncio.SelectorEventLoop(selector)`: while one runs, that name is replaced by a
  factory that ignores the selector (only then: test_runners checks that
  `asyncio.EventLoop` is an `asyncio.SelectorEventLoop`). Likewise `asyncio.EventLoop`
  while the modules in EVENT_LOOP_MODULES run (3.14's `asyncio.run(...,
  loop_factory=asyncio.EventLoop)` and `asyncio.EventLoop()`).
- Tests built on `test_utils.TestLoop` (a BaseEventLoop with a virtual clock, most of
  test_tasks) never touch our loop; they still run, and are counted apart.
- test_runners and test_pep492 build `asyncio.BaseEventLoop()` and mock its selector;
  they test asyncio's own layers and never touch our loop either.
Each test is classified by which loops it made: `fastloop` (at least one of ours),
`testloop` (only TestLoop) or `other` (a mocked BaseEventLoop, or no loop at all).

A test still running after PER_TEST_TIMEOUT seconds is recorded as an error and the
loops it runs are stopped, which fails it and lets the run go on; should it still run
STOP_GRACE seconds later, the results so far are written and the run ends there.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import functools
import importlib
import importlib.util
import io
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import unittest
import weakref

HERE = os.path.dirname(os.path.abspath(__file__))

try:
    import fastloop  # noqa: F401
except ImportError:  # a source checkout run without PYTHONPATH=src
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

DEFAULT_MODULES = [
    "test_tasks",
    "test_futures",
    "test_runners",
    "test_timeouts",
    "test_taskgroups",
    "test_locks",
    "test_queues",
    "test_pep492",
    "test_context",
    "test_waitfor",
    "test_events",
    "test_sock_lowlevel",
    "test_streams",
    "test_server",
    "test_sendfile",
    "test_buffered_proto",
    "test_ssl",
    "test_sslproto",
    "test_subprocess",
    # Added with 3.14 (each runs where the interpreter ships it).
    "test_futures2",  # 3.10+
    "test_threads",  # 3.10+: to_thread
    "test_eager_task_factory",  # 3.12+
    "test_staggered",  # 3.13+ (in the package; staggered_race itself is older)
    "test_graph",  # 3.14: capture_call_graph and friends
    "test_free_threading",  # 3.14: tasks and loops used from many threads
]

# test_events: the loop tests on one selector class (they all map to our loop), plus the
# classes that test handles, timers and policies directly.
EVENTS_CLASSES = {
    "EPollEventLoopTests",
    "HandleTests",
    "TimerTests",
    "AbstractEventLoopTests",
    "PolicyTests",
    "TestPyGetEventLoop",
    "TestCGetEventLoop",
}

# Modules whose tests make their loops with asyncio.SelectorEventLoop(...).
SELECTOR_LOOP_MODULES = {
    "test_events",
    "test_sock_lowlevel",
    "test_sendfile",
    "test_buffered_proto",
    "test_sslproto",
    "test_server",
}

# White-box tests that hang on our loop, so that they would end the run (a stopped
# loop does not help: their cleanup waits for a thread that waits for data). They are
# not run on fastloop but recorded as failed with this reason, and listed in
# cpython_known_failures.txt; `aio` runs them.
NOT_RUN_ON_FASTLOOP = {
    "test.test_asyncio.test_ssl.TestSSL.test_remote_shutdown_receives_trailing_data_on_slow_socket": (
        "white-box: waits for close() to set the transport's private _read_ready_cb to "
        "None, to then replace its _sock; our transports have no _read_ready_cb, so the "
        "patched write() raises AttributeError inside SSLProtocol, the data is never "
        "sent and the test's server thread waits for it forever"
    ),
}

# Modules that make loops with asyncio.EventLoop (3.13+), replaced while they run.
EVENT_LOOP_MODULES = {
    "test_tasks",
    "test_taskgroups",
    "test_eager_task_factory",
}

# A test that hangs is a failure too; this bounds one test, generously. Its running
# loops are then stopped; a test still running STOP_GRACE seconds later ends the run.
PER_TEST_TIMEOUT = 120
STOP_GRACE = 30
# faulthandler's hard stop, should the watchdog thread never get the GIL.
HARD_TIMEOUT = PER_TEST_TIMEOUT + STOP_GRACE + 30


class Counters:
    core = ""
    fastloop_loops = 0
    test_loops = 0
    new_loop = None  # the factory install() made
    loops: weakref.WeakSet = weakref.WeakSet()  # every loop new_loop made, while alive
    stock_selector_loop = None  # asyncio's own classes, before any replacement
    stock_event_loop = None


def install(core_kind: str) -> None:
    """Make the test modules use the loop of `core_kind` (see the module docstring)."""
    Counters.core = core_kind
    Counters.stock_selector_loop = asyncio.SelectorEventLoop
    Counters.stock_event_loop = getattr(asyncio, "EventLoop", None)  # 3.13+
    if core_kind == "aio":
        factory_cls = asyncio.SelectorEventLoop  # the default policy's loop on Unix
    else:
        from fastloop._loop import loop_class_for

        factory_cls = loop_class_for(importlib.import_module(f"fastloop._{core_kind}"))

    def new_loop(*_selector):
        Counters.fastloop_loops += 1
        loop = factory_cls()
        Counters.loops.add(loop)
        return loop

    if sys.version_info >= (3, 14):
        # The public policy names warn there ("slated for removal in Python 3.16");
        # asyncio itself, and the tests, use these private ones.
        stock_policy = asyncio.unix_events._DefaultEventLoopPolicy
    else:
        stock_policy = asyncio.DefaultEventLoopPolicy

    class SuitePolicy(stock_policy):
        def new_event_loop(self):
            return new_loop()

    SuitePolicy.__name__ = SuitePolicy.__qualname__ = stock_policy.__name__
    if sys.version_info >= (3, 14):
        asyncio.unix_events._DefaultEventLoopPolicy = SuitePolicy
        asyncio.events._set_event_loop_policy(None)
    else:
        asyncio.DefaultEventLoopPolicy = SuitePolicy
        asyncio.set_event_loop_policy(None)
    Counters.new_loop = new_loop
    if hasattr(unittest.IsolatedAsyncioTestCase, "loop_factory"):
        unittest.IsolatedAsyncioTestCase.loop_factory = staticmethod(new_loop)

    # After the policy: 3.14's test utils bind the policy class at import.
    from test.test_asyncio import utils as test_utils

    stock_init = test_utils.TestLoop.__init__

    def counting_init(self, *args, **kwargs):
        Counters.test_loops += 1
        stock_init(self, *args, **kwargs)

    test_utils.TestLoop.__init__ = counting_init


class RecordingResult(unittest.TestResult):
    """Records one outcome and the kind of loop used for every test."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.records: dict[str, dict] = {}
        self._before = (0, 0)

    def startTest(self, test):
        super().startTest(test)
        self._before = (Counters.fastloop_loops, Counters.test_loops)
        Run.start_watchdog(test.id())

    def stopTest(self, test):
        Run.stop_watchdog()
        super().stopTest(test)
        rec = self.records.setdefault(test.id(), {"outcome": "passed", "detail": ""})
        if test.id() in Run.hung:
            rec["outcome"] = "error"
            rec["detail"] = (f"timed out after {PER_TEST_TIMEOUT} s: its loops were stopped "
                             f"(tracebacks on stderr)\n{rec['detail']}")
        if Counters.fastloop_loops > self._before[0]:
            rec["loop"] = "fastloop"
        elif Counters.test_loops > self._before[1]:
            rec["loop"] = "testloop"
        else:
            rec["loop"] = "other"

    def _set(self, test, outcome, detail=""):
        rec = self.records.setdefault(test.id(), {"outcome": "passed", "detail": "", "loop": "other"})
        if rec["outcome"] in ("failed", "error") and outcome == "passed":
            return
        rec["outcome"] = outcome
        rec["detail"] = detail

    def addSuccess(self, test):
        super().addSuccess(test)
        self._set(test, "passed")

    def addError(self, test, err):
        super().addError(test, err)
        self._set(test, "error", self._exc_info_to_string(err, test))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._set(test, "failed", self._exc_info_to_string(err, test))

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = "failed" if issubclass(err[0], test.failureException) else "error"
            self._set(test, kind, f"{subtest.id()}\n" + self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._set(test, "skipped", reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._set(test, "passed", "expected failure")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._set(test, "failed", "unexpected success")


def _iter_tests(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _iter_tests(item)
        else:
            yield item


def load(module: str) -> unittest.TestSuite:
    name = f"test.test_asyncio.{module}"
    suite = unittest.defaultTestLoader.loadTestsFromName(name)
    for test in _iter_tests(suite):
        reason = NOT_RUN_ON_FASTLOOP.get(test.id()) if Counters.core != "aio" else None
        if reason is not None:
            setattr(test, test._testMethodName, functools.partial(test.fail, f"not run: {reason}"))
        # A class that names asyncio.EventLoop as its loop_factory (bound at import).
        for klass in type(test).__mro__:
            stock = Counters.stock_event_loop
            if stock is not None and vars(klass).get("loop_factory") is stock:
                klass.loop_factory = staticmethod(Counters.new_loop)
    if module != "test_events":
        return suite
    kept = unittest.TestSuite()
    for test in _iter_tests(suite):
        cls = type(test).__name__
        if cls not in EVENTS_CLASSES:
            continue
        kept.addTest(test)
    return kept


def run_module(module: str) -> dict[str, dict] | None:
    """Run one module; None when this interpreter does not ship it."""
    if importlib.util.find_spec(f"test.test_asyncio.{module}") is None:
        return None
    suite = load(module)
    result = RecordingResult(stream=io.StringIO(), descriptions=False, verbosity=0)
    Run.module, Run.result = module, result
    if module in SELECTOR_LOOP_MODULES:
        asyncio.SelectorEventLoop = Counters.new_loop
    if module in EVENT_LOOP_MODULES and Counters.stock_event_loop is not None:
        asyncio.EventLoop = Counters.new_loop
    try:
        # Module-level fixtures (setUpModule/tearDownModule) run through the suite.
        suite.run(result)
    finally:
        asyncio.SelectorEventLoop = Counters.stock_selector_loop
        if Counters.stock_event_loop is not None:
            asyncio.EventLoop = Counters.stock_event_loop
        Run.result = None
    for test, err in result.errors:  # class/module fixture failures have no record yet
        if test.id() not in result.records:
            result.records[test.id()] = {"outcome": "error", "detail": err, "loop": "other"}
    return result.records


def summarise(module: str, records: dict[str, dict]) -> str:
    counts = {k: 0 for k in ("passed", "failed", "error", "skipped")}
    loops = {k: 0 for k in ("fastloop", "testloop", "other")}
    for rec in records.values():
        counts[rec["outcome"]] += 1
        loops[rec["loop"]] += 1
    return (
        f"{module:23} passed {counts['passed']:4}  failed {counts['failed'] + counts['error']:3}  "
        f"skipped {counts['skipped']:3}   loops: fastloop {loops['fastloop']:4}  "
        f"TestLoop-only {loops['testloop']:4}  other {loops['other']:4}"
    )


class Run:
    """The state of this run, which the watchdog writes out should a test hang."""

    core = ""
    json_path: str | None = None
    everything: dict[str, dict] = {}
    module = ""
    result: RecordingResult | None = None
    hung: set[str] = set()  # tests whose loops the watchdog stopped
    _watchdog: threading.Timer | None = None

    @classmethod
    def start_watchdog(cls, test_id: str) -> None:
        cls._arm(PER_TEST_TIMEOUT, cls._stop_loops, test_id)
        # The backstop, should the watchdog thread never run.
        faulthandler.dump_traceback_later(HARD_TIMEOUT, exit=True)

    @classmethod
    def _arm(cls, seconds: float, action, test_id: str) -> None:
        cls._watchdog = threading.Timer(seconds, action, (test_id,))
        cls._watchdog.daemon = True
        cls._watchdog.start()

    @classmethod
    def stop_watchdog(cls) -> None:
        faulthandler.cancel_dump_traceback_later()
        if cls._watchdog is not None:
            cls._watchdog.cancel()
            cls._watchdog = None

    @classmethod
    def _stop_loops(cls, test_id: str) -> None:
        """First stage of a hang: stop every running loop, so that the test fails.

        run_until_complete() then raises 'Event loop stopped before Future
        completed' and the test's cleanup runs; the run goes on.
        """
        faulthandler.dump_traceback(all_threads=True)
        cls.hung.add(test_id)
        for loop in list(Counters.loops):
            if loop.is_running():
                try:
                    loop.call_soon_threadsafe(loop.stop)
                except RuntimeError:  # closed meanwhile
                    pass
        cls._arm(STOP_GRACE, cls._timed_out, test_id)

    @classmethod
    def _timed_out(cls, test_id: str) -> None:
        """Record `test_id` as hung, write out everything so far, and end the run."""
        faulthandler.dump_traceback(all_threads=True)
        made_ours = True
        if cls.result is not None:
            cls.add(cls.module, cls.result.records)
            made_ours = Counters.fastloop_loops > cls.result._before[0]
        cls.everything[test_id] = {
            "outcome": "error",
            "detail": f"timed out after {PER_TEST_TIMEOUT} s, and still running "
            f"{STOP_GRACE} s after its loops were stopped (tracebacks on stderr); "
            f"the run ended here",
            "loop": "fastloop" if made_ours else "other",
            "module": cls.module,
        }
        code = cls.finish()
        sys.stdout.flush()
        os._exit(code or 1)

    @classmethod
    def add(cls, module: str, records: dict[str, dict]) -> None:
        for rec in records.values():
            rec["module"] = module
        cls.everything.update(records)

    @classmethod
    def finish(cls) -> int:
        """Print the total and the failures, write the JSON; return the exit status."""
        print(summarise("TOTAL", cls.everything))
        bad = {t: r for t, r in cls.everything.items() if r["outcome"] in ("failed", "error")}
        for tid, rec in sorted(bad.items()):
            last = [ln for ln in rec["detail"].strip().splitlines() if ln.strip()][-1:] or [""]
            print(f"FAIL {tid}: {last[0][:200]}")
        if cls.json_path:
            with open(cls.json_path, "w") as f:
                version = sys.version.split()[0]
                json.dump({"python": version, "core": cls.core, "tests": cls.everything}, f)
        return 1 if bad else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--core", choices=["cy", "py", "aio"], required=True)
    parser.add_argument("--json", help="write every test's record to this file")
    parser.add_argument("modules", nargs="*", default=DEFAULT_MODULES)
    args = parser.parse_args(argv)

    # Started with SIGINT ignored (as a background job of a shell without job control
    # is), Python leaves it so; test_runners' tests interrupt themselves with
    # _thread.interrupt_main(), which then does nothing, and they wait forever.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    faulthandler.enable()  # a crash in a core prints where it happened
    install(args.core)
    # Tests write files (support.TESTFN) to the working directory, and a test that
    # fails midway leaves them: work in a directory of our own, as regrtest does.
    sys.path[:] = [os.path.abspath(entry) if entry else entry for entry in sys.path]
    if os.environ.get("PYTHONPATH"):
        os.environ["PYTHONPATH"] = os.pathsep.join(
            os.path.abspath(entry) for entry in os.environ["PYTHONPATH"].split(os.pathsep))
    if args.json:
        args.json = os.path.abspath(args.json)
    workdir = tempfile.mkdtemp(prefix="cpython-suite-")
    os.chdir(workdir)
    import logging

    # The suite's tests log on purpose (slow callbacks, unhandled errors); keep the
    # summary readable.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL + 1)

    print(f"CPython {sys.version.split()[0]} test.test_asyncio on core {args.core}")
    Run.core, Run.json_path = args.core, args.json
    for module in args.modules:
        records = run_module(module)
        if records is None:
            print(f"{module:23} not shipped with this interpreter")
            continue
        Run.add(module, records)
        print(summarise(module, records), flush=True)
    os.chdir(HERE)
    shutil.rmtree(workdir, ignore_errors=True)
    return Run.finish()


if __name__ == "__main__":
    sys.exit(main())

"""Differential fuzzing: hypothesis draws programs against the loop API, each runs on
fastloop's loops and on stock asyncio, and their logs must be equal.

Each family of programs lives in a helper module that says what it draws and which of
its observations asyncio leaves undefined (and are therefore not compared):

- fuzz_calls: trees of callbacks, timers, futures and tasks, cancellation, stop.
- fuzz_transports: calls on both ends of a TCP or Unix stream connection.
- fuzz_datagrams: calls on two UDP endpoints, connected or not.
- fuzz_streams: a StreamReader's reads of what a server writes in pieces.

A program is plain data whose repr reads as the program, so when a loop disagrees with
asyncio hypothesis shrinks it and prints a minimal one. A run of the suite draws
FASTLOOP_FUZZ_EXAMPLES (default 40, the "ci" profile in conftest.py) programs per test;
a long session draws more:

    FASTLOOP_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz.py -p no:cacheprovider

(each test's timeout grows with it, a second a program; FASTLOOP_BACKEND=io_uring
fuzzes the io_uring transports). A failure prints the shrunk program and a
@reproduce_failure line that replays it.

A difference is either a fastloop bug (fixed, with a regression test in the test file
of its subject) or something asyncio does not define, which the program's family then
leaves out of its log, saying why.
"""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("hypothesis", reason="the fuzz tests need hypothesis (the test extra)")

from hypothesis import given, settings  # noqa: E402

import fuzz_calls  # noqa: E402
import fuzz_datagrams  # noqa: E402
import fuzz_streams  # noqa: E402
import fuzz_transports  # noqa: E402
from helpers import CORE_KINDS, loop_class  # noqa: E402

# pyproject's 120 s a test is for the default 40 programs: a long session has longer.
pytestmark = pytest.mark.timeout(max(120, settings.default.max_examples))

# Runs of one comparison, at most, until the machine leaves a timing-bound run alone.
ATTEMPTS = 4


def compare(run, program) -> None:
    """Assert that `run(factory, program)` logs the same on each core as on asyncio.

    `run` returns (log, trustworthy); an untrustworthy run (one that a stalled machine
    pushed off the timing a program relies on) is repeated, not compared. A difference
    is looked at again a few times: a family's docstring says which timing a stalled
    machine can upset even in a run that looks trustworthy.
    """
    reference = _trusted(run, asyncio.SelectorEventLoop, program)
    for kind in CORE_KINDS:
        factory = loop_class(kind)
        log = _trusted(run, factory, program)
        for _ in range(ATTEMPTS - 1):
            if log == reference:
                break
            reference = _trusted(run, asyncio.SelectorEventLoop, program)
            log = _trusted(run, factory, program)
        # A difference that every attempt shows is the loop's, not the machine's.
        assert log == reference, f"{kind} differs from asyncio"


def _trusted(run, factory, program) -> list:
    for _ in range(ATTEMPTS):
        log, trustworthy = run(factory, program)
        if trustworthy:
            return log
    pytest.fail(f"no run of {ATTEMPTS} on {factory.__name__} kept to the timing "
                f"the program relies on: the machine stalls the process too long")


@given(fuzz_calls.programs())
def test_callbacks_timers_tasks(program):
    compare(fuzz_calls.run_program, program)


@given(fuzz_transports.programs())
def test_stream_transports(program):
    compare(fuzz_transports.run_program, program)


@given(fuzz_datagrams.programs())
def test_datagram_transports(program):
    compare(fuzz_datagrams.run_program, program)


@given(fuzz_streams.programs())
def test_streams(program):
    compare(fuzz_streams.run_program, program)

"""A short stress run on every loop: thousands of connections, every byte checked.

tests/stress.py holds the run and says what it checks; `python tests/stress.py
--minutes N` is the long version. Marked `stress`: CI runs it once per interpreter
(not again in the FASTLOOP_NO_EXTENSIONS pass, where the loop fixture is the same).
"""

from __future__ import annotations

import io
import resource
import time

import pytest

import stress
from nethelpers import CA_FILE, SERVER_CERT, SERVER_KEY

pytestmark = pytest.mark.stress


def test_every_byte_to_the_right_peer(loop):
    args = stress.parser().parse_args(
        ["--tcp", "1000", "--tcp-ports", "1", "--unix", "100", "--tls", "20",
         "--sessions", "3", "--seed", "13"]
    )
    args.seconds = 0
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    if stress.raise_fd_limit(stress.fds_needed(args)) < stress.fds_needed(args):
        pytest.skip(f"RLIMIT_NOFILE's hard limit {before[1]} is below the "
                    f"{stress.fds_needed(args)} fds this run holds")
    t0 = time.monotonic()
    try:
        stats = stress.run(loop, args, (CA_FILE, SERVER_CERT, SERVER_KEY))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)
    if stats.errors:
        out = io.StringIO()
        stress.report(stats, args, time.monotonic() - t0, out=out)
        pytest.fail(out.getvalue(), pytrace=False)
    count = stats.count
    # The run did what it claims: every kind and scenario happened, fds were reused.
    assert count["tcp sessions"] == 3000 and count["unix sessions"] == 300
    assert count["tls sessions"] == 60
    assert stats.open_peak > 1000
    assert count["answers checked"] > 1000 and count["server aborts"] > 0
    assert all(count[f"scenario {s}"] > 0 for s in stress.SCENARIOS)
    assert count["fds reused"] > 0

"""`python -m fastloop stats SCRIPT [ARGS]`: run a program on fastloop, report its loops.

The report (utilisation, lag percentiles, the slowest callbacks with their tasks)
goes to stderr when the program ends, and whenever the process gets SIGUSR1;
``--plot FILE.png`` also draws lag and utilisation over time (_statsplot.py).
Loops made through asyncio's policy (asyncio.run, new_event_loop), fastloop.run
and fastloop.new_event_loop are observed; a bare fastloop.Loop() is not.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import runpy
import signal
import sys
import warnings
from typing import Any

from . import _policy, _statsplot
from ._slow import SlowCallback


class Monitor:
    """The loops the program made, and the slowest callbacks seen on them."""

    def __init__(self, threshold: float, top: int) -> None:
        self.threshold = threshold
        self.top = top
        self.loops: list[Any] = []  # kept alive to the end: the report reads them
        self.slowest: list[tuple[float, int, SlowCallback]] = []  # a min-heap
        self.seq = itertools.count()

    def new_event_loop(self, *, backend: str | None = None) -> asyncio.AbstractEventLoop:
        loop = _new_event_loop(backend=backend)
        loop.set_slow_callback_hook(self.threshold, self.slow)  # type: ignore[attr-defined]
        self.loops.append(loop)
        return loop

    def slow(self, report: SlowCallback) -> None:
        entry = (report.duration, next(self.seq), report)
        if len(self.slowest) < self.top:
            heapq.heappush(self.slowest, entry)
        elif entry[0] > self.slowest[0][0]:
            heapq.heapreplace(self.slowest, entry)

    def report(self) -> str:
        lines = ["", "fastloop stats"]
        for i, loop in enumerate(self.loops):
            st = loop.stats()
            p50, p90, p99 = (st.lag_percentile(q) * 1e3 for q in (50, 90, 99))
            lines.append(
                f"loop {i}: {st.iterations} iterations, {st.callbacks} callbacks, "
                f"{st.io_events} fd events, busy {st.busy_time:.3f} s, "
                f"idle {st.idle_time:.3f} s, utilisation {st.utilisation:.0%}"
            )
            lines.append(
                f"  lag p50 <= {p50:.2f} ms, p90 <= {p90:.2f} ms, p99 <= {p99:.2f} ms, "
                f"max {st.lag_max * 1e3:.2f} ms; {st.slow_callbacks} callbacks "
                f">= {self.threshold * 1e3:g} ms"
            )
        if self.slowest:
            lines.append(f"slowest callbacks (at most {self.top}):")
            for _, _, slow in sorted(self.slowest, key=lambda e: -e[0]):
                lines.extend("  " + line for line in slow.format().splitlines())
        return "\n".join(lines)


_new_event_loop = _policy.new_event_loop


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fastloop stats",
        description="Run a Python program on fastloop and report its loops' statistics "
        "at exit (and on SIGUSR1) on stderr.",
    )
    parser.add_argument("--slow", type=float, default=0.01, metavar="SECONDS",
                        help="report callbacks that run this long or longer (default 0.01)")
    parser.add_argument("--top", type=int, default=5, help="slowest callbacks shown (default 5)")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="draw each loop's utilisation and lag over time into this image "
                        "(needs matplotlib)")
    parser.add_argument("--interval", type=float, default=0.1, metavar="SECONDS",
                        help="with --plot: sample the loops this often (default 0.1)")
    parser.add_argument("script")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.plot is not None and (why := _statsplot.unavailable()):
        parser.error(why)
    if not args.interval > 0:
        parser.error("--interval must be above 0")

    monitor = Monitor(args.slow, args.top)
    # Every fastloop entry point makes its loop through _policy.new_event_loop, and
    # the program reaches it as fastloop.new_event_loop: both names are pointed here.
    import fastloop

    _policy.new_event_loop = fastloop.new_event_loop = monitor.new_event_loop
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # policies, from 3.14
        asyncio.set_event_loop_policy(_policy.Policy())
    signal.signal(signal.SIGUSR1, lambda signum, frame: print(monitor.report(), file=sys.stderr))
    sys.argv = [args.script, *args.args]
    sampler = None if args.plot is None else _statsplot.Sampler(monitor.loops, args.interval)
    try:
        runpy.run_path(args.script, run_name="__main__")
    finally:
        print(monitor.report(), file=sys.stderr)
        if sampler is not None:
            sampler.stop()
            _statsplot.plot(sampler.samples, args.plot)
            print(f"plot: {args.plot}", file=sys.stderr)
    return 0

"""`python -m fastloop stats --plot FILE.png`: lag and utilisation over time.

A daemon thread takes each loop's ``stats()`` every interval (a snapshot may be
taken from any thread); at exit the differences between consecutive snapshots
give, per interval, the utilisation and the lag percentiles of the iterations
that ran in it, drawn with matplotlib (the ``plot`` extra, imported only then).
"""

from __future__ import annotations

import importlib.util
import threading
import time
from typing import Any

from ._stats import LoopStats


def unavailable() -> str | None:
    """Return why a plot cannot be drawn here, or None."""
    if importlib.util.find_spec("matplotlib") is None:
        return "--plot needs matplotlib, which is not installed (pip install 'fastloop[plot]')"
    return None


class Sampler:
    """Snapshots of every loop the program made, every ``interval`` seconds."""

    def __init__(self, loops: list[Any], interval: float) -> None:
        self.loops = loops  # the Monitor's list: it grows as the program makes loops
        self.interval = interval
        self.start = time.monotonic()
        self.samples: list[list[tuple[float, LoopStats]]] = []  # per loop: (t, stats)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fastloop-stats-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        now = time.monotonic() - self.start
        for i, loop in enumerate(list(self.loops)):
            if i == len(self.samples):
                self.samples.append([])
            self.samples[i].append((now, loop.stats()))

    def stop(self) -> None:
        """Stop sampling, and take a last sample."""
        self._done.set()
        self._thread.join()
        self.sample()


def plot(samples: list[list[tuple[float, LoopStats]]], path: str) -> None:
    """Draw utilisation and lag per interval, one line per loop, into ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    fig, (util_ax, lag_ax) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    for i, series in enumerate(samples):
        times, util, p50, p99 = [], [], [], []
        before = series[0][1]
        for t, now in series[1:]:
            # The counters move at polls only: while one callback blocks (or one
            # poll waits) across samples, nothing changed yet, and the interval is
            # drawn when it is accounted for, merged with the next.
            if now.busy_time + now.idle_time == before.busy_time + before.idle_time:
                continue
            step, before = now.delta(before), now
            times.append(t)
            util.append(step.utilisation * 100)
            p50.append(step.lag_percentile(50) * 1e3)
            p99.append(step.lag_percentile(99) * 1e3)
        util_ax.step(times, util, where="pre", color=f"C{i}", label=f"loop {i}")
        lag_ax.step(times, p99, where="pre", color=f"C{i}", label=f"loop {i} p99")
        lag_ax.step(times, p50, where="pre", color=f"C{i}", linestyle=":", label=f"loop {i} p50")
    util_ax.set_ylabel("utilisation (%)")
    util_ax.set_ylim(0, 105)
    lag_ax.set_ylabel("lag (ms, to bucket edges)")
    lag_ax.set_xlabel("seconds since the program started")
    for ax in (util_ax, lag_ax):
        ax.grid(alpha=0.3)
        if samples:
            ax.legend(loc="upper right", fontsize="small")
    fig.suptitle("fastloop stats: per sampling interval")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

"""`--plot FILE.png`: the comparison's speed-ups as horizontal bar charts.

One panel per reference loop (asyncio, and uvloop when it ran): for every workload, a
bar per other loop with the reference's median time divided by that loop's, on a log
scale so that 2x faster and 2x slower are the same length either side of the 1x line.
matplotlib is an optional extra (`pip install 'fastloop[plot]'`), imported only here
and only when a chart is asked for.
"""

from __future__ import annotations

import importlib.util
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runner import Environment, Results

__all__ = ["plot", "unavailable"]

BASES = ("asyncio", "uvloop")


def unavailable() -> str | None:
    """Return why a chart cannot be drawn here, or None."""
    if importlib.util.find_spec("matplotlib") is None:
        return "matplotlib is not installed (pip install 'fastloop[plot]' or matplotlib)"
    return None


def _ratios(results: Results, loop: str, base: str) -> list[float]:
    """Return base/loop per workload (NaN where either did not finish)."""
    ratios: list[float] = []
    for per_loop in results.values():
        own = per_loop.get(loop, {}).get("median")
        ref = per_loop.get(base, {}).get("median")
        ratios.append(ref / own if own and ref else math.nan)
    return ratios


def _minor_label(value: float, _: object) -> str:
    """Label the log axis' minor ticks at 2, 3 and 5 (times a power of ten) only."""
    leading = round(value / 10 ** math.floor(math.log10(value)), 6)
    return f"{value:.2g}x" if leading in (2, 3, 5) else ""


def plot(results: Results, loop_names: list[str], path: str, env: Environment) -> None:
    """Draw the speed-ups of results (runner.compare's) into the image file path."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    workloads = list(results)
    ran = [loop for loop in loop_names
           if any("median" in per_loop.get(loop, {}) for per_loop in results.values())]
    bases = [base for base in BASES if base in ran]
    if not bases or not workloads:
        raise SystemExit("--plot: neither asyncio nor uvloop finished; nothing to compare")
    height = max(3.0, 0.13 * len(workloads) * (len(ran) - 1) + 1.5)
    fig, axes = plt.subplots(1, len(bases), figsize=(6.5 * len(bases), height),
                             sharey=True, squeeze=False)
    positions = range(len(workloads))
    for ax, base in zip(axes[0], bases):
        others = [loop for loop in ran if loop != base]
        bar = 0.8 / len(others)
        for i, loop in enumerate(others):
            offset = (i - (len(others) - 1) / 2) * bar
            ratios = _ratios(results, loop, base)
            ax.barh([p + offset for p in positions], ratios, height=bar, label=loop,
                    color=f"C{loop_names.index(loop)}")
            for p, ratio, workload in zip(positions, ratios, workloads):
                # Say why a bar is missing; a pair never run (c-epoll off the echo
                # workloads) has no entry and needs no word.
                if math.isnan(ratio) and loop in results[workload]:
                    why = "FAILED" if "error" in results[workload].get(loop, {}) else "n/a"
                    ax.text(1.0, p + offset, f" {loop}: {why}", va="center",
                            fontsize="x-small", color="grey")
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.2g}x"))
        ax.xaxis.set_minor_formatter(FuncFormatter(_minor_label))
        ax.tick_params(axis="x", which="minor", labelsize="x-small")
        ax.set_xlabel(f"speed-up vs {base} (its time / the loop's; right of 1x is faster)")
        ax.grid(axis="x", which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize="small")
    axes[0][0].set_yticks(list(positions))
    axes[0][0].set_yticklabels(workloads)
    axes[0][0].set_ylim(len(workloads) - 0.5, -0.5)  # the first workload on top
    fig.suptitle(f"fastloop {env['fastloop']}: median of rounds, CPython {env['python']}, "
                 f"{env['cpus']} CPUs, {env['date'][:10]}")
    fig.tight_layout(rect=(0, 0, 1, 0.97))  # room for the title
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""Compare event loops on the workloads, each sample in a fresh subprocess.

Every (workload, loop) pair runs once per round in a new interpreter, and each round
visits every pair before the next begins, with the loops' order rotated from round to
round. A slow drift of the machine (thermal throttling, a noisy neighbour) therefore
hits every loop alike instead of whichever happened to run last, and no loop inherits
another's heap, caches or imported modules.

Each timed run also records the child's CPU time (`time.process_time()`: user + system,
all its threads). For the networking workloads the client is another process, so this
is the server's CPU alone. A round's CPU sample is the least of its child's runs, and
the table's "cpu us/op" is the median over rounds divided by the operations (for the
echo workloads: server CPU per round trip).

Inside a child the workload runs once untimed on a fresh loop (imports, allocator
warm-up, and a first correctness check; `Workload.warmup` can skip it), then `repeat`
times on fresh loops; the child reports every timing and the parent keeps the best of
them as that round's sample. The
table shows, per pair, the median over rounds, the spread (the median absolute
deviation over rounds, as a percentage of the median: robust to one disturbed round)
and the speed-up relative to asyncio and to uvloop (their median time divided by this
loop's: above 1 is faster).

A loop that is not installed (or does not support this Python), a workload whose
module is missing (httptools), and a pair whose loop lacks a feature
(`NotImplementedError`) are reported as skipped. A wrong outcome is FAILED; it makes
the exit status 1 when the loop is fastloop's or the reference asyncio, and is only
reported for the other loops (uvloop, rloop, zuvloop, and any loop given as
`--loops name=module:factory`).

The echo workloads also run against a plain C epoll echo server ("c-epoll", from
`echoload.c`), the same client driving it: the ceiling. Its CPU is the server
process's, and the table's "of c-epoll" column gives each loop's throughput as a share
of the ceiling's.

A scaling workload (`threads`: a loop per thread) is timed twice, with 1 thread and
with `--threads` N, as the rows "threads_1" and "threads_N"; a second table gives both
throughputs, their ratio, and whether the GIL was on in the sample's process.

    python -m fastloop                    # the default comparison (6-7 min, 2 cores)
    python -m fastloop bench --quick      # the same command; a short run
    python -m fastloop --all --rounds 10 --json results.json --plot ratios.png
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any

from . import cload as _cload
from . import echo as _echo
from . import loops as _loops
from . import plot as _plot
from . import threads as _threads
from . import workloads as _workloads

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Literal, TextIO, TypeAlias, TypedDict

    class Summary(TypedDict, total=False):
        """results[workload][loop]: a summary of the samples, or why there is none."""

        median: float
        min: float
        max: float
        spread: float
        samples: list[float]
        cpu_samples: list[float]
        cpu_median: float | None
        ops: int | None
        gil: bool | None
        error: str
        skipped: str

    Results: TypeAlias = dict[str, dict[str, Summary]]

    class Environment(TypedDict):
        """The machine and interpreter the comparison ran on."""

        python: str
        implementation: str
        platform: str
        machine: str
        cpus: int | None
        fastloop: str
        fastloop_default_core: str
        free_threaded: bool
        date: str
        echo_client: str

# Rounds and timed repeats per child. On a 2-core VM the default took 4.3 minutes
# idle (five loops) and 6.5 at a load average of 4-5; --quick 1.5 (idle, four loops)
# and 2.5. Rounds buy more than repeats: the median over rounds shrugs off a disturbed
# round, while a second run in the same child mostly re-measures the same state (and
# would cost a third more time).
DEFAULT_ROUNDS = 5
DEFAULT_REPEAT = 1
QUICK_ROUNDS = 2
QUICK_REPEAT = 1

# An echo server busy this much of the wall time is (nearly) the bottleneck.
BUSY_ENOUGH = 0.9

# A child that takes longer than this is hung (a lost wake-up, a timer never fired).
CHILD_TIMEOUT = 300.0


# --- the child: one workload on one loop, timings as one JSON line on stdout ----------

def run_child(workload_name: str, loop_spec: str, repeat: int) -> dict[str, Any]:
    """Time workload_name on the loop loop_spec names; return {'times': [...], 'cpu':
    [...], 'ops': n, 'gil': whether the GIL was on}, or {'skipped': reason} if the loop
    lacks a feature the workload needs."""
    if loop_spec == _loops.CEILING:
        return _ceiling_child(workload_name, repeat)
    workload = _workloads.get(workload_name)
    factory = _loops.find(loop_spec)
    loop_name = _loops.label(loop_spec)
    times: list[float] = []
    cpu: list[float] = []
    first_timed = 1 if workload.warmup else 0
    for i in range(first_timed + repeat):
        try:
            timed, loop = workload.prepare(factory)
            try:
                gc.collect()
                cpu_start = time.process_time()
                start = time.perf_counter()
                ops = timed()
                elapsed = time.perf_counter() - start
                cpu_elapsed = time.process_time() - cpu_start
            finally:
                if loop is not None:
                    loop.close()
        except NotImplementedError as exc:
            where = traceback.extract_tb(exc.__traceback__)[-1].name
            return {"skipped": f"{loop_name}: {where}() raised NotImplementedError"
                               f"{': ' + str(exc) if str(exc) else ''}"}
        if i >= first_timed:
            times.append(elapsed)
            cpu.append(cpu_elapsed)
    # Last: importing the loop, or something it did, may have turned the GIL on.
    return {"times": times, "cpu": cpu, "ops": ops, "gil": _threads.gil_enabled()}


def _ceiling_child(workload_name: str, repeat: int) -> dict[str, Any]:
    """run_child for c-epoll: the echo workload's round trips against echoload's
    server, once untimed (a warm-up, as for the loops) and then repeat times."""
    times: list[float] = []
    cpu: list[float] = []
    ops = 0
    try:
        for i in range(1 + repeat):
            elapsed, cpu_elapsed, ops = _echo.run_ceiling(workload_name)
            if i:
                times.append(elapsed)
                cpu.append(cpu_elapsed)
    except _cload.Unavailable as exc:
        return {"skipped": f"{_loops.CEILING}: {exc}"}
    return {"times": times, "cpu": cpu, "ops": ops, "gil": None}


def _applies(workload: str, loop: str) -> bool:
    """Whether the pair is timed at all: c-epoll only serves the echo workloads."""
    return loop != _loops.CEILING or workload in _echo.SESSIONS


def _control_main(argv: list[str]) -> int:
    """Entry point of a control child: time plain Python in 1 and N threads (argv: N),
    print {"single": seconds, "many": seconds} as one JSON line."""
    single, many = _threads.control(int(argv[0]))
    sys.stdout.write(json.dumps({"single": single, "many": many}) + "\n")
    return 0


def _child_main(argv: list[str]) -> int:
    """Entry point of a child process: print the result as one JSON line. A wrong
    outcome is {"failed": message} and exit status 1; a crash, a traceback and 1."""
    workload_name, loop_spec, repeat = argv[0], argv[1], int(argv[2])
    try:
        result = run_child(workload_name, loop_spec, repeat)
    except _workloads.WorkloadError as exc:  # a wrong outcome: its message says it all
        sys.stdout.write(json.dumps({"failed": f"{type(exc).__name__}: {exc}"}) + "\n")
        return 1
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


# --- the parent -----------------------------------------------------------------------

class Progress:
    """One status line on stderr: rewritten in place on a terminal, sparse otherwise."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total = total
        self.done = 0
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self._last_round: int | None = None

    def step(self, round_no: int, rounds: int, workload: str, loop: str) -> None:
        """Report that the sample (round_no, workload, loop) is starting."""
        elapsed = time.monotonic() - self.started
        eta = ""
        if self.done:
            eta = f", ~{elapsed / self.done * (self.total - self.done):.0f}s left"
        line = (f"[round {round_no}/{rounds}] {self.done}/{self.total} samples "
                f"({elapsed:.0f}s{eta}): {workload} on {loop}")
        if self.tty:
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
        elif round_no != self._last_round:
            self.stream.write(line + "\n")
            self.stream.flush()
        self._last_round = round_no
        self.done += 1

    def finish(self) -> None:
        """Clear the status line and say how long the whole run took."""
        elapsed = time.monotonic() - self.started
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(f"{self.done} samples in {elapsed:.0f}s\n")
        self.stream.flush()


def _run_child(args: list[str], cython_core: bool) -> subprocess.CompletedProcess[str]:
    """Run `python -m fastloop._bench.runner *args` and return it, finished.

    Without cython_core the child runs with FASTLOOP_NO_EXTENSIONS=1: it imports the
    fastloop package (the runner is in it), whose default core is the Cython one, and on
    a free-threaded build loading that would turn the GIL on for asyncio's or uvloop's
    threads too (until the core declares it can run without).
    """
    cmd = [sys.executable, "-m", "fastloop._bench.runner", *args]
    env = None if cython_core else {**os.environ, "FASTLOOP_NO_EXTENSIONS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=CHILD_TIMEOUT,
                          stdin=subprocess.DEVNULL, env=env)


def run_control(threads: int) -> float | None:
    """Run one control child; return the scaling of plain Python from 1 thread to
    `threads` (threads * its 1-thread time / its N-thread time), or None if it failed."""
    try:
        proc = _run_child(["--control", str(threads)], cython_core=False)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        scaling: float = threads * result["single"] / result["many"]
    except (subprocess.TimeoutExpired, ValueError, IndexError, KeyError, TypeError,
            ZeroDivisionError):
        return None
    return scaling


def run_sample(workload: str, loop_spec: str, repeat: int) -> tuple[str, Any]:
    """Run one child; return ("ok", {'time', 'cpu', 'ops', 'gil'}), ("skipped", reason)
    or ("failed", error text).

    'time' is the best wall time in seconds, 'cpu' the least CPU time of the same runs,
    'gil' whether the GIL was on in the child (None if it did not say).
    """
    try:
        # A user's loop may be fastloop's: its environment stays as it is.
        proc = _run_child(["--child", workload, loop_spec, str(repeat)],
                          cython_core=loop_spec not in _loops.WITHOUT_CYTHON_CORE)
    except subprocess.TimeoutExpired:
        return "failed", f"timed out after {CHILD_TIMEOUT:.0f}s"
    if proc.returncode != 0:
        try:
            return "failed", json.loads(proc.stdout.strip().splitlines()[-1])["failed"]
        except (ValueError, IndexError, KeyError, TypeError):  # a crash: its traceback
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            return "failed", f"exit code {proc.returncode}:\n{tail}"
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        if "skipped" in result:
            return "skipped", result["skipped"]
        cpu = result.get("cpu") or [None]
        return "ok", {"time": min(result["times"]),
                      "cpu": min(cpu) if None not in cpu else None,
                      "ops": result.get("ops"), "gil": result.get("gil")}
    except (ValueError, IndexError, KeyError) as exc:
        return "failed", f"unreadable child output ({exc!r}): {proc.stdout[-500:]!r}"


def summarize(samples: list[float]) -> Summary:
    """Return {'median', 'min', 'max', 'spread'} of samples (spread: MAD / median)."""
    median = statistics.median(samples)
    mad = statistics.median(abs(sample - median) for sample in samples)
    spread = mad / median if median > 0 else 0.0
    return {"median": median, "min": min(samples), "max": max(samples), "spread": spread}


def geomean(values: list[float]) -> float:
    """Return the geometric mean of positive values."""
    product = 1.0
    for value in values:
        product *= value
    mean: float = product ** (1.0 / len(values))  # float ** float is Any in typeshed
    return mean


def environment() -> Environment:
    """Describe the machine and interpreter, for the header and the JSON file."""
    import fastloop

    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "fastloop": getattr(fastloop, "__version__", "?"),
        "fastloop_default_core": getattr(fastloop, "IMPLEMENTATION", "?"),
        "free_threaded": _threads.free_threaded(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "echo_client": _cload.describe(),
    }


def _per_op(entry: Summary) -> str:
    """Format the median CPU per operation in microseconds, or a dash."""
    cpu, ops = entry.get("cpu_median"), entry.get("ops")
    if cpu is None or not ops:
        return "-"
    micros = cpu / ops * 1e6
    if micros >= 100:
        return f"{micros:.0f}"
    if micros >= 10:
        return f"{micros:.1f}"
    return f"{micros:.2f}"


def _ratio(base: float | None, value: float | None) -> str:
    """Format base/value as a speed-up, or a dash when either is missing."""
    if base is None or value is None or value <= 0:
        return "-"
    return f"{base / value:.2f}x"


def _geomean_cell(results: Results, loop: str, base_name: str) -> str:
    """Return the geometric mean of base/loop over the workloads both completed, as
    text, marked "*" when some workload failed or was skipped for either."""
    ratios: list[float] = []
    partial = False
    for per_loop in results.values():
        own, base = per_loop.get(loop, {}), per_loop.get(base_name, {})
        if "median" in own and "median" in base:
            ratios.append(base["median"] / own["median"])
        else:
            partial = True
    if not ratios:
        return "-"
    return f"{geomean(ratios):.2f}x" + ("*" if partial else "")


def format_table(results: Results, loop_names: list[str]) -> str:
    """Return the comparison table (a str) for results[workload][loop] summaries."""
    header = ["workload", "loop", "median ms", "spread", "cpu us/op", "vs asyncio",
              "vs uvloop"]
    # With the ceiling's rows, each loop's throughput as a share of the ceiling's.
    ceiling = any("median" in per_loop.get(_loops.CEILING, {})
                  for per_loop in results.values())
    if ceiling:
        header.append(f"of {_loops.CEILING}")
    blank = [""] * (len(header) - 3)
    rows: list[list[str] | None] = []
    for workload, per_loop in results.items():
        base_aio = per_loop.get("asyncio", {}).get("median")
        base_uv = per_loop.get("uvloop", {}).get("median")
        base_c = per_loop.get(_loops.CEILING, {}).get("median")
        for loop in loop_names:
            entry = per_loop.get(loop)
            if entry is None:
                continue
            if "error" in entry:
                rows.append([workload, loop, "FAILED", *blank])
                continue
            if "skipped" in entry:
                rows.append([workload, loop, "skipped", *blank])
                continue
            median = entry["median"]
            # One sample has no spread: a dash, never a reassuring "±0.0%".
            spread = f"±{entry['spread'] * 100:.1f}%" if len(entry["samples"]) > 1 else "-"
            cells = [workload, loop, f"{median * 1e3:.1f}", spread, _per_op(entry),
                     _ratio(base_aio, median), _ratio(base_uv, median)]
            if ceiling:
                cells.append(f"{base_c / median:.0%}" if base_c and median > 0 else "-")
            rows.append(cells)
        rows.append(None)
    partial = False
    for loop in loop_names:
        if not any("median" in per_loop.get(loop, {}) for per_loop in results.values()):
            continue
        geomean_row = ["geomean", loop, "", "", ""]
        geomean_row += [_geomean_cell(results, loop, base) for base in ("asyncio", "uvloop")]
        geomean_row += [""] * (len(header) - len(geomean_row))
        partial = partial or any(cell.endswith("*") for cell in geomean_row)
        rows.append(geomean_row)
    widths = [len(h) for h in header]
    for row in rows:
        if row:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row)]

    def line(cells: list[str]) -> str:
        first = [cells[0].ljust(widths[0]), cells[1].ljust(widths[1])]
        rest = [cell.rjust(width) for cell, width in zip(cells[2:], widths[2:])]
        return "  ".join(first + rest).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths)]
    for row in rows:
        out.append(line(row) if row else "")
    if partial:
        out.append("* over the workloads that both loops completed (a FAILED or skipped "
                   "one is left out)")
    return "\n".join(out).rstrip() + "\n"


def format_busy(results: Results) -> str:
    """Return a line on whether the echo rows measured the servers: each server's CPU
    time as a share of its wall time, the range over the echo rows ("" without any).

    A server that is the bottleneck is busy nearly all the time; one busy a fraction of
    it waited for the client, the round trips' latency, or other work on the machine.
    """
    shares: list[float] = []
    for workload, per_loop in results.items():
        for entry in per_loop.values() if workload in _echo.SESSIONS else ():
            cpu, wall = entry.get("cpu_median"), entry.get("median")
            if cpu and wall:
                shares.append(cpu / wall)
    if not shares:
        return ""
    busy = f"{min(shares):.0%}-{max(shares):.0%}" if len(shares) > 1 else f"{shares[0]:.0%}"
    line = f"Echo servers were busy {busy} of the wall time (server CPU / wall time)."
    if max(shares) < BUSY_ENOUGH:
        line += (" Well below 100%: the wall times measure the round trips' latency and "
                 "the other load on this machine more than the servers; compare cpu us/op.")
    return line + "\n"


def _rate(entry: Summary, which: Literal["median", "min"] = "median") -> float | None:
    """Return an entry's operations per second at its median (or best) time, or None."""
    seconds, ops = entry.get(which), entry.get("ops")
    return ops / seconds if seconds and ops else None


def _format_rate(rate: float | None) -> str:
    """Format operations per second as 1.23M or 456k, or a dash."""
    if rate is None:
        return "-"
    return f"{rate / 1e6:.2f}M" if rate >= 1e6 else f"{rate / 1e3:.0f}k"


def format_scaling(results: Results, loop_names: list[str], workload: str, threads: int,
                   free_threaded: bool, controls: Sequence[float] = ()) -> str:
    """Return the table of a scaling workload: per loop, ops/s with 1 thread and with
    `threads` (the rows "<workload>_1" and "<workload>_<threads>"), their ratio at the
    median and at the best rounds, and whether the GIL was on, with notes that say what
    the numbers can mean here: the control's scaling (controls, one per round), and why
    a GIL caps it.

    The best rounds' ratio is there for busy machines: other processes only ever slow a
    run down, and a run in N threads needs N free cores for all of its duration, which a
    shared machine gives in some rounds only; the medians then mostly measure the load.
    """
    single, many = results.get(f"{workload}_1", {}), results.get(f"{workload}_{threads}", {})
    header = ["loop", "1 thread ops/s", "spread", f"{threads} threads ops/s", "spread",
              "scaling", "best", "GIL"]
    rows: list[list[str]] = []
    gil_on: list[str] = []
    for loop in loop_names:
        one, all_ = single.get(loop), many.get(loop)
        if one is None or all_ is None:
            continue
        cells: list[str] = []
        for entry in (one, all_):
            if "median" in entry:
                cells += [_format_rate(_rate(entry)),
                          f"±{entry['spread'] * 100:.1f}%" if len(entry["samples"]) > 1
                          else "-"]
            else:
                cells += ["FAILED" if "error" in entry else "skipped", ""]
        gil = all_.get("gil", one.get("gil"))
        if gil and free_threaded:
            gil_on.append(loop)
        rows.append([loop, *cells, _ratio(_rate(all_), _rate(one)),
                     _ratio(_rate(all_, "min"), _rate(one, "min")),
                     "-" if gil is None else "on" if gil else "off"])
    if not rows:
        return ""
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:])]
        return "  ".join([cells[0].ljust(widths[0]), *rest]).rstrip()

    out = [f"{workload}: {threads} loops in {threads} threads at once against 1; scaling = "
           f"ops/s with {threads} threads / ops/s with 1 (ideal: {threads:.2f}x), at the "
           f"median rounds and at the best (on a busy machine, the closer to what the "
           f"loop can do)",
           line(header), "  ".join("-" * w for w in widths), *(line(row) for row in rows)]
    if controls:
        control = summarize(list(controls))
        rounds = (f"median of {len(controls)} rounds, spread ±{control['spread'] * 100:.1f}%"
                  f", best {control['max']:.2f}x" if len(controls) > 1 else "1 round")
        out.append(f"Control: plain Python (function calls, no loop) in the same threads "
                   f"scaled {control['median']:.2f}x ({rounds}): the most a loop could "
                   f"show on this machine now.")
    if not free_threaded:
        out.append("This interpreter has a GIL: the threads take turns running Python, so "
                   "about 1x (or less) is expected; a free-threaded build (python3.13t+) "
                   "runs the loops in parallel.")
    elif gil_on:
        out.append(f"GIL on: in the processes of {', '.join(gil_on)}, importing the loop "
                   f"turned the GIL on (an extension that does not declare it can run "
                   f"without); PYTHON_GIL=0 keeps it off, at your own risk.")
    return "\n".join(out) + "\n"


def compare(
    workload_names: list[str], loop_names: list[str], rounds: int, repeat: int,
    progress: bool = True, specs: dict[str, str] | None = None,
    control_threads: int | None = None,
) -> tuple[Results, dict[str, str], dict[tuple[str, str], str], list[float]]:
    """Run the comparison; return (results, skipped loops, errors, control scalings).

    results[workload][loop] is a summary, {"error": text} or {"skipped": reason};
    errors maps (workload, loop) to the error text of every failed pair. specs maps a
    loop's name to what the child is told to find (`loops.find`), when that differs
    (a user's "name=module:factory"). With control_threads, each round also runs the
    plain-Python control in 1 and that many threads (`run_control`); the last item is
    its scaling, one per round that it completed.
    """
    specs = specs or {}
    _, skipped = _loops.available([specs.get(name, name) for name in loop_names])
    runnable = [name for name in loop_names if name not in skipped]
    samples: dict[str, dict[str, list[float]]] = {
        w: {loop: [] for loop in runnable} for w in workload_names}
    cpu_samples: dict[str, dict[str, list[float]]] = {
        w: {loop: [] for loop in runnable} for w in workload_names}
    ops: dict[tuple[str, str], int | None] = {}
    gil: dict[tuple[str, str], bool | None] = {}
    errors: dict[tuple[str, str], str] = {}
    unsupported: dict[tuple[str, str], str] = {}
    controls: list[float] = []
    total = rounds * sum(_applies(w, loop) for w in workload_names for loop in runnable)
    status = Progress(total) if progress else None
    for round_index in range(rounds):
        if control_threads:
            scaling = run_control(control_threads)
            if scaling is not None:
                controls.append(scaling)
        # Rotate the loops' order each round so no loop always runs first or last.
        shift = round_index % max(len(runnable), 1)
        order = runnable[shift:] + runnable[:shift]
        for workload in workload_names:
            cap = _workloads.get(workload).max_repeat
            for loop in order:
                if not _applies(workload, loop):
                    continue
                if status:
                    status.step(round_index + 1, rounds, workload, loop)
                if (workload, loop) in errors or (workload, loop) in unsupported:
                    continue  # a failed or skipped pair does the same every round
                outcome, value = run_sample(workload, specs.get(loop, loop),
                                            min(repeat, cap or repeat))
                if outcome == "failed":
                    errors[(workload, loop)] = value
                elif outcome == "skipped":
                    unsupported[(workload, loop)] = value
                else:
                    samples[workload][loop].append(value["time"])
                    if value["cpu"] is not None:
                        cpu_samples[workload][loop].append(value["cpu"])
                    ops[(workload, loop)] = value["ops"]
                    gil[(workload, loop)] = value["gil"]
    if status:
        status.finish()
    results: Results = {}
    for workload in workload_names:
        results[workload] = {}
        for loop in runnable:
            if not _applies(workload, loop):
                continue
            if (workload, loop) in errors:
                results[workload][loop] = {"error": errors[(workload, loop)]}
            elif (workload, loop) in unsupported:
                results[workload][loop] = {"skipped": unsupported[(workload, loop)]}
            else:
                entry = summarize(samples[workload][loop])
                entry["samples"] = samples[workload][loop]
                cpu = cpu_samples[workload][loop]
                entry["cpu_samples"] = cpu
                entry["cpu_median"] = statistics.median(cpu) if cpu else None
                entry["ops"] = ops.get((workload, loop))
                entry["gil"] = gil.get((workload, loop))
                results[workload][loop] = entry
    return results, skipped, errors, controls


def _names(text: str | None, known: list[str], what: str) -> list[str]:
    """Parse a comma-separated selection, keeping known's order; reject unknown names."""
    if not text:
        return list(known)
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return [name for name in known if name in chosen]


def _parser() -> argparse.ArgumentParser:
    """Return the command line's parser."""
    parser = argparse.ArgumentParser(
        prog="python -m fastloop [bench]",
        description="Compare fastloop's cores with asyncio, uvloop, rloop and zuvloop "
                    "(those installed) on this machine, or with a loop of your own "
                    "(--loops name=module:factory). Each sample runs in a fresh process; "
                    "rounds interleave the loops. `bench` is optional: both forms run the "
                    "same comparison.",
    )
    parser.add_argument("--rounds", type=int, default=None,
                        help=f"samples per workload and loop (default {DEFAULT_ROUNDS}, "
                             f"--quick {QUICK_ROUNDS})")
    parser.add_argument("--repeat", type=int, default=None,
                        help=f"timed runs inside each child, best kept (default "
                             f"{DEFAULT_REPEAT}, --quick {QUICK_REPEAT})")
    parser.add_argument("--quick", action="store_true", help=f"a short run ({QUICK_ROUNDS} rounds)")
    parser.add_argument("--all", action="store_true",
                        help="also the extra workloads (more echo sizes and servers; "
                             "threads, on a build with a GIL)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="also draw the speed-ups as a bar chart (needs matplotlib: "
                             "pip install 'fastloop[plot]')")
    parser.add_argument("--workloads", metavar="A,B",
                        help="only these workloads: " + ", ".join(_workloads.WORKLOADS))
    parser.add_argument("--loops", metavar="A,B",
                        help="only these loops: " + ", ".join(_loops.LOOP_NAMES) + ", "
                             + _loops.CEILING + " (a plain C epoll echo server: the "
                             "echo rows' ceiling); "
                             "and any other as " + _loops.SPEC_HELP + ", which each "
                             "sample's process imports and calls for a new loop (its "
                             "wrong outcomes are reported, not fatal)")
    parser.add_argument("--threads", type=int, default=_threads.default_threads(),
                        metavar="N",
                        help="threads (each running its own loop) for the threads "
                             "workload, timed at 1 thread and at N (default: the CPUs, "
                             "at least 2; here %(default)s). It runs by default on a "
                             "free-threaded build, where loops in threads run in "
                             "parallel; elsewhere ask for it (--workloads threads, or "
                             "--all): with a GIL it shows about 1x.")
    parser.add_argument("--list", action="store_true",
                        help="list the workloads and loops, then exit")
    return parser


def _print_list(specs: dict[str, str]) -> None:
    """Print every workload (marking the extra ones) and whether each loop is here."""
    found, skipped = _loops.available(specs.values())
    loop_names = list(specs)
    width = max(12, *(len(name) for name in _workloads.WORKLOADS))
    for workload in _workloads.WORKLOADS.values():
        notes = []
        if workload.extra:
            notes.append("--all")
        missing = workload.missing()
        if missing:
            notes.append(f"skipped: {missing}")
        note = f" [{'; '.join(notes)}]" if notes else ""
        print(f"workload  {workload.name:<{width}} {workload.description}{note}")
    for name in loop_names:
        spec = f" ({specs[name]})" if specs[name] != name else ""
        print(f"loop      {name:<{width}} "
              f"{'available' if name in found else 'skipped: ' + skipped[name]}{spec}")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point of `python -m fastloop [bench]`."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return _child_main(argv[1:])
    if argv[:1] == ["--control"]:
        return _control_main(argv[1:])
    if argv[:1] == ["bench"]:
        argv = argv[1:]
    parser = _parser()
    args = parser.parse_args(argv)

    try:
        specs = _loops.select(args.loops)
    except ValueError as exc:
        parser.error(f"--loops: {exc}")
    for name, spec in specs.items():  # a loop of the user's must be there: say so now
        if spec != name:
            try:
                _loops.find(spec)
            except _loops.Unavailable as exc:
                parser.error(f"--loops {spec}: {exc}")
    loop_names = list(specs)
    if args.list:
        _print_list(specs)
        return 0
    if args.workloads:
        workload_names = _names(args.workloads, list(_workloads.WORKLOADS), "workloads")
    else:
        workload_names = [name for name, workload in _workloads.WORKLOADS.items()
                          if args.all or not workload.extra]
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else DEFAULT_ROUNDS)
    repeat = args.repeat or (QUICK_REPEAT if args.quick else DEFAULT_REPEAT)
    if rounds < 1 or repeat < 1:
        parser.error("--rounds and --repeat must be at least 1")
    if args.threads < 2:
        parser.error("--threads must be at least 2 (the workload compares N threads with 1)")
    if args.plot:
        problem = _plot.unavailable()
        if problem:  # said now, not after minutes of measuring
            parser.error(f"--plot: {problem}")
    missing: dict[str, str] = {}
    for name in workload_names:
        reason = _workloads.WORKLOADS[name].missing()
        if reason:
            missing[name] = reason
    workload_names = [name for name in workload_names if name not in missing]
    # A scaling workload is timed twice, with 1 thread and with --threads.
    scaling = [name for name in workload_names if _workloads.WORKLOADS[name].scales]
    workload_names = [run for name in workload_names for run in (
        [f"{name}_1", f"{name}_{args.threads}"] if name in scaling else [name])]

    env = environment()
    build = " (free-threaded)" if env["free_threaded"] else ""
    print(f"fastloop {env['fastloop']} (default core: {env['fastloop_default_core']}), "
          f"{env['implementation']} {env['python']}{build}, {env['platform']}, "
          f"{env['cpus']} CPUs, {env['date']}")
    print(f"{rounds} rounds x {repeat} timed runs per fresh process; "
          f"time per workload (lower is better), speed-up = other loop's time / this "
          f"one's; cpu us/op = this process's CPU per operation (echo, http: server CPU "
          f"per round trip or request)")
    if any(name in _echo.SESSIONS for name in workload_names):
        print(_cload.describe())
    results, skipped, errors, controls = compare(
        workload_names, loop_names, rounds, repeat, progress=True, specs=specs,
        control_threads=args.threads if scaling else None)
    for name, reason in skipped.items():
        print(f"skipped loop {name}: {reason}")
    for name, reason in missing.items():
        print(f"skipped workload {name}: {reason}")
    print()
    print(format_table(results, loop_names), end="")
    print(format_busy(results), end="")
    for name in scaling:
        print()
        print(format_scaling(results, loop_names, name, args.threads,
                             env["free_threaded"], controls), end="")
    for workload, per_loop in results.items():
        for loop, entry in per_loop.items():
            if "skipped" in entry:
                print(f"\nskipped {workload} on {loop}: {entry['skipped']}")
    for (workload, loop), error in errors.items():
        note = "" if loop in _loops.CHECKED_LOOPS else " (reported only: not our loop)"
        print(f"\nFAILED {workload} on {loop}{note}: {error}")

    if args.json:
        document = {
            "environment": env,
            "rounds": rounds,
            "repeat": repeat,
            "workloads": {w: _workloads.get(w).description for w in workload_names},
            "threads": args.threads,
            "loop_specs": {name: spec for name, spec in specs.items() if spec != name},
            "threads_control_scaling": controls,
            "skipped": skipped,
            "skipped_workloads": missing,
            "results": results,
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=2)
            f.write("\n")
        print(f"\nwrote {args.json}")
    if args.plot:
        _plot.plot(results, loop_names, args.plot, env)
        print(f"wrote {args.plot}")
    return 1 if any(loop in _loops.CHECKED_LOOPS for _, loop in errors) else 0


if __name__ == "__main__":
    sys.exit(main())

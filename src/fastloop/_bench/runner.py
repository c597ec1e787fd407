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
warm-up, and a first correctness check), then `repeat` times on fresh loops; the child
reports every timing and the parent keeps the best of them as that round's sample. The
table shows, per pair, the median over rounds, the spread (the median absolute
deviation over rounds, as a percentage of the median: robust to one disturbed round) and the speed-up relative to asyncio and to uvloop
(their median time divided by this loop's: above 1 is faster).

    python -m fastloop                    # the default comparison (~2 minutes, 2 cores)
    python -m fastloop --quick            # a smoke run
    python -m fastloop --rounds 10 --json results.json
"""

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from . import loops as _loops
from . import workloads as _workloads

# Rounds and timed repeats per child. The default finishes in about two minutes on a
# quiet 2-core machine with all four loops; --quick is a smoke run of under a minute.
DEFAULT_ROUNDS = 5
DEFAULT_REPEAT = 2
QUICK_ROUNDS = 2
QUICK_REPEAT = 1

# A child that takes longer than this is hung (a lost wake-up, a timer never fired).
CHILD_TIMEOUT = 300.0


# --- the child: one workload on one loop, timings as one JSON line on stdout ----------

def run_child(workload_name, loop_name, repeat):
    """Time workload_name on loop_name; return {'times': [...], 'cpu': [...], 'ops': n}."""
    workload = _workloads.get(workload_name)
    factory = _loops.find(loop_name)
    times = []
    cpu = []
    for i in range(repeat + 1):
        loop = factory()
        try:
            gc.collect()
            cpu_start = time.process_time()
            start = time.perf_counter()
            ops = workload.run(loop)
            elapsed = time.perf_counter() - start
            cpu_elapsed = time.process_time() - cpu_start
        finally:
            loop.close()
        if i:  # the first run is the warm-up
            times.append(elapsed)
            cpu.append(cpu_elapsed)
    return {"times": times, "cpu": cpu, "ops": ops}


def _child_main(argv):
    """Entry point of a child process: print the result, or a traceback and exit 1."""
    workload_name, loop_name, repeat = argv[0], argv[1], int(argv[2])
    result = run_child(workload_name, loop_name, repeat)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


# --- the parent -----------------------------------------------------------------------

class Progress:
    """One status line on stderr: rewritten in place on a terminal, sparse otherwise."""

    def __init__(self, total, stream=sys.stderr):
        self.total = total
        self.done = 0
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self._last_round = None

    def step(self, round_no, rounds, workload, loop):
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

    def finish(self):
        """Clear the status line and say how long the whole run took."""
        elapsed = time.monotonic() - self.started
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(f"{self.done} samples in {elapsed:.0f}s\n")
        self.stream.flush()


def run_sample(workload, loop, repeat):
    """Run one child; return ({'time', 'cpu', 'ops'}, None) or (None, error text).

    'time' is the best wall time in seconds, 'cpu' the least CPU time of the same runs.
    """
    cmd = [sys.executable, "-m", "fastloop._bench.runner", "--child", workload, loop,
           str(repeat)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CHILD_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {CHILD_TIMEOUT:.0f}s"
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        return None, f"exit code {proc.returncode}:\n{tail}"
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        cpu = result.get("cpu") or [None]
        return {"time": min(result["times"]), "cpu": min(cpu) if None not in cpu else None,
                "ops": result.get("ops")}, None
    except (ValueError, IndexError, KeyError) as exc:
        return None, f"unreadable child output ({exc!r}): {proc.stdout[-500:]!r}"


def summarize(samples):
    """Return {'median', 'min', 'max', 'spread'} of samples (spread: MAD / median)."""
    median = statistics.median(samples)
    mad = statistics.median(abs(sample - median) for sample in samples)
    spread = mad / median if median > 0 else 0.0
    return {"median": median, "min": min(samples), "max": max(samples), "spread": spread}


def geomean(values):
    """Return the geometric mean of positive values."""
    product = 1.0
    for value in values:
        product *= value
    return product ** (1.0 / len(values))


def environment():
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
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _per_op(entry):
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


def _ratio(base, value):
    """Format base/value as a speed-up, or a dash when either is missing."""
    if base is None or value is None or value <= 0:
        return "-"
    return f"{base / value:.2f}x"


def format_table(results, loop_names):
    """Return the comparison table (a str) for results[workload][loop] summaries."""
    header = ["workload", "loop", "median ms", "spread", "cpu us/op", "vs asyncio",
              "vs uvloop"]
    rows = []
    for workload, per_loop in results.items():
        base_aio = per_loop.get("asyncio", {}).get("median")
        base_uv = per_loop.get("uvloop", {}).get("median")
        for loop in loop_names:
            entry = per_loop.get(loop)
            if entry is None:
                continue
            if "error" in entry:
                rows.append([workload, loop, "FAILED", "", "", "", ""])
                continue
            median = entry["median"]
            # One sample has no spread: a dash, never a reassuring "±0.0%".
            spread = f"±{entry['spread'] * 100:.1f}%" if len(entry["samples"]) > 1 else "-"
            rows.append([
                workload, loop, f"{median * 1e3:.1f}", spread, _per_op(entry),
                _ratio(base_aio, median), _ratio(base_uv, median),
            ])
        rows.append(None)
    # Geometric mean of each loop's speed-ups, over the workloads where both it and the
    # base finished; "-" when some workload is missing, so a failure is never averaged away.
    for loop in loop_names:
        row = ["geomean", loop, "", "", ""]
        for base_name in ("asyncio", "uvloop"):
            ratios = []
            for per_loop in results.values():
                base = per_loop.get(base_name, {}).get("median")
                own = per_loop.get(loop, {}).get("median")
                if base and own:
                    ratios.append(base / own)
            complete = ratios and len(ratios) == len(results)
            row.append(f"{geomean(ratios):.2f}x" if complete else "-")
        if any(loop in per_loop for per_loop in results.values()):
            rows.append(row)
    widths = [len(h) for h in header]
    for row in rows:
        if row:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row)]

    def line(cells):
        first = [cells[0].ljust(widths[0]), cells[1].ljust(widths[1])]
        rest = [cell.rjust(width) for cell, width in zip(cells[2:], widths[2:])]
        return "  ".join(first + rest).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths)]
    for row in rows:
        out.append(line(row) if row else "")
    return "\n".join(out).rstrip() + "\n"


def compare(workload_names, loop_names, rounds, repeat, progress=True):
    """Run the comparison; return (results, skipped, errors)."""
    _, skipped = _loops.available(loop_names)
    runnable = [name for name in loop_names if name not in skipped]
    samples = {w: {loop: [] for loop in runnable} for w in workload_names}
    cpu_samples = {w: {loop: [] for loop in runnable} for w in workload_names}
    ops = {}
    errors = {}
    total = rounds * len(workload_names) * len(runnable)
    status = Progress(total) if progress else None
    for round_index in range(rounds):
        # Rotate the loops' order each round so no loop always runs first or last.
        shift = round_index % max(len(runnable), 1)
        order = runnable[shift:] + runnable[:shift]
        for workload in workload_names:
            for loop in order:
                if status:
                    status.step(round_index + 1, rounds, workload, loop)
                if (workload, loop) in errors:
                    continue  # a failed pair fails every round the same way
                sample, error = run_sample(workload, loop, repeat)
                if error is not None:
                    errors[(workload, loop)] = error
                else:
                    samples[workload][loop].append(sample["time"])
                    if sample["cpu"] is not None:
                        cpu_samples[workload][loop].append(sample["cpu"])
                    ops[(workload, loop)] = sample["ops"]
    if status:
        status.finish()
    results = {}
    for workload in workload_names:
        results[workload] = {}
        for loop in runnable:
            if (workload, loop) in errors:
                results[workload][loop] = {"error": errors[(workload, loop)]}
            else:
                entry = summarize(samples[workload][loop])
                entry["samples"] = samples[workload][loop]
                cpu = cpu_samples[workload][loop]
                entry["cpu_samples"] = cpu
                entry["cpu_median"] = statistics.median(cpu) if cpu else None
                entry["ops"] = ops.get((workload, loop))
                results[workload][loop] = entry
    return results, skipped, errors


def _names(text, known, what):
    """Parse a comma-separated selection, keeping known's order; reject unknown names."""
    if not text:
        return list(known)
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return [name for name in known if name in chosen]


def main(argv=None):
    """Command-line entry point of `python -m fastloop`."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return _child_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m fastloop",
        description="Compare fastloop's cores with asyncio and uvloop. Each sample runs in "
                    "a fresh process; rounds interleave the loops.",
    )
    parser.add_argument("--rounds", type=int, default=None,
                        help=f"samples per workload and loop (default {DEFAULT_ROUNDS}, "
                             f"--quick {QUICK_ROUNDS})")
    parser.add_argument("--repeat", type=int, default=None,
                        help=f"timed runs inside each child, best kept (default "
                             f"{DEFAULT_REPEAT}, --quick {QUICK_REPEAT})")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--workloads", metavar="A,B",
                        help="only these workloads: " + ", ".join(_workloads.WORKLOADS))
    parser.add_argument("--loops", metavar="A,B",
                        help="only these loops: " + ", ".join(_loops.LOOP_NAMES))
    parser.add_argument("--list", action="store_true",
                        help="list the workloads and loops, then exit")
    args = parser.parse_args(argv)

    workload_names = _names(args.workloads, list(_workloads.WORKLOADS), "workloads")
    loop_names = _names(args.loops, list(_loops.LOOP_NAMES), "loops")
    if args.list:
        found, skipped = _loops.available(loop_names)
        width = max(12, *(len(name) for name in _workloads.WORKLOADS))
        for workload in _workloads.WORKLOADS.values():
            print(f"workload  {workload.name:<{width}} {workload.description}")
        for name in loop_names:
            print(f"loop      {name:<{width}} "
                  f"{'available' if name in found else skipped[name]}")
        return 0
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else DEFAULT_ROUNDS)
    repeat = args.repeat or (QUICK_REPEAT if args.quick else DEFAULT_REPEAT)
    if rounds < 1 or repeat < 1:
        parser.error("--rounds and --repeat must be at least 1")

    env = environment()
    print(f"fastloop {env['fastloop']} (default core: {env['fastloop_default_core']}), "
          f"{env['implementation']} {env['python']}, {env['platform']}, "
          f"{env['cpus']} CPUs")
    print(f"{rounds} rounds x {repeat} timed runs per fresh process; "
          f"time per workload (lower is better), speed-up = other loop's time / this "
          f"one's; cpu us/op = this process's CPU per operation (echo: server CPU per "
          f"round trip)")
    results, skipped, errors = compare(workload_names, loop_names, rounds, repeat,
                                       progress=True)
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    print()
    print(format_table(results, loop_names), end="")
    for (workload, loop), error in errors.items():
        print(f"\nFAILED {workload} on {loop}: {error}")

    if args.json:
        document = {
            "environment": env,
            "rounds": rounds,
            "repeat": repeat,
            "workloads": {w: _workloads.WORKLOADS[w].description for w in workload_names},
            "skipped": skipped,
            "results": results,
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=2)
            f.write("\n")
        print(f"\nwrote {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

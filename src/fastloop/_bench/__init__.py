"""Benchmarks shipped inside the package, so `python -m fastloop` works from a wheel.

`workloads` holds the programs that are timed, `loops` the loop factories that can be
compared, and `runner` the comparison that runs each (workload, loop) pair in fresh
subprocesses, round by round.
"""

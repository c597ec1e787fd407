"""Benchmarks shipped inside the package, so `python -m fastloop` works from a wheel.

`workloads` gathers the programs that are timed (its own, `echo`'s and `httpd`'s, all
`base.Workload`s; `echo_client` is the client process of the networking ones), `loops`
the loop factories that can be compared, `runner` the comparison that runs each
(workload, loop) pair in fresh subprocesses, round by round, and `plot` its chart.
"""

"""The engine's hot paths (the same workloads as `python -m fastloop`), per loop.

call_soon (with and without context=), timers, a timer chain with and without 100k idle
far-future timers, sleep(0) switches, future ping-pong, gather of 100k tasks,
call_soon_threadsafe bursts, asyncio.run start/stop (no fd may be left open), and a
loop per thread in 1 and N threads (the threads workload's scaling). Each
workload checks its own outcome and raises if the loop got it wrong; the assert here
also checks that the number of operations it reports is the advertised one.

    PYTHONPATH=src pytest benchmarks/test_bench_core.py --benchmark-only
"""

import pytest

from fastloop._bench import echo as _echo
from fastloop._bench import httpd as _httpd
from fastloop._bench import threads as _threads
from fastloop._bench import workloads as _workloads

NETWORK = {workload.name for workload in _echo.ECHO_WORKLOADS + _httpd.HTTP_WORKLOADS}
# A scaling workload (threads) runs as the runner times it: with 1 thread and with one
# per CPU (at least 2).
CORE_NAMES = [
    run
    for name, workload in _workloads.WORKLOADS.items() if name not in NETWORK
    for run in ([f"{name}_1", f"{name}_{_threads.default_threads()}"] if workload.scales
                else [name])
]


@pytest.mark.parametrize("name", CORE_NAMES)
def test_core(run_workload, name):
    workload = _workloads.get(name)
    assert run_workload(workload) == workload.ops

"""The engine's hot paths (the same workloads as `python -m fastloop`), per loop.

call_soon (with and without context=), timers, a timer chain with and without 100k idle
far-future timers, sleep(0) switches, future ping-pong, gather of 100k tasks,
call_soon_threadsafe bursts, and asyncio.run start/stop (no fd may be left open). Each
workload checks its own outcome and raises if the loop got it wrong; the assert here
also checks that the number of operations it reports is the advertised one.

    PYTHONPATH=src pytest benchmarks/test_bench_core.py --benchmark-only
"""

import pytest

from fastloop._bench import echo as _echo
from fastloop._bench import httpd as _httpd
from fastloop._bench import workloads as _workloads

NETWORK = {workload.name for workload in _echo.ECHO_WORKLOADS + _httpd.HTTP_WORKLOADS}
CORE_NAMES = [name for name in _workloads.WORKLOADS if name not in NETWORK]


@pytest.mark.parametrize("name", CORE_NAMES)
def test_core(run_workload, name):
    workload = _workloads.get(name)
    assert run_workload(workload) == workload.ops

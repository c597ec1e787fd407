"""Networking (the same echo and HTTP workloads as `python -m fastloop`), per loop.

Each echo workload serves on the loop under test while the client process
(`fastloop._bench.echo_client`) does a fixed number of round trips and checks every
byte; each HTTP workload serves HTTP/1.1 on httptools while the same client sends
keep-alive requests (one at a time, or pipelined) and checks every response. The
workload raises if anything went wrong, and the assert here also checks the number of
round trips or requests it reports. Besides the wall time, `extra_info` records the
server's CPU per operation (`cpu_us_per_op`, median of the timed rounds; the client's
CPU is another process's and is not in it).

`test_c_epoll` times the same echo round trips against echoload's plain C epoll echo
server (the runner's "c-epoll" ceiling), and `test_python_client_fallback` runs an echo
workload with the Python client, as where no C compiler is found.

`test_idle_memory` measures the server's memory growth per idle TCP connection
(benchmarks/idle_memory.py, in fresh processes) and records it in `extra_info`.

    PYTHONPATH=src pytest benchmarks/test_bench_net.py --benchmark-only
"""

import os
import statistics
import sys
import time

import pytest

from fastloop._bench import cload as _cload
from fastloop._bench import echo as _echo
from fastloop._bench import httpd as _httpd
from fastloop._bench import loops as _loops
from fastloop._bench import workloads as _workloads

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import idle_memory  # noqa: E402

NET_NAMES = [workload.name for workload in _echo.ECHO_WORKLOADS + _httpd.HTTP_WORKLOADS]
IDLE_CONNS = 1000
# Far above any loop's real cost (about 1-5 KiB): a leak or a runaway buffer trips it.
IDLE_BYTES_PER_CONN_LIMIT = 64 * 1024


@pytest.fixture(scope="module", autouse=True)
def _echo_client():
    """The shared client process lives for this module and is reaped at its end."""
    yield
    _echo.stop_client()


@pytest.mark.parametrize("name", NET_NAMES)
def test_net(run_workload, benchmark, name):
    workload = _workloads.get(name)
    cpu = []

    def timed(loop):
        start = time.process_time()
        ops = workload.run(loop)
        cpu.append(time.process_time() - start)
        return ops

    measured = _workloads.Workload(name, timed, workload.description, workload.ops,
                                   requires=workload.requires)
    assert run_workload(measured) == workload.ops
    timed_rounds = cpu[1:]  # the first is run_workload's untimed warm-up
    benchmark.extra_info["cpu_us_per_op"] = (
        statistics.median(timed_rounds) / workload.ops * 1e6)


@pytest.mark.parametrize("name", sorted(_echo.SESSIONS))
def test_c_epoll(benchmark, name):
    try:
        _cload.build()
    except _cload.Unavailable as exc:
        pytest.skip(f"echoload: {exc}")
    cpu = []

    def run():
        _, server_cpu, ops = _echo.run_ceiling(name)  # raises unless every byte came back
        cpu.append(server_cpu)
        return ops

    assert benchmark.pedantic(run, rounds=3, iterations=1) == _workloads.get(name).ops
    benchmark.extra_info["cpu_us_per_op"] = (
        statistics.median(cpu) / _workloads.get(name).ops * 1e6)


def test_python_client_fallback(monkeypatch):
    # What a machine without a C compiler does: the Python client, and a line saying so.
    monkeypatch.setenv("FASTLOOP_BENCH_CLIENT", "python")
    monkeypatch.setattr(_cload, "_built", None)  # forget this process's echoload
    assert "the Python client" in _cload.describe()
    assert _echo.echo_client() is _echo.client()
    workload = _workloads.get("echo_udp_1k")
    loop = _loops.find("asyncio")()
    try:
        assert workload.run(loop) == workload.ops
    finally:
        loop.close()


@pytest.mark.parametrize("server", idle_memory.SERVERS)
@pytest.mark.parametrize("loop_name", _loops.LOOP_NAMES)
def test_idle_memory(benchmark, loop_name, server):
    try:
        _loops.find(loop_name)
    except _loops.Unavailable as exc:
        pytest.skip(f"{loop_name}: {exc}")
    measured = {}

    def run():
        for what in idle_memory.MEASURES:
            result, error = idle_memory.run_child(loop_name, server, what, IDLE_CONNS)
            assert error is None, f"{what}: {error}"
            measured[what] = result

    benchmark.pedantic(run, rounds=1, iterations=1)
    for what, result in measured.items():
        per_conn = result["per_conn"]
        benchmark.extra_info[f"{what}_bytes_per_conn"] = round(per_conn)
        assert per_conn < IDLE_BYTES_PER_CONN_LIMIT, f"{what}: {per_conn:.0f} B/conn"
    assert measured["tracemalloc"]["per_conn"] > 0

"""pytest-benchmark fixtures: every benchmark runs once per loop that can be made here.

Run with `pytest benchmarks/ --benchmark-only` after `pip install '.[bench]'`. The normal
test run never collects this folder (pyproject's testpaths is ["tests"]). A loop that
cannot be made (uvloop not installed, the Cython core not built) is skipped with the
reason, as the comparison runner does.
"""

import pytest

pytest.importorskip("pytest_benchmark", reason="pip install '.[bench]' for pytest-benchmark")

from fastloop._bench import loops as _loops  # noqa: E402


@pytest.fixture(params=_loops.LOOP_NAMES)
def loop_factory(request):
    """A zero-argument factory of a fresh loop, for each loop that can be made here."""
    try:
        return _loops.find(request.param)
    except _loops.Unavailable as exc:
        pytest.skip(f"{request.param}: {exc}")


@pytest.fixture
def run_workload(loop_factory, benchmark):
    """Benchmark one workload: a fresh loop per round, made and closed outside the timing."""
    made = []

    def setup():
        loop = loop_factory()
        made.append(loop)
        return (loop,), {}

    def run(workload, rounds=5):
        benchmark.extra_info["ops"] = workload.ops
        # One untimed run first warms imports and the allocator, as the runner's children do.
        warm = loop_factory()
        try:
            workload.run(warm)
        finally:
            warm.close()
        results = benchmark.pedantic(workload.run, setup=setup, rounds=rounds, iterations=1)
        return results

    yield run
    for loop in made:
        loop.close()

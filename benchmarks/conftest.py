"""pytest-benchmark fixtures: every benchmark runs once per loop that can be made here.

Run with `pytest benchmarks/ --benchmark-only` after `pip install '.[bench]'`. The normal
test run never collects this folder (pyproject's testpaths is ["tests"]). A loop that
cannot be made (uvloop, rloop or zuvloop not installed, the Cython core not built), a
workload whose module is missing (httptools), and a loop that lacks a feature a workload
needs (`NotImplementedError`) are skipped with the reason, as the comparison runner does.
"""

import pytest

pytest.importorskip("pytest_benchmark", reason="pip install '.[bench]' for pytest-benchmark")

from fastloop._bench import loops as _loops  # noqa: E402
from fastloop._bench.base import WorkloadError  # noqa: E402


def _loop_param(name):
    """A loop's parameter. Another project's loop is not ours to fix: its own resource
    warnings are ignored, and a wrong outcome is an expected failure with the reason
    (run_workload), as the comparison runner reports it without failing."""
    if name in _loops.CHECKED_LOOPS:
        return name
    return pytest.param(name, marks=[
        pytest.mark.filterwarnings("ignore::ResourceWarning"),
        pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    ])


@pytest.fixture(params=[_loop_param(name) for name in _loops.LOOP_NAMES])
def loop_factory(request):
    """A zero-argument factory of a fresh loop, for each loop that can be made here."""
    try:
        return _loops.find(request.param)
    except _loops.Unavailable as exc:
        pytest.skip(f"{request.param}: {exc}")


@pytest.fixture
def run_workload(request, loop_factory, benchmark):
    """Benchmark one workload: its set-up (a fresh loop, and any untimed preparation)
    before each round and the loop's close after it, both outside the timing."""
    loop_name = request.node.callspec.params["loop_factory"]
    open_loops = []

    def run(workload, rounds=5):
        missing = workload.missing()
        if missing:
            pytest.skip(f"{workload.name}: {missing}")
        benchmark.extra_info["ops"] = workload.ops

        def setup():
            timed, loop = workload.prepare(loop_factory)
            if loop is not None:
                open_loops.append(loop)
            return (timed,), {}

        def teardown(timed):
            while open_loops:
                open_loops.pop().close()

        def call(timed):
            return timed()

        # One untimed run first warms imports and the allocator, as the runner's children
        # do, and finds out whether the loop has what the workload needs.
        args, _ = setup()
        try:
            call(*args)
        except NotImplementedError as exc:
            pytest.skip(f"{workload.name}: not implemented by {loop_name}: {exc!r}")
        except WorkloadError as exc:
            if loop_name in _loops.CHECKED_LOOPS:
                raise
            pytest.xfail(f"{loop_name} got {workload.name} wrong: {exc}")
        finally:
            teardown(*args)
        return benchmark.pedantic(call, setup=setup, teardown=teardown, rounds=rounds,
                                  iterations=1)

    yield run
    for loop in open_loops:  # a round that failed left its loop open
        loop.close()

"""The engine's hot paths (the same workloads as `python -m fastloop`), per loop.

Each workload checks its own outcome and raises if the loop got it wrong; the assert
here also checks that the number of operations it reports is the advertised one.
"""

import pytest

from fastloop._bench import workloads as _workloads


@pytest.mark.parametrize("name", list(_workloads.WORKLOADS))
def test_core(run_workload, name):
    workload = _workloads.get(name)
    assert run_workload(workload) == workload.ops

"""CPython's own test_asyncio, run against each core (tests/cpython_suite.py).

Slow next to the rest (about a minute, both cores at once); deselect with
`-m "not cpython_suite"`.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys

import pytest

from helpers import CORE_KINDS

HERE = os.path.dirname(os.path.abspath(__file__))
KNOWN_FAILURES = os.path.join(HERE, "cpython_known_failures.txt")

pytestmark = pytest.mark.cpython_suite


def known_failures(core: str) -> dict[str, str]:
    """Map test id -> reason for the failures listed for `core`."""
    known = {}
    with open(KNOWN_FAILURES) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            test_id, cores, reason = line.split(None, 2)
            if cores == "*" or core in cores.split(","):
                known[test_id] = reason
    return known


@functools.cache
def _cy_import_error() -> str | None:
    """Why fastloop._cy cannot be imported here, or None (asked once: a second import
    of a module whose first import failed on a warning would succeed)."""
    try:
        import fastloop._cy  # noqa: F401
    # On a free-threaded build, a core that does not declare itself safe without the
    # GIL warns on import that the GIL was enabled again: under filterwarnings = error,
    # an error.
    except (ImportError, RuntimeWarning) as exc:
        return repr(exc)
    return None


def _requested_cores(request) -> list[str]:
    """The cores whose test_cpython_suite items this session will run, in order."""
    cores = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if item.module is request.module and callspec is not None:
            core = callspec.params.get("core")
            if core is not None and core not in cores:
                cores.append(core)
    return cores


@pytest.fixture(scope="module")
def suite_runs(request, tmp_path_factory):
    """Start the suite for each requested core at once (one CPU core each), collect lazily.

    Only cores whose test was selected are started (`-k "not cy"` starts one), and
    every pipe is read or closed at teardown: an unread child is killed, not leaked.
    """
    try:
        import test.test_asyncio  # noqa: F401
    except ImportError:
        pytest.skip("this interpreter ships without test.test_asyncio")
    out_dir = tmp_path_factory.mktemp("cpython_suite")
    env = dict(os.environ)
    import fastloop

    src = os.path.dirname(os.path.dirname(os.path.abspath(fastloop.__file__)))
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    procs = {}
    for core in _requested_cores(request):
        if core == "cy" and _cy_import_error() is not None:
            continue  # the test skips itself, with the reason
        json_path = out_dir / f"{core}.json"
        procs[core] = (
            subprocess.Popen(
                [sys.executable, os.path.join(HERE, "cpython_suite.py"), "--core", core,
                 "--json", str(json_path)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
            json_path,
        )
    yield procs
    for proc, _ in procs.values():
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None and not proc.stdout.closed:
            proc.stdout.close()


@pytest.mark.timeout(900)
@pytest.mark.parametrize("core", CORE_KINDS)
def test_cpython_suite(core, suite_runs):
    if core == "cy" and _cy_import_error() is not None:
        pytest.skip(f"fastloop._cy cannot be imported (not built?): {_cy_import_error()}")
    assert core in suite_runs, f"the suite for {core} was not started"
    proc, json_path = suite_runs[core]
    output, _ = proc.communicate(timeout=840)
    print(output)
    assert json_path.exists(), f"the suite died before writing its results:\n{output[-5000:]}"
    with open(json_path) as f:
        records = json.load(f)["tests"]
    known = known_failures(core)
    failed = {t: r for t, r in records.items() if r["outcome"] in ("failed", "error")}
    unexpected = {t: r for t, r in failed.items() if t not in known}
    fixed = sorted(t for t in known if t in records and t not in failed)
    if fixed:
        print("known failures that now pass (remove them from the list):", *fixed, sep="\n  ")
    assert not unexpected, "\n\n".join(f"{t}\n{r['detail']}" for t, r in sorted(unexpected.items()))

"""The public API: fastloop.run, new_event_loop, Policy, install, IMPLEMENTATION."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import warnings

import pytest

import fastloop

# Where the fastloop under test lives (the source tree or an install).
SRC = os.path.dirname(os.path.dirname(os.path.abspath(fastloop.__file__)))


# Python 3.14 deprecates event loop policies: asyncio's policy functions and names
# warn there, and so do fastloop's policy API (the Policy class, install()).
POLICIES_DEPRECATED = sys.version_info >= (3, 14)


@contextlib.contextmanager
def policy_api(*names: str):
    """Expect a DeprecationWarning for each policy API in `names` on 3.14+, none before.

    On 3.14+ every warning must come from this file (the caller's line), so that the
    user sees where they used the deprecated API.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    if not POLICIES_DEPRECATED:
        assert not deprecations, [str(w.message) for w in deprecations]
        return
    for name in names:
        assert any(name in str(w.message) for w in deprecations), (name, [str(w.message) for w in caught])
    for w in deprecations:
        assert w.filename == __file__, (w.filename, str(w.message))


async def running_loop():
    await asyncio.sleep(0)
    return asyncio.get_running_loop()


def test_public_names():
    for name in ("Loop", "new_event_loop", "install", "run", "IMPLEMENTATION"):
        assert hasattr(fastloop, name), name
    with policy_api("fastloop.Policy"):
        assert hasattr(fastloop, "Policy")
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        fastloop.Nope
    assert fastloop.IMPLEMENTATION in ("cython", "python")


def test_new_event_loop():
    loop = fastloop.new_event_loop()
    try:
        assert isinstance(loop, fastloop.Loop)
        assert isinstance(loop, asyncio.AbstractEventLoop)
        assert loop.run_until_complete(running_loop()) is loop
    finally:
        loop.close()


def test_run():
    loop = fastloop.run(running_loop())
    assert isinstance(loop, fastloop.Loop)
    assert loop.is_closed()


def test_run_propagates_exception():
    async def fail():
        raise KeyError("x")

    with pytest.raises(KeyError):
        fastloop.run(fail())


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.run(loop_factory=) is new in Python 3.12")
def test_asyncio_run_with_loop_factory():
    loop = asyncio.run(running_loop(), loop_factory=fastloop.new_event_loop)
    assert isinstance(loop, fastloop.Loop)
    assert loop.is_closed()


def test_asyncio_runner_with_loop_factory():
    if sys.version_info < (3, 11):
        pytest.skip("asyncio.Runner is new in Python 3.11")
    with asyncio.Runner(loop_factory=fastloop.new_event_loop) as runner:
        assert isinstance(runner.get_loop(), fastloop.Loop)
        assert runner.run(running_loop()) is runner.get_loop()


def test_policy():
    with policy_api("fastloop.Policy"):
        policy = fastloop.Policy()
    with policy_api("AbstractEventLoopPolicy"):
        assert isinstance(policy, asyncio.AbstractEventLoopPolicy)
    with policy_api("set_event_loop_policy"):
        asyncio.set_event_loop_policy(policy)
    loop = asyncio.new_event_loop()
    try:
        assert isinstance(loop, fastloop.Loop)
    finally:
        loop.close()
        with policy_api("set_event_loop_policy"):
            asyncio.set_event_loop_policy(None)


def test_policy_import_warns_from_the_importing_line():
    with policy_api("fastloop.Policy"):
        from fastloop import Policy
    loop = Policy().new_event_loop()
    try:
        assert isinstance(loop, fastloop.Loop)
    finally:
        loop.close()


def test_policy_with_asyncio_run():
    with policy_api("fastloop.Policy", "set_event_loop_policy"):
        asyncio.set_event_loop_policy(fastloop.Policy())
    try:
        loop = asyncio.run(running_loop())
    finally:
        with policy_api("set_event_loop_policy"):
            asyncio.set_event_loop_policy(None)
    assert isinstance(loop, fastloop.Loop)


def test_install():
    with policy_api("fastloop.install"):
        fastloop.install()
    try:
        with policy_api("get_event_loop_policy", "fastloop.Policy"):
            assert isinstance(asyncio.get_event_loop_policy(), fastloop.Policy)
        loop = asyncio.new_event_loop()
        try:
            assert isinstance(loop, fastloop.Loop)
        finally:
            loop.close()
    finally:
        with policy_api("set_event_loop_policy"):
            asyncio.set_event_loop_policy(None)


def test_star_import_is_silent():
    # On 3.14+ Policy is not in __all__ (as asyncio's policy names are not), so a
    # star import does not warn; before, it is there.
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exec("from fastloop import *", namespace)
    assert ("Policy" in namespace) is not POLICIES_DEPRECATED
    assert namespace["run"] is fastloop.run


def test_modern_entry_points_do_not_warn():
    """fastloop.run, new_event_loop, loop_factory= and Runner never touch policies."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert isinstance(fastloop.run(running_loop()), fastloop.Loop)
        loop = fastloop.new_event_loop()
        loop.run_until_complete(running_loop())
        loop.close()
        if sys.version_info >= (3, 11):
            with asyncio.Runner(loop_factory=fastloop.new_event_loop) as runner:
                runner.run(running_loop())
        if sys.version_info >= (3, 12):
            asyncio.run(running_loop(), loop_factory=fastloop.new_event_loop)
    assert not caught, [f"{w.category.__name__}: {w.message}" for w in caught]


def _implementation_in_subprocess(env_extra: dict) -> str:
    env = {k: v for k, v in os.environ.items() if k != "FASTLOOP_NO_EXTENSIONS"}
    env.update(env_extra)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-c", "import fastloop; print(fastloop.IMPLEMENTATION)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip()


def test_env_switch_forces_python():
    assert _implementation_in_subprocess({"FASTLOOP_NO_EXTENSIONS": "1"}) == "python"


def test_default_is_cython_when_built():
    try:
        import fastloop._cy  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"fastloop._cy cannot be imported (not built?): {exc!r}")
    assert _implementation_in_subprocess({}) == "cython"

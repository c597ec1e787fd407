"""The public API: fastloop.run, new_event_loop, Policy, install, IMPLEMENTATION."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

import fastloop

# Where the fastloop under test lives (the source tree or an install).
SRC = os.path.dirname(os.path.dirname(os.path.abspath(fastloop.__file__)))


async def running_loop():
    await asyncio.sleep(0)
    return asyncio.get_running_loop()


def test_public_names():
    for name in ("Loop", "new_event_loop", "Policy", "install", "run", "IMPLEMENTATION"):
        assert hasattr(fastloop, name), name
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
    policy = fastloop.Policy()
    assert isinstance(policy, asyncio.AbstractEventLoopPolicy)
    asyncio.set_event_loop_policy(policy)
    loop = asyncio.new_event_loop()
    try:
        assert isinstance(loop, fastloop.Loop)
    finally:
        loop.close()
        asyncio.set_event_loop_policy(None)


def test_policy_with_asyncio_run():
    asyncio.set_event_loop_policy(fastloop.Policy())
    try:
        loop = asyncio.run(running_loop())
    finally:
        asyncio.set_event_loop_policy(None)
    assert isinstance(loop, fastloop.Loop)


def test_install():
    fastloop.install()
    try:
        assert isinstance(asyncio.get_event_loop_policy(), fastloop.Policy)
        loop = asyncio.new_event_loop()
        try:
            assert isinstance(loop, fastloop.Loop)
        finally:
            loop.close()
    finally:
        asyncio.set_event_loop_policy(None)


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

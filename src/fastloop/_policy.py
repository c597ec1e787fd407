"""Ways to get fastloop loops: ``new_event_loop``, ``run``, ``Policy`` and ``install``.

Python 3.14 deprecates event loop policies (removal planned for 3.16): the
public policy names and get/set_event_loop_policy() warn there. ``run`` and
``new_event_loop`` never touch policies, so they never warn; on 3.14+ looking up
``fastloop.Policy`` warns (as looking up ``asyncio.DefaultEventLoopPolicy`` does,
see __init__.py) and so does ``install``, each from the caller's line.
"""

from __future__ import annotations

import asyncio
import sys
import warnings
from asyncio import coroutines, events
from collections.abc import Coroutine
from typing import Any, TypeVar

from ._loop import Loop

_T = TypeVar("_T")

if sys.version_info >= (3, 14):
    # The platform default adds nothing but its loop class there, and the
    # public name (asyncio.DefaultEventLoopPolicy) warns when looked up.
    _DefaultPolicy = events._BaseDefaultEventLoopPolicy
else:
    # On Unix this keeps the child watcher API of 3.10-3.13 working.
    _DefaultPolicy = asyncio.DefaultEventLoopPolicy


def new_event_loop(*, backend: str | None = None) -> asyncio.AbstractEventLoop:
    """Return a new fastloop event loop.

    ``backend="io_uring"`` asks for the io_uring backend (Linux, opt-in), and fails
    with the reason where it is unavailable. By default the loop uses the one the
    environment variable FASTLOOP_BACKEND names, falling back with a warning, or
    else the platform's (epoll, kqueue). ``loop.backend`` says which runs.
    """
    # Loop is typed as asyncio's ABC (fastloop._loop.loop_class_for); its __init__ is
    # LoopMixin's, which takes `backend`.
    return Loop(backend=backend)  # type: ignore[call-arg]


class Policy(_DefaultPolicy):
    """asyncio's default event loop policy, except that it makes fastloop loops."""

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        """Return a new fastloop event loop."""
        return new_event_loop()


def warn_policy_deprecated(name: str, stacklevel: int = 3) -> None:
    """Warn, from the caller's caller's line, that policy API ``name`` is deprecated.

    The warning asyncio 3.14 gives for its own policy names, plus the way out.
    """
    warnings.warn(
        f"{name!r} is deprecated and slated for removal in Python 3.16, as asyncio's "
        "event loop policies are; use fastloop.run(main()) or "
        "asyncio.run(main(), loop_factory=fastloop.new_event_loop)",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def install() -> None:
    """Set a fastloop Policy as asyncio's event loop policy.

    Deprecated on Python 3.14+, as policies are: prefer ``fastloop.run(main())``
    or ``asyncio.run(main(), loop_factory=fastloop.new_event_loop)``.
    """
    if sys.version_info >= (3, 14):
        warn_policy_deprecated("fastloop.install")
        # The private setter: the warning above is the one the caller should see.
        events._set_event_loop_policy(Policy())
    else:
        asyncio.set_event_loop_policy(Policy())


def _check_not_running() -> None:
    """Refuse, with asyncio.run()'s error, to nest inside a running loop."""
    if events._get_running_loop() is not None:
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")


if sys.version_info >= (3, 11):

    def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None) -> _T:
        """Run coroutine ``main`` in a new fastloop loop and return its result.

        asyncio.run() with fastloop's loop: the loop is not set as the current
        event loop, and is closed after remaining tasks are cancelled and async
        generators and the default executor are shut down.
        """
        _check_not_running()
        with asyncio.Runner(loop_factory=new_event_loop, debug=debug) as runner:
            return runner.run(main)

else:
    from asyncio.runners import _cancel_all_tasks  # type: ignore[attr-defined]

    def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None) -> _T:
        """Run coroutine ``main`` in a new fastloop loop and return its result.

        What asyncio.Runner(loop_factory=...) does on 3.11+, built from the
        pieces 3.10's asyncio.run() uses (there is no Runner, and so no special
        SIGINT handling, on 3.10).
        """
        _check_not_running()
        if not coroutines.iscoroutine(main):
            raise ValueError(f"a coroutine was expected, got {main!r}")
        loop = new_event_loop()
        try:
            if debug is not None:
                loop.set_debug(debug)
            return loop.run_until_complete(main)
        finally:
            try:
                _cancel_all_tasks(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()

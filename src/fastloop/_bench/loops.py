"""The event loops a benchmark can compare, each made by a zero-argument factory.

`find(name)` returns a factory or raises `Unavailable` with a reason a person can act
on ("uvloop is not installed", "the Cython core is not built: ..."). Nothing here is
imported until it is asked for, so a child process that benchmarks asyncio never pays
for importing uvloop, and a broken core only skips its own column.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from .base import LoopFactory

__all__ = ["CHECKED_LOOPS", "LOOP_NAMES", "Unavailable", "available", "find"]

# The order of the table's rows within a workload.
LOOP_NAMES = ("fastloop-cy", "fastloop-py", "uvloop", "rloop", "asyncio")
# The loops whose wrong outcome is an error of ours: fastloop's, and the reference. The
# others' (a competitor leaking fds, say) are reported, and fail nothing.
CHECKED_LOOPS = ("fastloop-cy", "fastloop-py", "asyncio")


class Unavailable(Exception):
    """This loop cannot be made here; the message says why."""


def _fastloop(core_name: str) -> LoopFactory:
    """Return the Loop class for the core fastloop.<core_name>."""
    try:
        core = importlib.import_module(f"fastloop.{core_name}")
        from fastloop._loop import loop_class_for
        return loop_class_for(core)
    except ImportError as exc:
        what = "the Cython core is not built" if core_name == "_cy" else "cannot import it"
        raise Unavailable(f"{what}: {exc}") from None
    except Exception as exc:  # a broken core skips its own column, loudly
        raise Unavailable(f"failed to load: {exc!r}") from None


def _uvloop() -> LoopFactory:
    """Return uvloop's loop factory."""
    try:
        import uvloop
    except ImportError:
        raise Unavailable("uvloop is not installed (pip install uvloop)") from None
    factory: LoopFactory = uvloop.new_event_loop  # Any when uvloop is not installed
    return factory


def _rloop() -> LoopFactory:
    """Return rloop's loop factory (an optional competitor, in Rust)."""
    try:
        import rloop
    except ImportError:
        raise Unavailable("rloop is not installed (pip install rloop)") from None
    factory: LoopFactory = rloop.new_event_loop  # Any when rloop is not installed
    return factory


def _asyncio() -> LoopFactory:
    """Return stock asyncio's default loop class for this platform."""
    # SelectorEventLoop is the default on POSIX; naming it avoids the policy machinery
    # (deprecated in 3.14) and any policy a user installed.
    return asyncio.SelectorEventLoop


_FINDERS: dict[str, Callable[[], LoopFactory]] = {
    "fastloop-cy": lambda: _fastloop("_cy"),
    "fastloop-py": lambda: _fastloop("_py"),
    "uvloop": _uvloop,
    "rloop": _rloop,
    "asyncio": _asyncio,
}


def find(name: str) -> LoopFactory:
    """Return a zero-argument factory for the loop called name, or raise Unavailable."""
    try:
        finder = _FINDERS[name]
    except KeyError:
        raise Unavailable(f"unknown loop {name!r}; known: {', '.join(LOOP_NAMES)}") from None
    return finder()


def available(
    names: Iterable[str] = LOOP_NAMES,
) -> tuple[dict[str, LoopFactory], dict[str, str]]:
    """Return ({name: factory} for the loops that can be made, {name: reason} for the rest)."""
    found: dict[str, LoopFactory] = {}
    skipped: dict[str, str] = {}
    for name in names:
        try:
            found[name] = find(name)
        except Unavailable as exc:
            skipped[name] = str(exc)
    return found, skipped

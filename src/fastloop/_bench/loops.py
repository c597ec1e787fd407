"""The event loops a benchmark can compare, each made by a zero-argument factory.

`find(name)` returns a factory or raises `Unavailable` with a reason a person can act
on ("uvloop is not installed", "the Cython core is not built: ..."). Nothing here is
imported until it is asked for, so a child process that benchmarks asyncio never pays
for importing uvloop, and a broken core only skips its own column.

Besides the built-in names, a loop can be named "name=module:factory" (`--loops
myloop=mypkg.loop:new_event_loop`): `find` imports module and calls its factory, in
whichever process asks, so any loop can be compared without editing this file.

"c-epoll" (`CEILING`) is no loop: it names echoload's plain C epoll echo server, which
the runner times on the echo workloads only, as the ceiling the loops are compared with.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import re
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from .base import LoopFactory

__all__ = ["CEILING", "CHECKED_LOOPS", "LOOP_NAMES", "SPEC_HELP", "WITHOUT_CYTHON_CORE", "Unavailable",
           "available", "find", "label", "select"]

# The order of the table's rows within a workload.
LOOP_NAMES = ("fastloop-cy", "fastloop-io_uring", "fastloop-py", "uvloop", "rloop", "zuvloop",
              "asyncio")
# The plain C epoll echo server: the echo rows' ceiling, compared by default.
CEILING = "c-epoll"
# The loops whose wrong outcome is an error of ours: fastloop's, the reference, and our
# C echo server. The others' (a competitor leaking fds, say) are reported, and fail
# nothing.
CHECKED_LOOPS = ("fastloop-cy", "fastloop-io_uring", "fastloop-py", "asyncio", CEILING)
# The built-in loops that never use fastloop's Cython core: the runner keeps the core
# out of their processes (FASTLOOP_NO_EXTENSIONS), because on a free-threaded build
# loading it turns the GIL on for everything in the process.
WITHOUT_CYTHON_CORE = (*(name for name in LOOP_NAMES
                         if name not in ("fastloop-cy", "fastloop-io_uring")), CEILING)


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


def _fastloop_io_uring() -> LoopFactory:
    """Return a factory of Cython-core loops on the io_uring backend (docs/io_uring.md),
    if this kernel and its sandbox allow io_uring."""
    # The Loop class, whose __init__ (LoopMixin's) takes the backend.
    loop_class: Callable[..., asyncio.AbstractEventLoop] = _fastloop("_cy")
    try:
        loop_class(backend="io_uring").close()
    except RuntimeError as exc:
        raise Unavailable(str(exc)) from None
    return functools.partial(loop_class, backend="io_uring")


def _installed(module: str, attribute: str, requires: tuple[int, int] | None = None,
               ) -> LoopFactory:
    """Return module.attribute, a competitor's loop factory, if the module is installed
    and supports this interpreter (requires: the least Python version it supports)."""
    if requires is not None and sys.version_info < requires:
        raise Unavailable(f"{module} needs Python {requires[0]}.{requires[1]}+ "
                          f"(this is {sys.version_info[0]}.{sys.version_info[1]})")
    try:
        imported = importlib.import_module(module)
    except ImportError as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name == module:
            raise Unavailable(f"{module} is not installed (pip install {module})") from None
        raise Unavailable(f"cannot import {module}: {exc}") from None  # a broken install
    factory: LoopFactory = getattr(imported, attribute)
    return factory


def _asyncio() -> LoopFactory:
    """Return stock asyncio's default loop class for this platform."""
    # SelectorEventLoop is the default on POSIX; naming it avoids the policy machinery
    # (deprecated in 3.14) and any policy a user installed.
    return asyncio.SelectorEventLoop


def _ceiling() -> LoopFactory:
    """Return a factory that refuses to make a loop, once echoload is known to build:
    the runner times c-epoll on the echo workloads (echo.run_ceiling) and nothing else."""
    from . import cload

    try:
        cload.build()
    except cload.Unavailable as exc:
        raise Unavailable(f"echoload unavailable: {exc}") from None

    def no_loop() -> asyncio.AbstractEventLoop:
        raise NotImplementedError("c-epoll is a C echo server, not an event loop")
    return no_loop


_FINDERS: dict[str, Callable[[], LoopFactory]] = {
    "fastloop-cy": lambda: _fastloop("_cy"),
    "fastloop-io_uring": _fastloop_io_uring,
    "fastloop-py": lambda: _fastloop("_py"),
    "uvloop": lambda: _installed("uvloop", "new_event_loop"),
    # rloop is in Rust; zuvloop is libuv driven from Zig, and ships for 3.14+ only.
    "rloop": lambda: _installed("rloop", "new_event_loop"),
    "zuvloop": lambda: _installed("zuvloop", "new_event_loop", requires=(3, 14)),
    "asyncio": _asyncio,
    CEILING: _ceiling,
}

# A loop of the user's, "name=module:factory": a table name, a module to import and a
# (dotted) attribute of it. The name is kept to characters that read well in a table
# and cannot be mistaken for the spec's punctuation.
_SPEC = re.compile(r"(?P<name>[\w.+-]+)=(?P<module>\w+(?:\.\w+)*):(?P<attribute>\w+(?:\.\w+)*)")
SPEC_HELP = "name=module:factory (e.g. myloop=mypkg.loop:new_event_loop)"


def label(spec: str) -> str:
    """Return the table name of a loop given by name or by "name=module:factory"."""
    return spec.partition("=")[0]


def _parse(spec: str) -> tuple[str, str, str]:
    """Split "name=module:factory" into its three parts, or raise ValueError."""
    match = _SPEC.fullmatch(spec)
    if match is None:
        raise ValueError(f"bad loop spec {spec!r}: expected {SPEC_HELP}")
    name, module, attribute = match.group("name", "module", "attribute")
    if name in _FINDERS:
        raise ValueError(f"bad loop spec {spec!r}: {name!r} is a built-in loop's name; "
                         f"choose another")
    return name, module, attribute


def _custom(spec: str) -> LoopFactory:
    """Import the factory a "name=module:factory" spec names; check that it makes loops."""
    _, module_name, attribute = _parse(spec)
    try:
        found: object = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or whatever the module raised at import
        raise Unavailable(f"cannot import {module_name}: {exc!r}") from None
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise Unavailable(f"{module_name} has no attribute {attribute}") from None
    if not callable(found):
        raise Unavailable(f"{module_name}:{attribute} is a {type(found).__name__}, "
                          f"not a callable that returns a loop")
    factory = found

    def checked() -> asyncio.AbstractEventLoop:
        # A factory that returns something else would fail somewhere obscure.
        loop = factory()
        if not isinstance(loop, asyncio.AbstractEventLoop):
            raise TypeError(f"{module_name}:{attribute}() returned a "
                            f"{type(loop).__name__}, not an asyncio event loop")
        return loop

    return checked


def select(text: str | None) -> dict[str, str]:
    """Parse a --loops selection: return {table name: spec}, the built-in loops in
    LOOP_NAMES's order, then the user's "name=module:factory" ones in theirs.

    A spec is what `find` takes, in this process or a sample's (for a built-in loop, its
    name). Raise ValueError, with a message for a person, for an unknown name, a
    malformed spec, or a name given twice.
    """
    if not text:
        return {name: name for name in (*LOOP_NAMES, CEILING)}
    chosen = [item.strip() for item in text.split(",") if item.strip()]
    custom: dict[str, str] = {}
    unknown: list[str] = []
    for item in chosen:
        if "=" in item or ":" in item:
            name = _parse(item)[0]
            if name in custom:
                raise ValueError(f"loop name {name!r} is given twice in --loops")
            custom[name] = item
        elif item not in _FINDERS:
            unknown.append(item)
    if unknown:
        raise ValueError(f"unknown loops: {', '.join(unknown)} (known: "
                         f"{', '.join(LOOP_NAMES)}, {CEILING}; or {SPEC_HELP})")
    return {**{name: name for name in (*LOOP_NAMES, CEILING) if name in chosen}, **custom}


def find(spec: str) -> LoopFactory:
    """Return a zero-argument factory for the loop a spec names (a built-in loop's name,
    or "name=module:factory"), or raise Unavailable."""
    if "=" in spec:
        try:
            return _custom(spec)
        except ValueError as exc:
            raise Unavailable(str(exc)) from None
    try:
        finder = _FINDERS[spec]
    except KeyError:
        raise Unavailable(f"unknown loop {spec!r}; known: {', '.join(LOOP_NAMES)}") from None
    return finder()


def available(
    specs: Iterable[str] = LOOP_NAMES,
) -> tuple[dict[str, LoopFactory], dict[str, str]]:
    """Return ({name: factory} for the loops that can be made, {name: reason} for the
    rest), each keyed by its table name."""
    found: dict[str, LoopFactory] = {}
    skipped: dict[str, str] = {}
    for spec in specs:
        try:
            found[label(spec)] = find(spec)
        except Unavailable as exc:
            skipped[label(spec)] = str(exc)
    return found, skipped

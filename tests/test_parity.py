"""The two cores are twins, and the loop implements the whole AbstractEventLoop."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from helpers import import_core, loop_class

CORE_NAMES = ["CoreLoop", "Handle", "TimerHandle", "TimerQueue", "Poller", "Waker", "READ", "WRITE"]
CLASSES = ["CoreLoop", "Handle", "TimerHandle", "TimerQueue", "Poller", "Waker"]


def _methods(cls) -> set[str]:
    """Public and single-underscore callables of `cls` (dunders and Cython's own left out)."""
    names = set()
    for name in dir(cls):
        if name.startswith("__") or name.endswith("_cython__"):
            continue
        attr = inspect.getattr_static(cls, name)
        if isinstance(attr, (staticmethod, classmethod)) or callable(attr):
            names.add(name)
    return names


@pytest.mark.parametrize("kind", ["cy", "py"])
def test_core_exports(kind):
    core = import_core(kind)
    for name in CORE_NAMES:
        assert hasattr(core, name), f"fastloop._{kind} lacks {name}"
    if hasattr(core, "__all__"):
        assert sorted(core.__all__) == sorted(CORE_NAMES)


def test_cores_have_same_constants():
    cy, py = import_core("cy"), import_core("py")
    assert (cy.READ, cy.WRITE) == (py.READ, py.WRITE)


@pytest.mark.parametrize("cls", CLASSES)
def test_cores_have_same_methods(cls):
    cy, py = import_core("cy"), import_core("py")
    cy_methods, py_methods = _methods(getattr(cy, cls)), _methods(getattr(py, cls))
    assert cy_methods == py_methods, (
        f"{cls}: only in _cy: {sorted(cy_methods - py_methods)}; "
        f"only in _py: {sorted(py_methods - cy_methods)}"
    )


def _abstract_methods() -> list[str]:
    return sorted(
        name
        for name, attr in vars(asyncio.AbstractEventLoop).items()
        if not name.startswith("__") and callable(attr)
    )


def _not_yet_implemented() -> set[str]:
    from fastloop._loop import NOT_YET_IMPLEMENTED

    return set(NOT_YET_IMPLEMENTED)


@pytest.mark.parametrize("kind", ["cy", "py"])
def test_loop_implements_abstract_event_loop(kind):
    cls = loop_class(kind)
    assert issubclass(cls, asyncio.AbstractEventLoop)
    inherited = {
        name
        for name in _abstract_methods()
        if getattr(cls, name) is getattr(asyncio.AbstractEventLoop, name)
    }
    # Whatever is still AbstractEventLoop's own stub raises NotImplementedError; that set
    # must be exactly the documented list (and the list names real methods).
    assert inherited == _not_yet_implemented()


def _dummy_args(fn) -> list:
    sig = inspect.signature(fn)
    return [
        None
        for p in list(sig.parameters.values())[1:]
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]


@pytest.mark.parametrize("kind", ["cy", "py"])
def test_not_yet_implemented_methods_raise(kind):
    cls = loop_class(kind)
    loop = cls()
    try:
        for name in sorted(_not_yet_implemented()):
            method = getattr(cls, name)
            with pytest.raises(NotImplementedError):
                result = method(loop, *_dummy_args(method))
                if inspect.iscoroutine(result):
                    loop.run_until_complete(result)
    finally:
        loop.close()

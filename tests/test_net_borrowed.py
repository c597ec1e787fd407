"""The asyncio methods the loop borrows find, on our loop, everything they use.

`_loop.py` and `_net.py` bind methods of asyncio's own loop classes to ours, so that
each interpreter keeps its own semantics. That holds only while those methods touch
nothing but what our loop provides; a new Python release may change what they touch.
These tests read every borrowed code object of the running interpreter.
"""

from __future__ import annotations

import asyncio
import dis
import types
from asyncio import base_events, selector_events, unix_events

import pytest

from helpers import loop_class

ASYNCIO_LOOP_CLASSES = (
    base_events.BaseEventLoop,
    selector_events.BaseSelectorEventLoop,
    unix_events._UnixSelectorEventLoop,
)


def _borrowed(cls) -> dict[str, types.FunctionType]:
    """The functions of `cls` (through its MRO) that are asyncio's loop methods."""
    found = {}
    for klass in reversed(cls.__mro__):
        for name, attr in vars(klass).items():
            if isinstance(attr, types.FunctionType) and any(
                vars(aio).get(name) is attr for aio in ASYNCIO_LOOP_CLASSES
            ):
                found[name] = attr
            else:
                found.pop(name, None)  # overridden further down the MRO
    return found


def _attribute_names(code: types.CodeType) -> set[str]:
    """Every attribute name loaded or stored by `code` and the code nested in it."""
    names = {
        ins.argval
        for ins in dis.get_instructions(code)
        if ins.opname in ("LOAD_ATTR", "LOAD_METHOD", "STORE_ATTR")
    }
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _attribute_names(const)
    return names


@pytest.fixture(params=["cy", "py"])
def loop_and_borrowed(request):
    cls = loop_class(request.param)
    loop = cls()
    yield loop, _borrowed(cls)
    loop.close()


def test_networking_methods_are_borrowed(loop_and_borrowed):
    _, borrowed = loop_and_borrowed
    for name in ("create_connection", "create_server", "start_tls", "create_unix_server"):
        assert name in borrowed


def test_borrowed_methods_find_every_loop_attribute_they_use(loop_and_borrowed):
    loop, borrowed = loop_and_borrowed
    reference = asyncio.SelectorEventLoop()
    try:
        # Names asyncio's own loop has are the ones a borrowed method may mean on self.
        missing = {
            f"{name} uses {attr}"
            for name, fn in borrowed.items()
            for attr in _attribute_names(fn.__code__)
            if hasattr(reference, attr) and not hasattr(loop, attr)
        }
    finally:
        reference.close()
    assert not missing, sorted(missing)


def test_borrowed_methods_do_not_use_zero_argument_super(loop_and_borrowed):
    # super() inside asyncio's class would look for that class in our MRO and fail.
    _, borrowed = loop_and_borrowed
    users = sorted(name for name, fn in borrowed.items() if "__class__" in fn.__code__.co_freevars)
    assert users == []

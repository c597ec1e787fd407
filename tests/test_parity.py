"""The two cores keep the same contract (docs/core.md), and the loop is a whole AbstractEventLoop.

What is compared is what the contract promises: the exported names, the public
methods of each exported class, and the few underscore names that the mixin and
asyncio itself read (listed in docs/core.md). Private helpers are each core's own
business: the Cython core keeps its hot paths in C, the Python core in methods.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import types
import weakref

import pytest

from helpers import import_core, loop_class

TRANSPORTS = ["SocketTransport", "DatagramTransport", "ReadPipeTransport", "WritePipeTransport"]
CLASSES = ["CoreLoop", "Handle", "TimerHandle", "TimerQueue", "Poller", "Waker", *TRANSPORTS]
CORE_NAMES = [*CLASSES, "READ", "WRITE"]

# The underscore names of docs/core.md and docs/transports.md: methods the mixin calls, and state it reads or
# writes, with the value a fresh loop has.
CORELOOP_PRIVATE_METHODS = [
    "_check_closed",
    "_check_thread",
    "_check_callback",
    "_add_callback",
    "_timer_handle_cancelled",
    "_write_to_self",
    "_run_until_stopped",
    # docs/observability.md
    "_stats_counters",
    "_reset_stats",
    # docs/transports.md
    "_ensure_fd_no_transport",
    "_add_reader",
    "_add_writer",
    "_remove_reader",
    "_remove_writer",
    "_make_socket_transport",
    "_make_datagram_transport",
    "_make_read_pipe_transport",
    "_make_write_pipe_transport",
]
CORELOOP_STATE = {
    "_debug": False,
    "_thread_id": None,
    "_stopping": False,
    "_closed": False,
    "_current_handle": None,
    "_clock_resolution": time.get_clock_info("monotonic").resolution,
    "slow_callback_duration": 0.1,
}
HANDLE_PRIVATE_METHODS = ["_run", "_repr_info"]
HANDLE_ATTRIBUTES = ["_callback", "_args", "_cancelled", "_loop", "_source_traceback", "_context"]
TIMER_ATTRIBUTES = HANDLE_ATTRIBUTES + ["_when", "_scheduled"]


def _public_methods(cls) -> set[str]:
    """Names of the public callables of `cls` (properties and data left out)."""
    names = set()
    for name in dir(cls):
        if name.startswith("_"):
            continue
        attr = inspect.getattr_static(cls, name)
        if isinstance(attr, (staticmethod, classmethod)) or callable(attr):
            names.add(name)
    return names


def _exported(core) -> set[str]:
    """Public names of a core package, its submodules left out."""
    return {
        name
        for name in dir(core)
        if not name.startswith("_") and not isinstance(getattr(core, name), types.ModuleType)
    }


@pytest.mark.parametrize("kind", ["cy", "py"])
def test_core_exports(kind):
    core = import_core(kind)
    assert sorted(core.__all__) == sorted(CORE_NAMES)
    assert _exported(core) == set(CORE_NAMES)


def test_cores_have_same_constants():
    cy, py = import_core("cy"), import_core("py")
    assert (cy.READ, cy.WRITE) == (py.READ, py.WRITE)


@pytest.mark.parametrize("cls", CLASSES)
def test_cores_have_same_public_methods(cls):
    cy, py = import_core("cy"), import_core("py")
    cy_methods = _public_methods(getattr(cy, cls))
    py_methods = _public_methods(getattr(py, cls))
    assert cy_methods == py_methods, (
        f"{cls}: only in _cy: {sorted(cy_methods - py_methods)}; "
        f"only in _py: {sorted(py_methods - cy_methods)}"
    )


@pytest.fixture
def core_loop(core):
    """A bare CoreLoop of the parametrised core (no mixin)."""
    loop = core.CoreLoop()
    yield loop
    loop.close()


def test_coreloop_private_contract(core_loop):
    for name in CORELOOP_PRIVATE_METHODS:
        assert callable(getattr(core_loop, name, None)), name
    for name, fresh in CORELOOP_STATE.items():
        assert hasattr(core_loop, name), name
        assert getattr(core_loop, name) == fresh, name


def test_coreloop_transport_table(core_loop):
    # Weak, as asyncio's: a transport nobody holds any more does not own its fd.
    assert isinstance(core_loop._transports, weakref.WeakValueDictionary)
    assert len(core_loop._transports) == 0


def test_coreloop_state_is_writable_where_the_mixin_writes_it(core_loop):
    core_loop._debug = True
    core_loop._thread_id = 1234
    core_loop._stopping = True
    core_loop.slow_callback_duration = 0.5
    assert (core_loop.get_debug(), core_loop.is_running()) == (True, True)
    assert core_loop.slow_callback_duration == 0.5
    core_loop._thread_id = None
    core_loop._stopping = False
    core_loop._debug = False


def test_handle_private_contract(core, core_loop):
    handle = core.Handle(print, (1,), core_loop)
    timer = core.TimerHandle(5.0, print, (2,), core_loop)
    for obj, attributes in ((handle, HANDLE_ATTRIBUTES), (timer, TIMER_ATTRIBUTES)):
        for name in HANDLE_PRIVATE_METHODS:
            assert callable(getattr(obj, name, None)), (type(obj), name)
        for name in attributes:
            assert hasattr(obj, name), (type(obj), name)
    assert (handle._callback, handle._args, handle._cancelled, handle._loop) == (
        print,
        (1,),
        False,
        core_loop,
    )
    assert (timer._when, timer._scheduled) == (5.0, False)


def _abstract_methods() -> list[str]:
    return sorted(
        name
        for name, attr in vars(asyncio.AbstractEventLoop).items()
        if not name.startswith("__") and callable(attr)
    )


@pytest.mark.parametrize("kind", ["cy", "py"])
def test_loop_implements_abstract_event_loop(kind):
    cls = loop_class(kind)
    assert issubclass(cls, asyncio.AbstractEventLoop)
    inherited = {
        name
        for name in _abstract_methods()
        if getattr(cls, name) is getattr(asyncio.AbstractEventLoop, name)
    }
    # AbstractEventLoop's own methods are stubs raising NotImplementedError: none is left.
    assert inherited == set()

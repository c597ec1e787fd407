"""A loop dropped without close() is freed by the cycle collector, as asyncio's is.

asyncio: every handle refers to its loop (`_loop`), and the loop to its queued handles,
so a loop dropped with anything scheduled is a reference cycle. One gc.collect() frees
it: `BaseEventLoop.__del__` warns ResourceWarning "unclosed event loop <...>" and closes
the loop; a task still pending in it reports "Task was destroyed but it is pending!"
to the loop's exception handler. The Cython core keeps its queue and timer heap in C
arrays and the handles it makes outside the collector, so it needs its own traverse
(src/fastloop/_cy/gcsupport.pyx); these tests hold both cores to asyncio's behaviour.

One difference is allowed: when a queued handle is also held elsewhere (a stored
handle, the timer of a pending asyncio.sleep), the Cython core frees the dropped loop at
the second full collection after the loop last ran, not the first (why: gcsupport.pyx,
point 2). Those cases collect twice; asyncio's loop is gone after the first.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import socket
import warnings
import weakref

import pytest

from helpers import run_briefly


def noop(*args: object) -> None:
    pass


class Holder:
    """Something of the user's that keeps a handle and the loop (a cycle through both)."""

    loop: asyncio.AbstractEventLoop
    handle: asyncio.Handle


def queued_call_soon(loop, keep):
    loop.call_soon(noop, loop)


def queued_timer(loop, keep):
    loop.call_later(3600, noop, loop)


def registered_reader(loop, keep):
    a, b = socket.socketpair()
    keep.extend([a, b])  # closed by the test: only the loop is dropped
    loop.add_reader(a, noop, loop)


def threadsafe_call(loop, keep):
    loop.call_soon_threadsafe(noop, loop)


LOOP_VAR: contextvars.ContextVar = contextvars.ContextVar("loop")


def threadsafe_call_context(loop, keep):
    # The cycle runs through the context the handle copied (the loop in a variable).
    context = contextvars.copy_context()
    context.run(LOOP_VAR.set, loop)
    context.run(loop.call_soon_threadsafe, noop)


def held_threadsafe_call(loop, keep):
    holder = Holder()
    holder.loop = loop
    holder.handle = loop.call_soon_threadsafe(noop, holder)


def held_call_soon(loop, keep):
    holder = Holder()
    holder.loop = loop
    holder.handle = loop.call_soon(noop, holder)


def held_timer(loop, keep):
    holder = Holder()
    holder.loop = loop
    holder.handle = loop.call_later(3600, noop, holder)


def sleeping_task(loop, keep):
    # asyncio.sleep keeps its TimerHandle in its frame: a handle held by someone else.
    loop.create_task(asyncio.sleep(3600))
    run_briefly(loop)


# Handles only the loop holds: one collection.
LOOP_ONLY = [queued_call_soon, queued_timer, registered_reader, threadsafe_call,
             threadsafe_call_context]
# Handles held elsewhere too: two collections (see the module's docstring).
HELD = [held_call_soon, held_timer, sleeping_task, held_threadsafe_call]
CASES = LOOP_ONLY + HELD


def drop_loop(factory, setup, keep: list, messages: list) -> weakref.ref:
    """Make a loop, let `setup` schedule things on it, and drop it; return a weakref."""
    loop = factory()
    # Messages only: a recorded context would keep its task, and so the loop, alive.
    loop.set_exception_handler(lambda loop, context: messages.append(context["message"]))
    setup(loop, keep)
    return weakref.ref(loop)


@pytest.mark.parametrize("setup", CASES, ids=[f.__name__ for f in CASES])
def test_dropped_loop_is_collected(make_loop, setup):
    """gc.collect() frees the loop; the warnings and handler calls are asyncio's."""
    keep: list = []
    messages: list = []
    gc.collect()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ref = drop_loop(make_loop.factory, setup, keep, messages)
            for _ in range(2 if setup in HELD else 1):
                gc.collect()
    finally:
        for sock in keep:
            sock.close()
    assert ref() is None, f"{make_loop.kind}: the dropped loop survived gc.collect()"
    warned = [(w.category, str(w.message).split(" <")[0]) for w in caught]
    assert warned == [(ResourceWarning, "unclosed event loop")]
    expected = ["Task was destroyed but it is pending!"] if setup is sleeping_task else []
    assert messages == expected


def test_collection_leaves_a_live_loop_alone(loop):
    """A collection while handles are queued, shared or not, changes nothing they do."""
    ran = []
    holder = Holder()
    holder.loop = loop
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "held, in its context")
    loop.call_soon(ran.append, "soon")
    holder.handle = loop.call_soon(lambda: ran.append(var.get("context lost")), context=ctx)
    del ctx  # the handle's is the only reference left
    timer = loop.call_later(0, ran.append, "timer")
    cancelled = loop.call_later(0, ran.append, "cancelled")
    cancelled.cancel()
    gc.collect()
    run_briefly(loop, 2)
    gc.collect()
    assert ran == ["soon", "held, in its context", "timer"]
    assert not timer.cancelled() and not holder.handle.cancelled()


def test_dropped_loop_with_a_transport_is_collected(make_loop):
    """A loop dropped with an open socket transport (reader and, with a write buffer,
    writer registered): asyncio frees it at the first collection, warning about the loop
    and the transport. The order in which the collector runs finalisers is its own, so a
    socket may also warn before its transport closes it (asyncio's does, here): only
    'unclosed ...' ResourceWarnings are allowed beside those two."""
    keep: list = []
    gc.collect()

    def drop() -> weakref.ref:
        loop = make_loop.factory()
        ours, peer = socket.socketpair()
        keep.append(peer)
        transport, _ = loop.run_until_complete(
            loop.create_connection(asyncio.Protocol, sock=ours))
        transport.write(b"x" * (1 << 24))  # more than the socket takes at once
        return weakref.ref(loop)

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ref = drop()
            gc.collect()
    finally:
        keep[0].close()
    assert ref() is None
    warned = {(w.category, str(w.message).split(" <")[0]) for w in caught}
    assert {(ResourceWarning, "unclosed event loop"), (ResourceWarning, "unclosed transport")} <= warned
    assert all(category is ResourceWarning and message.startswith("unclosed")
               for category, message in warned)


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_soon_threadsafe"])
@pytest.mark.parametrize("cancel", [False, True], ids=["ran", "cancelled"])
def test_object_keeping_its_own_handle_is_collected(loop, method, cancel):
    # `self.timer = loop.call_later(delay, self.tick)`: a cycle through the handle
    # (object -> handle -> bound method -> object) that only the collector can free
    # once the object is dropped, the loop still open.
    class Owner:
        def tick(self) -> None:
            pass

    owner = Owner()
    delay = (0,) if method == "call_later" else ()
    owner.handle = getattr(loop, method)(*delay, owner.tick)  # type: ignore[attr-defined]
    if cancel:
        owner.handle.cancel()  # type: ignore[attr-defined]
    ref = weakref.ref(owner)
    del owner
    run_briefly(loop)
    gc.collect()
    assert ref() is None

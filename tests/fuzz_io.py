"""What the transport fuzzers of tests/test_fuzz.py share: payloads, steps, settling."""

from __future__ import annotations

import time

from hypothesis import strategies as st

# The loop runs until this many iterations in a row change nothing, twice, with a
# short sleep in between (a loopback packet is normally delivered in the send call).
QUIET_ITERATIONS = 3
QUIET_SLEEP = 0.001
SETTLE_LIMIT = 5000  # iterations; a program still busy then has a runaway callback
MAX_STEPS = 12


def steps(calls: st.SearchStrategy) -> st.SearchStrategy:
    """Lists of (side, call name, *args): side 0 or 1 makes a call drawn from `calls`."""
    step = st.tuples(st.integers(0, 1), calls).map(lambda t: (t[0], *t[1]))
    return st.lists(step, max_size=MAX_STEPS)


def payload(kind: str, size: int, start: int):
    """`size` bytes of a stream from offset `start`, as a `kind` object."""
    data = bytes((start + i) * 7 % 251 for i in range(size))
    if kind == "bytearray":
        return bytearray(data)
    if kind == "memoryview":
        return memoryview(data)
    return data


class Caller:
    """Makes a step's call on `self.transport`, noting what it returned or raised.

    A subclass has `note(text)` and may make some calls its own way in `make_call`.
    """

    transport = None

    def call(self, name: str, *args) -> None:
        try:
            result = self.make_call(name, *args)
        except Exception as exc:
            self.note(f"{name}{args!r} raised {type(exc).__name__}: {exc}")
        else:
            self.note(f"{name}{args!r} -> {result!r}")

    def make_call(self, name: str, *args):
        return getattr(self.transport, name)(*args)


class Stage:
    """A loop whose exception handler logs, and the events its actors note."""

    def __init__(self, factory) -> None:
        self.loop = factory()
        # Copied when a program ends: what the garbage collector reports later (a
        # task or future it collects) comes whenever it runs.
        self.handler_calls: list[str] = []
        self.loop.set_exception_handler(
            lambda loop, ctx: self.handler_calls.append(
                f"{ctx['message']}: {ctx.get('exception')!r}"))
        self.events: list = []  # one entry an event: progress is its length
        self.settled = True

    def settle(self) -> None:
        """Run the loop until it is quiet (remembering if it never was)."""
        loop = self.loop
        quiet = rounds = 0
        for _ in range(SETTLE_LIMIT):
            before = len(self.events)
            loop.stop()
            loop.run_forever()
            quiet = quiet + 1 if len(self.events) == before else 0
            if quiet >= QUIET_ITERATIONS:
                rounds += 1
                if rounds == 2:
                    return
                time.sleep(QUIET_SLEEP)
                quiet = 0
        self.settled = False

    def play(self, actors: list, program_steps: list) -> None:
        """Make each step's call on its actor, settling after each; close them all."""
        self.settle()
        for side, name, *args in program_steps:
            actors[side].call(name, *args)
            self.settle()
        for actor in actors:
            actor.transport.close()
        self.settle()

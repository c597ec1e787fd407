"""Differential tests: random programs run on cy, py and stock asyncio log the same events.

A program is a tree of callbacks generated up front from a seed. Each callback logs
its name, then acts: it schedules children (call_soon, call_soon_threadsafe from the
loop's own thread, call_at, call_later), cancels earlier callbacks or tasks, stops the
loop, starts tasks (which log, await asyncio.sleep(0) and await futures that other
callbacks resolve), or raises. Everything a program does has one order that asyncio
defines, so the logs of the three loops must be identical.

Timers sit on a grid of SLOT seconds after the program's start, each slot used at most
once (stock asyncio does not order equal deadlines), and a timer is only ever
scheduled into a slot later than the one its scheduler runs in. What runs within one
slot (call_soon chains, task steps) takes a few loop iterations, far less than a slot.
A machine loaded enough to stall the process for a slot breaks that premise, not the
loop: each run checks that every callback ran within its slot, and one that did not
is run again (the reference too) rather than compared.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import pytest

from helpers import loop_class

SEEDS = range(50)
# Spacing of the timer grid: the margin that keeps timer order deterministic.
SLOT = 0.02
NSLOTS = 5  # slots 1..NSLOTS; a program lasts at most about NSLOTS * SLOT seconds
MAX_NODES = 40
# A program that has not finished by then is stuck (a lost callback): fail, never hang.
GUARD = 10.0
# Runs of one program, at most, until one keeps every callback within its slot.
ATTEMPTS = 5


@dataclass
class Node:
    """A callback of the program: its name, how it is scheduled, and what it does."""

    name: str
    how: str = "soon"  # soon, threadsafe, at, later
    slot: int = 0  # the timer slot it runs in (its scheduler's for soon/threadsafe)
    actions: list = field(default_factory=list)
    resolves: str | None = None  # the future this callback resolves, if any


@dataclass
class TaskSpec:
    name: str
    steps: list  # ("sleep0",) | ("await", future name) | ("log", text)


class Generator:
    """Builds a random program from a seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.nodes: list[Node] = []
        self.tasks: list[TaskSpec] = []
        self.free_slots = set(range(1, NSLOTS + 1))
        self.nfutures = 0

    def node(self, slot: int, depth: int, resolves: str | None = None) -> Node | None:
        """A new callback scheduled by one running in `slot`; None if none can be made."""
        if len(self.nodes) >= MAX_NODES:
            return None
        rng = self.rng
        how = rng.choice(["soon", "soon", "threadsafe", "at", "later"])
        if how in ("at", "later"):
            later = sorted(s for s in self.free_slots if s > slot)
            if not later:
                how = "soon"
            else:
                slot = rng.choice(later)
                self.free_slots.discard(slot)
        node = Node(f"cb{len(self.nodes)}", how, slot, resolves=resolves)
        self.nodes.append(node)
        self.fill(node, depth)
        return node

    def fill(self, node: Node, depth: int) -> None:
        rng = self.rng
        for _ in range(rng.randint(0, 4 if depth < 3 else 2)):
            kind = rng.choice(
                ["child", "child", "child", "cancel", "cancel", "task", "stop", "raise"]
            )
            if kind == "child" and depth < 4:
                child = self.node(node.slot, depth + 1)
                if child is not None:
                    node.actions.append(("schedule", child))
            elif kind == "cancel" and (self.nodes or self.tasks):
                targets = [n.name for n in self.nodes if n.resolves is None and n is not node]
                targets += [t.name for t in self.tasks]
                if targets:
                    node.actions.append(("cancel", rng.choice(targets)))
            elif kind == "task" and len(self.tasks) < 6:
                self.task(node, depth)
            elif kind == "stop":
                node.actions.append(("stop",))
            elif kind == "raise":
                node.actions.append(("raise",))

    def task(self, node: Node, depth: int) -> None:
        """A task started by `node`, with the callbacks that resolve its futures."""
        rng = self.rng
        spec = TaskSpec(f"task{len(self.tasks)}", [])
        self.tasks.append(spec)
        node.actions.append(("task", spec))
        for _ in range(rng.randint(1, 4)):
            step = rng.choice(["sleep0", "sleep0", "await", "log"])
            if step == "await":
                future = f"fut{self.nfutures}"
                self.nfutures += 1
                resolver = self.node(node.slot, depth + 1, resolves=future)
                if resolver is None:
                    continue
                node.actions.append(("future", future))
                node.actions.append(("schedule", resolver))
                spec.steps.append(("await", future))
            elif step == "log":
                spec.steps.append(("log", f"{spec.name} says {rng.randrange(100)}"))
            else:
                spec.steps.append(("sleep0",))

    def program(self) -> Node:
        root = Node("root")
        self.fill(root, 0)
        # Always some timers, so that every program mixes them with the rest.
        for _ in range(self.rng.randint(1, 3)):
            child = self.node(0, 1)
            if child is not None:
                root.actions.append(("schedule", child))
        return root


class Runner:
    """Runs a program on one loop and records its event log."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.log: list[str] = []
        self.pending: set[str] = set()  # callbacks and tasks that have yet to finish
        self.handles: dict[str, object] = {}  # name -> Handle/TimerHandle/Task
        self.futures: dict[str, asyncio.Future] = {}
        self.t0 = 0.0
        self.stuck = False
        self.late: list[str] = []  # callbacks that ran after their slot had ended
        loop.set_exception_handler(self.exception_handler)

    def exception_handler(self, loop, context) -> None:
        exc = context.get("exception")
        self.log.append(f"handler: {exc!r}" if exc is not None else context["message"])

    def schedule(self, node: Node) -> None:
        loop = self.loop
        if node.how == "soon":
            handle = loop.call_soon(self.run_node, node)
        elif node.how == "threadsafe":
            handle = loop.call_soon_threadsafe(self.run_node, node)
        elif node.how == "at":
            handle = loop.call_at(self.t0 + node.slot * SLOT, self.run_node, node)
        else:
            delay = self.t0 + node.slot * SLOT - loop.time()
            handle = loop.call_later(delay, self.run_node, node)
        self.handles[node.name] = handle
        self.pending.add(node.name)

    def finished(self, name: str) -> None:
        self.pending.discard(name)
        if not self.pending:
            self.loop.stop()

    def run_node(self, node: Node) -> None:
        self.log.append(node.name)
        if self.loop.time() >= self.t0 + (node.slot + 1) * SLOT:
            self.late.append(node.name)
        try:
            if node.resolves is not None:
                future = self.futures[node.resolves]
                if future.done():
                    self.log.append(f"{node.resolves} done, cancelled={future.cancelled()}")
                else:
                    future.set_result(node.name)
            for action in node.actions:
                self.act(node, action)
        finally:
            self.finished(node.name)

    def act(self, node: Node, action: tuple) -> None:
        kind = action[0]
        if kind == "schedule":
            self.schedule(action[1])
        elif kind == "cancel":
            target = self.handles.get(action[1])
            if target is None:
                self.log.append(f"cancel {action[1]}: not scheduled")
                return
            result = target.cancel()
            self.log.append(f"cancel {action[1]}: {result!r} {target.cancelled()!r}")
            if target.cancelled() and not isinstance(target, asyncio.Task):
                self.finished(action[1])
        elif kind == "stop":
            self.log.append(f"{node.name} stops the loop")
            self.loop.stop()
        elif kind == "future":
            self.futures[action[1]] = self.loop.create_future()
        elif kind == "task":
            spec = action[1]
            task = self.loop.create_task(self.run_task(spec))
            # A task cancelled before its first step never runs its body: report
            # the end from a done callback, which every task gets.
            task.add_done_callback(lambda t, name=spec.name: self.task_done(name, t))
            self.handles[spec.name] = task
            self.pending.add(spec.name)
        elif kind == "raise":
            raise ValueError(f"{node.name} raises")

    async def run_task(self, spec: TaskSpec) -> None:
        self.log.append(f"{spec.name} starts")
        try:
            for step in spec.steps:
                if step[0] == "sleep0":
                    await asyncio.sleep(0)
                    self.log.append(f"{spec.name} slept")
                elif step[0] == "await":
                    result = await self.futures[step[1]]
                    self.log.append(f"{spec.name} got {result} from {step[1]}")
                else:
                    self.log.append(step[1])
        except asyncio.CancelledError:
            self.log.append(f"{spec.name} cancelled")
            raise

    def task_done(self, name: str, task: asyncio.Task) -> None:
        self.log.append(f"{name} done, cancelled={task.cancelled()}")
        self.finished(name)

    def guard(self) -> None:
        self.log.append(f"stuck with {sorted(self.pending)} pending")
        self.stuck = True
        self.loop.stop()

    def run(self, root: Node) -> list[str]:
        loop = self.loop
        guard = loop.call_later(GUARD, self.guard)
        self.t0 = loop.time()
        self.schedule(root)
        while True:
            loop.run_forever()
            self.log.append("stopped")
            if not self.pending or self.stuck:
                break
        guard.cancel()
        for task in self.handles.values():
            if isinstance(task, asyncio.Task) and not task.done():
                task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        return self.log


def _run(factory, seed: int) -> list[str]:
    """The program's log on a fresh loop from factory, from a run that kept to the grid."""
    late: list[str] = []
    for _ in range(ATTEMPTS):
        root = Generator(seed).program()
        loop = factory()
        try:
            runner = Runner(loop)
            log = runner.run(root)
        finally:
            loop.close()
        if not runner.late:
            return log
        late = runner.late
    pytest.fail(f"seed {seed}: in each of {ATTEMPTS} runs some callbacks ran after their "
                f"timer slot ended (last run: {late}); the machine stalls the process "
                f"longer than SLOT={SLOT}s")


_reference_logs: dict[int, list[str]] = {}


def _reference_log(seed: int) -> list[str]:
    """The program's log on stock asyncio (run once per seed, shared by both cores)."""
    if seed not in _reference_logs:
        log = _run(asyncio.SelectorEventLoop, seed)
        assert not any(entry.startswith("stuck") for entry in log), log
        _reference_logs[seed] = log
    return _reference_logs[seed]


@pytest.mark.parametrize("kind", ["cy", "py"])
@pytest.mark.parametrize("seed", SEEDS)
def test_random_program_logs_the_same_as_asyncio(seed, kind):
    factory = loop_class(kind)  # skips cy, saying why, when it is not built
    assert _run(factory, seed) == _reference_log(seed), f"seed {seed}: {kind} differs"


def test_programs_are_varied():
    """The generator makes what the docstring promises (a guard against a dull seed set)."""
    kinds: set[str] = set()
    hows: set[str] = set()
    for seed in SEEDS:
        gen = Generator(seed)
        gen.program()
        hows |= {n.how for n in gen.nodes}
        for n in gen.nodes:
            kinds |= {a[0] for a in n.actions}
            if any(s[0] == "await" for t in gen.tasks for s in t.steps):
                kinds.add("await")
    assert hows == {"soon", "threadsafe", "at", "later"}
    assert {"schedule", "cancel", "stop", "task", "future", "raise", "await"} <= kinds

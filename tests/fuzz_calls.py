"""Programs of callbacks, timers, futures and tasks for tests/test_fuzz.py.

A program is a tree of callbacks drawn by hypothesis. Each callback logs its name,
then acts: it schedules children (call_soon, call_soon_threadsafe from the loop's own
thread, call_at, call_later, call_at a time already past), cancels an earlier
handle, task or future, stops the loop, makes a future that a later callback
resolves (result, exception or cancel), starts a task (which logs, sleeps 0, awaits
futures), or raises. Everything such a program does has one order that asyncio
defines, so every loop must log the same.

Timers sit on a grid of SLOT seconds after the program's start, each slot used at
most once (stock asyncio does not order equal deadlines), and a timer is only ever
scheduled into a slot later than the one its scheduler runs in. A machine loaded
enough to stall the process for a slot breaks that premise, not the loop: a run
reports whether every callback ran within its slot, and one that did not is repeated
rather than compared.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from hypothesis import strategies as st

# Spacing of the timer grid: the margin that keeps timer order deterministic.
SLOT = 0.01
NSLOTS = 4  # slots 1..NSLOTS; a program lasts at most about NSLOTS * SLOT seconds
MAX_NODES = 25
MAX_TASKS = 4
# A program that has not finished by then is stuck (a lost callback): fail, never hang.
GUARD = 10.0


@dataclass
class Node:
    """A callback: its name, how it is scheduled, and what it does when it runs."""

    name: str
    how: str = "soon"  # soon, threadsafe, at, later, past
    slot: int = 0  # the timer slot it runs in (its scheduler's for soon/threadsafe)
    actions: list = field(default_factory=list)
    resolves: tuple | None = None  # (future name, "result" | "exception" | "cancel")


@dataclass
class TaskSpec:
    name: str
    steps: list  # ("sleep0",) | ("await", future name) | ("log", number)


class _Builder:
    """Draws one program; the counters keep names unique and the grid's slots free."""

    def __init__(self, draw) -> None:
        self.draw = draw
        self.nodes: list[Node] = []
        self.tasks: list[TaskSpec] = []
        self.free_slots = list(range(1, NSLOTS + 1))
        self.nfutures = 0

    def node(self, slot: int, depth: int, resolves: tuple | None = None) -> Node | None:
        """A callback scheduled by one that runs in `slot`; None past MAX_NODES."""
        if len(self.nodes) >= MAX_NODES:
            return None
        how = self.draw(st.sampled_from(["soon", "threadsafe", "at", "later", "past"]))
        if how in ("at", "later"):
            later = [s for s in self.free_slots if s > slot]
            if later:
                slot = self.draw(st.sampled_from(later))
                self.free_slots.remove(slot)
            else:
                how = "soon"
        node = Node(f"cb{len(self.nodes)}", how, slot, resolves=resolves)
        self.nodes.append(node)
        self.fill(node, depth)
        return node

    def fill(self, node: Node, depth: int) -> None:
        kinds = ["child", "cancel", "task", "stop", "raise"]
        for kind in self.draw(st.lists(st.sampled_from(kinds), max_size=4 if depth < 3 else 1)):
            if kind == "child" and depth < 4:
                child = self.node(node.slot, depth + 1)
                if child is not None:
                    node.actions.append(("schedule", child))
            elif kind == "cancel":
                # Not a resolver: the task awaiting its future would wait forever.
                targets = [n.name for n in self.nodes if n.resolves is None and n is not node]
                targets += [t.name for t in self.tasks]
                targets += [f"fut{i}" for i in range(self.nfutures)]
                if targets:
                    node.actions.append(("cancel", self.draw(st.sampled_from(targets))))
            elif kind == "task" and len(self.tasks) < MAX_TASKS:
                self.task(node, depth)
            elif kind in ("stop", "raise"):
                node.actions.append((kind,))

    def task(self, node: Node, depth: int) -> None:
        """A task started by `node`, and the callbacks that resolve its futures."""
        spec = TaskSpec(f"task{len(self.tasks)}", [])
        self.tasks.append(spec)
        node.actions.append(("task", spec))
        for step in self.draw(st.lists(st.sampled_from(["sleep0", "await", "log"]),
                                       min_size=1, max_size=4)):
            if step == "await":
                future = f"fut{self.nfutures}"
                outcome = self.draw(st.sampled_from(["result", "exception", "cancel"]))
                resolver = self.node(node.slot, depth + 1, resolves=(future, outcome))
                if resolver is None:
                    continue
                self.nfutures += 1
                node.actions.append(("future", future))
                node.actions.append(("schedule", resolver))
                spec.steps.append(("await", future))
            elif step == "log":
                spec.steps.append(("log", self.draw(st.integers(0, 9))))
            else:
                spec.steps.append(("sleep0",))


@st.composite
def programs(draw) -> Node:
    """A program: the root callback, whose tree always holds a timer or two."""
    builder = _Builder(draw)
    root = Node("root")
    builder.fill(root, 0)
    for _ in range(draw(st.integers(1, 2))):
        child = builder.node(0, 1)
        if child is not None:
            root.actions.append(("schedule", child))
    return root


class Runner:
    """Runs a program on one loop and records its event log."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.log: list[str] = []
        self.pending: set[str] = set()  # callbacks and tasks that have yet to finish
        self.handles: dict[str, object] = {}  # name -> Handle, TimerHandle, Task, Future
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
        elif node.how == "past":
            # Due at once, behind what is ready; a deadline of its own (the later the
            # node, the earlier), since asyncio does not order equal ones.
            handle = loop.call_at(self.t0 - 1 - int(node.name[2:]) * SLOT, self.run_node, node)
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
                self.resolve(*node.resolves)
            for action in node.actions:
                self.act(node, action)
        finally:
            self.finished(node.name)

    def resolve(self, name: str, outcome: str) -> None:
        future = self.handles[name]
        if future.done():
            self.log.append(f"{name} already done, cancelled={future.cancelled()}")
        elif outcome == "result":
            future.set_result(name)
        elif outcome == "exception":
            future.set_exception(KeyError(name))
        else:
            self.log.append(f"cancel {name}: {future.cancel(msg=name)!r}")

    def act(self, node: Node, action: tuple) -> None:
        kind = action[0]
        if kind == "schedule":
            self.schedule(action[1])
        elif kind == "cancel":
            target = self.handles.get(action[1])
            if target is None:
                self.log.append(f"cancel {action[1]}: not made yet")
                return
            result = target.cancel()
            self.log.append(f"cancel {action[1]}: {result!r} {target.cancelled()!r}")
            if not isinstance(target, asyncio.Future) and target.cancelled():
                self.finished(action[1])
        elif kind == "stop":
            self.log.append(f"{node.name} stops the loop")
            self.loop.stop()
        elif kind == "future":
            future = self.handles[action[1]] = self.loop.create_future()
            future.add_done_callback(
                lambda f, name=action[1]: self.log.append(f"{name} done callback"))
        elif kind == "task":
            spec = action[1]
            task = self.loop.create_task(self.run_task(spec))
            # A task cancelled before its first step never runs its body: its end
            # is reported by a done callback, which every task gets.
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
                    try:
                        result = await self.handles[step[1]]
                    except KeyError as exc:
                        self.log.append(f"{spec.name} got {exc!r} from {step[1]}")
                    else:
                        self.log.append(f"{spec.name} got {result} from {step[1]}")
                else:
                    self.log.append(f"{spec.name} says {step[1]}")
        except asyncio.CancelledError as exc:
            self.log.append(f"{spec.name} cancelled: {exc.args!r}")
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
        # A copy: a future whose exception nobody retrieved reports it when it is
        # collected, whenever the garbage collector gets to it.
        return list(self.log)


def run_program(factory, root: Node) -> tuple[list[str], bool]:
    """The program's log on a fresh loop, and whether every timer kept to its slot."""
    loop = factory()
    try:
        runner = Runner(loop)
        log = runner.run(root)
    finally:
        loop.close()
    return log, not runner.late

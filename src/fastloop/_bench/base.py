"""What every workload module shares: the `Workload` record, its error, its check.

Kept apart from `workloads.py` so that the modules it gathers (`echo`, `httpd`) can make
their own `Workload`s without importing it back.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Iterable
    from typing import TypeAlias

    # What makes a fresh loop: a loop class, or a new_event_loop function.
    LoopFactory: TypeAlias = Callable[[], asyncio.AbstractEventLoop]

__all__ = ["Workload", "WorkloadError", "check"]


class WorkloadError(RuntimeError):
    """The loop under test produced a wrong outcome."""


def check(what: str, got: object, expected: object) -> None:
    """Raise WorkloadError unless got == expected."""
    if got != expected:
        raise WorkloadError(f"{what}: expected {expected}, got {got}")


async def switch(times: int) -> int:
    """Await asyncio.sleep(0) ``times`` times (a task switch each); return the count."""
    switches = 0
    for _ in range(times):
        await asyncio.sleep(0)
        switches += 1
    return switches


class Workload:
    """A named timed program with a one-line description and its operation count.

    `run(loop) -> ops` gets a fresh, not yet running loop. Two variations: with a
    `setup`, it is `run(loop, setup(loop))`, the set-up untimed; with `makes_loops`,
    `run(factory)` makes and closes loops of its own. `requires` names modules it
    imports (a missing one skips the workload); `extra` keeps it out of the default
    comparison (`--all` runs it); `max_repeat` caps the runner's timed runs per process,
    and `warmup=False` skips its untimed first run (for a run long enough to warm up
    by itself). A `scales` workload makes its own loops in threads, `run(factory,
    threads=n)`, its `ops` counted per thread; `with_threads(n)` is the workload the
    runner times, named "<name>_<n>".
    """

    __slots__ = ("name", "run", "description", "ops", "requires", "extra", "setup",
                 "makes_loops", "max_repeat", "warmup", "scales")

    def __init__(self, name: str, run: Callable[..., int], description: str, ops: int, *,
                 requires: Iterable[str] = (), extra: bool = False,
                 setup: Callable[[asyncio.AbstractEventLoop], Any] | None = None,
                 makes_loops: bool = False, max_repeat: int | None = None,
                 warmup: bool = True, scales: bool = False) -> None:
        self.name = name
        self.run = run
        self.description = description
        self.ops = ops
        self.requires = tuple(requires)
        self.extra = extra
        self.setup = setup
        self.makes_loops = makes_loops
        self.max_repeat = max_repeat
        self.warmup = warmup
        self.scales = scales

    def with_threads(self, count: int) -> Workload:
        """Return this scaling workload run by count threads at once."""
        if not self.scales:
            raise ValueError(f"{self.name} does not run in threads")
        plural = "s" if count > 1 else ""
        return Workload(f"{self.name}_{count}", functools.partial(self.run, threads=count),
                        f"{self.description} [{count} thread{plural}]",
                        self.ops * count, requires=self.requires, extra=self.extra,
                        makes_loops=True, max_repeat=self.max_repeat, warmup=self.warmup)

    def missing(self) -> str | None:
        """Return why this workload cannot run here (a module is missing), or None."""
        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed (pip install {module})"
        return None

    def prepare(
        self, factory: LoopFactory
    ) -> tuple[Callable[[], int], asyncio.AbstractEventLoop | None]:
        """Do the untimed part; return (timed, loop).

        timed is the zero-argument call to time (it returns the operations done), loop
        the fresh loop it uses, for the caller to close (None with makes_loops).
        """
        if self.makes_loops:
            return functools.partial(self.run, factory), None
        loop = factory()
        if self.setup is None:
            return functools.partial(self.run, loop), loop
        try:
            state = self.setup(loop)
        except BaseException:
            loop.close()
            raise
        return functools.partial(self.run, loop, state), loop

    def __repr__(self) -> str:
        return f"<Workload {self.name}>"

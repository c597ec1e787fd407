"""Child-process workloads: spawn-and-wait throughput, and bulk data through `cat`.

Both go through `asyncio.create_subprocess_exec`, as applications do, so they measure
the whole path: Popen, connecting the pipes, noticing the exit, reading until EOF.
Most of a spawn is the kernel's fork/exec, the same for every loop; what differs is the
loop's share around it (asyncio before 3.12 starts a thread per child to wait for it).
"""

from __future__ import annotations

import asyncio
import os
import shutil

from .base import Workload, WorkloadError, check

__all__ = ["SUBPROCESS_WORKLOADS"]

SPAWN_COUNT = 200
SPAWN_IN_FLIGHT = 10  # children alive at once, like a worker pool
CAT_MIB = 10
CHUNK = 64 * 1024


def _program(name: str) -> str:
    """The absolute path of a program every POSIX system has."""
    path = shutil.which(name)
    if path is None:
        raise WorkloadError(f"{name} is not on PATH")
    return path


def spawn_true(loop: asyncio.AbstractEventLoop) -> int:
    """Run /bin/true 200 times, 10 at a time, and wait for each exit."""
    true = _program("true")

    async def one() -> int:
        proc = await asyncio.create_subprocess_exec(true)
        return await proc.wait()

    async def main() -> list[int]:
        codes: list[int] = []
        for _ in range(SPAWN_COUNT // SPAWN_IN_FLIGHT):
            codes += await asyncio.gather(*(one() for _ in range(SPAWN_IN_FLIGHT)))
        return codes

    codes = loop.run_until_complete(main())
    check("children that exited with 0", codes.count(0), SPAWN_COUNT)
    return SPAWN_COUNT


def cat_10mib(loop: asyncio.AbstractEventLoop, data: bytes) -> int:
    """Send 10 MiB through `cat` in 64 KiB writes and read it all back."""
    cat = _program("cat")

    async def feed(stdin: asyncio.StreamWriter) -> None:
        for start in range(0, len(data), CHUNK):
            stdin.write(data[start:start + CHUNK])
            await stdin.drain()
        stdin.close()

    async def main() -> tuple[bytes, int]:
        proc = await asyncio.create_subprocess_exec(
            cat, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None  # both are PIPEs
        _, echoed = await asyncio.gather(feed(proc.stdin), proc.stdout.read())
        return echoed, await proc.wait()

    echoed, code = loop.run_until_complete(main())
    check("cat's exit status", code, 0)
    check("bytes echoed", len(echoed), len(data))
    if echoed != data:  # a memcmp: hashing both would cost more than the loop's share
        raise WorkloadError("cat echoed different bytes")
    return CAT_MIB


SUBPROCESS_WORKLOADS = [
    Workload("spawn_true", spawn_true,
             f"{SPAWN_COUNT} x /bin/true, {SPAWN_IN_FLIGHT} at a time", SPAWN_COUNT),
    Workload("cat_10mib", cat_10mib, f"{CAT_MIB} MiB through cat (ops = MiB)", CAT_MIB,
             setup=lambda loop: os.urandom(CAT_MIB << 20)),
]

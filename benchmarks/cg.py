"""Instructions per operation of a loop, counted by callgrind (docs/observability.md, "Cost").

    python benchmarks/cg.py [--core cy|py|asyncio|uvloop|rloop|zuvloop] [--n N] WORKLOAD...

runs each workload (call_soon, threadsafe, gather, pingpong, echo) under ``valgrind --tool=callgrind``
at N and 2N operations and prints (Ir(2N) - Ir(N)) / N: the start-up cancels out,
and an instruction count, unlike a wall clock, hardly moves on a busy machine. Run
it with the PYTHONPATH of the checkout to measure (the Cython core built in it).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

# One process of the measurement: make the loop, run WORKLOAD N times, check it.
CHILD = r'''
import asyncio, socket, sys
kind, workload, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "py":
    from fastloop._loop import loop_class_for
    import fastloop._py as core
    loop = loop_class_for(core)()
elif kind != "cy":
    loop = __import__(kind).new_event_loop()  # a peer: asyncio, uvloop, rloop, zuvloop
else:
    import fastloop
    assert fastloop.IMPLEMENTATION == "cython"
    loop = fastloop.new_event_loop()

def call_soon():
    done = [0]
    def callback():
        done[0] += 1
    for _ in range(n):
        loop.call_soon(callback)
    loop.call_soon(loop.stop)
    loop.run_forever()
    return done[0]

def threadsafe():
    # As the bench's threadsafe workload: another thread sends while the loop runs.
    import threading
    done = [0]
    def callback():
        done[0] += 1
        if done[0] == n:
            loop.stop()
    def producer():
        for _ in range(n):
            loop.call_soon_threadsafe(callback)
    thread = threading.Thread(target=producer)
    loop.call_soon(thread.start)
    loop.run_forever()
    thread.join()
    return done[0]

def gather():
    async def job(i):
        await asyncio.sleep(0)
        return i
    async def main():
        return await asyncio.gather(*[job(i) for i in range(n)])
    return len(loop.run_until_complete(main()))

def pingpong():
    inbox = [loop.create_future()]
    async def ponger():
        while True:
            value, reply = await inbox[0]
            if reply is None:
                return
            inbox[0] = loop.create_future()
            reply.set_result(value + 1)
    async def pinger():
        for i in range(n):
            reply = loop.create_future()
            inbox[0].set_result((i, reply))
            assert await reply == i + 1
        inbox[0].set_result((None, None))
        return n
    task = loop.create_task(ponger())
    done = loop.run_until_complete(pinger())
    loop.run_until_complete(task)
    return done

def echo():
    # Client and server in this loop, over a socket pair: 1 KiB there and back.
    payload = b"x" * 1024
    class Server(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
        def data_received(self, data):
            self.transport.write(data)
    class Client(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.got, self.rounds = transport, 0, 0
            self.done = loop.create_future()
            transport.write(payload)
        def data_received(self, data):
            self.got += len(data)
            if self.got == len(payload):
                self.got, self.rounds = 0, self.rounds + 1
                if self.rounds == n:
                    self.done.set_result(self.rounds)
                else:
                    self.transport.write(payload)
    a, b = socket.socketpair()
    async def main():
        await loop.create_connection(Server, sock=b)
        _, client = await loop.create_connection(Client, sock=a)
        return await client.done
    return loop.run_until_complete(main())

workloads = {"call_soon": call_soon, "threadsafe": threadsafe, "gather": gather,
             "pingpong": pingpong, "echo": echo}
assert workloads[workload]() == n
loop.close()
'''
WORKLOAD_NAMES = ["call_soon", "threadsafe", "gather", "pingpong", "echo"]


def instructions(core: str, workload: str, n: int) -> int:
    """Instructions callgrind counted for one child process at ``n`` operations."""
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, "-c", CHILD, core, workload, str(n)],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    return int(re.search(r"Collected : (\d+)", proc.stderr).group(1))  # type: ignore[union-attr]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--core", choices=["cy", "py", "asyncio", "uvloop", "rloop", "zuvloop"],
                        default="cy", help="a fastloop core, or a peer loop to compare")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("workloads", nargs="+", choices=WORKLOAD_NAMES)
    args = parser.parse_args()
    print(f"CPython {sys.version.split()[0]}, {args.core}")
    for workload in args.workloads:
        # Once outside valgrind first: a quick check that the workload runs.
        subprocess.run([sys.executable, "-c", CHILD, args.core, workload, "10"], check=True)
        low = instructions(args.core, workload, args.n)
        high = instructions(args.core, workload, 2 * args.n)
        print(f"{workload}: {(high - low) / args.n:.0f} instructions per operation")


if __name__ == "__main__":
    main()

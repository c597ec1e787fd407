"""The floor under any io_uring loop: a plain C io_uring echo server against echoload's
plain C epoll one, in server CPU per 1 KiB TCP round trip (docs/io_uring.md).

Issue 15 asked fastloop's io_uring backend for 1.25x less server CPU per round trip
than fastloop on epoll. This measures what io_uring saves with no Python at all:
`uring_echo.c` (beside this file) is a single-threaded C server with multishot accept,
multishot receive into a provided-buffer ring, and its sends through the ring (or,
with -s, a send() system call, as fastloop's stage two does). Both servers answer the
same client, echoload, through the session the bench's `c-epoll` row runs
(fastloop._bench.echo.ceiling_session): a fresh server per session, its own getrusage()
read before and after, divided by the round trips; the servers take turns, in
alternating order.

    PYTHONPATH=src python benchmarks/uring_ceiling.py [--rounds 15] [--pin same|split]

Linux with io_uring and a C compiler; `--pin split` puts the server on CPU 0 and the
client on CPU 1, `same` both on CPU 1 (taskset).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile

from fastloop._bench import cload, echo

SIZE, TRIPS = 1024, 1500  # the bench's echo_tcp_proto_1k session
# name: uring_echo's arguments (see its header), or None for echoload's epoll server.
SERVERS: dict[str, list[str] | None] = {
    "C epoll (echoload)": None,
    "C io_uring, sends in the ring": ["-f", "coop"],
    "C io_uring, send() calls": ["-s", "-f", "coop"],
    "C io_uring, DEFER_TASKRUN": ["-f", "defer"],
}
# --pin: the server's argv prefix, and the CPUs of the client (echoload's, shared).
PINS: dict[str, tuple[list[str], set[int]]] = {
    "": ([], set()), "split": (["taskset", "-c", "0"], {1}),
    "same": (["taskset", "-c", "1"], {1})}


def build_uring_echo(folder: str) -> str:
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "uring_echo.c")
    binary = os.path.join(folder, "uring_echo")
    subprocess.run([os.environ.get("CC", "cc"), "-O2", "-o", binary, source], check=True)
    return binary


def session(server_argv: list[str]) -> tuple[float, float]:
    """One session against a fresh server: (server CPU us per round trip, round trips/s)."""
    elapsed, cpu, trips = echo.ceiling_session("tcp", SIZE, TRIPS, server_argv)
    return cpu / trips * 1e6, trips / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--pin", choices=["same", "split"], default="")
    args = parser.parse_args()
    server_pin, client_cpus = PINS[args.pin]
    folder = tempfile.mkdtemp(prefix="fastloop-uring-ceiling-")
    try:
        echoload = cload.build()
        uring_echo = build_uring_echo(folder)
        argvs = {name: server_pin + ([echoload, "server", "tcp"] if extra is None
                                     else [uring_echo, *extra])
                 for name, extra in SERVERS.items()}
        if client_cpus:
            os.sched_setaffinity(echo.echo_client().proc.pid, client_cpus)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in SERVERS}
        for round_ in range(args.rounds):
            order = list(SERVERS) if round_ % 2 == 0 else list(reversed(SERVERS))
            for name in order:
                results[name].append(session(argvs[name]))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{os.uname().release}, {echo.ECHO_CONNECTIONS} connections x {TRIPS} round "
          f"trips of {SIZE} B, {args.rounds} rounds, pin={args.pin or 'none'}; "
          f"medians (min-max)")
    print(f"{'server':32} {'server CPU us/round trip':>26} {'round trips/s':>14}")
    for name, samples in results.items():
        cpu = [s[0] for s in samples]
        rate = [s[1] for s in samples]
        print(f"{name:32} {statistics.median(cpu):8.2f} ({min(cpu):.2f}-{max(cpu):.2f})"
              f"{'':7} {statistics.median(rate):12.0f}")


if __name__ == "__main__":
    main()

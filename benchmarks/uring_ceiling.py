"""The floor under any io_uring loop: a plain C io_uring echo server against echoload's
plain C epoll one, in server CPU per 1 KiB TCP round trip (docs/io_uring.md).

Issue 15 asked fastloop's io_uring backend for 1.25x less server CPU per round trip
than fastloop on epoll. This measures what io_uring saves with no Python at all:
`uring_echo.c` (beside this file) is a single-threaded C server with multishot accept,
multishot receive into a provided-buffer ring, and its sends through the ring (or,
with -s, a send() system call, as fastloop's stage two does). Both servers answer the
same client, echoload, as the bench's `c-epoll` row does (fastloop._bench.echo,
`_ceiling_session`): a fresh server per session, its own getrusage() read before and
after, divided by the round trips; the servers take turns, in alternating order.

    PYTHONPATH=src python benchmarks/uring_ceiling.py [--rounds 15] [--pin same|split]

Linux with io_uring and a C compiler; `--pin split` puts the server on CPU 0 and the
client on CPU 1, `same` both on CPU 1 (taskset).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from fastloop._bench import cload

CONNS, SIZE, TRIPS = 4, 1024, 1500  # the bench's echo_tcp_proto_1k session
# name: uring_echo's arguments (see its header), or None for echoload's epoll server.
SERVERS: dict[str, list[str] | None] = {
    "C epoll (echoload)": None,
    "C io_uring, sends in the ring": ["-f", "coop"],
    "C io_uring, send() calls": ["-s", "-f", "coop"],
    "C io_uring, DEFER_TASKRUN": ["-f", "defer"],
}
PINS = {"": ([], []), "split": (["taskset", "-c", "0"], ["taskset", "-c", "1"]),
        "same": (["taskset", "-c", "1"], ["taskset", "-c", "1"])}


def build_uring_echo(folder: str) -> str:
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "uring_echo.c")
    binary = os.path.join(folder, "uring_echo")
    subprocess.run([os.environ.get("CC", "cc"), "-O2", "-o", binary, source], check=True)
    return binary


def session(server_argv: list[str], client: subprocess.Popen[str]) -> tuple[float, float]:
    """One client command against a fresh server: (server CPU us per trip, trips/s)."""
    server = subprocess.Popen(server_argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    to_server, from_server = server.stdin, server.stdout
    assert to_server is not None and from_server is not None  # PIPEs
    assert client.stdin is not None and client.stdout is not None

    def cpu() -> float:
        to_server.write("\n")
        to_server.flush()
        return int(from_server.readline().split()[1]) / 1e6

    try:
        ready = from_server.readline().split()
        if ready[:1] != ["ready"]:
            raise SystemExit(f"{server_argv[0]} did not start: {ready}")
        before = cpu()
        start = time.perf_counter()
        client.stdin.write(f"echo tcp 127.0.0.1 {ready[1]} {CONNS} {SIZE} {TRIPS}\n")
        client.stdin.flush()
        answer = json.loads(client.stdout.readline())
        elapsed = time.perf_counter() - start
        used = cpu() - before
    finally:
        to_server.close()
        server.wait()
    trips = CONNS * TRIPS
    if "error" in answer or answer.get("trips") != trips or answer.get("bytes") != trips * SIZE:
        raise SystemExit(f"{server_argv}: the client says {answer}")
    return used / trips * 1e6, trips / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--pin", choices=["same", "split"], default="")
    args = parser.parse_args()
    server_pin, client_pin = PINS[args.pin]
    folder = tempfile.mkdtemp(prefix="fastloop-uring-ceiling-")
    try:
        echoload = cload.build()
        uring_echo = build_uring_echo(folder)
        argvs = {name: server_pin + ([echoload, "server", "tcp"] if extra is None
                                     else [uring_echo, *extra])
                 for name, extra in SERVERS.items()}
        client = subprocess.Popen(client_pin + [echoload, "client"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in SERVERS}
        for round_ in range(args.rounds):
            order = list(SERVERS) if round_ % 2 == 0 else list(reversed(SERVERS))
            for name in order:
                results[name].append(session(argvs[name], client))
        assert client.stdin is not None  # PIPE
        client.stdin.close()
        client.wait()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{os.uname().release}, {CONNS} connections x {TRIPS} round trips of {SIZE} B, "
          f"{args.rounds} rounds, pin={args.pin or 'none'}; medians (min-max)")
    print(f"{'server':32} {'server CPU us/round trip':>26} {'round trips/s':>14}")
    for name, samples in results.items():
        cpu = [s[0] for s in samples]
        rate = [s[1] for s in samples]
        print(f"{name:32} {statistics.median(cpu):8.2f} ({min(cpu):.2f}-{max(cpu):.2f})"
              f"{'':7} {statistics.median(rate):12.0f}")


if __name__ == "__main__":
    main()

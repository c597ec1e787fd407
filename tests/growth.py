"""Memory growth over long runs (issue 13, part 3): the workloads, and a script that
runs them at full counts on asyncio and on both cores, side by side.

    python3 tests/growth.py                          # full counts, aio, cy and py
    python3 tests/growth.py --scale 0.1 --loops cy,aio --workloads tls,loops

For each loop and workload, a fresh child process runs the workload at a tenth of its
count to warm up (free lists, caches, tables grown once), then at the full count, and
reports how much more memory it holds afterwards (after gc.collect()): RSS, with
tracemalloc off, and, in a second child, what tracemalloc still counts. Both include
what the warm-up left in arenas and free lists that the measured run happened to
extend, so compare a loop with asyncio's column, not with zero. test_growth.py runs the
same workloads at CI-sized counts under a fixed bound.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import ssl
import subprocess
import sys
import tracemalloc

CERTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "certs")
TRUE = shutil.which("true") or "/bin/true"


def _noop() -> None:
    pass


def callbacks(loop, n: int) -> None:
    """`n` call_soon callbacks, in batches, each batch run by one run_until_complete."""
    for done in range(0, n, 2000):
        for _ in range(min(2000, n - done)):
            loop.call_soon(_noop)
        loop.run_until_complete(asyncio.sleep(0))


def timers(loop, n: int) -> None:
    """`n` timers: half cancelled before they are due, half fired."""
    for done in range(0, n, 2000):
        batch = min(2000, n - done)
        cancelled = [loop.call_later(3600, _noop) for _ in range(batch // 2)]
        for timer in cancelled:
            timer.cancel()
        for _ in range(batch - batch // 2):
            loop.call_later(0, _noop)
        loop.run_until_complete(asyncio.sleep(0))


def loops(new_loop, n: int) -> None:
    """`n` loops made by `new_loop()`, each run once and closed."""
    for _ in range(n):
        lp = new_loop()
        lp.run_until_complete(asyncio.sleep(0))
        lp.close()


class _Served(asyncio.Protocol):
    """The server side of a connection: counts itself lost."""

    def __init__(self, lost: list) -> None:
        self.lost = lost

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.lost.append(exc)
        # 3.10's TLS transport warns "unclosed transport" unless close() was called,
        # even after the connection was lost; a no-op everywhere else.
        self.transport.close()


async def _connect_many(loop, n: int, server_ssl=None, client_ssl=None) -> None:
    """`n` connections to one server, opened, written to and closed one at a time;
    returns once the server has lost every one of them."""
    lost: list = []
    server = await loop.create_server(lambda: _Served(lost), "127.0.0.1", 0, ssl=server_ssl)
    port = server.sockets[0].getsockname()[1]
    for _ in range(n):
        tr, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port, ssl=client_ssl)
        tr.write(b"x" * 100)
        tr.close()
    while len(lost) < n:
        await asyncio.sleep(0.001)
    server.close()
    await server.wait_closed()
    for _ in range(5):  # the closing transports' last callbacks
        await asyncio.sleep(0)


def connections(loop, n: int) -> None:
    """`n` TCP connections over loopback."""
    loop.run_until_complete(_connect_many(loop, n))


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts for the test certificates in tests/certs."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(os.path.join(CERTS, "server.pem"), os.path.join(CERTS, "server.key"))
    return server, ssl.create_default_context(cafile=os.path.join(CERTS, "ca.pem"))


def tls_handshakes(loop, n: int, contexts=None) -> None:
    """`n` TLS connections (full handshakes: no session reuse) over loopback."""
    server_ssl, client_ssl = contexts or tls_contexts()
    loop.run_until_complete(_connect_many(loop, n, server_ssl, client_ssl))


async def _subprocesses(n: int) -> None:
    for done in range(0, n, 4):
        procs = [await asyncio.create_subprocess_exec(
            TRUE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            for _ in range(min(4, n - done))]
        for proc in procs:
            out, _ = await proc.communicate()
            assert out == b"" and proc.returncode == 0, (out, proc.returncode)


def subprocesses(loop, n: int) -> None:
    """`n` children running `true`, four at a time, their stdout read through a pipe."""
    loop.run_until_complete(_subprocesses(n))


WORKLOADS = {
    "callbacks": (callbacks, 1_000_000),
    "timers": (timers, 100_000),
    "connections": (connections, 100_000),
    "loops": (loops, 10_000),
    "tls": (tls_handshakes, 10_000),
    "subprocesses": (subprocesses, 10_000),
}
KINDS = ("aio", "cy", "py")


# --- the script ----------------------------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _child(kind: str, workload: str, measure: str, n: int) -> dict:
    """Run in the child: warm up, then measure what `n` more units leave behind."""
    import fastloop

    if kind != "aio":
        assert fastloop.IMPLEMENTATION == ("python" if kind == "py" else "cython")
    new_loop = asyncio.SelectorEventLoop if kind == "aio" else fastloop.new_event_loop
    run, _ = WORKLOADS[workload]
    loop = new_loop()
    target = new_loop if workload == "loops" else loop
    if measure == "tracemalloc":
        tracemalloc.start()
    used = tracemalloc.get_traced_memory if measure == "tracemalloc" else lambda: (_rss(),)
    run(target, max(1, n // 10))
    gc.collect()
    before = used()[0]
    run(target, n)
    gc.collect()
    grown = used()[0] - before
    loop.close()
    return {"grown": grown}


def _measure(kind: str, workload: str, measure: str, n: int) -> dict:
    env = dict(os.environ)
    env.pop("FASTLOOP_NO_EXTENSIONS", None)
    if kind == "py":
        env["FASTLOOP_NO_EXTENSIONS"] = "1"
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, workload, measure, str(n)],
        env=env, check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", default=",".join(KINDS), help="comma-separated: aio,cy,py")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every count")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, workload, measure, n = args.child
        print(json.dumps(_child(kind, workload, measure, int(n))))
        return
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(f"# Python {sys.version.split()[0]}{'' if gil else ' free-threaded'}: memory held"
          " after the count beyond what the warm-up left, in bytes (per unit)")
    kinds = args.loops.split(",")
    print(f"{'workload':<13} {'count':>9} " + " ".join(
        f"{kind + ' ' + measure:>20}" for kind in kinds for measure in ("RSS", "traced")))
    for workload in args.workloads.split(","):
        n = max(1, int(WORKLOADS[workload][1] * args.scale))
        cells = []
        for kind in kinds:
            for measure in ("rss", "tracemalloc"):
                grown = _measure(kind, workload, measure, n)["grown"]
                cells.append(f"{grown:>10} ({grown / n:>6.2f})")
        print(f"{workload:<13} {n:>9} " + " ".join(f"{c:>20}" for c in cells), flush=True)


if __name__ == "__main__":
    main()

"""Server memory per idle TCP connection, per loop: RSS and tracemalloc deltas.

For each loop, in a fresh process per measurement, an echo-less server runs on the loop
(a `Protocol` that keeps its transport, or an `asyncio.start_server` handler parked in
`reader.read()`), the echo client process (`fastloop._bench.echo_client`) opens
`--conns` idle connections to it and holds them, and the server process reports how much
its memory grew once every connection was accepted, divided by the number of
connections:

- RSS: resident set size from /proc/self/statm (peak ru_maxrss elsewhere), with
  tracemalloc off: Python objects and the loop's C structures alike (socket buffers are
  kernel memory and not counted);
- tracemalloc: Python-heap allocations traced by tracemalloc, in a separate process (its
  bookkeeping would inflate RSS). C memory from malloc (libuv's handles, for instance)
  is not traced, so compare loops on RSS first.

    PYTHONPATH=src python benchmarks/idle_memory.py
    PYTHONPATH=src python benchmarks/idle_memory.py --loops asyncio,uvloop --conns 2000
    PYTHONPATH=src python benchmarks/idle_memory.py --loops asyncio,myloop=mypkg:new_loop

The connections are then released and the server checks every one of them closed.
"""

import argparse
import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc

DEFAULT_CONNS = 2000
SERVERS = ("protocol", "streams")
MEASURES = ("rss", "tracemalloc")
CHILD_TIMEOUT = 120.0


def rss_bytes():
    """Current resident set size of this process (peak RSS where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def _raise_nofile(wanted):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < wanted:
        raise SystemExit(f"need {wanted} open files; raise `ulimit -n`")


def measure(loop_name, server_kind, what, conns):
    """Run in a fresh process: return {'delta': bytes, 'per_conn': bytes, ...}."""
    from fastloop._bench import echo, loops

    _raise_nofile(conns + 256)
    if what == "tracemalloc":
        tracemalloc.start()
    loop = loops.find(loop_name)()
    client = echo.client()
    state = {"made": 0, "lost": 0}
    errors = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))

    def used():
        return tracemalloc.get_traced_memory()[0] if what == "tracemalloc" else rss_bytes()

    async def main():
        all_made = loop.create_future()
        all_lost = loop.create_future()

        def made():
            state["made"] += 1
            if state["made"] == conns:
                all_made.set_result(None)

        def lost():
            state["lost"] += 1
            if state["lost"] == conns:
                all_lost.set_result(None)

        if server_kind == "protocol":
            class Idle(asyncio.Protocol):
                def connection_made(self, transport):
                    self.transport = transport
                    made()

                def connection_lost(self, exc):
                    lost()

            server = await loop.create_server(Idle, "127.0.0.1", 0, backlog=conns)
        else:
            async def handle(reader, writer):
                made()
                try:
                    while await reader.read(65536):
                        pass
                finally:
                    writer.close()
                    try:
                        await writer.wait_closed()
                    finally:
                        lost()

            server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=conns)
        address = list(server.sockets[0].getsockname()[:2])
        # Warm up: one connection in and out, so first-use allocations (the accept path,
        # lazily built classes) do not count against the idle connections.
        answer = client.answer(loop)
        client.send({"op": "hold", "kind": "tcp", "addr": address, "conns": 1})
        await answer
        while state["made"] < 1:
            await asyncio.sleep(0.001)
        answer = client.answer(loop)
        client.send({"op": "release"})
        await answer
        while state["lost"] < 1:
            await asyncio.sleep(0.001)
        state["made"] = state["lost"] = 0
        await asyncio.sleep(0.05)

        gc.collect()
        before = used()
        started = time.perf_counter()
        answer = client.answer(loop)
        client.send({"op": "hold", "kind": "tcp", "addr": address, "conns": conns})
        held = await answer
        if held.get("held") != conns:
            raise RuntimeError(f"client: {held}")
        await asyncio.wait_for(all_made, 30)
        accept_seconds = time.perf_counter() - started
        await asyncio.sleep(0.05)
        gc.collect()
        after = used()

        answer = client.answer(loop)
        client.send({"op": "release"})
        await answer
        await asyncio.wait_for(all_lost, 30)
        server.close()
        await server.wait_closed()
        return before, after, accept_seconds

    try:
        before, after, accept_seconds = loop.run_until_complete(main())
    finally:
        loop.close()
        echo.stop_client()
    if errors:
        raise RuntimeError(f"the loop reported an error: {errors[0].get('message')!r} "
                           f"{errors[0].get('exception')!r}")
    return {"delta": after - before, "per_conn": (after - before) / conns,
            "accept_seconds": accept_seconds}


def run_child(loop_name, server_kind, what, conns):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", loop_name, server_kind,
           what, str(conns)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CHILD_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {CHILD_TIMEOUT:.0f}s"
    if proc.returncode != 0:
        return None, "\n".join(proc.stderr.strip().splitlines()[-10:])
    return json.loads(proc.stdout.strip().splitlines()[-1]), None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        loop_name, server_kind, what, conns = argv[1], argv[2], argv[3], int(argv[4])
        print(json.dumps(measure(loop_name, server_kind, what, conns)))
        return 0
    from fastloop._bench import loops

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", default=",".join(loops.LOOP_NAMES),
                        help="loops by name, or " + loops.SPEC_HELP)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--conns", type=int, default=DEFAULT_CONNS)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    try:
        specs = loops.select(args.loops)
    except ValueError as exc:
        parser.error(f"--loops: {exc}")
    found, skipped = loops.available(specs.values())
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    print(f"{args.conns} idle TCP connections; server memory growth per connection")
    print(f"{'server':<9} {'loop':<17} {'RSS B/conn':>11} {'tracemalloc B/conn':>19} "
          f"{'accept ms':>10}")
    results = {}
    failed = False
    for server_kind in [s.strip() for s in args.servers.split(",") if s.strip()]:
        for name, spec in specs.items():
            if name not in found:
                continue
            row = {}
            for what in MEASURES:
                result, error = run_child(spec, server_kind, what, args.conns)
                if error:
                    failed = True
                    print(f"FAILED {server_kind} {name} {what}: {error}")
                row[what] = result
            results.setdefault(server_kind, {})[name] = row

            def cell(what, key="per_conn"):
                return f"{row[what][key]:.0f}" if row.get(what) else "FAILED"

            accept = (f"{row['rss']['accept_seconds'] * 1e3:.0f}" if row.get("rss")
                      else "-")
            print(f"{server_kind:<9} {name:<17} {cell('rss'):>11} "
                  f"{cell('tracemalloc'):>19} {accept:>10}", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"conns": args.conns, "results": results}, f, indent=2)
            f.write("\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

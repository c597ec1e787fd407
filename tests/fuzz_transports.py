"""Programs against a connected pair of stream transports, for tests/test_fuzz.py.

A program connects a client to a server on one loop, over TCP or a Unix socket, then
takes steps: each is one call on one side's transport (write, writelines, write_eof,
pause_reading, resume_reading, close, abort, set_write_buffer_limits,
get_write_buffer_size, ...), after which the loop runs until nothing more happens.
Each side logs what its calls return or raise and what its protocol is told, with
the count of bytes it had received by then.

What asyncio leaves undefined stays out of the log:
- how received bytes are cut into data_received calls: a side logs the count and a
  checksum of everything received, never the chunks;
- how much of a write the kernel takes at once: a program writes at most
  MAX_WRITTEN bytes a side, which loopback sockets take whole, so that write buffers
  stay empty and get_write_buffer_size() is 0 on every loop;
- writelines() of empty buffers or on a closing transport, which asyncio 3.12+
  mishandles (see Side.call);
- whether a reset peer's RST or FIN arrives before a given poll: the loop runs until
  quiet after every step, and a comparison that still differs is repeated (a stalled
  machine may leave a packet in flight); a real difference repeats.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass

from hypothesis import strategies as st

from fuzz_io import Caller, Stage, payload, steps

MAX_WRITTEN = 24 * 1024
WRITE_SIZES = st.integers(0, 3000)


@dataclass
class Program:
    family: str  # "tcp" or "unix"
    keep_open: tuple  # what (client, server) protocols return from eof_received
    steps: list  # (side, call, *args), side 0 = client, 1 = server


def _buffers(sizes: list) -> st.SearchStrategy:
    return st.tuples(*(st.sampled_from(["bytes", "bytearray", "memoryview"])
                       for _ in sizes)).map(lambda kinds: list(zip(kinds, sizes)))


# One branch per kind of call, so that each is drawn often enough to meet the others.
CALLS = st.one_of(
    st.tuples(st.just("write"), WRITE_SIZES.flatmap(lambda n: _buffers([n]))),
    st.tuples(st.just("writelines"),
              st.lists(WRITE_SIZES, max_size=4).flatmap(_buffers)),
    st.tuples(st.sampled_from(["write", "writelines"]), st.just("not bytes")),
    st.just(("write_eof",)),
    st.sampled_from([("pause_reading",), ("resume_reading",)]),
    st.sampled_from([("close",), ("abort",)]),
    st.tuples(st.just("set_write_buffer_limits"),
              st.one_of(st.none(), st.integers(0, 1 << 17)),
              st.one_of(st.none(), st.integers(0, 1 << 17))),
    st.sampled_from([
        ("can_write_eof",), ("is_reading",), ("is_closing",),
        ("get_write_buffer_size",), ("get_write_buffer_limits",),
        ("extra", "peername"), ("extra", "sockname"), ("extra", "socket"),
    ]),
)


@st.composite
def programs(draw) -> Program:
    family = draw(st.sampled_from(["tcp", "unix"]))
    keep_open = draw(st.tuples(st.booleans(), st.booleans()))
    return Program(family, keep_open, draw(steps(CALLS)))


class Side(Caller, asyncio.Protocol):
    """One end's protocol: logs its callbacks with the bytes received so far."""

    def __init__(self, name: str, keep_open: bool, events: list) -> None:
        self.name = name
        self.keep_open = keep_open
        self.events = events  # shared by both sides: progress is its length
        self.log: list[str] = []
        self.received = bytearray()
        self.transport = None
        self.written = 0  # offset of the next byte of this side's stream

    def note(self, what: str) -> None:
        self.log.append(f"{what} [{len(self.received)} received]")
        self.events.append(None)

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.note("connection_made")

    def data_received(self, data) -> None:
        self.received += data
        self.events.append(None)

    def eof_received(self):
        self.note(f"eof_received -> {self.keep_open}")
        return self.keep_open

    def connection_lost(self, exc) -> None:
        self.note(f"connection_lost({exc!r})")

    def pause_writing(self) -> None:
        self.note("pause_writing")

    def resume_writing(self) -> None:
        self.note("resume_writing")

    def make_call(self, name: str, *args):
        transport = self.transport
        if args == ("not bytes",):
            return getattr(transport, name)("not bytes" if name == "write" else ["no"])
        if name == "write":
            return transport.write(self.payload(*args[0]))
        if name == "writelines" and transport.is_closing():
            # asyncio 3.12+ queues the data of a closing transport (and raises
            # TypeError once it is closed); fastloop drops it, as write() does.
            return "not called on a closing transport"
        if name == "writelines":
            # No empty items: asyncio 3.12+ queues them and never gets its buffer
            # empty again (close() then never ends); fastloop drops them.
            items = [self.payload(*item) for item in args[0]]
            return transport.writelines([item for item in items if len(item)])
        if name == "extra":
            # Addresses differ from run to run (ports, paths); their types do not.
            return type(transport.get_extra_info(args[0])).__name__
        return super().make_call(name, *args)

    def payload(self, kind: str, size: int):
        # Writes past MAX_WRITTEN are made empty (see the module's docstring).
        size = max(0, min(size, MAX_WRITTEN - self.written))
        data = payload(kind, size, self.written)
        self.written += size
        return data


async def _connect(loop, program: Program, client: Side, server: Side):
    if program.family == "unix":
        path = os.path.join(tempfile.mkdtemp(prefix="flfuzz"), "s")
        srv = await loop.create_unix_server(lambda: server, path)
        await loop.create_unix_connection(lambda: client, path)
        return srv, os.path.dirname(path)
    srv = await loop.create_server(lambda: server, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    await loop.create_connection(lambda: client, "127.0.0.1", port)
    return srv, None


def run_program(factory, program: Program) -> tuple[list, bool]:
    """Both sides' logs and checksums, the handler's calls; and whether the loop settled."""
    stage = Stage(factory)
    sides = [Side(name, keep, stage.events)
             for name, keep in zip(("client", "server"), program.keep_open)]
    tmpdir = None
    try:
        srv, tmpdir = stage.loop.run_until_complete(_connect(stage.loop, program, *sides))
        stage.play(sides, program.steps)
        # Not wait_closed(): from 3.12 it also waits for the connections, and asyncio
        # itself keeps a transport that pause_reading() stopped after an abort.
        srv.close()
        stage.settle()
    finally:
        stage.loop.close()
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
    result = [list(stage.handler_calls)]
    for side in sides:
        result += [side.name, side.log, len(side.received), zlib.crc32(side.received)]
    return result, stage.settled

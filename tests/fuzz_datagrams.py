"""Programs against a pair of UDP endpoints, for tests/test_fuzz.py.

A program opens two datagram endpoints on 127.0.0.1, the first one connected to the
second or not, then takes steps: each is one call on one endpoint's transport
(sendto to the peer, to no address, to another address, to a port nobody listens
on, to the very address object of the last datagram received; sendto with
something not bytes; close, abort, pause_reading, write and the other stream calls
a datagram transport refuses, ...), after which the loop runs
until nothing more happens. Each side logs what its calls return or raise and what
its protocol is told: datagrams (their size and checksum, and whether they came
from the peer), error_received, connection_lost.

Loopback datagrams arrive whole and in order, and the ICMP error of a port nobody
listens on comes back within the send, so all of that is compared; only addresses
(ports that differ from run to run) are logged by name ("peer", "self"). On 3.10,
where asyncio's datagram transport cannot pause reading and fastloop's can, the
calls that pause, resume and ask are left out.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import zlib
from dataclasses import dataclass

from hypothesis import strategies as st

from fuzz_io import Caller, Stage, payload, steps

# "last sender": the very address object datagram_received() was given, as a server
# that replies passes it back (the Cython core has a fast path for it).
TARGETS = ["peer", "last sender", "none", "unbound port"]
# One branch per kind of call, so that each is drawn often enough to meet the others.
CALLS = st.one_of(
    st.tuples(st.just("sendto"), st.integers(0, 2000), st.sampled_from(TARGETS),
              st.sampled_from(["bytes", "bytearray", "memoryview"])),
    st.tuples(st.just("sendto"), st.just(0), st.sampled_from(TARGETS), st.just("str")),
    st.sampled_from([("close",), ("abort",)]),
    st.sampled_from([("pause_reading",), ("resume_reading",)]),
    # What a datagram transport refuses.
    st.sampled_from([("write",), ("writelines",), ("write_eof",), ("can_write_eof",)]),
    st.sampled_from([
        ("is_reading",), ("is_closing",), ("get_write_buffer_size",),
        ("extra", "peername"), ("extra", "sockname"), ("extra", "socket"),
    ]),
)


@dataclass
class Program:
    connected: bool  # the first endpoint was made with remote_addr= the second's
    steps: list  # (side, call, *args)


@st.composite
def programs(draw) -> Program:
    return Program(draw(st.booleans()), draw(steps(CALLS)))


class Endpoint(Caller, asyncio.DatagramProtocol):
    """One endpoint's protocol: logs what it is told and what its calls do."""

    def __init__(self, name: str, events: list) -> None:
        self.name = name
        self.events = events
        self.log: list[str] = []
        self.transport = None
        self.addresses: dict = {}  # address -> how the log names it
        self.last_sender = None

    def note(self, what: str) -> None:
        for addr, name in self.addresses.items():  # ports differ from run to run
            what = what.replace(repr(addr), f"<{name}>")
        self.log.append(what)
        self.events.append(None)

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.note("connection_made")

    def datagram_received(self, data, addr) -> None:
        self.last_sender = addr
        self.note(f"datagram {len(data)} {zlib.crc32(data)} from "
                  f"{self.addresses.get(addr, type(addr).__name__)}")

    def error_received(self, exc) -> None:
        self.note(f"error_received({exc!r})")

    def connection_lost(self, exc) -> None:
        self.note(f"connection_lost({exc!r})")

    def make_call(self, name: str, *args):
        transport = self.transport
        if name == "sendto":
            size, target, kind = args
            data = "str" if kind == "str" else payload(kind, size, len(self.log))
            if target == "last sender":
                addr = self.last_sender
            else:
                addr = {name: addr for addr, name in self.addresses.items()}.get(target)
            return transport.sendto(data, addr)
        if name in ("pause_reading", "resume_reading", "is_reading") and sys.version_info < (3, 11):
            # asyncio 3.10's datagram transport raises NotImplementedError; fastloop's
            # cores have them there too, on purpose (test_net_udp says so).
            return "not called on 3.10"
        if name in ("write", "writelines"):
            return getattr(transport, name)([b"x"] if name == "writelines" else b"x")
        if name == "extra":
            value = transport.get_extra_info(args[0])
            return self.addresses.get(value, type(value).__name__)
        return super().make_call(name, *args)


def _unbound_port() -> tuple:
    """An address on 127.0.0.1 where nothing listens (for now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()


def run_program(factory, program: Program) -> tuple[list, bool]:
    """Both endpoints' logs, the handler's calls; and whether the loop settled."""
    stage = Stage(factory)
    loop = stage.loop
    ends = [Endpoint("first", stage.events), Endpoint("second", stage.events)]
    try:
        second, _ = loop.run_until_complete(loop.create_datagram_endpoint(
            lambda: ends[1], local_addr=("127.0.0.1", 0)))
        second_addr = second.get_extra_info("sockname")
        remote = {"remote_addr": second_addr} if program.connected else {}
        first, _ = loop.run_until_complete(loop.create_datagram_endpoint(
            lambda: ends[0], local_addr=("127.0.0.1", 0), **remote))
        first_addr = first.get_extra_info("sockname")
        unbound = _unbound_port()
        ends[0].addresses = {second_addr: "peer", first_addr: "self", unbound: "unbound port"}
        ends[1].addresses = {first_addr: "peer", second_addr: "self", unbound: "unbound port"}
        stage.play(ends, program.steps)
    finally:
        loop.close()
    return [list(stage.handler_calls), ends[0].log, ends[1].log], stage.settled

"""Programs against asyncio streams (StreamReader, StreamWriter), for tests/test_fuzz.py.

A server started with asyncio.start_server (or start_unix_server) writes a stream of
bytes in drawn chunks, with drain() and a few sleep(0) between them, then closes,
with or without write_eof() first. Meanwhile a client made by open_connection with
a drawn `limit` reads it with a drawn list of readexactly, readuntil, readline and
read calls, logging what each returns or raises.

How the stream arrives in pieces is up to the loop, so a read's outcome must not
depend on it:
- read(n) returns what is buffered, up to n bytes: it is topped up with
  readexactly() to n bytes, and the two are logged as one (an IncompleteReadError
  of the top-up as one of readexactly(n) with all the bytes the two got);
- after a LimitOverrunError, what readline() dropped and what is buffered depends on
  the pieces: the client stops reading there;
- readline()'s ValueError for a line longer than the limit says "Separator is found"
  when the whole line had arrived and "Separator is not found" when only more than
  the limit of it had: only that it was raised is logged.
Every other outcome (readexactly's bytes or IncompleteReadError, readuntil's and
readline's lines or the limit error itself) is the same however the bytes arrive.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from dataclasses import dataclass

from hypothesis import strategies as st

from fuzz_io import Stage

ALPHABET = b"ab\nc"
SEPARATORS = [b"\n", b"ab", b"c\n", b"bb"]
GUARD = 10.0  # seconds; a program still reading then is stuck


@dataclass
class Program:
    family: str  # "tcp" or "unix"
    limit: int  # the client's StreamReader limit
    chunks: list  # (size, sleeps after it) the server writes, with drain() after each
    write_eof: bool  # the server calls write_eof() before close()
    reads: list  # (call, arg) the client makes


READS = st.one_of(
    st.tuples(st.just("readexactly"), st.integers(0, 300)),
    st.tuples(st.just("readuntil"), st.sampled_from(SEPARATORS)),
    st.tuples(st.just("readline"), st.none()),
    st.tuples(st.just("read"), st.integers(-1, 300)),
    st.tuples(st.just("at_eof"), st.none()),
)


@st.composite
def programs(draw) -> Program:
    return Program(
        family=draw(st.sampled_from(["tcp", "unix"])),
        limit=draw(st.sampled_from([1, 2, 5, 16, 64, 2 ** 16])),
        chunks=draw(st.lists(st.tuples(st.integers(1, 400), st.integers(0, 2)), max_size=8)),
        write_eof=draw(st.booleans()),
        reads=draw(st.lists(READS, max_size=10)),
    )


def stream_bytes(size: int, start: int) -> bytes:
    """The server's stream from offset `start`: separators are frequent in it."""
    return bytes(ALPHABET[(i * i + 3 * i) // 5 % 4] for i in range(start, start + size))


async def _serve(program: Program, reader, writer) -> None:
    offset = 0
    for size, sleeps in program.chunks:
        writer.write(stream_bytes(size, offset))
        offset += size
        await writer.drain()
        for _ in range(sleeps):
            await asyncio.sleep(0)
    if program.write_eof:
        writer.write_eof()
    writer.close()


async def _read(program: Program, reader: asyncio.StreamReader, log: list) -> None:
    for call, arg in program.reads:
        try:
            if call == "read":
                got = await reader.read(arg)
                if 0 < arg and 0 < len(got) < arg:  # topped up: see the docstring
                    try:
                        got += await reader.readexactly(arg - len(got))
                    except asyncio.IncompleteReadError as exc:
                        raise asyncio.IncompleteReadError(got + exc.partial, arg) from None
                result = got
            elif call == "readline":
                result = await reader.readline()
            elif call == "at_eof":
                result = reader.at_eof()
            else:
                result = await getattr(reader, call)(arg)
        except asyncio.IncompleteReadError as exc:
            log.append(f"{call}({arg!r}) raised IncompleteReadError({exc.partial!r}, "
                       f"{exc.expected!r})")
        except asyncio.LimitOverrunError:
            log.append(f"{call}({arg!r}) raised LimitOverrunError")
            return  # what follows depends on the pieces (see the docstring)
        except ValueError as exc:  # readline's limit error, and bad arguments
            if call == "readline":
                log.append(f"{call}({arg!r}) raised ValueError (a line over the limit)")
                return
            log.append(f"{call}({arg!r}) raised ValueError: {exc}")
        else:
            log.append(f"{call}({arg!r}) -> {result!r}")


async def _main(program: Program, log: list) -> None:
    tmpdir = None
    handler = lambda r, w: _serve(program, r, w)  # noqa: E731
    try:
        if program.family == "unix":
            tmpdir = tempfile.mkdtemp(prefix="flfuzz")
            path = os.path.join(tmpdir, "s")
            server = await asyncio.start_unix_server(handler, path)
            reader, writer = await asyncio.open_unix_connection(path, limit=program.limit)
        else:
            server = await asyncio.start_server(handler, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, limit=program.limit)
        await asyncio.wait_for(_read(program, reader, log), GUARD)
        writer.close()
        await writer.wait_closed()
        server.close()
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)


def run_program(factory, program: Program) -> tuple[list, bool]:
    """The client's log and the handler's calls (a run is always trustworthy)."""
    stage = Stage(factory)
    log: list = []
    try:
        stage.loop.run_until_complete(_main(program, log))
        stage.settle()  # the server's handler ends
    finally:
        stage.loop.close()
    return [list(stage.handler_calls), log], True

"""connect_read_pipe / connect_write_pipe over os.pipe(), socketpairs and FIFOs."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from helpers import run_briefly
from nethelpers import PY, Recorder, net, without_flow  # noqa: F401 - net is a fixture


@pytest.fixture
def pipe(net):
    """(read file, write file), unbuffered binary, closed at teardown if still open."""
    r, w = os.pipe()
    rf = open(r, "rb", buffering=0)
    wf = open(w, "wb", buffering=0)
    net.track(rf)
    net.track(wf)
    return rf, wf


def _read_pipe(net, f, cls=Recorder):
    tr, pr = net.run(net.loop.connect_read_pipe(lambda: net.proto(cls), f))
    net.track(tr)
    assert pr.transport is tr and pr.events == ["made"]
    return tr, pr


def _write_pipe(net, f, cls=Recorder):
    tr, pr = net.run(net.loop.connect_write_pipe(lambda: net.proto(cls), f))
    net.track(tr)
    assert pr.transport is tr and pr.events == ["made"]
    return tr, pr


def _read_all_available(fd):
    out = bytearray()
    while True:
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


# --- read side -----------------------------------------------------------------------------------


def test_read_pipe_data_then_eof(loop, net, pipe):
    rf, wf = pipe
    tr, proto = _read_pipe(net, rf)
    assert tr.get_extra_info("pipe") is rf
    assert os.get_blocking(rf.fileno()) is False  # the transport made it non-blocking
    wf.write(b"first ")
    net.until(lambda: proto.data)
    wf.write(b"second")
    net.until(lambda: len(proto.data) >= 12)
    wf.close()
    net.run(proto.lost)
    assert bytes(proto.data) == b"first second"
    assert proto.events == ["made", "data", "eof", "lost"]
    assert proto.lost_excs == [None]
    assert rf.closed  # the transport closes the pipe it was given


def test_read_pipe_pause_and_resume(loop, net, pipe):
    rf, wf = pipe
    tr, proto = _read_pipe(net, rf)
    # 3.10's read pipe transport lacks is_reading() (ReadTransport's raises).
    has_is_reading = PY >= (3, 11)
    assert not has_is_reading or tr.is_reading() is True
    tr.pause_reading()
    assert not has_is_reading or tr.is_reading() is False
    wf.write(b"waiting")
    wf.close()
    run_briefly(loop, 5)
    assert proto.events == ["made"]
    tr.resume_reading()
    assert not has_is_reading or tr.is_reading() is True
    net.run(proto.lost)
    assert bytes(proto.data) == b"waiting"
    assert proto.events == ["made", "data", "eof", "lost"]


def test_read_pipe_close(loop, net, pipe):
    rf, wf = pipe
    tr, proto = _read_pipe(net, rf)
    assert not tr.is_closing()
    tr.close()
    assert tr.is_closing()
    tr.close()  # twice is harmless
    wf.write(b"after close")
    net.run(proto.lost)
    run_briefly(loop, 2)
    assert proto.lost_excs == [None]
    assert proto.events == ["made", "lost"]
    assert rf.closed


def test_read_pipe_over_a_socket(loop, net):
    a, b = net.socketpair()
    tr, proto = _read_pipe(net, a)
    b.sendall(b"socket as pipe")
    b.shutdown(socket.SHUT_WR)
    net.run(proto.lost)
    assert bytes(proto.data) == b"socket as pipe"
    assert proto.events == ["made", "data", "eof", "lost"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no mkfifo here")
def test_read_pipe_over_a_fifo(loop, net):
    path = os.path.join(net.tmpdir(), "fifo")
    os.mkfifo(path)
    rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    rf = net.track(open(rfd, "rb", buffering=0))
    wf = net.track(open(path, "wb", buffering=0))
    tr, proto = _read_pipe(net, rf)
    wf.write(b"through a fifo")
    wf.close()
    net.run(proto.lost)
    assert bytes(proto.data) == b"through a fifo"


def test_pipe_transports_reject_regular_files(loop, net, tmp_path):
    path = tmp_path / "regular"
    path.write_bytes(b"data")
    with open(path, "rb") as f:
        with pytest.raises(ValueError, match="Pipe transport is for pipes/sockets only."):
            net.run(loop.connect_read_pipe(lambda: net.proto(), f))
    with open(path, "wb") as f:
        with pytest.raises(ValueError,
                           match="Pipe transport is only for pipes, sockets and character devices"):
            net.run(loop.connect_write_pipe(lambda: net.proto(), f))


# --- write side -----------------------------------------------------------------------------------


def test_write_pipe_data_then_write_eof(loop, net, pipe):
    rf, wf = pipe
    os.set_blocking(rf.fileno(), False)
    tr, proto = _write_pipe(net, wf)
    assert tr.get_extra_info("pipe") is wf
    assert tr.can_write_eof() is True
    tr.write(b"abc")
    tr.write(bytearray(b"def"))
    tr.writelines([b"g", memoryview(b"hi")])
    net.until(lambda: tr.get_write_buffer_size() == 0)
    got = _read_all_available(rf.fileno())
    assert got == b"abcdefghi"
    tr.write_eof()
    assert tr.is_closing()
    net.run(proto.lost)
    assert proto.lost_excs == [None]
    assert os.read(rf.fileno(), 10) == b""  # EOF for the reader
    assert wf.closed


def test_write_pipe_large_write_and_flow_control(loop, net, pipe):
    rf, wf = pipe
    os.set_blocking(rf.fileno(), False)
    tr, proto = _write_pipe(net, wf)
    tr.set_write_buffer_limits(high=64 * 1024, low=16 * 1024)
    assert tr.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
    payload = os.urandom(1024 * 1024)
    tr.write(payload)  # a pipe holds 64 KiB at most: the rest is buffered
    assert tr.get_write_buffer_size() > 64 * 1024
    assert proto.events == ["made", "pause"]
    got = bytearray()

    def drain():
        got.extend(_read_all_available(rf.fileno()))
        return len(got) >= len(payload)

    net.until(drain)
    assert bytes(got) == payload
    net.until(lambda: "resume" in proto.events)
    assert proto.events == ["made", "pause", "resume"]
    assert [s for what, s in proto.write_sizes if what == "resume"][0] <= 16 * 1024
    assert tr.get_write_buffer_size() == 0


def test_write_pipe_reader_closed_with_empty_buffer(loop, net, pipe):
    # The reader goes away while nothing is buffered: asyncio notices it (the write end
    # polls readable/error) and closes without an error.
    rf, wf = pipe
    tr, proto = _write_pipe(net, wf)
    rf.close()
    net.run(proto.lost)
    assert proto.lost_excs == [None]
    assert tr.is_closing()


def test_write_pipe_reader_closed_with_data_buffered(loop, net, pipe):
    rf, wf = pipe
    tr, proto = _write_pipe(net, wf)
    tr.set_write_buffer_limits(high=2**30)
    tr.write(b"x" * (1024 * 1024))
    assert tr.get_write_buffer_size() > 0
    rf.close()
    exc = net.run(proto.lost)
    assert isinstance(exc, BrokenPipeError)
    assert proto.lost_excs == [exc]


def test_write_pipe_write_to_a_closed_reader(loop, net, pipe):
    rf, wf = pipe
    tr, proto = _write_pipe(net, wf)
    rf.close()
    tr.write(b"nobody reads this")  # os.write fails with EPIPE at once
    exc = net.run(proto.lost)
    assert isinstance(exc, BrokenPipeError)
    assert proto.lost_excs == [exc]
    # Further writes are dropped silently (no exception).
    tr.write(b"more")


def test_write_pipe_abort_drops_the_buffer(loop, net, pipe):
    rf, wf = pipe
    os.set_blocking(rf.fileno(), False)
    tr, proto = _write_pipe(net, wf)
    tr.set_write_buffer_limits(high=2**30)
    tr.write(b"y" * (1024 * 1024))
    assert tr.get_write_buffer_size() > 0
    tr.abort()
    net.run(proto.lost)
    assert proto.lost_excs == [None]
    got = _read_all_available(rf.fileno())
    assert 0 < len(got) < 1024 * 1024


def test_write_pipe_close_flushes(loop, net, pipe):
    rf, wf = pipe
    os.set_blocking(rf.fileno(), False)
    tr, proto = _write_pipe(net, wf)
    payload = os.urandom(300_000)
    tr.write(payload)
    tr.close()
    got = bytearray()

    def drain():
        got.extend(_read_all_available(rf.fileno()))
        return proto.lost.done()

    net.until(drain)
    got.extend(_read_all_available(rf.fileno()))
    assert bytes(got) == payload
    assert proto.lost_excs == [None]
    assert without_flow(proto.events) == ["made", "lost"]


def test_write_pipe_over_a_socket(loop, net):
    a, b = net.socketpair()
    tr, proto = _write_pipe(net, a)
    tr.write(b"pipe into socket")
    tr.write_eof()
    net.run(proto.lost)

    async def read_all():
        out = b""
        while chunk := await loop.sock_recv(b, 100):
            out += chunk
        return out

    assert net.run(read_all()) == b"pipe into socket"


def test_pipe_to_pipe_with_both_transports(loop, net, pipe):
    rf, wf = pipe
    rtr, reader = _read_pipe(net, rf)
    wtr, writer = _write_pipe(net, wf)
    payload = os.urandom(2 * 1024 * 1024)
    wtr.write(payload)
    wtr.write_eof()
    net.run(reader.lost)
    net.run(writer.lost)
    assert bytes(reader.data) == payload
    assert reader.events == ["made", "data", "eof", "lost"]
    assert writer.lost_excs == [None]


def test_pipe_transports_are_asyncio_transports(loop, net, pipe):
    rf, wf = pipe
    rtr, _ = _read_pipe(net, rf)
    wtr, _ = _write_pipe(net, wf)
    assert isinstance(rtr, asyncio.ReadTransport) and not isinstance(rtr, asyncio.WriteTransport)
    # asyncio's write pipe transport is a full asyncio.Transport (through its flow
    # control base), but what ReadTransport leaves unimplemented stays so.
    assert isinstance(wtr, asyncio.Transport)
    for method in (wtr.is_reading, wtr.pause_reading, wtr.resume_reading):
        with pytest.raises(NotImplementedError):
            method()

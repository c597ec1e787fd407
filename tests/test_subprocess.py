"""subprocess_exec / subprocess_shell and asyncio's subprocess streams, on every loop.

Children are small shell and Python programs. Each test checks what the protocol or
the Process object saw, and that every child was reaped (no zombie) and no fd leaked.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from helpers import DEADLINE, run, run_briefly, run_until
from nethelpers import open_fds

PIPE = asyncio.subprocess.PIPE
PY = sys.executable


def _reaped(pid) -> bool:
    """True once child ``pid`` has been waited for (by anyone)."""
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0) and False
    except ChildProcessError:
        return True


def _wait_reaped(pid, timeout=DEADLINE):
    """Fail unless child ``pid`` is reaped within ``timeout`` (it must not stay a zombie)."""
    deadline = time.monotonic() + timeout
    while not _reaped(pid):
        assert time.monotonic() < deadline, f"child {pid} was not reaped"
        time.sleep(0.01)


class Recorder(asyncio.SubprocessProtocol):
    """Records every SubprocessProtocol event, and the data per pipe."""

    def __init__(self, loop):
        self.events: list = []
        self.data = {1: bytearray(), 2: bytearray()}
        self.transport = None
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def pipe_data_received(self, fd, data):
        assert isinstance(data, bytes)
        self.data[fd] += data

    def pipe_connection_lost(self, fd, exc):
        self.events.append(("pipe_lost", fd, exc))

    def process_exited(self):
        self.events.append(("exited", self.transport.get_returncode()))

    def connection_lost(self, exc):
        self.events.append(("lost", exc))
        self.lost.set_result(None)


def _exec(loop, *args, **kw):
    return run(loop, loop.subprocess_exec(lambda: Recorder(loop), *args, **kw))


# --- the protocol API ------------------------------------------------------------------------


def test_exec_protocol_events_and_data(loop):
    fds = open_fds()
    transport, proto = _exec(loop, PY, "-c", "import sys; d = sys.stdin.buffer.read(); "
                             "sys.stdout.buffer.write(d); sys.stderr.write('err'); sys.exit(3)",
                             stdin=PIPE, stdout=PIPE, stderr=PIPE)
    assert proto.events == ["made"] and proto.transport is transport
    pid = transport.get_pid()
    assert isinstance(pid, int) and transport.get_returncode() is None
    stdin = transport.get_pipe_transport(0)
    stdin.write(b"hello ")
    stdin.writelines([b"sub", b"process"])
    stdin.close()
    run(loop, proto.lost)
    assert bytes(proto.data[1]) == b"hello subprocess"
    assert bytes(proto.data[2]) == b"err"
    assert transport.get_returncode() == 3
    # All three pipes are lost and the process exits (in either order); connection_lost
    # comes last, once.
    assert sorted(e for e in proto.events[1:-1] if e[0] == "pipe_lost") == [
        ("pipe_lost", 0, None), ("pipe_lost", 1, None), ("pipe_lost", 2, None)]
    assert ("exited", 3) in proto.events
    assert proto.events[-1] == ("lost", None) and len(proto.events) == 6
    assert run(loop, transport._wait()) == 3
    transport.close()
    assert _reaped(pid)
    del transport, proto, stdin
    run_briefly(loop, 3)
    gc.collect()
    assert open_fds() == fds


def test_transport_introspection(loop):
    transport, proto = _exec(loop, PY, "-c", "import sys; sys.stdin.read()",
                             stdin=PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        assert transport.get_pipe_transport(0) is not None
        assert transport.get_pipe_transport(1) is None  # DEVNULL: not a pipe of ours
        assert transport.get_pipe_transport(2) is None
        popen = transport.get_extra_info("subprocess")
        assert isinstance(popen, subprocess.Popen) and popen.pid == transport.get_pid()
        assert f"pid={transport.get_pid()}" in repr(transport)
        assert "running" in repr(transport)
        assert not transport.is_closing()
    finally:
        transport.close()
    assert transport.is_closing()
    run(loop, proto.lost)
    assert transport.get_returncode() == -signal.SIGKILL  # close() kills a running child


def test_shell_exit_status_and_signals(loop):
    async def main():
        ok = await asyncio.create_subprocess_shell("exit 7")
        killed = await asyncio.create_subprocess_shell("kill -9 $$")
        return await ok.wait(), await killed.wait()

    assert run(loop, main()) == (7, -signal.SIGKILL)


def test_send_signal_terminate_kill(loop):
    async def main():
        codes = []
        for how in ("send_signal", "terminate", "kill"):
            proc = await asyncio.create_subprocess_exec(
                # Short sleeps: a SIGINT that lands between print() and a long
                # sleep() is handled only when that sleep ends.
                PY, "-c", "import time; print('up', flush=True)\nfor _ in range(600): time.sleep(0.1)",
                stdout=PIPE, stderr=subprocess.DEVNULL)
            assert await proc.stdout.readline() == b"up\n"
            if how == "send_signal":
                proc.send_signal(signal.SIGINT)
            else:
                getattr(proc, how)()
            codes.append(await proc.wait())
        return codes

    rc_int, rc_term, rc_kill = run(loop, main())
    # Python re-raises an unhandled KeyboardInterrupt as death by SIGINT.
    assert (rc_int, rc_term, rc_kill) == (-signal.SIGINT, -signal.SIGTERM, -signal.SIGKILL)


def test_kill_child_that_ignores_sigterm(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)", stdout=PIPE)
        assert await proc.stdout.readline() == b"ready\n"
        proc.terminate()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), 0.3)
        assert proc.returncode is None
        proc.kill()
        return await proc.wait()

    assert run(loop, main()) == -signal.SIGKILL


# --- streams: communicate, readers, writers ---------------------------------------------------


def test_communicate_several_mib_both_ways(loop):
    # 8 MiB in and 8 MiB out through a child that echoes as it reads: neither side may
    # wait for the other to finish first.
    data = os.urandom(8 << 20)

    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", "import shutil, sys; shutil.copyfileobj(sys.stdin.buffer, "
            "sys.stdout.buffer, 65536); sys.stderr.write('x' * 1000000)",
            stdin=PIPE, stdout=PIPE, stderr=PIPE)
        out, err = await proc.communicate(data)
        return out, err, proc.returncode

    fds = open_fds()
    out, err, rc = run(loop, main(), timeout=60)
    assert rc == 0 and len(out) == len(data)
    assert hashlib.sha256(out).digest() == hashlib.sha256(data).digest()
    assert err == b"x" * 1000000
    gc.collect()
    assert open_fds() == fds


def test_stream_reads_and_drain(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", "import sys\nfor line in sys.stdin: print(line.strip().upper(), "
            "flush=True)", stdin=PIPE, stdout=PIPE)
        lines = []
        for word in (b"one", b"two", b"three"):
            proc.stdin.write(word + b"\n")
            await proc.stdin.drain()
            lines.append(await proc.stdout.readline())
        proc.stdin.close()
        rest = await proc.stdout.read()
        return lines, rest, await proc.wait()

    assert run(loop, main()) == ([b"ONE\n", b"TWO\n", b"THREE\n"], b"", 0)


def test_stderr_to_stdout_and_devnull(loop):
    async def main():
        merged = await asyncio.create_subprocess_shell(
            "echo out; echo err >&2", stdout=PIPE, stderr=subprocess.STDOUT)
        out, err = await merged.communicate()
        quiet = await asyncio.create_subprocess_shell(
            "echo out; echo err >&2", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return sorted(out.split()), err, await quiet.communicate(), quiet.returncode

    assert run(loop, main()) == ([b"err", b"out"], None, (None, None), 0)


def test_stdio_from_fds_and_files(loop, tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes(b"from a file\n")
    dst = tmp_path / "out.txt"

    async def main():
        r, w = os.pipe()
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            proc = await asyncio.create_subprocess_exec(
                "cat", stdin=fin, stdout=fout, stderr=w)
            rc = await proc.wait()
        os.close(w)
        with open(r, "rb") as err:
            return rc, err.read()

    assert run(loop, main()) == (0, b"")
    assert dst.read_bytes() == b"from a file\n"


# --- Popen arguments ------------------------------------------------------------------------------


def _output(loop, *args, **kw):
    async def main():
        proc = await asyncio.create_subprocess_exec(*args, stdout=PIPE, **kw)
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        return out

    return run(loop, main())


def test_cwd_env_and_pass_fds(loop, tmp_path):
    assert _output(loop, "pwd", cwd=tmp_path).strip() == str(tmp_path.resolve()).encode()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "FASTLOOP_TEST": "yes"}
    assert _output(loop, "sh", "-c", "echo $FASTLOOP_TEST", env=env) == b"yes\n"
    r, w = os.pipe()
    try:
        _output(loop, PY, "-c", f"import os; os.write({w}, b'passed')", pass_fds=(w,))
        assert os.read(r, 100) == b"passed"
    finally:
        os.close(r)
        os.close(w)


def test_sessions_and_process_groups(loop):
    code = "import os; print(os.getsid(0), os.getpgid(0))"
    sid, pgid = map(int, _output(loop, PY, "-c", code, start_new_session=True).split())
    assert sid == pgid != os.getsid(0)
    if sys.version_info >= (3, 11):
        _, pgid = map(int, _output(loop, PY, "-c", code, process_group=0).split())
        assert pgid != os.getpgid(0)


def test_preexec_fn(loop):
    out = _output(loop, PY, "-c", "import os; print(os.environ['SET_BY_PREEXEC'])",
                  preexec_fn=lambda: os.environ.__setitem__("SET_BY_PREEXEC", "1"))
    assert out == b"1\n"


@pytest.mark.parametrize("kwargs, message", [
    ({"universal_newlines": True}, "universal_newlines must be False"),
    ({"shell": True}, "shell must be False"),
    ({"bufsize": 1}, "bufsize must be 0"),
    ({"text": True}, "text must be False"),
    ({"encoding": "utf-8"}, "encoding must be None"),
    ({"errors": "strict"}, "errors must be None"),
])
def test_exec_rejects_text_mode_arguments(loop, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _exec(loop, "true", **kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"universal_newlines": True}, "universal_newlines must be False"),
    ({"shell": False}, "shell must be True"),
    ({"bufsize": 4096}, "bufsize must be 0"),
    ({"text": True}, "text must be False"),
])
def test_shell_rejects_bad_arguments(loop, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run(loop, loop.subprocess_shell(lambda: Recorder(loop), "true", **kwargs))


def test_shell_command_must_be_a_string(loop):
    with pytest.raises(ValueError, match="cmd must be a string"):
        run(loop, loop.subprocess_shell(lambda: Recorder(loop), ["true"]))


def test_missing_program_and_bad_cwd(loop, tmp_path):
    fds = open_fds()
    with pytest.raises(FileNotFoundError):
        _exec(loop, str(tmp_path / "no-such-program"))
    with pytest.raises(FileNotFoundError):
        _exec(loop, "true", cwd=tmp_path / "no-such-dir")
    with pytest.raises(TypeError):
        _exec(loop, "true", no_such_popen_argument=1)
    with pytest.raises(TypeError):
        _exec(loop, 123)  # not a str, bytes or path
    gc.collect()
    assert open_fds() == fds


# --- many children, threads, cancellation --------------------------------------------------------


def test_two_hundred_concurrent_children(loop):
    async def main():
        procs = await asyncio.gather(*(
            asyncio.create_subprocess_exec(PY, "-c", f"import sys; sys.exit({i % 7})",
                                           stdout=PIPE)
            for i in range(200)))
        codes = await asyncio.gather(*(p.wait() for p in procs))
        return [p.pid for p in procs], codes

    fds = open_fds()
    pids, codes = run(loop, main(), timeout=120)
    assert codes == [i % 7 for i in range(200)]
    for pid in pids:
        assert _reaped(pid)
    gc.collect()
    assert open_fds() == fds


def test_no_thread_per_child(loop, loop_kind):
    if loop_kind == "aio" and sys.version_info < (3, 12):
        pytest.skip("asyncio's default child watcher before 3.12 is a thread per child")
    if not hasattr(os, "pidfd_open") and not hasattr(__import__("select"), "kqueue"):
        pytest.skip("neither pidfd nor kqueue: children are waited for by threads")

    async def main():
        before = threading.active_count()
        # `cat` lives until its stdin closes, after the count: a child that had
        # already exited would take its watcher thread, if any, with it.
        procs = [await asyncio.create_subprocess_exec("cat", stdin=PIPE) for _ in range(20)]
        during = threading.active_count()
        for proc in procs:
            proc.stdin.close()
        await asyncio.gather(*(p.wait() for p in procs))
        return before, during

    before, during = run(loop, main())
    assert during == before


def test_loop_in_another_thread(loop):
    result = []

    def in_thread():
        async def main():
            proc = await asyncio.create_subprocess_exec("echo", "from a thread", stdout=PIPE)
            out, _ = await proc.communicate()
            return out, proc.returncode

        result.append(loop.run_until_complete(asyncio.wait_for(main(), DEADLINE)))

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(DEADLINE + 5)
    assert result == [(b"from a thread\n", 0)]


def test_wait_for_timeout_then_kill(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec("sleep", "60")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(proc.communicate(), 0.1)
        proc.kill()
        return proc.pid, await proc.wait()

    pid, rc = run(loop, main())
    assert rc == -signal.SIGKILL and _reaped(pid)


def test_cancelled_while_connecting_pipes_kills_the_child(loop, loop_kind):
    started = []

    class Spy(Recorder):
        def __init__(self):
            super().__init__(loop)
            started.append(self)

    async def main():
        task = asyncio.ensure_future(
            loop.subprocess_exec(Spy, "sleep", "60", stdin=PIPE, stdout=PIPE))
        await asyncio.sleep(0)  # the child is started; its pipes are being connected
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(loop, main())
    assert len(started) == 1
    # The child was killed and waited for before the cancellation reached us.
    assert not any(_live_children_named("sleep 60"))
    # The transport's own task that connects the pipes may still be finishing (the
    # child can die before it does, on any loop), and a pipe it closes on its way out
    # calls connection_lost on the next iteration: then no pipe is left open.
    run_until(loop, lambda: not asyncio.all_tasks(loop))
    run_briefly(loop)


def _live_children_named(cmdline):
    """Pids of our live (not zombie) children whose command line is ``cmdline``."""
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().rsplit(b")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().rstrip(b"\0").replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat[1]) == os.getpid() and stat[0] != b"Z" and args == cmdline:
            yield int(entry)


def test_debug_mode_logs_the_child(loop, caplog):
    loop.set_debug(True)
    caplog.set_level("DEBUG", logger="asyncio")

    async def main():
        proc = await asyncio.create_subprocess_exec("true")
        return proc.pid, await proc.wait()

    pid, rc = run(loop, main())
    assert rc == 0
    assert any(f"pid {pid}" in r.getMessage() for r in caplog.records)
    assert any("run 'true'" in r.getMessage() or "'true'" in r.getMessage()
               for r in caplog.records)

"""Child processes: ``subprocess_exec``, ``subprocess_shell``, and noticing a child exit.

The transport is asyncio's own Unix subprocess transport, the reference and not hot: it
starts the child with ``subprocess.Popen`` and connects its pipes through our
``connect_read_pipe``/``connect_write_pipe``. What is ours is how the loop learns that
a child has exited. asyncio asks a child watcher (on 3.10 and 3.11 by default a thread
per child); here the loop watches each child itself, without a thread where the kernel
allows it:

- Linux 5.3+: ``os.pidfd_open(pid)`` gives an fd that turns readable when the child
  exits, registered as an ordinary reader.
- macOS and the BSDs: a kqueue of its own holding an EVFILT_PROC/NOTE_EXIT filter for
  the pid; a kqueue fd is itself pollable, so it too is an ordinary reader.
- Otherwise (no pidfd or kqueue, or pidfd_open refused by a seccomp filter): a thread
  per child blocks in ``waitpid(pid)``, as asyncio's ThreadedChildWatcher does; on 3.14
  it is asyncio's own ``_ThreadedChildWatcher``. A SIGCHLD handler would need the main
  thread and a process-wide signal that the application or another loop may own.

On 3.14 the loop also has asyncio's ``_watcher`` attribute, made as asyncio's Unix loop
makes it: a ``_PidfdChildWatcher`` where ``can_use_pidfd()`` (the pidfds above are then
used) and a ``_ThreadedChildWatcher`` where not (every child is then waited for by it).

Only the child's own pid is ever waited for, never -1, so children started by other
code in the process are left to it. A child still running when the loop closes is
handed to a thread that reaps it, so it never lingers as a zombie.
"""

from __future__ import annotations

import functools
import os
import select
import threading
from asyncio import base_events, tasks, unix_events
from asyncio.log import logger
from asyncio.unix_events import _UnixSelectorEventLoop as _UnixSelectorLoop
from asyncio.unix_events import _UnixSubprocessTransport
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio
    from asyncio.base_subprocess import BaseSubprocessTransport
    from collections.abc import Callable, Sequence
    from typing import IO, TypeAlias

    # What the mixin is combined with (fastloop._loop.loop_class_for): the core.
    from ._cy.core import CoreLoop as _CoreLoop

    _ExitNotifier: TypeAlias = "_Pidfd | _ProcessKqueue"
    # A child's stdin, stdout or stderr as subprocess_exec passes it on.
    _File: TypeAlias = int | IO[Any] | None
else:
    _CoreLoop = object

_BaseEventLoop = base_events.BaseEventLoop

# The exit status asyncio reports when it cannot learn the real one.
UNKNOWN_RETURNCODE = 255

# Tests set this to False to exercise the thread fallback where pidfds or kqueue exist.
use_exit_notifier = True

# asyncio 3.14 reaps a child and publishes its exit (transport._process_exited) in one
# step of the loop thread, so that no send_signal() can reach the pid once it is free
# for reuse (gh-127049); its thread watcher waits with waitid(WNOWAIT), which does not
# reap. Earlier versions publish on a later iteration, through call_soon_threadsafe.
# Asked of the running asyncio: does its watcher callback go through the queue?
_PUBLISH_WITH_REAP = "call_soon_threadsafe" not in (
    _UnixSelectorLoop._child_watcher_callback.__code__.co_names
)

# asyncio 3.14 shields the reaping of a child whose start failed or was cancelled, so
# that a second cancellation cannot interrupt it. Asked of the running asyncio too.
_SHIELD_REAP = "shield" in _UnixSelectorLoop._make_subprocess_transport.__code__.co_names

# 3.14's Unix loop makes one of these private watchers in __init__, as ``_watcher``.
_ASYNCIO_WATCHERS = hasattr(unix_events, "_ThreadedChildWatcher")


class _Pidfd:
    """A pidfd of one child, readable once it exits (Linux)."""

    def __init__(self, pid: int) -> None:
        self._fd: int = os.pidfd_open(pid)

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        os.close(self._fd)


class _ProcessKqueue:
    """A kqueue that turns readable once child ``pid`` exits (macOS, BSD)."""

    def __init__(self, pid: int) -> None:
        self._kqueue = select.kqueue()
        flags = select.KQ_EV_ADD | select.KQ_EV_ONESHOT
        event = select.kevent(pid, select.KQ_FILTER_PROC, flags, select.KQ_NOTE_EXIT)
        try:
            self._kqueue.control([event], 0, 0)
        except BaseException:
            # ESRCH: the child has exited already (the thread fallback reaps it).
            self._kqueue.close()
            raise

    def fileno(self) -> int:
        fd: int = self._kqueue.fileno()  # Any where the stubs lack kqueue (Linux)
        return fd

    def close(self) -> None:
        self._kqueue.close()


def _open_exit_notifier(pid: int, pidfds: bool) -> _ExitNotifier | None:
    """Return a pollable object that turns readable when ``pid`` exits, or None."""
    if not use_exit_notifier:
        return None
    kind: type[_Pidfd] | type[_ProcessKqueue]
    if hasattr(os, "pidfd_open"):
        if not pidfds:
            return None
        kind = _Pidfd
    elif hasattr(select, "kqueue"):
        kind = _ProcessKqueue
    else:
        return None
    try:
        return kind(pid)
    except OSError:
        return None


def _reap(pid: int) -> int | None:
    """Wait for child ``pid`` and return its returncode; None if it was reaped elsewhere."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status)


def _reap_in_thread(
    pid: int, on_exit: Callable[[int | None], object], after: threading.Thread | None = None
) -> None:
    """Reap ``pid`` in a daemon thread, then call ``on_exit(returncode)`` there.

    With ``after``, that thread is joined first (it may reap ``pid`` itself).
    """

    def reap() -> None:
        if after is not None:
            after.join()
        on_exit(_reap(pid))

    threading.Thread(target=reap, name=f"fastloop-waitpid-{pid}", daemon=True).start()


def _wait_in_thread(pid: int, on_exit: Callable[[], object]) -> None:
    """Wait in a daemon thread until ``pid`` has exited, not reaping it; then ``on_exit()``."""

    def wait() -> None:
        try:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:  # reaped elsewhere already
            pass
        on_exit()

    threading.Thread(target=wait, name=f"fastloop-waitpid-{pid}", daemon=True).start()


class SubprocessMixin(_CoreLoop):
    """The subprocess half of the loop; needs the core's _add_reader and the pipes."""

    def __init__(self, *, backend: str | None = None) -> None:
        super().__init__(backend=backend)
        # pid -> (transport, exit notifier or None when a thread waits for it), for
        # every child not reaped yet.
        self._children: dict[int, tuple[BaseSubprocessTransport, _ExitNotifier | None]] = {}
        if _ASYNCIO_WATCHERS:
            # As 3.14's Unix loop chooses, at creation (white-box code reads it).
            self._watcher: Any = (
                unix_events._PidfdChildWatcher()
                if unix_events.can_use_pidfd()
                else unix_events._ThreadedChildWatcher()
            )
            # What waits for a child when no notifier can be opened.
            self._thread_watcher: Any = (
                self._watcher
                if isinstance(self._watcher, unix_events._ThreadedChildWatcher)
                else unix_events._ThreadedChildWatcher()
            )

    # --- Borrowed from asyncio.base_events.BaseEventLoop ----------------------
    # The argument checks and debug logging, bound as they are so that each
    # interpreter keeps its own messages; they call _make_subprocess_transport.
    subprocess_exec = _BaseEventLoop.subprocess_exec
    subprocess_shell = _BaseEventLoop.subprocess_shell
    _log_subprocess = _BaseEventLoop._log_subprocess
    # --- end of borrowed block ------------------------------------------------

    async def _make_subprocess_transport(
        self,
        protocol: asyncio.SubprocessProtocol,
        args: str | bytes | Sequence[str | bytes],
        shell: bool,
        stdin: _File,
        stdout: _File,
        stderr: _File,
        bufsize: int,
        extra: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> BaseSubprocessTransport:
        # Before the child is started: on a closed loop it would be left running.
        self._check_closed()
        waiter = self.create_future()
        transport: BaseSubprocessTransport = _UnixSubprocessTransport(
            self, protocol, args, shell, stdin, stdout, stderr, bufsize,
            waiter=waiter, extra=extra, **kwargs,
        )
        self._watch_child(transport)
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            # Connecting a pipe failed or we were cancelled: the child is killed
            # and reaped before the error reaches the caller, as in asyncio.
            transport.close()
            if _SHIELD_REAP:
                await tasks.shield(transport._wait())
            else:
                await transport._wait()
            raise
        return transport

    def _watch_child(self, transport: BaseSubprocessTransport) -> None:
        """Arrange for ``transport._process_exited`` once its child has exited."""
        pid = transport.get_pid()
        assert pid is not None  # the transport has started its child
        # On 3.14, no pidfd where asyncio's can_use_pidfd() said no (as asyncio).
        pidfds = not _ASYNCIO_WATCHERS or self._watcher is not self._thread_watcher
        notifier = _open_exit_notifier(pid, pidfds)
        self._children[pid] = (transport, notifier)
        if notifier is not None:
            self._add_reader(notifier.fileno(), self._on_child_exit_notified, pid)
        elif _ASYNCIO_WATCHERS:
            # It calls back in this thread, having reaped the child.
            self._thread_watcher.add_child_handler(pid, self._on_child_reaped_here)
        elif _PUBLISH_WITH_REAP and hasattr(os, "waitid"):
            _wait_in_thread(pid, functools.partial(self._on_child_waited, pid))
        else:
            _reap_in_thread(pid, functools.partial(self._on_child_reaped, pid))

    def _on_child_exit_notified(self, pid: int) -> None:
        """Reader callback: the notifier of ``pid`` says it has exited."""
        transport, notifier = self._children[pid]
        # This reader is removed whenever the notifier is.
        assert notifier is not None
        # Reaped below: should the loop close before _child_exited runs, there is
        # nothing left for _close_children to do.
        self._children[pid] = (transport, None)
        self._close_notifier(notifier)
        if _PUBLISH_WITH_REAP:
            self._child_exited(pid, _reap(pid))
        else:
            # Delivered on the next iteration, as asyncio's pidfd watcher then does.
            self.call_soon(self._child_exited, pid, _reap(pid))

    def _close_notifier(self, notifier: _ExitNotifier) -> None:
        """Stop watching ``notifier`` and close it."""
        self._remove_reader(notifier.fileno())
        notifier.close()

    def _on_child_waited(self, pid: int) -> None:
        """In a waiting thread: ``pid`` has exited; the loop reaps it and publishes."""
        try:
            self.call_soon_threadsafe(self._reap_and_publish, pid)
        except RuntimeError:  # the loop was closed while the child ran
            _reap(pid)
            logger.warning("Loop %r that handles pid %r is closed", self, pid)

    def _reap_and_publish(self, pid: int) -> None:
        """Reap ``pid`` and tell its transport, in one step (no kill() in between)."""
        if pid in self._children:  # not handed over by _close_children
            self._child_exited(pid, _reap(pid))

    def _on_child_reaped_here(self, pid: int, returncode: int) -> None:
        """asyncio's thread watcher, in the loop thread: ``pid`` was just reaped."""
        if pid not in self._children:  # handed over by _close_children
            return
        proc = self._children[pid][0]._proc
        # Popen reaped it first and kept its status; the watcher, finding no child,
        # reported 255.
        popen_reaped = proc is not None and proc.returncode is not None
        self._child_exited(pid, None if popen_reaped else returncode)

    def _on_child_reaped(self, pid: int, returncode: int | None) -> None:
        """In a waiting thread: pass the child's returncode to the loop."""
        try:
            self.call_soon_threadsafe(self._child_exited, pid, returncode)
        except RuntimeError:  # the loop was closed while the child ran
            logger.warning("Loop %r that handles pid %r is closed", self, pid)

    def _child_exited(self, pid: int, returncode: int | None) -> None:
        """Tell the transport of ``pid`` that its child exited with ``returncode``."""
        transport, _ = self._children.pop(pid)
        if returncode is None:
            # Someone else reaped it: usually Popen.poll() in transport.close(),
            # which kept the status; code calling waitpid(-1) leaves us nothing.
            proc = transport._proc
            returncode = proc.returncode if proc is not None else None
        if returncode is None:
            logger.warning(
                "child process pid %d was reaped elsewhere: "
                "reporting returncode %d", pid, UNKNOWN_RETURNCODE,
            )
            returncode = UNKNOWN_RETURNCODE
        transport._process_exited(returncode)

    def _close_children(self) -> None:
        """On close: children still running are reaped by threads, never left as zombies."""
        for pid, (_, notifier) in self._children.items():
            if notifier is not None:
                self._close_notifier(notifier)
                _reap_in_thread(pid, functools.partial(self._on_child_reaped, pid))
            elif _ASYNCIO_WATCHERS:
                # Its thread reaps the child once it exits and sees the loop closed,
                # unless it has queued the reap on this loop already (it never runs
                # now): once that thread is done, whatever it left is reaped.
                thread = self._thread_watcher._threads.get(pid)
                _reap_in_thread(pid, lambda returncode: None, after=thread)
            elif _PUBLISH_WITH_REAP:
                # Its thread only waits (WNOWAIT): it may have queued the reap on this
                # loop already, which will not run now. (It warns when it wakes.)
                _reap_in_thread(pid, lambda returncode: None)
        self._children.clear()

"""Poller: readiness of file descriptors, over ``select.epoll`` or ``select.kqueue``.

Both backends offer the same small interface (docs/core.md): ``name``,
``modify(fd, events)``, ``poll(timeout)``, ``invalidate(fd)``, ``fileno()``,
``close()``; events are masks of READ and WRITE. Changes go to the kernel at once,
so an fd that cannot be polled (a regular file: EPERM) fails in add_reader, as
with asyncio. The poller never calls user code; the core owns the callbacks.

Some facts about epoll (epoll(7)):
- A registration belongs to the open file description, not to the fd number. It
  disappears when the last fd referring to the description is closed; if the fd
  was dup()ed (into a child process, say) it lives on, and events keep coming for
  an fd number the program may already reuse for something else.
- So our table and the kernel's can disagree once an fd was closed without being
  removed: EPOLL_CTL_ADD may fail with EEXIST (still registered) and
  EPOLL_CTL_MOD with ENOENT (already gone). Each is retried as the other one.
- EPOLL_CTL_DEL on a closed fd fails with EBADF, on an unknown one with ENOENT;
  either way the registration is gone or unreachable, so both are ignored.
- EPOLLERR and EPOLLHUP are reported even when not asked for; they mean that
  reading and writing will both fail at once, so they report READ|WRITE.
- Python's epoll.poll() rounds its timeout up to milliseconds and retries on
  EINTR after running signal handlers (PEP 475); a handler's exception
  (KeyboardInterrupt) propagates from poll().
"""

from __future__ import annotations

import errno
import select

READ = 1
WRITE = 2

_GONE = (errno.EBADF, errno.ENOENT)


def _check_backend(backend: str | None, name: str) -> None:
    """Refuse a backend other than this platform's own (fastloop/_backend.py asks)."""
    if backend == "io_uring":
        raise OSError(errno.EOPNOTSUPP, "the io_uring backend needs fastloop's Cython core, "
                      "and this is the pure-Python one")
    if backend is not None and backend != name:
        raise ValueError(f"unknown poller backend {backend!r}")

if hasattr(select, "epoll"):
    _EPOLLIN = select.EPOLLIN
    _EPOLLOUT = select.EPOLLOUT
    # READ|WRITE mask -> epoll mask.
    _TO_EPOLL = (0, _EPOLLIN, _EPOLLOUT, _EPOLLIN | _EPOLLOUT)

    def _from_epoll(ev: int) -> int:
        mask = 0
        if ev & ~_EPOLLOUT:  # EPOLLIN, EPOLLPRI, EPOLLERR, EPOLLHUP
            mask |= READ
        if ev & ~_EPOLLIN:  # EPOLLOUT, EPOLLERR, EPOLLHUP
            mask |= WRITE
        return mask

    # epoll mask (the bits a poll can report) -> READ|WRITE mask, by table lookup.
    _EPOLL_BITS = 0x1F  # EPOLLIN|EPOLLPRI|EPOLLOUT|EPOLLERR|EPOLLHUP
    _FROM_EPOLL = tuple(_from_epoll(ev) for ev in range(_EPOLL_BITS + 1))

    class Poller:
        """Level-triggered epoll."""

        name = "epoll"

        def __init__(self, backend: str | None = None) -> None:
            _check_backend(backend, self.name)
            self._epoll = select.epoll()
            self._masks: dict[int, int] = {}  # fd -> the READ|WRITE mask the kernel was given

        def fileno(self) -> int:
            return self._epoll.fileno()

        def modify(self, fd: int, events: int) -> None:
            """Watch ``fd`` for ``events`` (READ|WRITE); 0 forgets it."""
            old = self._masks.get(fd, 0)
            if events == old:
                return
            if not events:
                del self._masks[fd]
                self._unregister(fd)
                return
            epoll = self._epoll
            if old:
                try:
                    epoll.modify(fd, _TO_EPOLL[events])
                except FileNotFoundError:  # closed and reopened since: gone
                    epoll.register(fd, _TO_EPOLL[events])
            else:
                try:
                    epoll.register(fd, _TO_EPOLL[events])
                except FileExistsError:  # closed without removal, number reused
                    epoll.modify(fd, _TO_EPOLL[events])
            self._masks[fd] = events

        def poll(self, timeout: float | None = None) -> list[tuple[int, int]]:
            """Wait up to ``timeout`` seconds (None or negative: forever) for events.

            Return a list of ``(fd, events)``.
            """
            if timeout is None:
                timeout = -1
            events = self._epoll.poll(timeout)
            if not events:  # the common case on a busy loop: no list to build
                return events
            table = _FROM_EPOLL
            return [(fd, table[ev & _EPOLL_BITS]) for fd, ev in events]

        def invalidate(self, fd: int) -> None:
            """Forget ``fd``, which is about to be closed."""
            if self._masks.pop(fd, 0):
                self._unregister(fd)

        def _unregister(self, fd: int) -> None:
            try:
                self._epoll.unregister(fd)
            except OSError as exc:
                if exc.errno not in _GONE:
                    raise

        def close(self) -> None:
            self._masks.clear()
            self._epoll.close()

else:
    # Some facts about kqueue (kqueue(2)): reading and writing are two separate
    # filters, added and deleted one by one; closing an fd deletes its filters,
    # so a reused fd number starts clean, and EV_ADD of a present filter only
    # updates it. EV_DELETE of a filter that is gone fails with ENOENT or EBADF.
    # EV_EOF on the write filter means writing fails now: like an epoll hang-up.
    _FILTERS = ((READ, select.KQ_FILTER_READ), (WRITE, select.KQ_FILTER_WRITE))
    _KQ_EV_ADD = select.KQ_EV_ADD
    _KQ_EV_DELETE = select.KQ_EV_DELETE
    _KQ_EV_EOF = select.KQ_EV_EOF
    _KQ_EV_ERROR = select.KQ_EV_ERROR
    _KQ_FILTER_READ = select.KQ_FILTER_READ
    _KQ_FILTER_WRITE = select.KQ_FILTER_WRITE

    class Poller:
        """kqueue, one filter per direction."""

        name = "kqueue"

        def __init__(self, backend: str | None = None) -> None:
            _check_backend(backend, self.name)
            self._kqueue = select.kqueue()
            self._masks: dict[int, int] = {}  # fd -> the READ|WRITE mask the kernel was given
            self._nfilters = 0

        def fileno(self) -> int:
            return self._kqueue.fileno()

        def modify(self, fd: int, events: int) -> None:
            """Watch ``fd`` for ``events`` (READ|WRITE); 0 forgets it."""
            old = self._masks.get(fd, 0)
            if events == old:
                return
            for bit, kfilter in _FILTERS:
                if events & bit and not old & bit:
                    self._kqueue.control([select.kevent(fd, kfilter, _KQ_EV_ADD)], 0, 0)
                    self._nfilters += 1
                elif old & bit and not events & bit:
                    self._delete(fd, kfilter)
            if events:
                self._masks[fd] = events
            else:
                del self._masks[fd]

        def poll(self, timeout: float | None = None) -> list[tuple[int, int]]:
            """Wait up to ``timeout`` seconds (None or negative: forever) for events.

            Return a list of ``(fd, events)``, one per fd.
            """
            if timeout is not None and timeout < 0:
                timeout = None
            ready: dict[int, int] = {}
            for kev in self._kqueue.control(None, max(self._nfilters, 1), timeout):
                if kev.flags & _KQ_EV_ERROR or (
                    kev.flags & _KQ_EV_EOF and kev.filter == _KQ_FILTER_WRITE
                ):
                    mask = READ | WRITE
                elif kev.filter == _KQ_FILTER_READ:
                    mask = READ
                else:
                    mask = WRITE
                ready[kev.ident] = ready.get(kev.ident, 0) | mask
            return list(ready.items())

        def invalidate(self, fd: int) -> None:
            """Forget ``fd``, which is about to be closed."""
            old = self._masks.pop(fd, 0)
            for bit, kfilter in _FILTERS:
                if old & bit:
                    self._delete(fd, kfilter)

        def _delete(self, fd: int, kfilter: int) -> None:
            self._nfilters -= 1
            try:
                self._kqueue.control([select.kevent(fd, kfilter, _KQ_EV_DELETE)], 0, 0)
            except OSError as exc:
                if exc.errno not in _GONE:
                    raise

        def close(self) -> None:
            self._masks.clear()
            self._nfilters = 0
            self._kqueue.close()

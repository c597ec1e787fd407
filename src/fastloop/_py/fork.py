"""fork(): a loop that exists when the process forks, used in the child.

The twin of _cy/fork.pyx, which says why: the child inherits the loop's epoll fd and
waker, which name the kernel objects the parent's loop keeps using, so a loop made
before the last fork moves to its own poller and waker (``CoreLoop._leave_parent``)
before its first syscall on them in the child. ``count`` is how many forks this
process went through as a child; each loop remembers the value it was made under.
"""

from __future__ import annotations

import os

count = 0
# Pollers a child let go of without closing: a kqueue fd is not inherited, and its
# number may name another file by now; kept, so that no finaliser closes that number.
abandoned: list[object] = []


def _after_fork_in_child() -> None:
    global count
    count += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

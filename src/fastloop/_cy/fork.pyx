# fork(): a loop that exists when the process forks, used in the child.
#
# The child inherits the loop's poller and waker fds, and on Linux they name the very
# kernel objects the parent's loop keeps using: the epoll instance (an EPOLL_CTL from
# the child edits the parent's interest list: a remove_reader, or a transport closed
# in the child, silently deletes the parent's registration of that socket) and the
# eventfd (a child draining it eats the parent's wake-ups). Stock asyncio shares both
# and corrupts the parent that way. Here a loop notices that it was made before the
# last fork the first time it would make a syscall on them (run_once, adding or
# removing an fd) and moves to its own poller and waker (CoreLoop.leave_parent),
# closing only its copies of the old fds. close() in the child only closes fds, which
# is safe as it is. asyncio itself resets the running loop and the signal wake-up fd
# in the child (asyncio.events, 3.12+); a new loop made in the child shares nothing.

cdef Py_ssize_t fork_count = 0    # forks this process went through, as a child


def _after_fork_in_child():
    """os.register_at_fork hook: loops made before now must leave the parent's fds."""
    global fork_count
    fork_count += 1


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_after_fork_in_child)

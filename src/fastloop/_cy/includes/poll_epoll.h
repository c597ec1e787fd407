/* The epoll backend (Linux).
 *
 * Some facts about epoll (epoll(7), epoll_ctl(2)) that shape this file:
 *
 * - epoll watches open file *descriptions*, not fd numbers. Closing an fd removes
 *   it from the set only when no other fd (dup, fork) refers to the same
 *   description; until then events keep arriving under the old number. Hence
 *   fl_poller_forget(): a transport that closes its fd forgets it first. Once the
 *   number is closed, EPOLL_CTL_DEL fails with EBADF (ENOENT once it is reused by
 *   another file): the entry is out of reach, and only closing the epoll instance
 *   drops it (CoreLoop.replace_poller).
 * - Because a closed fd silently leaves the set, the core's table may believe an
 *   fd is registered when the kernel does not (ENOENT on MOD), or a reused fd
 *   number may already be known (EEXIST on ADD). Both are repaired by retrying
 *   with the other operation instead of trusting the table.
 * - Regular files and directories cannot be watched: ADD fails with EPERM, which
 *   reaches the user as PermissionError, exactly as with selectors.EpollSelector.
 * - EPOLLERR and EPOLLHUP are always reported, even when not asked for; we
 *   report them as READ|WRITE so whichever callback is waiting sees the error.
 * - We use level-triggered mode: an fd that stays ready is reported on every wait,
 *   so a batch larger than `max` is simply continued by the next wait.
 * - epoll_wait fails with EINTR when a signal arrives, regardless of SA_RESTART;
 *   the caller then runs Python's signal handlers.
 * - The timeout is in milliseconds (an int); the caller clamps and rounds up.
 */
#include <sys/epoll.h>

static const char FL_POLLER_NAME[] = "epoll";
/* A fork() child holds the poller fd (the child shares the epoll instance). */
#define FL_POLLER_INHERITED 1

static int fl_poller_open(void)
{
    return epoll_create1(EPOLL_CLOEXEC);
}

static int fl_epoll_op(int pfd, int op, int fd, int events)
{
    struct epoll_event ev;
    ev.events = ((events & FL_READ) ? EPOLLIN : 0) | ((events & FL_WRITE) ? EPOLLOUT : 0);
    ev.data.u64 = 0;
    ev.data.fd = fd;
    return epoll_ctl(pfd, op, fd, &ev);
}

static int fl_poller_ctl(int pfd, int fd, int old_events, int new_events)
{
    if (new_events == 0) {
        /* Already gone (closed fd, or never added): nothing to forget. */
        if (epoll_ctl(pfd, EPOLL_CTL_DEL, fd, NULL) < 0 && errno != ENOENT && errno != EBADF)
            return -1;
        return 0;
    }
    if (old_events == 0) {
        if (fl_epoll_op(pfd, EPOLL_CTL_ADD, fd, new_events) == 0)
            return 0;
        if (errno != EEXIST)
            return -1;
        return fl_epoll_op(pfd, EPOLL_CTL_MOD, fd, new_events);
    }
    if (fl_epoll_op(pfd, EPOLL_CTL_MOD, fd, new_events) == 0)
        return 0;
    if (errno != ENOENT)
        return -1;
    return fl_epoll_op(pfd, EPOLL_CTL_ADD, fd, new_events);
}

static void fl_poller_forget(int pfd, int fd)
{
    int saved = errno;
    (void)epoll_ctl(pfd, EPOLL_CTL_DEL, fd, NULL);
    errno = saved;
}

static int fl_poller_wait(int pfd, fl_event *out, int max, int timeout_ms)
{
    struct epoll_event evs[max];
    int n = epoll_wait(pfd, evs, max, timeout_ms);
    for (int i = 0; i < n; i++) {
        uint32_t e = evs[i].events;
        int mask = 0;
        if (e & (EPOLLERR | EPOLLHUP))
            mask = FL_READ | FL_WRITE;
        if (e & EPOLLIN)
            mask |= FL_READ;
        if (e & EPOLLOUT)
            mask |= FL_WRITE;
        out[i].fd = evs[i].data.fd;
        out[i].events = mask;
    }
    return n;
}

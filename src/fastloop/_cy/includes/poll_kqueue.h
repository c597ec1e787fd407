/* The kqueue backend (macOS, BSD). Written from kqueue(2); it mirrors poll_epoll.h.
 *
 * Some facts about kqueue that shape this file:
 *
 * - Interest is per (fd, filter): reading and writing are two separate kevents
 *   (EVFILT_READ, EVFILT_WRITE), so one fd can come back as two events in one
 *   wait. EV_ADD on an existing filter just updates it.
 * - EV_DELETE of a filter that is not registered fails with ENOENT, and closing an
 *   fd drops its kevents by itself; both are ignored when forgetting.
 * - When several changes are passed in one call and one fails, kevent() reports
 *   the error for the whole call unless there is room for EV_ERROR receipts; we
 *   submit one change per call so that each error is attributed correctly.
 * - The kqueue fd is not inherited by fork() children, and kqueue() has no
 *   close-on-exec flag argument, so FD_CLOEXEC is set separately.
 * - The timeout is a struct timespec; NULL blocks. EINTR is reported as for epoll.
 */
#include <sys/types.h>
#include <sys/event.h>
#include <sys/time.h>

static const char FL_POLLER_NAME[] = "kqueue";
/* A fork() child holds the poller fd (kqueue(2): not inherited; the number is free in the child). */
#define FL_POLLER_INHERITED 0

static int fl_poller_open(void)
{
    int fd = kqueue();
    if (fd >= 0 && fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

static int fl_kqueue_change(int pfd, int fd, short filter, unsigned short flags)
{
    struct kevent ch;
    EV_SET(&ch, fd, filter, flags, 0, 0, 0);
    return kevent(pfd, &ch, 1, NULL, 0, NULL);
}

static int fl_kqueue_drop(int pfd, int fd, short filter)
{
    if (fl_kqueue_change(pfd, fd, filter, EV_DELETE) < 0 && errno != ENOENT && errno != EBADF)
        return -1;
    return 0;
}

static int fl_poller_ctl(int pfd, int fd, int old_events, int new_events)
{
    int unknown = old_events == FL_UNKNOWN;
    if (new_events & FL_READ) {
        if (fl_kqueue_change(pfd, fd, EVFILT_READ, EV_ADD) < 0)
            return -1;
    } else if (unknown || (old_events & FL_READ)) {
        if (fl_kqueue_drop(pfd, fd, EVFILT_READ) < 0)
            return -1;
    }
    if (new_events & FL_WRITE) {
        if (fl_kqueue_change(pfd, fd, EVFILT_WRITE, EV_ADD) < 0)
            return -1;
    } else if (unknown || (old_events & FL_WRITE)) {
        if (fl_kqueue_drop(pfd, fd, EVFILT_WRITE) < 0)
            return -1;
    }
    return 0;
}

static void fl_poller_forget(int pfd, int fd)
{
    int saved = errno;
    (void)fl_kqueue_change(pfd, fd, EVFILT_READ, EV_DELETE);
    (void)fl_kqueue_change(pfd, fd, EVFILT_WRITE, EV_DELETE);
    errno = saved;
}

static int fl_poller_wait(int pfd, fl_event *out, int max, int timeout_ms)
{
    struct kevent evs[max];
    struct timespec ts, *tsp = NULL;
    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tsp = &ts;
    }
    int n = kevent(pfd, NULL, 0, evs, max, tsp);
    for (int i = 0; i < n; i++) {
        int mask;
        if (evs[i].flags & EV_ERROR)
            mask = FL_READ | FL_WRITE;
        else
            mask = evs[i].filter == EVFILT_WRITE ? FL_WRITE : FL_READ;
        out[i].fd = (int)evs[i].ident;
        out[i].events = mask;
    }
    return n;
}

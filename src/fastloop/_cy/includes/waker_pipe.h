/* The waker where eventfd does not exist: a non-blocking, close-on-exec pipe.
 *
 * One byte per wake-up; a full pipe (EAGAIN) is already readable, so the wake-up
 * is not lost. Draining reads until EAGAIN, since bytes from several wake-ups
 * may be waiting.
 */
static int fl_set_flags(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    fl = fcntl(fd, F_GETFD);
    if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
        return -1;
    return 0;
}

static int fl_waker_open(int *rfd, int *wfd)
{
    int fds[2];
    if (pipe(fds) < 0)
        return -1;
    if (fl_set_flags(fds[0]) < 0 || fl_set_flags(fds[1]) < 0) {
        int saved = errno;
        close(fds[0]);
        close(fds[1]);
        errno = saved;
        return -1;
    }
    *rfd = fds[0];
    *wfd = fds[1];
    return 0;
}

static void fl_waker_wake(int wfd)
{
    char byte = 0;
    int saved = errno;
    while (write(wfd, &byte, 1) < 0 && errno == EINTR)
        ;
    errno = saved;
}

static void fl_waker_drain(int rfd)
{
    char buf[256];
    int saved = errno;
    for (;;) {
        ssize_t n = read(rfd, buf, sizeof buf);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        break;
    }
    errno = saved;
}

/* The waker on Linux: one eventfd (eventfd(2)) is both ends.
 *
 * A write adds to a 64-bit counter and makes the fd readable; one read returns
 * the counter and resets it, so draining is a single syscall. Writes and reads
 * must be exactly 8 bytes. EAGAIN on write means the counter is near overflow,
 * which still leaves the fd readable: the wake-up is not lost.
 */
#include <stdint.h>
#include <sys/eventfd.h>

static int fl_waker_open(int *rfd, int *wfd)
{
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0)
        return -1;
    *rfd = *wfd = fd;
    return 0;
}

static void fl_waker_wake(int wfd)
{
    uint64_t one = 1;
    int saved = errno;
    while (write(wfd, &one, sizeof one) < 0 && errno == EINTR)
        ;
    errno = saved;
}

static void fl_waker_drain(int rfd)
{
    uint64_t count;
    int saved = errno;
    while (read(rfd, &count, sizeof count) < 0 && errno == EINTR)
        ;
    errno = saved;
}

/* Platform switch for the Cython core: which poller backend and which waker.
 *
 * Every backend implements the same small set of static functions, declared
 * once in core.pxd (libuv's shape: one interface, one file per kernel facility):
 *
 *   FL_POLLER_NAME                       "epoll" / "kqueue"
 *   int  fl_poller_open(void)            new poller fd, or -1 with errno set
 *   int  fl_poller_ctl(pfd, fd, old, new)  change fd's interest from mask `old` to
 *                                        mask `new` (FL_READ|FL_WRITE; 0 = forget);
 *                                        `old` may be FL_UNKNOWN. 0, or -1 + errno
 *   void fl_poller_forget(pfd, fd)       drop fd from the kernel set, ignoring errors
 *   int  fl_poller_wait(pfd, out, max, timeout_ms)
 *                                        fill `out`, return how many, or -1 + errno;
 *                                        timeout_ms < 0 blocks. Never touches Python.
 *
 * poll_uring.h offers the same over an fl_uring (fl_uring_open, _ctl, _forget, _wait,
 * _close): the opt-in io_uring backend, a stub that reports itself missing off Linux.
 *
 *   int  fl_waker_open(int *rfd, int *wfd)   0, or -1 + errno
 *   void fl_waker_wake(int wfd)          make rfd readable (a full buffer already is)
 *   void fl_waker_drain(int rfd)         read until empty
 */
#ifndef FASTLOOP_COMPAT_H
#define FASTLOOP_COMPAT_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#define FL_READ 1
#define FL_WRITE 2
/* The caller does not know the fd's current mask (Python-level Poller.modify). */
#define FL_UNKNOWN (-1)

/* io_uring only (poll_uring.h): a receive completed on fd; `res` and `bid` say how. */
#define FL_RECV 4

typedef struct {
    int fd;
    int events;
    int res;    /* FL_RECV: bytes received, 0 at EOF, or -errno */
    int bid;    /* FL_RECV with res > 0: the buffer holding them */
} fl_event;

/* time.monotonic() without a Python call: the same clock CPython reads (CLOCK_MONOTONIC;
 * mach_absolute_time, i.e. CLOCK_UPTIME_RAW, on macOS) and the same nanoseconds to
 * float conversion (pytime.c), so loop.time() equals time.monotonic() bit for bit. */
static double fl_monotonic(void)
{
    int64_t ns;
#if defined(__APPLE__)
    ns = (int64_t)clock_gettime_nsec_np(CLOCK_UPTIME_RAW);
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
#endif
    if (ns % 1000000000 == 0)
        return (double)(ns / 1000000000);
    return (double)ns / 1e9;
}

/* Start loading the cache line at p (no effect where the compiler lacks the builtin).
 * Walking many timers or handles scattered over the heap is bound by memory latency;
 * asking for the next ones early overlaps the misses with useful work. */
#if defined(__GNUC__) || defined(__clang__)
#  define fl_prefetch(p) __builtin_prefetch((const void *)(p))
#else
#  define fl_prefetch(p) ((void)(p))
#endif

#if defined(__linux__)
#  include "poll_epoll.h"
#  include "waker_eventfd.h"
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) \
   || defined(__NetBSD__) || defined(__DragonFly__)
#  include "poll_kqueue.h"
#  include "waker_pipe.h"
#else
#  error "fastloop's Cython core supports Linux (epoll) and macOS/BSD (kqueue)"
#endif
#include "poll_uring.h"

#endif /* FASTLOOP_COMPAT_H */

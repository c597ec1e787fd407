/* The io_uring backend (Linux, opt-in): readiness through poll requests.
 *
 * This is the first stage of the io_uring backend: the same level-triggered
 * READ|WRITE interface as poll_epoll.h, so every transport and add_reader/add_writer
 * runs on it unchanged. Raw system calls, no liburing: nothing to link or ship in a
 * wheel, and each kernel feature is probed when a ring is made, not when built. The
 * kernel interface is declared in uring_abi.h, so old build headers do not matter.
 *
 * Some facts about io_uring (io_uring_setup(2), io_uring_enter(2),
 * io_uring_prep_poll_add(3)) that shape this file:
 *
 * - A poll request (IORING_OP_POLL_ADD) is one-shot: it completes once, when the
 *   file is ready for the mask asked or already is at submission. Re-arming it after
 *   every completion gives level-triggered behaviour: the re-arm is submitted with
 *   the next wait, after the callbacks ran, so a socket they drained is not reported
 *   again. (Multishot polls post one completion per wake-up: edge-triggered.)
 * - A request holds a reference to the file, so removals (mask 0) are submitted at
 *   once, before the caller closes the fd. Removal goes by user_data, which works
 *   even when the fd number was closed or reused.
 * - Completions of a removed or replaced request may still arrive: user_data carries
 *   the fd and a generation, and a completion whose generation is not the fd's
 *   current one is dropped.
 * - epoll_ctl refuses at once what it cannot watch: a closed fd (EBADF), a regular
 *   file, a directory or a device without poll support such as /dev/null (EPERM).
 *   A poll request accepts the last three (always ready) and fails the first only
 *   on completion. So a new fd is first added to (and removed from) a private
 *   epoll instance: add_reader fails exactly as on the epoll backend.
 * - Completions land in the shared completion ring without a system call, but the
 *   kernel finishes a poll request in the task that owns the ring ("task work"). By
 *   default it interrupts the task to do so, wherever it is; with
 *   IORING_SETUP_COOP_TASKRUN (Linux 5.19) it waits for the next system call and
 *   raises IORING_SQ_TASKRUN in the ring's flags (IORING_SETUP_TASKRUN_FLAG). A wait
 *   with a zero timeout and nothing to submit therefore only reads the ring and the
 *   flags, and enters the kernel when the flags say work is pending.
 * - Completions beyond the ring's size are kept by the kernel (IORING_FEAT_NODROP)
 *   and flushed on the next io_uring_enter with IORING_ENTER_GETEVENTS, which we
 *   make whenever the kernel flags an overflow.
 * - The wait's timeout goes in IORING_ENTER_EXT_ARG (Linux 5.11); a timeout ends
 *   the wait with ETIME, a signal with EINTR.
 * - io_uring_enter() that submits and then waits returns the number submitted even
 *   when a signal ends the wait, so a wait that returns no completion is reported as
 *   EINTR: the caller runs the signal handlers and polls again.
 * - A request holds the file: an fd closed while its poll is armed, without
 *   remove_reader(), stays open until that poll completes (the next event on it),
 *   and that event is reported under the fd's number. epoll drops a closed file at
 *   once (unless another fd refers to it). Transports always remove first.
 * - After fork() the child shares the parent's rings (MAP_SHARED): it must never
 *   submit on an inherited ring, only unmap it and close its fd (fork.pyx).
 *
 * Stage two, completion-model reads for stream sockets (Linux 6.0+; otherwise they
 * poll as above):
 *
 * - A multishot receive (IORING_OP_RECV, IORING_RECV_MULTISHOT) stays armed and
 *   posts one completion per arrival, the data already copied into a buffer the
 *   kernel took from a provided-buffer ring (IORING_REGISTER_PBUF_RING) shared by
 *   every socket of the loop: no recv() system call, no re-arm, and an idle
 *   connection holds no buffer. IORING_CQE_F_MORE says the request is still armed;
 *   its last completion comes without it (EOF, an error, a cancel, or -ENOBUFS when
 *   the ring ran dry, after which it is armed again).
 * - The loop copies each buffer out and gives it back within the iteration that
 *   reaped it, before the next submission, so the ring refills every iteration.
 * - Pausing cancels the request (IORING_OP_ASYNC_CANCEL), but data it received
 *   before the cancel took effect still completes and must be kept: the request's
 *   generation stays until its last completion. Closing drops it instead: the
 *   generation moves on, and late completions are stale, their buffers returned.
 * - One request per socket at a time: a resume while a cancel is in flight arms
 *   the next request when the last completion of the old one arrives.
 * - user_data of a receive has bit 63 set; generations are 31 bits.
 * - A completion shows what had arrived when the kernel ran the receive, while a
 *   recv() on readiness takes what has arrived when the reader's callback runs:
 *   bytes this very thread sent between the poll and that callback too. So before a
 *   transport delivers, the loop catches up (fl_uring_catch_up): it reaps what
 *   completed since (entering the kernel only when IORING_SQ_TASKRUN says task work
 *   is pending), keeping readiness events for the next poll, as epoll would report
 *   them then. Fuzzing against asyncio found the difference (tests/test_fuzz.py).
 * - Bytes a receive took from a TCP socket and the protocol never got, when its
 *   transport closes, would have been unread in the socket on epoll, and Linux
 *   resets a connection closed with unread bytes: the transport closes with
 *   SO_LINGER at zero to do the same (fl_uring_recv_dropped counts those that
 *   completed after the close). Unix sockets stay on readiness: their peer learns
 *   of unread bytes from the kernel alone (ECONNRESET), which nothing can ask for.
 */
#if defined(__linux__)
#  include "uring_abi.h"
#endif

#ifdef FL_URING_SYSCALLS

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/syscall.h>

/* Submission queue entries: polls are re-armed in batches of at most the events one
 * wait reports; a fuller queue is submitted before more are added. */
#define FL_URING_ENTRIES 1024
/* user_data of removal requests, whose own completions are dropped. */
#define FL_URING_REMOVAL 0
/* user_data bit of receive requests (stage two). */
#define FL_URING_RECV_TAG (1ULL << 63)
/* The receive buffers: a power of two of them, each as large as one completion may
 * fill. Anonymous memory, so only buffers the kernel has written to take RAM. */
#define FL_URING_NBUFS 256
#define FL_URING_BUF_SIZE 65536
#define FL_URING_BGID 0

typedef struct {
    uint32_t gen;        /* generation of the armed request, in its user_data */
    uint8_t want;        /* FL_READ|FL_WRITE the loop asked for */
    uint8_t armed;       /* mask of the request in the kernel (or queued); 0: none */
    /* Stage two: the multishot receive on this fd. */
    uint8_t rwant;       /* the transport reads */
    uint8_t rarmed;      /* a receive is in the kernel (or queued) */
    uint8_t rcancel;     /* ... and its cancel too */
    uint8_t rdropped;    /* a discarded receive had taken bytes (fl_uring_recv_dropped) */
    uint32_t rgen;       /* generation of that receive */
} fl_uring_fd;

typedef struct {
    int ring_fd;
    int probe_fd;        /* an epoll instance that only vets new fds (see above) */
    void *sq_map, *cq_map;
    size_t sq_map_size, cq_map_size, sqes_size;
    struct fl_uring_sqe *sqes;
    unsigned *sq_head, *sq_tail, *sq_mask, *sq_array, *sq_flags;
    unsigned *cq_head, *cq_tail, *cq_mask;
    struct fl_uring_cqe *cqes;
    fl_uring_fd *fds;
    int nfds;
    /* Stage two; recv_ok is 0 where the kernel lacks it (reads then poll). */
    int recv_ok;
    struct fl_uring_buf *br;    /* the provided-buffer ring */
    char *bufs;                 /* FL_URING_NBUFS buffers of FL_URING_BUF_SIZE */
    uint16_t br_tail;
} fl_uring;

static int fl_sys_uring_setup(unsigned entries, struct fl_uring_params *p)
{
    return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int fl_sys_uring_enter(int fd, unsigned submit, unsigned min_complete,
                              unsigned flags, void *arg, size_t argsz)
{
    return (int)syscall(__NR_io_uring_enter, fd, submit, min_complete, flags, arg, argsz);
}

static void fl_uring_unmap(fl_uring *u)
{
    if (u->br != NULL)
        munmap(u->br, FL_URING_NBUFS * sizeof(struct fl_uring_buf));
    if (u->bufs != NULL)
        munmap(u->bufs, (size_t)FL_URING_NBUFS * FL_URING_BUF_SIZE);
    u->br = NULL;
    u->bufs = NULL;
    u->recv_ok = 0;
    if (u->sqes != NULL && u->sqes != MAP_FAILED)
        munmap(u->sqes, u->sqes_size);
    if (u->cq_map != NULL && u->cq_map != MAP_FAILED && u->cq_map != u->sq_map)
        munmap(u->cq_map, u->cq_map_size);
    if (u->sq_map != NULL && u->sq_map != MAP_FAILED)
        munmap(u->sq_map, u->sq_map_size);
    u->sqes = NULL;
    u->sq_map = u->cq_map = NULL;
}

/* Unmap and close the ring without submitting anything (safe in a fork child). */
static void fl_uring_close(fl_uring *u)
{
    int saved = errno;
    fl_uring_unmap(u);
    if (u->ring_fd >= 0)
        close(u->ring_fd);
    if (u->probe_fd >= 0)
        close(u->probe_fd);
    u->ring_fd = u->probe_fd = -1;
    free(u->fds);
    u->fds = NULL;
    u->nfds = 0;
    errno = saved;
}

static int fl_uring_supports(struct fl_uring_probe *probe, int op)
{
    return op <= probe->last_op && (probe->ops[op].flags & FL_IO_URING_OP_SUPPORTED);
}

/* Can this kernel run every opcode we submit? 0, or -1 with errno and *why.
 * Sets *recv_ops when it also has what completion reads need (Linux 6.0+). */
static int fl_uring_probe_ops(int ring_fd, const char **why, int *recv_ops)
{
    static const int needed[] = {FL_IORING_OP_POLL_ADD, FL_IORING_OP_POLL_REMOVE};
    size_t size = sizeof(struct fl_uring_probe) + 256 * sizeof(struct fl_uring_probe_op);
    struct fl_uring_probe *probe = calloc(1, size);
    if (probe == NULL) {
        *why = "out of memory";
        return -1;
    }
    if (syscall(__NR_io_uring_register, ring_fd, FL_IORING_REGISTER_PROBE, probe, 256) < 0) {
        *why = "IORING_REGISTER_PROBE failed";
        free(probe);
        return -1;
    }
    *recv_ops = fl_uring_supports(probe, FL_IORING_OP_RECV)
                && fl_uring_supports(probe, FL_IORING_OP_ASYNC_CANCEL)
                && fl_uring_supports(probe, FL_IORING_OP_SEND_ZC);
    for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
        if (!fl_uring_supports(probe, needed[i])) {
            *why = "the kernel lacks the poll opcodes (IORING_OP_POLL_ADD, _REMOVE)";
            free(probe);
            errno = EOPNOTSUPP;
            return -1;
        }
    }
    free(probe);
    return 0;
}

/* Give buffer `bid` back to the kernel's ring. */
static void fl_uring_buf_give(fl_uring *u, int bid)
{
    struct fl_uring_buf *b = &u->br[u->br_tail & (FL_URING_NBUFS - 1)];
    b->addr = (uint64_t)(uintptr_t)(u->bufs + (size_t)bid * FL_URING_BUF_SIZE);
    b->len = FL_URING_BUF_SIZE;
    b->bid = (uint16_t)bid;
    u->br_tail++;
    __atomic_store_n((uint16_t *)((char *)u->br + 14), u->br_tail, __ATOMIC_RELEASE);
}

static const char *fl_uring_buf(fl_uring *u, int bid)
{
    return u->bufs + (size_t)bid * FL_URING_BUF_SIZE;
}

/* Register the receive buffers; on failure completion reads are off (recv_ok 0). */
static void fl_uring_setup_recv(fl_uring *u)
{
    struct fl_uring_buf_reg reg;
    size_t ring_size = FL_URING_NBUFS * sizeof(struct fl_uring_buf);
    u->br = mmap(NULL, ring_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    u->bufs = mmap(NULL, (size_t)FL_URING_NBUFS * FL_URING_BUF_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (u->br == MAP_FAILED || u->bufs == MAP_FAILED)
        goto fail;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)u->br;
    reg.ring_entries = FL_URING_NBUFS;
    reg.bgid = FL_URING_BGID;
    if (syscall(__NR_io_uring_register, u->ring_fd, FL_IORING_REGISTER_PBUF_RING, &reg, 1) < 0)
        goto fail;
    for (int i = 0; i < FL_URING_NBUFS; i++)
        fl_uring_buf_give(u, i);
    u->recv_ok = 1;
    return;
fail:
    if (u->br == MAP_FAILED)
        u->br = NULL;
    if (u->bufs == MAP_FAILED)
        u->bufs = NULL;
    if (u->br != NULL)
        munmap(u->br, ring_size);
    if (u->bufs != NULL)
        munmap(u->bufs, (size_t)FL_URING_NBUFS * FL_URING_BUF_SIZE);
    u->br = NULL;
    u->bufs = NULL;
}

/* A new ring. 0, or -1 with errno set and *why naming the step that failed. */
static int fl_uring_open(fl_uring *u, const char **why)
{
    struct fl_uring_params p;
    memset(u, 0, sizeof(*u));
    memset(&p, 0, sizeof(p));
    p.flags = FL_IORING_SETUP_CLAMP | FL_IORING_SETUP_COOP_TASKRUN | FL_IORING_SETUP_TASKRUN_FLAG;
    u->probe_fd = -1;
    u->ring_fd = fl_sys_uring_setup(FL_URING_ENTRIES, &p);
    if (u->ring_fd < 0 && errno == EINVAL) {
        /* Before 5.19: the kernel interrupts the task instead (see above). */
        memset(&p, 0, sizeof(p));
        p.flags = FL_IORING_SETUP_CLAMP;
        u->ring_fd = fl_sys_uring_setup(FL_URING_ENTRIES, &p);
    }
    if (u->ring_fd < 0) {
        *why = "io_uring_setup() failed";
        return -1;
    }
    *why = "epoll_create1() failed";
    u->probe_fd = epoll_create1(EPOLL_CLOEXEC);
    if (u->probe_fd < 0)
        goto fail;
    /* FD_CLOEXEC: like the epoll fd, not for exec'd children. */
    fcntl(u->ring_fd, F_SETFD, FD_CLOEXEC);
    if (!(p.features & FL_IORING_FEAT_EXT_ARG) || !(p.features & FL_IORING_FEAT_NODROP)) {
        *why = "the kernel lacks IORING_FEAT_EXT_ARG or IORING_FEAT_NODROP (Linux 5.11+)";
        errno = EOPNOTSUPP;
        goto fail;
    }
    int recv_ops = 0;
    if (fl_uring_probe_ops(u->ring_fd, why, &recv_ops) < 0)
        goto fail;
    u->sq_map_size = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    u->cq_map_size = p.cq_off.cqes + p.cq_entries * sizeof(struct fl_uring_cqe);
    if (p.features & FL_IORING_FEAT_SINGLE_MMAP) {
        if (u->cq_map_size > u->sq_map_size)
            u->sq_map_size = u->cq_map_size;
        u->cq_map_size = u->sq_map_size;
    }
    *why = "mmap() of the rings failed";
    u->sq_map = mmap(NULL, u->sq_map_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                     u->ring_fd, FL_IORING_OFF_SQ_RING);
    if (u->sq_map == MAP_FAILED)
        goto fail;
    if (p.features & FL_IORING_FEAT_SINGLE_MMAP) {
        u->cq_map = u->sq_map;
    } else {
        u->cq_map = mmap(NULL, u->cq_map_size, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_POPULATE, u->ring_fd, FL_IORING_OFF_CQ_RING);
        if (u->cq_map == MAP_FAILED)
            goto fail;
    }
    u->sqes_size = p.sq_entries * sizeof(struct fl_uring_sqe);
    u->sqes = mmap(NULL, u->sqes_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                   u->ring_fd, FL_IORING_OFF_SQES);
    if (u->sqes == MAP_FAILED)
        goto fail;
    char *sq = u->sq_map, *cq = u->cq_map;
    u->sq_head = (unsigned *)(sq + p.sq_off.head);
    u->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    u->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    u->sq_flags = (unsigned *)(sq + p.sq_off.flags);
    u->sq_array = (unsigned *)(sq + p.sq_off.array);
    u->cq_head = (unsigned *)(cq + p.cq_off.head);
    u->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    u->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    u->cqes = (struct fl_uring_cqe *)(cq + p.cq_off.cqes);
    /* Entry i of the submission array always names sqe i: we fill them in order. */
    for (unsigned i = 0; i < p.sq_entries; i++)
        u->sq_array[i] = i;
    if (recv_ops && getenv("FASTLOOP_URING_NO_RECV") == NULL)
        fl_uring_setup_recv(u);
    return 0;
fail:
    fl_uring_close(u);
    return -1;
}

/* Entries written to the submission ring that the kernel has not consumed yet. */
static unsigned fl_uring_queued(fl_uring *u)
{
    return *u->sq_tail - __atomic_load_n(u->sq_head, __ATOMIC_ACQUIRE);
}

/* Hand the queued entries to the kernel and, if `wait`, wait for one completion
 * (up to timeout_ms; < 0 forever). 0, or -1 with errno (EINTR: a signal arrived;
 * ETIME: the timeout passed). Entries the kernel did not take stay queued. */
static int fl_uring_enter(fl_uring *u, int wait, int timeout_ms)
{
    unsigned flags = FL_IORING_ENTER_GETEVENTS;
    struct fl_uring_getevents_arg arg;
    struct fl_uring_timespec ts;
    void *argp = NULL;
    size_t argsz = 0;
    if (wait && timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
        memset(&arg, 0, sizeof(arg));
        arg.ts = (uint64_t)(uintptr_t)&ts;
        argp = &arg;
        argsz = sizeof(arg);
        flags |= FL_IORING_ENTER_EXT_ARG;
    }
    int r = fl_sys_uring_enter(u->ring_fd, fl_uring_queued(u), wait ? 1 : 0, flags, argp, argsz);
    return r < 0 ? -1 : 0;
}

/* A free submission entry, zeroed; the queue is flushed first when it is full. */
static struct fl_uring_sqe *fl_uring_sqe(fl_uring *u)
{
    unsigned tail = *u->sq_tail;
    unsigned head = __atomic_load_n(u->sq_head, __ATOMIC_ACQUIRE);
    if (tail - head >= *u->sq_mask + 1) {
        if (fl_uring_enter(u, 0, 0) < 0)
            return NULL;
        head = __atomic_load_n(u->sq_head, __ATOMIC_ACQUIRE);
        if (tail - head >= *u->sq_mask + 1) {
            errno = EBUSY;
            return NULL;
        }
    }
    struct fl_uring_sqe *sqe = &u->sqes[tail & *u->sq_mask];
    memset(sqe, 0, sizeof(*sqe));
    __atomic_store_n(u->sq_tail, tail + 1, __ATOMIC_RELEASE);
    return sqe;
}

static uint64_t fl_uring_data(int fd, uint32_t gen)
{
    return ((uint64_t)gen << 32) | (uint32_t)fd;
}

static int fl_uring_arm(fl_uring *u, int fd, int mask)
{
    struct fl_uring_sqe *sqe = fl_uring_sqe(u);
    if (sqe == NULL)
        return -1;
    fl_uring_fd *f = &u->fds[fd];
    sqe->opcode = FL_IORING_OP_POLL_ADD;
    sqe->fd = fd;
    uint32_t events = ((mask & FL_READ) ? POLLIN : 0) | ((mask & FL_WRITE) ? POLLOUT : 0);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    events = (events << 16) | (events >> 16);  /* the kernel swaps the halfwords back */
#endif
    sqe->op_flags = events;
    sqe->user_data = fl_uring_data(fd, f->gen);
    f->armed = (uint8_t)mask;
    return 0;
}

/* Withdraw fd's armed request; its completion, if any, is then stale. */
static int fl_uring_disarm(fl_uring *u, int fd)
{
    fl_uring_fd *f = &u->fds[fd];
    if (!f->armed)
        return 0;
    struct fl_uring_sqe *sqe = fl_uring_sqe(u);
    if (sqe == NULL)
        return -1;
    sqe->opcode = FL_IORING_OP_POLL_REMOVE;
    sqe->fd = -1;
    sqe->addr = fl_uring_data(fd, f->gen);
    sqe->user_data = FL_URING_REMOVAL;
    f->armed = 0;
    f->gen = (f->gen + 1) & 0x7fffffff ? f->gen + 1 : 1;  /* 31 bits, never 0 (removal) */
    return 0;
}

static int fl_uring_grow(fl_uring *u, int fd)
{
    if (fd < u->nfds)
        return 0;
    int n = u->nfds ? u->nfds : 64;
    while (n <= fd)
        n *= 2;
    fl_uring_fd *fds = realloc(u->fds, (size_t)n * sizeof(*fds));
    if (fds == NULL) {
        errno = ENOMEM;
        return -1;
    }
    for (int i = u->nfds; i < n; i++) {
        memset(&fds[i], 0, sizeof(fds[i]));
        fds[i].gen = 1;
    }
    u->fds = fds;
    u->nfds = n;
    return 0;
}

/* As fl_poller_ctl: change fd's interest to new_events (0 forgets it). */
static int fl_uring_ctl(fl_uring *u, int fd, int old_events, int new_events)
{
    if (fd < 0) {
        errno = EBADF;
        return -1;
    }
    if (new_events == 0) {
        if (fd >= u->nfds || !u->fds[fd].armed) {
            if (fd < u->nfds)
                u->fds[fd].want = 0;
            return 0;
        }
        u->fds[fd].want = 0;
        /* At once: the caller may close the fd next (see the facts above). */
        if (fl_uring_disarm(u, fd) < 0)
            return -1;
        return fl_uring_enter(u, 0, 0);
    }
    if (fd >= u->nfds || !u->fds[fd].want) {
        struct epoll_event ev = {0};
        if (epoll_ctl(u->probe_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
            return -1;
        (void)epoll_ctl(u->probe_fd, EPOLL_CTL_DEL, fd, NULL);
    }
    if (fl_uring_grow(u, fd) < 0)
        return -1;
    fl_uring_fd *f = &u->fds[fd];
    f->want = (uint8_t)new_events;
    if (f->armed == new_events)
        return 0;
    if (fl_uring_disarm(u, fd) < 0)
        return -1;
    return fl_uring_arm(u, fd, new_events);
}

static uint64_t fl_uring_recv_data(int fd, uint32_t rgen)
{
    return FL_URING_RECV_TAG | fl_uring_data(fd, rgen);
}

static int fl_uring_recv_arm(fl_uring *u, int fd)
{
    struct fl_uring_sqe *sqe = fl_uring_sqe(u);
    if (sqe == NULL)
        return -1;
    fl_uring_fd *f = &u->fds[fd];
    sqe->opcode = FL_IORING_OP_RECV;
    sqe->fd = fd;
    sqe->flags = FL_IOSQE_BUFFER_SELECT;
    sqe->ioprio = FL_IORING_RECV_MULTISHOT;
    sqe->buf_index = FL_URING_BGID;
    sqe->user_data = fl_uring_recv_data(fd, f->rgen);
    f->rarmed = 1;
    f->rcancel = f->rdropped = 0;
    return 0;
}

static int fl_uring_recv_cancel(fl_uring *u, int fd)
{
    struct fl_uring_sqe *sqe = fl_uring_sqe(u);
    if (sqe == NULL)
        return -1;
    sqe->opcode = FL_IORING_OP_ASYNC_CANCEL;
    sqe->fd = -1;
    sqe->addr = fl_uring_recv_data(fd, u->fds[fd].rgen);
    sqe->user_data = FL_URING_REMOVAL;
    u->fds[fd].rcancel = 1;
    return 0;
}

/* Completion reads on fd: start (want 1) or stop them (want 0). Stopping with
 * `discard` drops what the current request has yet to report (the transport is
 * closing); without it, that still comes (a pause). The requests go with the next
 * wait. 0, or -1 with errno. */
static int fl_uring_recv_ctl(fl_uring *u, int fd, int want, int discard)
{
    if (fl_uring_grow(u, fd) < 0)
        return -1;
    fl_uring_fd *f = &u->fds[fd];
    f->rwant = (uint8_t)want;
    if (discard && f->rarmed) {
        int cancel = !f->rcancel;
        if (cancel && fl_uring_recv_cancel(u, fd) < 0)
            return -1;
        f->rarmed = 0;
        f->rgen = (f->rgen + 1) & 0x7fffffff;
        /* At once: the request holds the socket, which the caller closes next. */
        if (cancel && !want && fl_uring_enter(u, 0, 0) < 0)
            return -1;
    }
    if (want && !f->rarmed)
        return fl_uring_recv_arm(u, fd);
    if (!want && f->rarmed && !f->rcancel)
        return fl_uring_recv_cancel(u, fd);
    return 0;
}

/* Whether a receive on fd took bytes that were then discarded (its transport closed
 * with them unread), and forget it. Bytes left unread in a socket make the kernel
 * reset the connection when it is closed; the transport does the same for these. */
static int fl_uring_recv_dropped(fl_uring *u, int fd)
{
    if (fd < 0 || fd >= u->nfds)
        return 0;
    int dropped = u->fds[fd].rdropped;
    u->fds[fd].rdropped = 0;
    return dropped;
}

/* A receive's completion: reported in *out (1), or handled here (0: stale, its
 * buffer returned; a cancel; a dry buffer ring, the receive armed again). */
static int fl_uring_recv_reaped(fl_uring *u, uint64_t data, int res, unsigned flags,
                                fl_event *out)
{
    int fd = (int)(uint32_t)data;
    int bid = (flags & FL_IORING_CQE_F_BUFFER) ? (int)(flags >> FL_IORING_CQE_BUFFER_SHIFT) : -1;
    fl_uring_fd *f = fd < u->nfds ? &u->fds[fd] : NULL;
    if (f == NULL || (uint32_t)(data >> 32 & 0x7fffffff) != f->rgen || !f->rarmed) {
        if (bid >= 0)
            fl_uring_buf_give(u, bid);
        if (f != NULL && res > 0)
            f->rdropped = 1;
        return 0;
    }
    if (!(flags & FL_IORING_CQE_F_MORE)) {
        /* The request's last completion: EOF and errors end reading. */
        f->rarmed = f->rcancel = 0;
        if (res == 0 || (res < 0 && res != -ENOBUFS && res != -ECANCELED))
            f->rwant = 0;
        else if (f->rwant && fl_uring_recv_arm(u, fd) < 0)
            return -1;
    }
    if (res == -ENOBUFS || res == -ECANCELED)
        return 0;
    out->fd = fd;
    out->events = FL_RECV;
    out->res = res;
    out->bid = bid;
    return 1;
}

static void fl_uring_forget(fl_uring *u, int fd)
{
    int saved = errno;
    (void)fl_uring_ctl(u, fd, FL_UNKNOWN, 0);
    errno = saved;
}

/* Move up to `max` completions into `out`, re-arming each reported fd. */
static int fl_uring_reap(fl_uring *u, fl_event *out, int max)
{
    unsigned head = *u->cq_head;
    unsigned tail = __atomic_load_n(u->cq_tail, __ATOMIC_ACQUIRE);
    int n = 0;
    while (head != tail && n < max) {
        struct fl_uring_cqe *cqe = &u->cqes[head & *u->cq_mask];
        uint64_t data = cqe->user_data;
        int res = cqe->res;
        head++;
        if (data == FL_URING_REMOVAL)
            continue;
        if (data & FL_URING_RECV_TAG) {
            int r = fl_uring_recv_reaped(u, data, res, cqe->flags, &out[n]);
            if (r < 0) {
                __atomic_store_n(u->cq_head, head, __ATOMIC_RELEASE);
                return -1;
            }
            n += r;
            continue;
        }
        int fd = (int)(uint32_t)data;
        if (fd >= u->nfds)
            continue;
        fl_uring_fd *f = &u->fds[fd];
        if ((uint32_t)(data >> 32) != f->gen || !f->armed)
            continue;  /* stale: removed or replaced since */
        f->armed = 0;
        if (res == -EBADF)
            continue;  /* closed behind the loop's back: nothing can be reported */
        int mask = 0;
        if (res < 0 || (res & (POLLERR | POLLHUP)))
            mask = FL_READ | FL_WRITE;
        if (res > 0 && (res & (POLLIN | POLLPRI)))
            mask |= FL_READ;
        if (res > 0 && (res & POLLOUT))
            mask |= FL_WRITE;
        out[n].fd = fd;
        out[n].events = mask;
        n++;
        /* Level-triggered: asked again, submitted with the next wait. */
        if (f->want && fl_uring_arm(u, fd, f->want) < 0) {
            __atomic_store_n(u->cq_head, head, __ATOMIC_RELEASE);
            return -1;
        }
    }
    __atomic_store_n(u->cq_head, head, __ATOMIC_RELEASE);
    return n;
}

/* As fl_poller_wait. Submits the queued requests (the re-arms of the fds the last
 * wait reported, whose callbacks have run since), then reaps. */
static int fl_uring_wait(fl_uring *u, fl_event *out, int max, int timeout_ms)
{
    int completed = *u->cq_head != __atomic_load_n(u->cq_tail, __ATOMIC_ACQUIRE);
    unsigned kernel_work = __atomic_load_n(u->sq_flags, __ATOMIC_RELAXED)
                           & (FL_IORING_SQ_CQ_OVERFLOW | FL_IORING_SQ_TASKRUN);
    int wait = !completed && timeout_ms != 0;
    if ((wait || kernel_work || fl_uring_queued(u)) && fl_uring_enter(u, wait, timeout_ms) < 0) {
        if (errno == EINTR) {
            /* Report what completed meanwhile; the caller then runs the handlers. */
            int n = fl_uring_reap(u, out, max);
            if (n == 0)
                errno = EINTR;
            return n ? n : -1;
        }
        if (errno != ETIME)
            return -1;
        return fl_uring_reap(u, out, max);
    }
    int n = fl_uring_reap(u, out, max);
    if (n == 0 && wait) {
        errno = EINTR;  /* the wait may have been cut short by a signal (see above) */
        return -1;
    }
    return n;
}

/* What completed since the last wait, for a transport about to deliver what it
 * received: on epoll its reader reads the socket when its callback runs, and so gets
 * bytes sent earlier in the same iteration too (by this very thread, say). Their
 * receives completed in task work that waits for a system call (COOP_TASKRUN): one is
 * made only when the kernel says it has some. Up to `max` into `out`, as a wait. */
static int fl_uring_catch_up(fl_uring *u, fl_event *out, int max)
{
    unsigned kernel_work = __atomic_load_n(u->sq_flags, __ATOMIC_RELAXED)
                           & (FL_IORING_SQ_CQ_OVERFLOW | FL_IORING_SQ_TASKRUN);
    if (kernel_work && fl_uring_enter(u, 0, 0) < 0 && errno != EINTR)
        return -1;
    if (*u->cq_head == __atomic_load_n(u->cq_tail, __ATOMIC_ACQUIRE))
        return 0;
    return fl_uring_reap(u, out, max);
}

#else  /* not Linux, or an architecture whose system call numbers we do not know */

typedef struct {
    int ring_fd;
    int recv_ok;
} fl_uring;

static int fl_uring_open(fl_uring *u, const char **why)
{
    u->ring_fd = -1;
    u->recv_ok = 0;
#ifdef __linux__
    *why = "fastloop does not know io_uring's system calls on this architecture";
#else
    *why = "io_uring exists only on Linux";
#endif
    errno = EOPNOTSUPP;
    return -1;
}
static void fl_uring_close(fl_uring *u) { u->ring_fd = -1; }
static int fl_uring_ctl(fl_uring *u, int fd, int o, int n) { errno = ENOSYS; return -1; }
static void fl_uring_forget(fl_uring *u, int fd) {}
static int fl_uring_wait(fl_uring *u, fl_event *out, int max, int t) { errno = ENOSYS; return -1; }
static int fl_uring_recv_ctl(fl_uring *u, int fd, int w, int d) { errno = ENOSYS; return -1; }
static int fl_uring_recv_dropped(fl_uring *u, int fd) { return 0; }
static int fl_uring_catch_up(fl_uring *u, fl_event *out, int max) { return 0; }
static void fl_uring_buf_give(fl_uring *u, int bid) {}
static const char *fl_uring_buf(fl_uring *u, int bid) { return NULL; }

#endif

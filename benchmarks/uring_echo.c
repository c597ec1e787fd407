/* uring_echo: a minimal single-threaded io_uring TCP echo server, raw system calls
 * (no liburing; struct layouts from the kernel's <linux/io_uring.h>).
 *
 *   uring_echo [-s] [-f coop|single|defer|coopsingle] [-r]
 *
 * Same stdin protocol as `echoload server tcp`: prints "ready PORT", answers each
 * stdin line with "cpu MICROSECONDS" (getrusage user+system), exits on stdin EOF.
 *
 *   multishot accept, multishot recv into a registered provided-buffer ring,
 *   echo with IORING_OP_SEND (default) or, with -s, a plain send(MSG_DONTWAIT) system
 *   call (falling back to IORING_OP_SEND for whatever it could not send at once).
 *   stdin is watched with a multishot IORING_OP_POLL_ADD. One io_uring_enter per loop
 *   iteration (submit everything queued + wait for >= 1 completion).
 *   -f: ring setup flags. coop = COOP_TASKRUN|TASKRUN_FLAG, single = SINGLE_ISSUER,
 *       coopsingle = both, defer = SINGLE_ISSUER|DEFER_TASKRUN.
 *   -r: register the ring fd (IORING_REGISTER_RING_FDS) and enter with
 *       IORING_ENTER_REGISTERED_RING.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SQ_ENTRIES 256
#define NBUFS 256          /* power of two */
#define BUF_SIZE 16384
#define BGID 7
#define MAX_CONNS 1024
#define QCAP 64            /* pending echoes per connection (power of two) */

enum { T_ACCEPT = 1, T_STDIN = 2, T_RECV = 3, T_SEND = 4 };
#define UD(t, i) (((uint64_t)(t) << 32) | (uint32_t)(i))

static void die(const char *what) { perror(what); exit(1); }

/* ---- the ring ---- */
static int ring_fd, enter_fd;
static unsigned enter_extra;
static unsigned *sq_head, *sq_tail, *sq_mask, *sq_array, *sq_flags;
static unsigned *cq_head, *cq_tail, *cq_mask;
static struct io_uring_sqe *sqes;
static struct io_uring_cqe *cqes;
static unsigned sq_local_tail, to_submit;
static int coop_flag;

static int sys_enter(unsigned submit, unsigned min_complete, unsigned flags) {
    return (int)syscall(__NR_io_uring_enter, enter_fd, submit, min_complete,
                        flags | enter_extra, NULL, 0);
}

static struct io_uring_sqe *get_sqe(void) {
    unsigned head = __atomic_load_n(sq_head, __ATOMIC_ACQUIRE);
    if (sq_local_tail - head >= SQ_ENTRIES) {
        /* full: hand what is queued to the kernel without waiting */
        int r = sys_enter(to_submit, 0, 0);
        if (r < 0) die("io_uring_enter (flush)");
        to_submit -= (unsigned)r;
        head = __atomic_load_n(sq_head, __ATOMIC_ACQUIRE);
        if (sq_local_tail - head >= SQ_ENTRIES) { fprintf(stderr, "sq full\n"); exit(1); }
    }
    unsigned idx = sq_local_tail & *sq_mask;
    struct io_uring_sqe *sqe = &sqes[idx];
    memset(sqe, 0, sizeof *sqe);
    sq_array[idx] = idx;
    sq_local_tail++;
    __atomic_store_n(sq_tail, sq_local_tail, __ATOMIC_RELEASE);
    to_submit++;
    return sqe;
}

/* ---- provided buffers ---- */
static struct io_uring_buf_ring *br;
static char *bufs;
static unsigned short br_tail;

static void buf_return(unsigned bid) {
    struct io_uring_buf *b = &br->bufs[br_tail & (NBUFS - 1)];
    b->addr = (uint64_t)(uintptr_t)(bufs + (size_t)bid * BUF_SIZE);
    b->len = BUF_SIZE;
    b->bid = (unsigned short)bid;
    br_tail++;
}
static void buf_publish(void) { __atomic_store_n(&br->tail, br_tail, __ATOMIC_RELEASE); }

/* ---- connections ---- */
struct pend { unsigned short bid; unsigned len, off; };
struct conn {
    int fd, used, recv_armed, send_inflight, eof, rearm, cancelled;
    unsigned qh, qt;               /* FIFO of echoes not yet fully sent */
    struct pend q[QCAP];
};
static struct conn conns[MAX_CONNS];
static int send_syscall;
static int rearm_pending;

static void arm_recv(int i) {
    struct io_uring_sqe *sqe = get_sqe();
    sqe->opcode = IORING_OP_RECV;
    sqe->fd = conns[i].fd;
    sqe->ioprio = IORING_RECV_MULTISHOT;
    sqe->flags = IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    sqe->user_data = UD(T_RECV, i);
    conns[i].recv_armed = 1;
}

static void arm_accept(int lfd) {
    struct io_uring_sqe *sqe = get_sqe();
    sqe->opcode = IORING_OP_ACCEPT;
    sqe->fd = lfd;
    sqe->ioprio = IORING_ACCEPT_MULTISHOT;
    sqe->accept_flags = SOCK_CLOEXEC;
    sqe->user_data = UD(T_ACCEPT, 0);
}

static void arm_stdin(void) {
    struct io_uring_sqe *sqe = get_sqe();
    sqe->opcode = IORING_OP_POLL_ADD;
    sqe->fd = 0;
    sqe->poll32_events = POLLIN;
    sqe->len = IORING_POLL_ADD_MULTI;
    sqe->user_data = UD(T_STDIN, 0);
}

static void submit_send(int i) {
    struct conn *c = &conns[i];
    struct pend *p = &c->q[c->qh & (QCAP - 1)];
    struct io_uring_sqe *sqe = get_sqe();
    sqe->opcode = IORING_OP_SEND;
    sqe->fd = c->fd;
    sqe->addr = (uint64_t)(uintptr_t)(bufs + (size_t)p->bid * BUF_SIZE + p->off);
    sqe->len = p->len - p->off;
    sqe->msg_flags = MSG_NOSIGNAL;
    sqe->user_data = UD(T_SEND, i);
    c->send_inflight = 1;
}

static void maybe_close(int i) {
    struct conn *c = &conns[i];
    if (c->eof && c->recv_armed && !c->cancelled) {
        struct io_uring_sqe *sqe = get_sqe();
        sqe->opcode = IORING_OP_ASYNC_CANCEL;
        sqe->fd = -1;
        sqe->addr = UD(T_RECV, i);
        sqe->user_data = 0;
        c->cancelled = 1;
    }
    if (c->eof && !c->recv_armed && !c->send_inflight) {
        while (c->qh != c->qt) buf_return(c->q[c->qh++ & (QCAP - 1)].bid);
        close(c->fd);
        c->used = 0;
    }
}

/* Send what is queued on c, starting at the head; only one ring send in flight. */
static void pump(int i) {
    struct conn *c = &conns[i];
    while (!c->send_inflight && c->qh != c->qt && !c->eof) {
        struct pend *p = &c->q[c->qh & (QCAP - 1)];
        if (send_syscall) {
            ssize_t n = send(c->fd, bufs + (size_t)p->bid * BUF_SIZE + p->off, p->len - p->off,
                             MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0) p->off += (unsigned)n;
            else if (n < 0 && errno != EAGAIN) { c->eof = 1; break; }
            if (p->off == p->len) { buf_return(p->bid); c->qh++; continue; }
        }
        submit_send(i);
    }
}

static void answer_cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double s = ru.ru_utime.tv_sec + ru.ru_stime.tv_sec
               + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    printf("cpu %.0f\n", s * 1e6);
    fflush(stdout);
}

int main(int argc, char **argv) {
    unsigned setup_flags = 0;
    int reg_ring = 0;
    for (int k = 1; k < argc; k++) {
        if (!strcmp(argv[k], "-s")) send_syscall = 1;
        else if (!strcmp(argv[k], "-r")) reg_ring = 1;
        else if (!strcmp(argv[k], "-f") && k + 1 < argc) {
            const char *f = argv[++k];
            if (!strcmp(f, "coop")) setup_flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
            else if (!strcmp(f, "single")) setup_flags = IORING_SETUP_SINGLE_ISSUER;
            else if (!strcmp(f, "coopsingle")) setup_flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SINGLE_ISSUER;
            else if (!strcmp(f, "defer")) setup_flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
            else if (strcmp(f, "none")) { fprintf(stderr, "bad -f\n"); return 2; }
        } else { fprintf(stderr, "usage: uring_echo [-s] [-r] [-f none|coop|single|coopsingle|defer]\n"); return 2; }
    }
    coop_flag = !!(setup_flags & IORING_SETUP_TASKRUN_FLAG);

    /* listening socket */
    int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (lfd < 0) die("socket");
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t slen = sizeof sa;
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 128) < 0) die("listen");
    getsockname(lfd, (struct sockaddr *)&sa, &slen);

    /* ring */
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = setup_flags;
    ring_fd = (int)syscall(__NR_io_uring_setup, SQ_ENTRIES, &p);
    if (ring_fd < 0) die("io_uring_setup");
    enter_fd = ring_fd;
    size_t sq_sz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_sz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    int single = p.features & IORING_FEAT_SINGLE_MMAP;
    if (single && cq_sz > sq_sz) sq_sz = cq_sz;
    char *sq = mmap(NULL, sq_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd, IORING_OFF_SQ_RING);
    if (sq == MAP_FAILED) die("mmap sq");
    char *cq = single ? sq : mmap(NULL, cq_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd, IORING_OFF_CQ_RING);
    if (cq == MAP_FAILED) die("mmap cq");
    sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_POPULATE, ring_fd, IORING_OFF_SQES);
    if (sqes == MAP_FAILED) die("mmap sqes");
    sq_head = (unsigned *)(sq + p.sq_off.head);
    sq_tail = (unsigned *)(sq + p.sq_off.tail);
    sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    sq_array = (unsigned *)(sq + p.sq_off.array);
    sq_flags = (unsigned *)(sq + p.sq_off.flags);
    cq_head = (unsigned *)(cq + p.cq_off.head);
    cq_tail = (unsigned *)(cq + p.cq_off.tail);
    cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    sq_local_tail = *sq_tail;
    if (p.sq_entries != SQ_ENTRIES) { fprintf(stderr, "sq entries %u\n", p.sq_entries); return 1; }

    if (reg_ring) {
        struct io_uring_rsrc_update up = {.offset = -1U, .data = (uint64_t)ring_fd};
        if (syscall(__NR_io_uring_register, ring_fd, IORING_REGISTER_RING_FDS, &up, 1) != 1)
            die("IORING_REGISTER_RING_FDS");
        enter_fd = (int)up.offset;
        enter_extra = IORING_ENTER_REGISTERED_RING;
    }

    /* provided-buffer ring */
    size_t br_sz = NBUFS * sizeof(struct io_uring_buf);
    br = mmap(NULL, br_sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    bufs = mmap(NULL, (size_t)NBUFS * BUF_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (br == MAP_FAILED || bufs == MAP_FAILED) die("mmap bufs");
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)br;
    reg.ring_entries = NBUFS;
    reg.bgid = BGID;
    if (syscall(__NR_io_uring_register, ring_fd, IORING_REGISTER_PBUF_RING, &reg, 1) < 0)
        die("IORING_REGISTER_PBUF_RING");
    br_tail = 0;
    for (unsigned b = 0; b < NBUFS; b++) buf_return(b);
    buf_publish();

    printf("ready %d\n", ntohs(sa.sin_port));
    fflush(stdout);

    arm_accept(lfd);
    arm_stdin();

    for (;;) {
        int r = sys_enter(to_submit, 1, IORING_ENTER_GETEVENTS);
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EBUSY) continue;
            die("io_uring_enter");
        }
        to_submit -= (unsigned)r;
        unsigned head = *cq_head, tail = __atomic_load_n(cq_tail, __ATOMIC_ACQUIRE);
        for (; head != tail; head++) {
            struct io_uring_cqe *cqe = &cqes[head & *cq_mask];
            uint64_t ud = cqe->user_data;
            int res = cqe->res;
            unsigned fl = cqe->flags;
            int i = (int)(uint32_t)ud;
            switch ((int)(ud >> 32)) {
            case T_ACCEPT:
                if (res >= 0) {
                    int k;
                    for (k = 0; k < MAX_CONNS && conns[k].used; k++);
                    if (k == MAX_CONNS) { close(res); break; }
                    memset(&conns[k], 0, sizeof conns[k]);
                    conns[k].used = 1;
                    conns[k].fd = res;
                    setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    arm_recv(k);
                }
                if (!(fl & IORING_CQE_F_MORE)) {
                    if (res < 0 && res != -EINTR && res != -ECONNABORTED && res != -EMFILE) {
                        fprintf(stderr, "accept: %s\n", strerror(-res));
                        exit(1);
                    }
                    arm_accept(lfd);
                }
                break;
            case T_STDIN: {
                char line[64];
                ssize_t n = read(0, line, sizeof line);
                if (n <= 0) return 0;
                answer_cpu();
                if (!(fl & IORING_CQE_F_MORE))
                    arm_stdin();
                break;
            }
            case T_RECV: {
                struct conn *c = &conns[i];
                int more = fl & IORING_CQE_F_MORE;
                if (!more) c->recv_armed = 0;
                if (res > 0 && (fl & IORING_CQE_F_BUFFER)) {
                    unsigned bid = fl >> IORING_CQE_BUFFER_SHIFT;
                    if (c->eof || c->qt - c->qh == QCAP) { buf_return(bid); c->eof = 1; }
                    else {
                        c->q[c->qt++ & (QCAP - 1)] = (struct pend){(unsigned short)bid, (unsigned)res, 0};
                        pump(i);
                    }
                } else if (fl & IORING_CQE_F_BUFFER) {
                    buf_return(fl >> IORING_CQE_BUFFER_SHIFT);
                }
                if (res == 0 || (res < 0 && res != -ENOBUFS)) c->eof = 1;
                if (!more && !c->eof) {
                    if (res == -ENOBUFS) { c->rearm = 1; rearm_pending = 1; }
                    else arm_recv(i);
                }
                maybe_close(i);
                break;
            }
            case T_SEND: {
                struct conn *c = &conns[i];
                c->send_inflight = 0;
                if (res < 0) { c->eof = 1; maybe_close(i); break; }
                struct pend *pp = &c->q[c->qh & (QCAP - 1)];
                pp->off += (unsigned)res;
                if (pp->off == pp->len) { buf_return(pp->bid); c->qh++; }
                pump(i);
                maybe_close(i);
                break;
            }
            }
        }
        __atomic_store_n(cq_head, head, __ATOMIC_RELEASE);
        buf_publish();
        if (rearm_pending) {
            rearm_pending = 0;
            for (int k = 0; k < MAX_CONNS; k++)
                if (conns[k].used && conns[k].rearm) { conns[k].rearm = 0; arm_recv(k); }
        }
    }
}

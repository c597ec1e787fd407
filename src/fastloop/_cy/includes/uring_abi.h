/* The part of io_uring's kernel interface fastloop uses, declared here.
 *
 * Why not <linux/io_uring.h>: wheels are built on old distributions (manylinux_2_28
 * has Linux 4.18's headers, from before io_uring), and a header from before 5.19
 * lacks flags we ask for. The interface is the kernel's stable ABI: these layouts and
 * numbers are fixed (io_uring_setup(2), io_uring_enter(2), io_uring_register(2)), so
 * the backend is built everywhere and the running kernel is probed instead. Where the
 * build machine has the kernel's header, the compiler checks them against it (below).
 */
#ifndef FASTLOOP_URING_ABI_H
#define FASTLOOP_URING_ABI_H

#include <stdint.h>
#include <sys/syscall.h>

/* System call numbers: one table for every architecture since Linux 5.1, except
 * alpha, ia64 and mips, which keep their own (the C library's header names them). */
#ifndef __NR_io_uring_setup
#  if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__) || defined(__arm__) \
   || defined(__riscv) || defined(__powerpc__) || defined(__s390__) || defined(__loongarch__)
#    define __NR_io_uring_setup 425
#    define __NR_io_uring_enter 426
#    define __NR_io_uring_register 427
#  endif
#endif
#ifdef __NR_io_uring_setup
#  define FL_URING_SYSCALLS 1
#endif

struct fl_uring_sq_offsets {
    uint32_t head, tail, ring_mask, ring_entries, flags, dropped, array, resv1;
    uint64_t user_addr;
};

struct fl_uring_cq_offsets {
    uint32_t head, tail, ring_mask, ring_entries, overflow, cqes, flags, resv1;
    uint64_t user_addr;
};

struct fl_uring_params {
    uint32_t sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle, features, wq_fd;
    uint32_t resv[3];
    struct fl_uring_sq_offsets sq_off;
    struct fl_uring_cq_offsets cq_off;
};

/* A submission queue entry (64 bytes); fields named for the uses made of them here. */
struct fl_uring_sqe {
    uint8_t opcode;
    uint8_t flags;
    uint16_t ioprio;
    int32_t fd;
    uint64_t off;
    uint64_t addr;          /* POLL_REMOVE, ASYNC_CANCEL: the user_data of the target */
    uint32_t len;
    uint32_t op_flags;      /* POLL_ADD: the poll mask (poll32_events) */
    uint64_t user_data;
    uint16_t buf_index;     /* RECV with IOSQE_BUFFER_SELECT: the buffer group */
    uint16_t personality;
    int32_t file_index;
    uint64_t addr3;
    uint64_t pad;
};

struct fl_uring_cqe {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
};

struct fl_uring_probe_op {
    uint8_t op;
    uint8_t resv;
    uint16_t flags;
    uint32_t resv2;
};

struct fl_uring_probe {
    uint8_t last_op;
    uint8_t ops_len;
    uint16_t resv;
    uint32_t resv2[3];
    struct fl_uring_probe_op ops[];
};

/* A provided-buffer ring (IORING_REGISTER_PBUF_RING): entries the kernel takes
 * receive buffers from. Its tail is the 16 bits at offset 14, over bufs[0].resv. */
struct fl_uring_buf {
    uint64_t addr;
    uint32_t len;
    uint16_t bid;
    uint16_t resv;
};

struct fl_uring_buf_reg {
    uint64_t ring_addr;
    uint32_t ring_entries;
    uint16_t bgid;
    uint16_t flags;
    uint64_t resv[3];
};

struct fl_uring_timespec {
    int64_t tv_sec;
    long long tv_nsec;
};

/* io_uring_enter's IORING_ENTER_EXT_ARG argument. */
struct fl_uring_getevents_arg {
    uint64_t sigmask;
    uint32_t sigmask_sz;
    uint32_t min_wait_usec;
    uint64_t ts;            /* a struct fl_uring_timespec * */
};

enum {
    FL_IORING_SETUP_CLAMP = 1u << 4,
    FL_IORING_SETUP_COOP_TASKRUN = 1u << 8,
    FL_IORING_SETUP_TASKRUN_FLAG = 1u << 9,

    FL_IORING_FEAT_SINGLE_MMAP = 1u << 0,
    FL_IORING_FEAT_NODROP = 1u << 1,
    FL_IORING_FEAT_EXT_ARG = 1u << 8,

    FL_IORING_ENTER_GETEVENTS = 1u << 0,
    FL_IORING_ENTER_EXT_ARG = 1u << 3,

    FL_IORING_SQ_CQ_OVERFLOW = 1u << 1,
    FL_IORING_SQ_TASKRUN = 1u << 2,

    FL_IORING_OP_POLL_ADD = 6,
    FL_IORING_OP_POLL_REMOVE = 7,
    FL_IORING_OP_ASYNC_CANCEL = 14,
    FL_IORING_OP_RECV = 27,
    FL_IORING_OP_SEND_ZC = 47,      /* probed only: it came with multishot receive (6.0) */

    FL_IOSQE_BUFFER_SELECT = 1u << 5,
    FL_IORING_RECV_MULTISHOT = 1u << 1,
    FL_IORING_CQE_F_BUFFER = 1u << 0,
    FL_IORING_CQE_F_MORE = 1u << 1,
    FL_IORING_CQE_BUFFER_SHIFT = 16,

    FL_IORING_REGISTER_PROBE = 8,
    FL_IORING_REGISTER_PBUF_RING = 22,
    FL_IO_URING_OP_SUPPORTED = 1u << 0,
};

/* mmap offsets of the three regions. */
#define FL_IORING_OFF_SQ_RING 0ULL
#define FL_IORING_OFF_CQ_RING 0x8000000ULL
#define FL_IORING_OFF_SQES 0x10000000ULL

#if defined(__has_include)
#  if __has_include(<linux/io_uring.h>)
#    include <linux/io_uring.h>
#    include <stddef.h>
#    define FL_SAME(ours, kernels) _Static_assert((long long)(ours) == (long long)(kernels), \
                                            #ours " is not " #kernels)
FL_SAME(sizeof(struct fl_uring_params), sizeof(struct io_uring_params));
FL_SAME(offsetof(struct fl_uring_params, sq_off), offsetof(struct io_uring_params, sq_off));
FL_SAME(offsetof(struct fl_uring_params, cq_off), offsetof(struct io_uring_params, cq_off));
FL_SAME(offsetof(struct fl_uring_sq_offsets, array), offsetof(struct io_sqring_offsets, array));
FL_SAME(offsetof(struct fl_uring_cq_offsets, cqes), offsetof(struct io_cqring_offsets, cqes));
FL_SAME(sizeof(struct fl_uring_sqe), sizeof(struct io_uring_sqe));
FL_SAME(offsetof(struct fl_uring_sqe, addr), offsetof(struct io_uring_sqe, addr));
FL_SAME(offsetof(struct fl_uring_sqe, op_flags), offsetof(struct io_uring_sqe, poll32_events));
FL_SAME(offsetof(struct fl_uring_sqe, user_data), offsetof(struct io_uring_sqe, user_data));
FL_SAME(sizeof(struct fl_uring_cqe), sizeof(struct io_uring_cqe));
FL_SAME(offsetof(struct fl_uring_cqe, res), offsetof(struct io_uring_cqe, res));
FL_SAME(sizeof(struct fl_uring_probe), sizeof(struct io_uring_probe));
FL_SAME(sizeof(struct fl_uring_probe_op), sizeof(struct io_uring_probe_op));
FL_SAME(FL_IORING_SETUP_CLAMP, IORING_SETUP_CLAMP);
FL_SAME(FL_IORING_FEAT_SINGLE_MMAP, IORING_FEAT_SINGLE_MMAP);
FL_SAME(FL_IORING_FEAT_NODROP, IORING_FEAT_NODROP);
FL_SAME(FL_IORING_ENTER_GETEVENTS, IORING_ENTER_GETEVENTS);
FL_SAME(FL_IORING_SQ_CQ_OVERFLOW, IORING_SQ_CQ_OVERFLOW);
FL_SAME(FL_IORING_OP_POLL_ADD, IORING_OP_POLL_ADD);
FL_SAME(FL_IORING_OP_POLL_REMOVE, IORING_OP_POLL_REMOVE);
FL_SAME(FL_IORING_REGISTER_PROBE, IORING_REGISTER_PROBE);
FL_SAME(FL_IO_URING_OP_SUPPORTED, IO_URING_OP_SUPPORTED);
FL_SAME(FL_IORING_OFF_SQ_RING, IORING_OFF_SQ_RING);
FL_SAME(FL_IORING_OFF_CQ_RING, IORING_OFF_CQ_RING);
FL_SAME(FL_IORING_OFF_SQES, IORING_OFF_SQES);
#    ifdef IORING_ENTER_EXT_ARG  /* Linux 5.11 */
FL_SAME(FL_IORING_ENTER_EXT_ARG, IORING_ENTER_EXT_ARG);
FL_SAME(FL_IORING_FEAT_EXT_ARG, IORING_FEAT_EXT_ARG);
FL_SAME(sizeof(struct fl_uring_getevents_arg), sizeof(struct io_uring_getevents_arg));
FL_SAME(offsetof(struct fl_uring_getevents_arg, ts), offsetof(struct io_uring_getevents_arg, ts));
#    endif
#    ifdef IORING_RECV_MULTISHOT  /* Linux 6.0 */
FL_SAME(FL_IORING_OP_ASYNC_CANCEL, IORING_OP_ASYNC_CANCEL);
FL_SAME(FL_IORING_OP_RECV, IORING_OP_RECV);
FL_SAME(FL_IORING_OP_SEND_ZC, IORING_OP_SEND_ZC);
FL_SAME(FL_IOSQE_BUFFER_SELECT, IOSQE_BUFFER_SELECT);
FL_SAME(FL_IORING_RECV_MULTISHOT, IORING_RECV_MULTISHOT);
FL_SAME(FL_IORING_CQE_F_BUFFER, IORING_CQE_F_BUFFER);
FL_SAME(FL_IORING_CQE_F_MORE, IORING_CQE_F_MORE);
FL_SAME(FL_IORING_CQE_BUFFER_SHIFT, IORING_CQE_BUFFER_SHIFT);
FL_SAME(FL_IORING_REGISTER_PBUF_RING, IORING_REGISTER_PBUF_RING);
FL_SAME(sizeof(struct fl_uring_buf), sizeof(struct io_uring_buf));
FL_SAME(sizeof(struct fl_uring_buf_reg), sizeof(struct io_uring_buf_reg));
FL_SAME(offsetof(struct fl_uring_sqe, buf_index), offsetof(struct io_uring_sqe, buf_group));
FL_SAME(offsetof(struct fl_uring_sqe, ioprio), offsetof(struct io_uring_sqe, ioprio));
FL_SAME(offsetof(struct io_uring_buf_ring, tail), 14);
#    endif
#    ifdef IORING_SQ_TASKRUN  /* Linux 5.19 */
FL_SAME(FL_IORING_SETUP_COOP_TASKRUN, IORING_SETUP_COOP_TASKRUN);
FL_SAME(FL_IORING_SETUP_TASKRUN_FLAG, IORING_SETUP_TASKRUN_FLAG);
FL_SAME(FL_IORING_SQ_TASKRUN, IORING_SQ_TASKRUN);
#    endif
#    undef FL_SAME
#  endif
#endif

#endif /* FASTLOOP_URING_ABI_H */

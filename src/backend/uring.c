/* The io_uring backend (liburing): one ring per loop.
 *
 * Proactor ops are native: an SQE per op, user_data = the op; completions go
 * to the core (iomux__op_cqe), which runs their callbacks. SQEs are prepared
 * as ops start and submitted once per iteration with the wait
 * (io_uring_submit_and_wait_timeout), and CQEs are reaped in batches.
 * Watchers (the Reactor API) are polls: edge-triggered watchers a multishot
 * POLL_ADD (which is edge-triggered); level-triggered and one-shot watchers
 * a single-shot POLL_ADD, which the core re-arms after each report (we tell
 * it so by returning IOMUX__ONCE in `have`), because the kernel refuses
 * IORING_POLL_ADD_LEVEL with multishot. A poll's user_data carries its fd
 * and a per-fd generation, so CQEs of a poll that was replaced are dropped.
 * The recv buffer pool is a registered provided-buffer ring. Timers stay on
 * the core's heap: the wait's timeout is the next deadline. */
#include "backend.h"

#ifdef IOMUX_HAVE_URING
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "../core/loop.h"

enum { TAG_OP = 0, TAG_POLL = 1, TAG_REMOVE = 2, TAG_CANCEL = 3 };
#define TAG_MASK 7u
#define GEN_MASK 0x1fffffffu
#define GEN_DEAD 0x80000000u /* the kernel refused this fd: park it */
#define BGID 0
#define REAP_BATCH 256

typedef struct uring_state {
    struct io_uring ring;
    int enabled;                 /* created disabled; enabled by its runner */
    uint32_t *gen;               /* per fd: poll generation, GEN_DEAD */
    size_t gen_cap;
    struct io_uring_buf_ring *br;
    size_t br_bytes;
    char *buf_base;
    unsigned buf_size, buf_mask;
} uring_state;

/* ---- setup ----------------------------------------------------------------- */

/* The features iomux relies on arrived by Linux 6.0 (multishot recv, buffer
 * rings, SEND_ZC): anything older is "too old" and AUTO moves on to epoll. */
static int new_enough(struct io_uring *ring, const struct io_uring_params *p) {
    struct io_uring_probe *probe;
    int ok;
    if (!(p->features & IORING_FEAT_NODROP) || !(p->features & IORING_FEAT_EXT_ARG)) return 0;
    probe = io_uring_get_probe_ring(ring);
    if (!probe) return 0;
    ok = io_uring_opcode_supported(probe, IORING_OP_SEND_ZC) &&
         io_uring_opcode_supported(probe, IORING_OP_POLL_ADD) &&
         io_uring_opcode_supported(probe, IORING_OP_ASYNC_CANCEL);
    io_uring_free_probe(probe);
    return ok;
}

/* Tries the best setup flags first: SINGLE_ISSUER and DEFER_TASKRUN (6.1)
 * let the kernel skip locking and run completions only when we ask;
 * COOP_TASKRUN (5.19) otherwise. R_DISABLED lets the thread that runs the
 * loop, not the one that created it, become the ring's single issuer. */
static int ring_setup(iomux_loop *loop, struct io_uring *ring) {
    static const unsigned tries[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_R_DISABLED,
        IORING_SETUP_R_DISABLED,
    };
    struct io_uring_params p;
    size_t i;
    int rc = -EINVAL;
    for (i = 0; i < sizeof(tries) / sizeof(tries[0]) && rc == -EINVAL; i++) {
        memset(&p, 0, sizeof(p));
        p.flags = tries[i] | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE;
        p.cq_entries = loop->uring_cq_entries ? loop->uring_cq_entries : 2 * loop->uring_entries;
        rc = io_uring_queue_init_params(loop->uring_entries, ring, &p);
    }
    if (rc < 0) return rc; /* ENOSYS, EPERM (seccomp, io_uring_disabled), ... */
    if (!new_enough(ring, &p)) {
        io_uring_queue_exit(ring);
        return -ENOTSUP;
    }
    return 0;
}

static int ur_init(iomux_loop *loop) {
    uring_state *st = iomux__malloc(loop, sizeof(*st));
    int rc;
    if (!st) return -ENOMEM;
    memset(st, 0, sizeof(*st));
    rc = ring_setup(loop, &st->ring);
    if (rc < 0) {
        iomux__free(loop, st);
        return rc;
    }
    loop->bstate = st;
    return 0;
}

static void ur_free(iomux_loop *loop) {
    uring_state *st = loop->bstate;
    if (st->br) {
        io_uring_unregister_buf_ring(&st->ring, BGID);
        munmap(st->br, st->br_bytes);
    }
    io_uring_queue_exit(&st->ring);
    iomux__free(loop, st->gen);
    iomux__free(loop, st);
    loop->bstate = NULL;
}

/* The raw register call: Debian's liburing 2.3 declares
 * io_uring_enable_rings() but does not export it. */
static void ensure_enabled(uring_state *st) {
    if (!st->enabled) {
        io_uring_register((unsigned)st->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
        st->enabled = 1;
    }
}

/* An SQE; when the SQ is full, submit what is there first. */
static struct io_uring_sqe *sqe_get(uring_state *st) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&st->ring);
    if (!sqe) {
        ensure_enabled(st);
        io_uring_submit(&st->ring);
        sqe = io_uring_get_sqe(&st->ring);
    }
    return sqe;
}

/* ---- the Reactor: polls --------------------------------------------------------- */

static uint64_t poll_ud(iomux_fd fd, uint32_t gen) {
    return ((uint64_t)(uint32_t)fd << 32) | ((uint64_t)(gen & GEN_MASK) << 3) | TAG_POLL;
}

static int gen_reserve(iomux_loop *loop, uring_state *st, iomux_fd fd) {
    size_t old = st->gen_cap;
    int rc = iomux__grow(loop, (void **)&st->gen, &st->gen_cap, (size_t)fd + 1, sizeof(uint32_t));
    if (rc == 0) memset(st->gen + old, 0, (st->gen_cap - old) * sizeof(uint32_t));
    return rc;
}

/* Takes back the poll whose user_data is ud. Its own CQE carries ud with
 * TAG_REMOVE, so that a removal the kernel refuses with -EALREADY is
 * tried again (see remove_cqe). Returns -EBUSY if no SQE is free. */
static int poll_remove(uring_state *st, uint64_t ud) {
    struct io_uring_sqe *sqe = sqe_get(st);
    if (!sqe) return -EBUSY;
    io_uring_prep_poll_remove(sqe, ud);
    io_uring_sqe_set_data64(sqe, (ud & ~(uint64_t)TAG_MASK) | TAG_REMOVE);
    return 0;
}

static int ur_update(iomux_loop *loop, iomux_fd fd, unsigned have, unsigned want) {
    uring_state *st = loop->bstate;
    struct io_uring_sqe *sqe;
    unsigned mask;
    int rc = gen_reserve(loop, st, fd);
    if (rc < 0) return rc;
    if (have & IOMUX__FRESH) st->gen[fd] &= ~GEN_DEAD;
    if ((have & IOMUX__ADDED) && (have & (IOMUX_IN | IOMUX_OUT)) && !(st->gen[fd] & GEN_DEAD)) {
        /* a poll is armed in the kernel: take it back */
        if (poll_remove(st, poll_ud(fd, st->gen[fd])) < 0) return -EBUSY;
    }
    st->gen[fd] = ((st->gen[fd] + 1) & GEN_MASK) | (st->gen[fd] & GEN_DEAD);
    if (!(want & (IOMUX_IN | IOMUX_OUT))) return 0;
    if (st->gen[fd] & GEN_DEAD) return (int)(want | IOMUX__ADDED); /* parked until restarted */
    sqe = sqe_get(st);
    if (!sqe) return -EBUSY;
    mask = ((want & IOMUX_IN) ? POLLIN : 0u) | ((want & IOMUX_OUT) ? POLLOUT : 0u);
    if (want & IOMUX_ET) io_uring_prep_poll_multishot(sqe, fd, mask);
    else io_uring_prep_poll_add(sqe, fd, mask);
    io_uring_sqe_set_data64(sqe, poll_ud(fd, st->gen[fd]));
    return (int)(want | IOMUX__ADDED | ((want & IOMUX_ET) ? 0u : IOMUX__ONCE));
}

/* Returns 1 if it reported something, 0 for a poll that was replaced. */
static int poll_cqe(iomux_loop *loop, uring_state *st, const struct io_uring_cqe *cqe) {
    iomux_fd fd = (iomux_fd)(cqe->user_data >> 32);
    uint32_t gen = (uint32_t)(cqe->user_data >> 3) & GEN_MASK;
    unsigned r;
    if ((size_t)fd >= st->gen_cap || (st->gen[fd] & GEN_MASK) != gen) {
        /* Replaced. A multishot poll still armed here escaped its removal:
         * it holds the file, so a closed socket would live on (its peer
         * never sees the end). Take it back now. */
        if (cqe->flags & IORING_CQE_F_MORE) poll_remove(st, cqe->user_data);
        return 0;
    }
    if (cqe->res < 0) {
        /* The kernel refused the fd (closed while watched...): report it
         * once and park it, as poll does with POLLNVAL, rather than re-arm
         * and fail again every iteration. */
        st->gen[fd] = ((st->gen[fd] + 1) & GEN_MASK) | GEN_DEAD;
        iomux__io_event(loop, fd, IOMUX_ERR);
        return 1;
    }
    r = (unsigned)cqe->res;
    iomux__io_event(loop, fd,
                    ((r & (POLLIN | POLLRDHUP)) ? IOMUX_IN : 0u) | ((r & POLLOUT) ? IOMUX_OUT : 0u) |
                        ((r & POLLERR) ? IOMUX_ERR : 0u) | ((r & POLLHUP) ? IOMUX_HUP : 0u));
    /* A multishot poll the kernel ended (CQ overflow...): apply it again. */
    if (!(cqe->flags & IORING_CQE_F_MORE) && (size_t)fd < loop->nfds && (loop->fds[fd].have & IOMUX_ET))
        iomux__io_disarmed(loop, fd);
    return 1;
}

/* ---- the Proactor: ops --------------------------------------------------------------- */

static void prep_recv(uring_state *st, struct io_uring_sqe *sqe, iomux_op *op) {
    if (!(op->internal.oflags & OF_POOLBUF)) {
        io_uring_prep_recv(sqe, op->internal.fd, op->internal.u.io.buf, op->internal.u.io.len, 0);
        return;
    }
    if (op->internal.oflags & OF_MULTISHOT) io_uring_prep_recv_multishot(sqe, op->internal.fd, NULL, 0, 0);
    else io_uring_prep_recv(sqe, op->internal.fd, NULL, st->buf_size, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
}

/* Large sends go zero-copy: the kernel then posts a second CQE (NOTIF) when
 * it no longer needs the buffer, and only then is the op complete. */
static void prep_send(iomux_loop *loop, struct io_uring_sqe *sqe, iomux_op *op) {
    size_t left = op->internal.u.io.len - op->internal.u.io.done;
    char *p = op->internal.u.io.buf + op->internal.u.io.done;
    if (left >= loop->zc_threshold && !(op->internal.oflags & OF_NOZC)) {
        io_uring_prep_send_zc(sqe, op->internal.fd, p, left, MSG_NOSIGNAL | MSG_WAITALL, 0);
        op->internal.oflags |= OF_ZC;
    } else {
        io_uring_prep_send(sqe, op->internal.fd, p, left, MSG_NOSIGNAL | MSG_WAITALL);
    }
}

static int ur_submit(iomux_loop *loop, iomux_op *op) {
    uring_state *st = loop->bstate;
    struct io_uring_sqe *sqe;
    iomux_fd fd = op->internal.fd;
    int type = op->internal.type;
    /* close(2) serves better than IORING_OP_CLOSE: it cannot block, in-flight
     * requests keep their own file references (their cancels find them by
     * user_data; the core flushes prepared ones first, see ur_flush), and the
     * fd is free the moment iomux_close returns, which tools that track fds
     * (TSan) can see. */
    if (type == OPT_SENDFILE || type == OPT_TIMEOUT || type == OPT_CLOSE) return -ENOTSUP;
    sqe = sqe_get(st);
    if (!sqe) return -EBUSY;
    if (type == OPT_ACCEPT && (op->internal.oflags & OF_MULTISHOT))
        io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    else if (type == OPT_ACCEPT)
        io_uring_prep_accept(sqe, fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    else if (type == OPT_CONNECT)
        io_uring_prep_connect(sqe, fd, op->internal.u.connect.addr, op->internal.u.connect.addrlen);
    else if (type == OPT_RECV)
        prep_recv(st, sqe, op);
    else if (type == OPT_SEND)
        prep_send(loop, sqe, op);
    else if (type == OPT_READ)
        io_uring_prep_read(sqe, fd, op->internal.u.file.buf, (unsigned)op->internal.u.file.len,
                           (uint64_t)op->internal.u.file.offset);
    else
        io_uring_prep_write(sqe, fd, op->internal.u.file.buf, (unsigned)op->internal.u.file.len,
                            (uint64_t)op->internal.u.file.offset);
    io_uring_sqe_set_data(sqe, op);
    return 0;
}

/* The cancel's own CQE carries the op (tag 3), so a miss can be retried. */
static void ur_flush(iomux_loop *loop) {
    uring_state *st = loop->bstate;
    if (io_uring_sq_ready(&st->ring) == 0) return;
    ensure_enabled(st);
    io_uring_submit(&st->ring);
}

static int ur_cancel(iomux_loop *loop, iomux_op *op) {
    uring_state *st = loop->bstate;
    struct io_uring_sqe *sqe;
    if (op->internal.oflags & OF_ZC_HELD) return 0; /* sent: only the release remains */
    sqe = sqe_get(st);
    if (!sqe) return -EBUSY;
    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)op, 0);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)op | TAG_CANCEL);
    return 0;
}

/* The kernel can answer "not found" (or "already running") for a request
 * still being set up, e.g. a send that went out in part and is arming its
 * retry: ask again while the core says the op is still being cancelled.
 * The op is looked up before it is touched: it may be long gone. */
static void cancel_cqe(iomux_loop *loop, const struct io_uring_cqe *cqe) {
    iomux_op *op = (iomux_op *)(uintptr_t)(cqe->user_data & ~(uint64_t)TAG_MASK);
    if ((cqe->res == -ENOENT || cqe->res == -EALREADY) && iomux__op_cancelling(loop, op))
        ur_cancel(loop, op);
}

/* A zero-copy send completes twice: its result (with F_MORE), then a
 * notification (F_NOTIF) when the kernel no longer needs the buffer; the
 * op's callback waits for the second. */
static void zc_cqe(iomux_loop *loop, iomux_op *op, const struct io_uring_cqe *cqe) {
    int res = cqe->res;
    if (!(cqe->flags & IORING_CQE_F_NOTIF) && (cqe->flags & IORING_CQE_F_MORE)) {
        op->result = res;
        op->internal.oflags |= OF_ZC_HELD;
        return;
    }
    if (cqe->flags & IORING_CQE_F_NOTIF) res = (int)op->result;
    op->internal.oflags &= (uint16_t)~(OF_ZC | OF_ZC_HELD);
    if (res == -EOPNOTSUPP) { /* nothing went out */
        /* Not every socket does zero-copy (AF_UNIX): send it plainly,
         * unless it was cancelled meanwhile. */
        if (op->internal.oflags & OF_CANCEL) {
            res = -ECANCELED;
        } else {
            op->internal.oflags |= OF_NOZC;
            res = ur_submit(loop, op);
            if (res == 0) return;
        }
    }
    iomux__op_cqe(loop, op, res, 0, NULL);
}

/* Linux (seen on 6.18) can lose a TCP reset for a multishot recv: after
 * 32 buffers in a row it re-arms the recv's poll, and if the reset came
 * before that, the recv reads the data left and then waits for a wake-up
 * that already happened: its final CQE never comes (a FIN is not lost).
 * So when a multishot recv that just delivered a long run of "socket not
 * empty" CQEs reports the socket empty, look with poll(2): an error or a
 * hang-up there means it may be stuck, so cancel it and drive it again; a
 * new recv reports the error or the end of stream. Only after a run of
 * RUN_CHECK or more (u.io.done counts it), so ping-pong traffic, where
 * every CQE empties the socket, never pays the system call; a false alarm
 * costs a resubmission. */
#define RUN_CHECK 16

static int mshot_stalled(iomux_op *op, const struct io_uring_cqe *cqe) {
    struct pollfd p = {.fd = op->internal.fd, .events = POLLIN};
    size_t run = op->internal.u.io.done;
    if (op->internal.type != OPT_RECV || !(op->internal.oflags & OF_MULTISHOT)) return 0;
    if (cqe->flags & IORING_CQE_F_SOCK_NONEMPTY) {
        op->internal.u.io.done = run + 1;
        return 0;
    }
    op->internal.u.io.done = 0;
    if (run < RUN_CHECK || (op->internal.oflags & (OF_CANCEL | OF_REARM))) return 0;
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP));
}

static void op_cqe(iomux_loop *loop, const struct io_uring_cqe *cqe) {
    iomux_op *op = (iomux_op *)(uintptr_t)cqe->user_data;
    int more = (cqe->flags & IORING_CQE_F_MORE) != 0;
    void *buf = NULL;
    if (op->internal.oflags & OF_ZC) {
        zc_cqe(loop, op, cqe);
        return;
    }
    if (more && mshot_stalled(op, cqe) && ur_cancel(loop, op) == 0) op->internal.oflags |= OF_REARM;
    if (!more && (op->internal.oflags & OF_REARM)) {
        op->internal.oflags &= (uint16_t)~OF_REARM;
        if (cqe->res == -ECANCELED && !(op->internal.oflags & OF_CANCEL)) {
            iomux__op_cqe(loop, op, -ENOBUFS, 0, NULL); /* driven again, as when the pool was empty */
            return;
        }
    }
    if (cqe->flags & IORING_CQE_F_BUFFER) buf = iomux__buf_of_id(loop, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
    iomux__op_cqe(loop, op, cqe->res, more, buf);
}

/* ---- the pool: a provided-buffer ring ------------------------------------------------ */

static int ur_pool_init(iomux_loop *loop, char *base, unsigned count, unsigned size) {
    uring_state *st = loop->bstate;
    struct io_uring_buf_reg reg;
    unsigned i;
    int rc;
    st->br_bytes = count * sizeof(struct io_uring_buf);
    st->br = mmap(NULL, st->br_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (st->br == MAP_FAILED) {
        st->br = NULL;
        return -errno;
    }
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)st->br;
    reg.ring_entries = count;
    reg.bgid = BGID;
    rc = io_uring_register_buf_ring(&st->ring, &reg, 0);
    if (rc < 0) {
        munmap(st->br, st->br_bytes);
        st->br = NULL;
        return rc;
    }
    io_uring_buf_ring_init(st->br);
    st->buf_base = base;
    st->buf_size = size;
    st->buf_mask = io_uring_buf_ring_mask(count);
    for (i = 0; i < count; i++)
        io_uring_buf_ring_add(st->br, base + (size_t)i * size, size, (unsigned short)i, st->buf_mask, (int)i);
    io_uring_buf_ring_advance(st->br, (int)count);
    return 0;
}

static void ur_pool_put(iomux_loop *loop, unsigned id) {
    uring_state *st = loop->bstate;
    io_uring_buf_ring_add(st->br, st->buf_base + (size_t)id * st->buf_size, st->buf_size, (unsigned short)id,
                          st->buf_mask, 0);
    io_uring_buf_ring_advance(st->br, 1);
}

/* ---- wait and reap ------------------------------------------------------------------------- */

/* Returns 1 if the CQE meant something to the core. */
static int dispatch(iomux_loop *loop, uring_state *st, const struct io_uring_cqe *cqe) {
    switch (cqe->user_data & TAG_MASK) {
    case TAG_OP:
        op_cqe(loop, cqe);
        return 1;
    case TAG_POLL:
        return poll_cqe(loop, st, cqe);
    case TAG_CANCEL:
        cancel_cqe(loop, cqe);
        return 0;
    case TAG_REMOVE:
        /* -EALREADY: the poll was running (a multishot one delivering an
         * event) and stays armed: try again. Seen with ET watchers stopped
         * and their fd closed: the socket outlived its fd, and its peer
         * waited for an EOF forever (tests/fuzz, fuzz-loop). */
        if (cqe->res == -EALREADY) poll_remove(st, (cqe->user_data & ~(uint64_t)TAG_MASK) | TAG_POLL);
        return 0;
    default:
        return 0;
    }
}

/* Callbacks run from here: they may prepare SQEs (submitted next iteration)
 * but never advance the CQ, so the batch stays valid while we walk it.
 * Returns how many CQEs meant something to the core. */
static int reap(iomux_loop *loop, uring_state *st) {
    struct io_uring_cqe *cqes[REAP_BATCH];
    unsigned n, i, total = 0;
    int useful = 0;
    while (total < loop->max_events) {
        n = io_uring_peek_batch_cqe(&st->ring, cqes, REAP_BATCH);
        if (n == 0) {
            /* Completions the kernel kept aside when the CQ was full. */
            if (!io_uring_cq_has_overflow(&st->ring)) break;
            io_uring_get_events(&st->ring);
            n = io_uring_peek_batch_cqe(&st->ring, cqes, REAP_BATCH);
            if (n == 0) break;
        }
        for (i = 0; i < n; i++) useful += dispatch(loop, st, cqes[i]);
        io_uring_cq_advance(&st->ring, n);
        total += n;
    }
    return useful;
}

static int ur_wait(iomux_loop *loop, int timeout_ms) {
    uring_state *st = loop->bstate;
    struct io_uring_cqe *cqe;
    int rc, n;
    ensure_enabled(st);
    if (timeout_ms == 0) {
        rc = io_uring_submit_and_get_events(&st->ring);
    } else if (timeout_ms < 0) {
        rc = io_uring_submit_and_wait(&st->ring, 1);
    } else {
        struct __kernel_timespec ts;
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
        rc = io_uring_submit_and_wait_timeout(&st->ring, &cqe, 1, &ts, NULL);
    }
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN) return rc;
    loop->now = iomux__hrtime(); /* reap runs multishot callbacks (accept): not with the time before the wait */
    n = reap(loop, st);
    /* Only internal CQEs (a cancel's, a removed poll's): not an event, so
     * let the core resume the wait for the time left. */
    return (n == 0 && timeout_ms != 0 && rc != -ETIME) ? -EINTR : n;
}

const iomux__backend iomux__backend_uring = {
    .name = "uring",
    .id = IOMUX_BACKEND_URING,
    .caps = IOMUX__CAP_ET | IOMUX__CAP_ONESHOT,
    .init = ur_init,
    .free = ur_free,
    .watch_update = ur_update,
    .wait = ur_wait,
    .submit = ur_submit,
    .cancel = ur_cancel,
    .pool_init = ur_pool_init,
    .pool_put = ur_pool_put,
    .flush = ur_flush,
};
#endif

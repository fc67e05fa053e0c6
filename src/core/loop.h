/* The loop's internals, shared by the core files (not installed). */
#ifndef IOMUX_LOOP_H
#define IOMUX_LOOP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "iomux.h"
#include "queue.h"
#include "../backend/backend.h"

/* Per-fd state, in loop->fds indexed by fd. Small on purpose: one per fd
 * number up to the highest watched, whether or not it is in use. */
typedef struct iomux__fdent {
    iomux_watch *w;   /* the watcher, or NULL */
    iomux_op *rq;     /* ops reading (accept, recv): FIFO, head first */
    iomux_op *wq;     /* ops writing (connect, send, sendfile): FIFO */
    uint8_t have;     /* the backend's interest (backend.h), as it returned */
    uint8_t etstate;  /* ET emulation: TCP state at the last IN/OUT report */
    uint16_t flags;   /* FD_* below */
    uint32_t rx, tx;  /* ET emulation: TCP byte counters at the last report */
} iomux__fdent;

enum {
    FD_DIRTY = 1u << 0,       /* queued in loop->dirty */
    FD_FRESH = 1u << 1,       /* watcher started since the last apply */
    FD_ET_NOCOUNT = 1u << 2,  /* not TCP: the emulation reports while ready */
    FD_ET_SAW_IN = 1u << 3,   /* IN reported since the fd last looked idle */
    FD_ET_SAW_OUT = 1u << 4,
    FD_ET_PARK_IN = 1u << 5,  /* IN taken out of the wait set (see et.c) */
    FD_ET_PARK_OUT = 1u << 6,
    FD_ET_PARKED = 1u << 7,   /* queued in loop->parked */
    FD_RBLOCKED = 1u << 8,    /* ops: a read gave EAGAIN; wait for IN */
    FD_WBLOCKED = 1u << 9,    /* ops: a write gave EAGAIN; wait for OUT */
    FD_BUFWAIT = 1u << 10,    /* ops: the head recv waits for a pool buffer */
    FD_CLOSING = 1u << 11     /* ops: iomux_close is cancelling them */
};

/* Recv buffer pool (bufpool.c): `count` buffers of `size` bytes at `base`.
 * On readiness backends the core hands them out from the `free` stack; on
 * uring the kernel picks them from a provided-buffer ring and `nfree` only
 * counts how many the kernel holds. Head recv ops that wait for a buffer
 * are on `waiters` (their pend node is free while they are queued). */
typedef struct iomux__bufpool {
    char *base;
    unsigned count, size;
    unsigned *free;
    unsigned nfree;
    int ring;
    int kick;             /* uring: a recv parked on -ENOBUFS; wake waiters next iteration */
    iomux__node waiters;  /* recv ops, linked through their pend node */
} iomux__bufpool;

typedef struct iomux__vec_int {
    int *v;
    size_t len, cap;
} iomux__vec_int;

typedef struct iomux__post_item {
    iomux_post_fn fn;
    void *arg;
} iomux__post_item;

typedef struct iomux__post_queue {
    pthread_mutex_t mu;
    atomic_size_t queued;   /* posted and not yet run: the loop never blocks while > 0 */
    iomux__post_item *in;   /* producers append here (under mu) */
    size_t in_len, in_cap;
    iomux__post_item *out;  /* the loop runs these (loop thread only) */
    size_t out_len, out_pos, out_cap;
    int wake_pending;       /* under mu: a wake-up is owed to this batch */
    int efd;                /* eventfd (or pipe read end) */
    int wfd;                /* write end (== efd for an eventfd) */
    iomux_watch watch;
} iomux__post_queue;

typedef struct iomux__timer_ent {
    uint64_t due, seq;
    iomux_timer *t;
} iomux__timer_ent;

#define IOMUX__NSIG 65

typedef struct iomux__sig_state {
    int slot;        /* index in the process-wide table, -1 if none */
    int rfd, wfd;    /* self-pipe */
    iomux_watch watch;
    iomux__node lists[IOMUX__NSIG]; /* started watchers by signal number */
    unsigned counts[IOMUX__NSIG];
} iomux__sig_state;

struct iomux_loop {
    iomux_allocator alloc;
    const iomux__backend *backend;
    void *bstate;
    void *data;

    uint64_t now;          /* ns, CLOCK_MONOTONIC, cached */
    int stop;
    int running;
    size_t active;         /* started user handles */

    iomux__fdent *fds;     /* indexed by fd */
    size_t nfds;
    iomux__vec_int dirty;  /* fds whose interest changed */
    iomux__vec_int parked; /* ET emulation: fds taken out of the wait set */

    iomux__node pending;   /* iomux__pend items to run */
    iomux__node cancelling; /* ops in the kernel being cancelled (op.c) */

    iomux__timer_ent *heap;
    size_t heap_len, heap_cap;
    uint64_t timer_seq;

    unsigned max_timers, max_pending, max_events;
    iomux_stats stats;

    iomux__post_queue post;
    iomux__sig_state sig;
    iomux__bufpool pool;           /* bufpool.c, created on first use */
    unsigned pool_count, pool_size, zc_threshold, uring_entries, uring_cq_entries;
    struct iomux__workpool *work;  /* work.c, started on first use */
    unsigned threads;              /* from the config (0: $IOMUX_THREADS, else 4) */
};

/* alloc.c */
void *iomux__malloc(iomux_loop *loop, size_t size);
void *iomux__realloc(iomux_loop *loop, void *ptr, size_t size);
void iomux__free(iomux_loop *loop, void *ptr);
/* Grows *arr (of `elsize` elements, capacity *cap) to hold at least `need`. */
int iomux__grow(iomux_loop *loop, void **arr, size_t *cap, size_t need, size_t elsize);
int iomux__vec_push(iomux_loop *loop, iomux__vec_int *vec, int value);
extern const iomux_allocator iomux__default_allocator;

/* loop.c */
uint64_t iomux__hrtime(void);
void iomux__pend_queue(iomux_loop *loop, iomux__pend *p);
void iomux__pend_cancel(iomux__pend *p);

/* watch.c */
int iomux__fd_reserve(iomux_loop *loop, iomux_fd fd);
void iomux__fd_dirty(iomux_loop *loop, iomux_fd fd);
void iomux__watch_apply(iomux_loop *loop);
void iomux__fd_forget(iomux_loop *loop, iomux_fd fd);
/* Internal watchers (wake-up, signals) do not keep the loop alive. */
int iomux__watch_start_internal(iomux_watch *w, unsigned events);

/* et.c (ET emulation for backends without IOMUX__CAP_ET). Parked fds are
 * probed at least every IOMUX__PARK_PROBE_MS. */
#define IOMUX__PARK_PROBE_MS 10
unsigned iomux__et_filter(iomux_loop *loop, iomux_fd fd, unsigned revents);
void iomux__et_reset(iomux__fdent *fe);
void iomux__et_probe(iomux_loop *loop);
unsigned iomux__et_parked_mask(const iomux__fdent *fe);

/* timer.c */
/* Runs due timers; returns how many callbacks ran. */
unsigned iomux__timers_run(iomux_loop *loop);
/* Milliseconds to the next deadline (rounded up), -1 if there is none. */
int iomux__timers_timeout(const iomux_loop *loop);
void iomux__timers_free(iomux_loop *loop);

/* post.c */
int iomux__post_init(iomux_loop *loop);
void iomux__post_close(iomux_loop *loop);
unsigned iomux__post_run(iomux_loop *loop); /* callbacks run */
int iomux__post_queued(const iomux_loop *loop);

/* uring: sends of at least this many bytes use SEND_ZC unless configured.
 * bench/zc measured no crossover on this project's machine: over loopback
 * SEND_ZC lost at every size from 4 KiB (0.04x) to 1 MiB (0.7x), as the
 * kernel copies zero-copy pages on local delivery. So it is off by default;
 * set cfg.send_zc_threshold for a real NIC (see README). */
#define IOMUX__SEND_ZC_DEFAULT UINT32_MAX

/* op.c: the Proactor core. Per-op states (op->internal.state): */
enum {
    OP_IDLE = 0,  /* not started, or its final callback has begun */
    OP_QUEUED,    /* in its fd's queue, not yet in the kernel (or waiting) */
    OP_KERNEL,    /* submitted to the backend (uring); a CQE will come */
    OP_DONE,      /* result known; its callback is queued (phase 3/6) */
    OP_POOL,      /* on the work pool (file ops on readiness backends) */
    OP_TIMER      /* a timeout op waiting on the timer heap */
};
enum { /* op->internal.type */
    OPT_ACCEPT = 1, OPT_CONNECT, OPT_RECV, OPT_SEND, OPT_SENDFILE,
    OPT_READ, OPT_WRITE, OPT_CLOSE, OPT_TIMEOUT
};
enum { /* op->internal.oflags */
    OF_MULTISHOT = 1u << 0,
    OF_POOLBUF = 1u << 1,    /* recv into a pool buffer */
    OF_EMUL = 1u << 2,       /* the backend does not do it: emulated */
    OF_CANCEL = 1u << 3,     /* cancel requested */
    OF_MORE = 1u << 4,       /* the queued result is not the final one */
    OF_STARTED = 1u << 5,    /* connect: connect() issued, now wait for OUT */
    OF_ZC = 1u << 6,         /* uring: a zero-copy send in the kernel */
    OF_ZC_HELD = 1u << 7,    /* uring: its result came; the kernel still holds the buffer */
    OF_NOZC = 1u << 8,       /* uring: zero-copy refused for this fd: send plainly */
    OF_REARM = 1u << 9       /* uring: a stalled multishot recv, cancelled to be driven again */
};
/* A completion from the backend (uring): res as the kernel gave it; `more`
 * if the kernel will post more for this op; `buf` the pool buffer picked by
 * the kernel, or NULL. Runs callbacks: call only from the backend's wait. */
void iomux__op_cqe(iomux_loop *loop, iomux_op *op, int res, int more, void *buf);
/* Readiness for an fd driven by ops (from iomux__io_event). */
void iomux__ops_ready(iomux_loop *loop, iomux_fd fd, unsigned revents);
/* The interest the ops queued on this fd need (IOMUX_IN/OUT). */
unsigned iomux__ops_want(const iomux_loop *loop, const iomux__fdent *fe);
/* Phase 4 could not give the backend the interest the fd's ops need
 * (-ENOMEM growing its table, epoll's ENOSPC...): ends the ops waiting
 * for readiness with err. */
void iomux__ops_fail(iomux_loop *loop, iomux_fd fd, int err);
/* Re-drives the fd's ops (after a pool buffer was released). */
void iomux__ops_drive(iomux_loop *loop, iomux_fd fd);
/* 1 if op is in the kernel with a cancel asked for and not yet done: the
 * backend may then ask again (the kernel can miss a request that is still
 * being set up). Looks op up without dereferencing it, so a pointer from an
 * old CQE is safe to pass. */
int iomux__op_cancelling(const iomux_loop *loop, const iomux_op *op);

/* emul.c: one non-blocking attempt of an op on a readiness backend. */
enum { EMUL_DONE, EMUL_MORE, EMUL_AGAIN, EMUL_NOBUF };
int iomux__emul_attempt(iomux_loop *loop, iomux_op *op, int64_t *res);

/* bufpool.c */
int iomux__bufpool_ensure(iomux_loop *loop);
void *iomux__buf_take(iomux_loop *loop);               /* NULL if none free */
void iomux__buf_put(iomux_loop *loop, void *buf);      /* untaken: no wake-up */
void *iomux__buf_of_id(iomux_loop *loop, unsigned id); /* the kernel picked it */
void iomux__buf_wait(iomux_loop *loop, iomux_op *op);  /* drive op on release */
void iomux__buf_kick(iomux_loop *loop);                /* phase 4: wake recvs parked on -ENOBUFS */
void iomux__bufpool_free(iomux_loop *loop);

/* work.c: the thread pool. iomux__work_queue runs p->run(p) on a pool
 * thread; that function must set p->run to the loop-thread stage before it
 * returns, and the pool then queues p on the loop's pending queue (through
 * iomux_post), so the second stage runs on the loop thread in phase 3.
 * Returns 0 or -errno (pool start failure). iomux__work_unqueue removes p if
 * no thread took it yet: 0, or -EBUSY. iomux__work_close joins the threads
 * (loop_free; nothing is queued by then). The loop's `active` count is the
 * caller's business. */
int iomux__work_queue(iomux_loop *loop, iomux__pend *p);
int iomux__work_unqueue(iomux_loop *loop, iomux__pend *p);
void iomux__work_close(iomux_loop *loop);

/* signal.c */
void iomux__signal_init(iomux_loop *loop);
void iomux__signal_close(iomux_loop *loop);

#endif

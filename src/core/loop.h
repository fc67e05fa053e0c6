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
    FD_ET_PARKED = 1u << 7    /* queued in loop->parked */
};

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

    iomux__timer_ent *heap;
    size_t heap_len, heap_cap;
    uint64_t timer_seq;

    unsigned max_timers, max_pending, max_events;
    iomux_stats stats;

    iomux__post_queue post;
    iomux__sig_state sig;
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
void iomux__timers_run(iomux_loop *loop);
/* Milliseconds to the next deadline (rounded up), -1 if there is none. */
int iomux__timers_timeout(const iomux_loop *loop);
void iomux__timers_free(iomux_loop *loop);

/* post.c */
int iomux__post_init(iomux_loop *loop);
void iomux__post_close(iomux_loop *loop);
void iomux__post_run(iomux_loop *loop);
int iomux__post_queued(const iomux_loop *loop);

/* signal.c */
void iomux__signal_init(iomux_loop *loop);
void iomux__signal_close(iomux_loop *loop);

#endif

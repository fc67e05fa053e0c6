/* The work pool: per-loop threads that run the first stage of a queued
 * iomux__pend off the loop thread and hand the item back to the loop
 * (through iomux_post) for its second stage in phase 3; and, on top of it,
 * the public iomux_work_submit / iomux_work_cancel.
 *
 * Who touches what. The pool's queue, its `quit` flag, and the node of an
 * item while it is in that queue are guarded by pool->mu. A worker touches
 * nothing else of the loop but iomux_post. Everything else (loop->active,
 * loop->pending, w->internal.state) belongs to the loop thread. A worker
 * takes an item off the queue under pool->mu before it runs it, so "not in
 * the queue" is the mark of an item that started: iomux__work_unqueue
 * decides under that same mutex and cannot race a worker.
 *
 * The threads start on the first iomux__work_queue, so a loop that never
 * uses the pool owns no thread. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "loop.h"

#define DEFAULT_THREADS 4
#define MAX_ENV_THREADS 256 /* $IOMUX_THREADS is outside input: keep it sane */

struct iomux__workpool {
    pthread_mutex_t mu;
    pthread_cond_t cv;   /* signalled when an item is queued, broadcast on quit */
    iomux__node queue;   /* FIFO of iomux__pend through p->node, under mu */
    int quit;            /* under mu: the workers exit */
    iomux_loop *loop;
    unsigned nthreads;   /* started (loop thread only) */
    pthread_t threads[];
};

typedef struct iomux__workpool iomux__workpool;

/* ---- pool size ------------------------------------------------------------------ */

/* $IOMUX_THREADS as a positive decimal, capped; 0 if unset or not valid. */
static unsigned env_threads(void) {
    const char *s = getenv("IOMUX_THREADS");
    char *end;
    unsigned long n;
    /* strtoul alone would accept " 3", "+3" and even "-3" (as a huge value) */
    if (!s || *s < '0' || *s > '9') return 0;
    n = strtoul(s, &end, 10); /* overflow gives ULONG_MAX: capped below */
    if (*end != '\0' || n == 0) return 0;
    return n > MAX_ENV_THREADS ? MAX_ENV_THREADS : (unsigned)n;
}

static unsigned pool_size(const iomux_loop *loop) {
    unsigned n;
    if (loop->threads) return loop->threads;
    n = env_threads();
    return n ? n : DEFAULT_THREADS;
}

/* ---- the workers ------------------------------------------------------------------ */

/* Runs on the loop thread (a post): the item joins the pending queue, whose
 * phase-3 run calls its second stage. */
static void back_on_loop(iomux_loop *loop, void *arg) {
    iomux__pend_queue(loop, arg);
}

/* A finished item must reach the loop whatever happens: its owner waits for
 * its second stage, and the loop counts it as alive until then. So when the
 * post queue cannot grow, wait for memory and try again, never drop it. */
static void hand_back(iomux_loop *loop, iomux__pend *p) {
    const struct timespec pause = {0, 1000000}; /* 1 ms */
    while (iomux_post(loop, back_on_loop, p) != 0) nanosleep(&pause, NULL);
}

/* The next item, off the queue (that is what marks it as started), or
 * NULL when the pool is closing. */
static iomux__pend *take(iomux__workpool *pool) {
    iomux__node *n = NULL;
    pthread_mutex_lock(&pool->mu);
    while (!pool->quit && (n = iomux__q_pop(&pool->queue)) == NULL)
        pthread_cond_wait(&pool->cv, &pool->mu);
    pthread_mutex_unlock(&pool->mu);
    return n ? iomux__container_of(n, iomux__pend, node) : NULL;
}

static void *worker_main(void *arg) {
    iomux__workpool *pool = arg;
    iomux__pend *p;
    while ((p = take(pool)) != NULL) {
        p->run(p); /* the first stage; it sets p->run to the second */
        hand_back(pool->loop, p);
        /* p is the loop's again: not touched past this point */
    }
    return NULL;
}

/* ---- start and stop ---------------------------------------------------------------- */

/* Tells the started workers to exit, joins them, frees the pool. */
static void pool_destroy(iomux_loop *loop, iomux__workpool *pool) {
    unsigned i;
    pthread_mutex_lock(&pool->mu);
    pool->quit = 1;
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    for (i = 0; i < pool->nthreads; i++) pthread_join(pool->threads[i], NULL);
    pthread_cond_destroy(&pool->cv);
    pthread_mutex_destroy(&pool->mu);
    iomux__free(loop, pool);
}

/* Workers start with asynchronous signals blocked (a thread inherits its
 * creator's mask), so a process signal goes to a thread of the program,
 * not into a work function's system call as EINTR. Faults stay unblocked:
 * a blocked fault kills the process and hides it from handlers. */
#ifdef _WIN32
typedef int iomux__sigmask; /* no asynchronous signals to block */
static void block_async_signals(iomux__sigmask *old) {
    *old = 0;
}
static void restore_signals(const iomux__sigmask *old) {
    (void)old;
}
#else
typedef sigset_t iomux__sigmask;
static void restore_signals(const iomux__sigmask *old) {
    pthread_sigmask(SIG_SETMASK, old, NULL);
}
static void block_async_signals(iomux__sigmask *old) {
    sigset_t all;
    sigfillset(&all);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    sigdelset(&all, SIGTRAP);
    sigdelset(&all, SIGABRT);
    pthread_sigmask(SIG_BLOCK, &all, old);
}
#endif

/* Starts n workers; on a failure, stops there (pool_destroy joins those
 * that did start) and returns -errno. */
static int threads_start(iomux__workpool *pool, unsigned n) {
    iomux__sigmask old;
    int rc = 0;
    block_async_signals(&old);
    while (pool->nthreads < n) {
        rc = pthread_create(&pool->threads[pool->nthreads], NULL, worker_main, pool);
        if (rc != 0) break;
        pool->nthreads++;
    }
    restore_signals(&old);
    return -rc;
}

static int pool_init_sync(iomux__workpool *pool) {
    int rc = pthread_mutex_init(&pool->mu, NULL);
    if (rc != 0) return -rc;
    rc = pthread_cond_init(&pool->cv, NULL);
    if (rc != 0) pthread_mutex_destroy(&pool->mu);
    return -rc;
}

static int pool_start(iomux_loop *loop) {
    unsigned n = pool_size(loop);
    size_t most = (SIZE_MAX - sizeof(iomux__workpool)) / sizeof(pthread_t);
    iomux__workpool *pool;
    int rc;
    if ((size_t)n > most) return -ENOMEM; /* only where size_t is narrow */
    pool = iomux__malloc(loop, sizeof(*pool) + n * sizeof(pthread_t));
    if (!pool) return -ENOMEM;
    rc = pool_init_sync(pool);
    if (rc < 0) {
        iomux__free(loop, pool);
        return rc;
    }
    iomux__q_init(&pool->queue);
    pool->quit = 0;
    pool->loop = loop;
    pool->nthreads = 0;
    rc = threads_start(pool, n);
    if (rc < 0) {
        pool_destroy(loop, pool);
        return rc;
    }
    loop->work = pool;
    return 0;
}

/* ---- the internal interface (loop.h) ------------------------------------------------ */

int iomux__work_queue(iomux_loop *loop, iomux__pend *p) {
    iomux__workpool *pool;
    if (!loop->work) {
        int rc = pool_start(loop);
        if (rc < 0) return rc;
    }
    pool = loop->work;
    pthread_mutex_lock(&pool->mu);
    iomux__q_push(&pool->queue, &p->node);
    pthread_cond_signal(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    return 0;
}

/* 1 if p is in the pool's queue (under pool->mu). A linked node is not
 * enough: once a worker has handed p back, it is linked in the loop's
 * pending queue (or in a batch being run) until its second stage runs, and
 * the caller may not know yet. So look for it; from the back, where a
 * cancel mostly finds what was just queued. Reading p->node is safe under
 * mu: the workers write it only under mu, and the loop thread, the only
 * other writer, is the caller. */
static int in_queue(iomux__workpool *pool, const iomux__pend *p) {
    const iomux__node *n;
    if (!iomux__q_linked(&p->node)) return 0;
    for (n = pool->queue.prev; n != &pool->queue; n = n->prev)
        if (n == &p->node) return 1;
    return 0;
}

int iomux__work_unqueue(iomux_loop *loop, iomux__pend *p) {
    iomux__workpool *pool = loop->work;
    int found;
    if (!pool) return -EBUSY;
    pthread_mutex_lock(&pool->mu);
    found = in_queue(pool, p);
    if (found) iomux__q_remove(&p->node);
    pthread_mutex_unlock(&pool->mu);
    return found ? 0 : -EBUSY;
}

void iomux__work_close(iomux_loop *loop) {
    if (!loop->work) return;
    pool_destroy(loop, loop->work);
    loop->work = NULL;
}

/* ---- iomux_work ---------------------------------------------------------------------- */

/* w->internal.state, on the loop thread only. Whether a worker has begun an
 * item cannot be read there without a lock, so "queued" covers queued,
 * running and on its way back; iomux__work_unqueue tells them apart. The
 * handle has no init function: the in-flight values are unlikely patterns
 * so that an uninitialised handle is not taken for one in flight. */
enum {
    WORK_IDLE = 0,              /* never submitted (a zeroed handle) */
    WORK_QUEUED = 0x574b5101,   /* with the pool, or its done queued */
    WORK_CANCELED = 0x574b5102, /* taken back: done(-ECANCELED) queued */
    WORK_DONE = 0x574b5103      /* done has begun: may be submitted again */
};

static iomux_work *work_of(iomux__pend *p) {
    return iomux__container_of(p, iomux_work, internal.pend);
}

/* Loop thread. `active` drops before done runs, so that done may submit
 * again (or free w) and the loop sees the right count either way. */
static void finish(iomux_work *w, int status) {
    w->loop->active--;
    w->internal.state = WORK_DONE;
    w->internal.status = status;
    w->done(w, status);
}

static void done_stage(iomux__pend *p) {
    finish(work_of(p), 0);
}

static void cancel_stage(iomux__pend *p) {
    finish(work_of(p), -ECANCELED);
}

/* Pool thread. */
static void work_stage(iomux__pend *p) {
    iomux_work *w = work_of(p);
    p->run = done_stage;
    w->work(w);
}

static int in_flight(const iomux_work *w) {
    return w->internal.state == WORK_QUEUED || w->internal.state == WORK_CANCELED;
}

int iomux_work_submit(iomux_loop *loop, iomux_work *w, iomux_work_fn work, iomux_work_done_fn done) {
    iomux__pend *p;
    int rc;
    if (!loop || !w || !work || !done || in_flight(w)) return -EINVAL;
    w->loop = loop;
    w->work = work;
    w->done = done;
    w->internal.status = 0;
    p = &w->internal.pend;
    p->node.next = p->node.prev = NULL; /* the handle may be uninitialised */
    p->run = work_stage;
    rc = iomux__work_queue(loop, p);
    if (rc < 0) return rc;
    /* Loop-thread fields: no worker reads them, so after the queue is fine. */
    w->internal.state = WORK_QUEUED;
    loop->active++;
    return 0;
}

int iomux_work_cancel(iomux_work *w) {
    iomux__pend *p;
    if (!w) return -EINVAL;
    if (w->internal.state == WORK_CANCELED || w->internal.state == WORK_DONE) return -EBUSY;
    if (w->internal.state != WORK_QUEUED) return -EINVAL;
    p = &w->internal.pend;
    if (iomux__work_unqueue(w->loop, p) < 0) return -EBUSY; /* running or finished */
    /* No worker has seen p, and none will: it is ours to requeue. done runs
     * from the loop, never from inside this call. */
    w->internal.state = WORK_CANCELED;
    p->run = cancel_stage;
    iomux__pend_queue(w->loop, p);
    return 0;
}

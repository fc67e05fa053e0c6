/* The loop: creation, backend choice, and the iteration (order in iomux.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loop.h"
#include "sys.h"

/* Worst to best: AUTO tries them from the end. */
static const iomux__backend *const backends[] = {
#ifndef _WIN32
    &iomux__backend_select,
#endif
    &iomux__backend_poll,
#ifdef IOMUX_HAVE_EPOLL
    &iomux__backend_epoll,
#endif
#ifdef IOMUX_HAVE_URING
    &iomux__backend_uring,
#endif
#ifdef _WIN32
    &iomux__backend_iocp,
#endif
};
#define NBACKENDS (sizeof(backends) / sizeof(backends[0]))

static const char *const backend_ids[] = {"auto", "select", "poll", "epoll", "uring", "iocp"};

uint64_t iomux__hrtime(void) {
#ifdef _WIN32
    static LARGE_INTEGER freq;
    LARGE_INTEGER now;
    if (!freq.QuadPart) QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&now);
    return (uint64_t)(now.QuadPart / freq.QuadPart) * 1000000000u +
           (uint64_t)(now.QuadPart % freq.QuadPart) * 1000000000u / (uint64_t)freq.QuadPart;
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
#endif
}

/* ---- backends --------------------------------------------------------------- */

int iomux_backend_parse(const char *name, iomux_backend *out) {
    size_t i;
    if (!name || !out) return -EINVAL;
    for (i = 0; i < sizeof(backend_ids) / sizeof(backend_ids[0]); i++) {
        if (strcmp(name, backend_ids[i]) == 0) {
            *out = (iomux_backend)i;
            return 0;
        }
    }
    return -EINVAL;
}

static const iomux__backend *backend_find(iomux_backend id) {
    size_t i;
    for (i = 0; i < NBACKENDS; i++)
        if (backends[i]->id == id) return backends[i];
    return NULL;
}

int iomux_backend_available(iomux_backend backend) {
    return backend == IOMUX_BACKEND_AUTO || backend_find(backend) != NULL;
}

const char *iomux_backend_names(void) {
#ifdef _WIN32
    return "poll iocp";
#else
    return "select poll"
#ifdef IOMUX_HAVE_EPOLL
           " epoll"
#endif
#ifdef IOMUX_HAVE_URING
           " uring"
#endif
        ;
#endif
}

/* The backends to try, best first: the configured one, or $IOMUX_BACKEND,
 * or every backend from the best down (AUTO falls back when one fails). */
static int backend_choose(const iomux_config *cfg, const iomux__backend **list, size_t *n) {
    iomux_backend id = cfg->backend;
    const char *env = getenv("IOMUX_BACKEND");
    size_t i;
    if (id == IOMUX_BACKEND_AUTO && env && *env) {
        if (iomux_backend_parse(env, &id) < 0) return -EINVAL;
    }
    if ((unsigned)id > IOMUX_BACKEND_IOCP) return -EINVAL;
    if (id != IOMUX_BACKEND_AUTO) {
        list[0] = backend_find(id);
        *n = 1;
        return list[0] ? 0 : -ENOTSUP;
    }
    for (i = 0; i < NBACKENDS; i++) list[i] = backends[NBACKENDS - 1 - i];
    *n = NBACKENDS;
    return 0;
}

static int backend_start(iomux_loop *loop, const iomux_config *cfg) {
    const iomux__backend *list[NBACKENDS];
    size_t n = 0, i;
    int rc = backend_choose(cfg, list, &n);
    for (i = 0; rc == 0 && i < n; i++) {
        loop->backend = list[i];
        rc = list[i]->init(loop);
        if (rc == 0) return 0;
        if (i + 1 < n) rc = 0; /* AUTO: fall back to the next one */
    }
    loop->backend = NULL;
    return rc;
}

/* ---- create and free ----------------------------------------------------------- */

void iomux_config_init(iomux_config *cfg) {
    memset(cfg, 0, sizeof(*cfg));
}

static int alloc_valid(const iomux_allocator *a) {
    return a->malloc && a->realloc && a->free;
}

static void tables_free(iomux_loop *loop) {
    iomux__bufpool_free(loop);
    iomux__timers_free(loop);
    iomux__free(loop, loop->fds);
    iomux__free(loop, loop->dirty.v);
    iomux__free(loop, loop->parked.v);
}

int iomux_loop_new(iomux_loop **out, const iomux_config *cfg_in) {
    iomux_config cfg;
    const iomux_allocator *a;
    iomux_loop *loop;
    int rc;
    if (!out) return -EINVAL;
    *out = NULL;
    if (cfg_in) cfg = *cfg_in;
    else iomux_config_init(&cfg);
    a = cfg.allocator ? cfg.allocator : &iomux__default_allocator;
    if (!alloc_valid(a)) return -EINVAL;
    rc = iomux__sys_init();
    if (rc < 0) return rc;
    loop = a->malloc(a->ud, sizeof(*loop));
    if (!loop) return -ENOMEM;
    memset(loop, 0, sizeof(*loop));
    loop->alloc = *a;
    loop->max_timers = cfg.max_timers_per_iteration ? cfg.max_timers_per_iteration : 256;
    loop->max_pending = cfg.max_pending_per_iteration ? cfg.max_pending_per_iteration : 1024;
    loop->max_events = cfg.max_events_per_wait ? cfg.max_events_per_wait : 1024;
    loop->pool_count = cfg.pool_buffers ? cfg.pool_buffers : 512;
    loop->pool_size = cfg.pool_buffer_size ? cfg.pool_buffer_size : 4096;
    loop->threads = cfg.threads;
    loop->uring_entries = cfg.uring_entries ? cfg.uring_entries : 1024;
    loop->uring_cq_entries = cfg.uring_cq_entries;
    loop->zc_threshold = cfg.send_zc_threshold ? cfg.send_zc_threshold : IOMUX__SEND_ZC_DEFAULT;
    iomux__q_init(&loop->pending);
    iomux__q_init(&loop->cancelling);
    iomux__signal_init(loop);
    loop->now = iomux__hrtime();
    rc = backend_start(loop, &cfg);
    if (rc == 0) {
        rc = iomux__post_init(loop);
        if (rc < 0) loop->backend->free(loop);
    }
    if (rc < 0) {
        tables_free(loop);
        a->free(a->ud, loop);
        return rc;
    }
    *out = loop;
    return 0;
}

int iomux_loop_free(iomux_loop *loop) {
    iomux_allocator a;
    if (!loop) return -EINVAL;
    if (loop->running) return -EBUSY;
    if (iomux_loop_alive(loop)) return -EBUSY;
    iomux__work_close(loop);
    iomux__signal_close(loop);
    iomux__post_close(loop);
    loop->backend->free(loop);
    tables_free(loop);
    a = loop->alloc;
    a.free(a.ud, loop);
    return 0;
}

/* ---- queued callbacks (phases 3 and 6) -------------------------------------- */

void iomux__pend_queue(iomux_loop *loop, iomux__pend *p) {
    if (!iomux__q_linked(&p->node)) iomux__q_push(&loop->pending, &p->node);
}

void iomux__pend_cancel(iomux__pend *p) {
    if (iomux__q_linked(&p->node)) iomux__q_remove(&p->node);
}

/* Runs what is queued now, at most `limit` items; items queued by these
 * callbacks wait for the next run, so a callback that queues work cannot keep
 * this phase going forever. A handle stopped meanwhile leaves the local list
 * by itself (its node unlinks from whichever list holds it). */
static unsigned pending_run(iomux_loop *loop, unsigned limit) {
    iomux__node batch;
    iomux__node *n;
    unsigned ran = 0;
    iomux__q_init(&batch);
    iomux__q_splice(&loop->pending, &batch);
    while (ran < limit && (n = iomux__q_pop(&batch)) != NULL) {
        iomux__pend *p = iomux__container_of(n, iomux__pend, node);
        p->run(p);
        ran++;
    }
    iomux__q_splice_front(&batch, &loop->pending);
    return ran;
}

/* ---- the iteration ---------------------------------------------------------------- */

int iomux_loop_alive(const iomux_loop *loop) {
    return loop->active > 0 || !iomux__q_empty(&loop->pending) || iomux__post_queued(loop);
}

static int wait_timeout(iomux_loop *loop, int mode, unsigned ran) {
    int timeout;
    if (mode == IOMUX_RUN_NOWAIT || loop->stop) return 0;
    /* ONCE returns after work: if phases 2-3 ran callbacks, do not block. */
    if (mode == IOMUX_RUN_ONCE && ran > 0) return 0;
    if (!iomux_loop_alive(loop)) return 0; /* nothing could ever wake us */
    if (!iomux__q_empty(&loop->pending)) return 0;
    if (iomux__post_queued(loop)) return 0;
    timeout = iomux__timers_timeout(loop);
    /* Parked ET fds (et.c) are out of the wait set: look again soon. */
    if (loop->parked.len > 0 && (timeout < 0 || timeout > IOMUX__PARK_PROBE_MS))
        timeout = IOMUX__PARK_PROBE_MS;
    return timeout;
}

/* Waits in the backend for up to timeout ms. An interrupted wait (a signal,
 * or io_uring task work, which interrupts blocking calls the same way) is
 * resumed for the time left, so a wait ends only on an event or its
 * deadline. A watched signal ends it anyway: its self-pipe becomes ready. */
static int backend_wait(iomux_loop *loop, int timeout) {
    uint64_t end = loop->now + (uint64_t)(timeout > 0 ? timeout : 0) * 1000000u;
    for (;;) {
        int rc = loop->backend->wait(loop, timeout);
        if (rc != -EINTR) return rc;
        if (timeout == 0) return 0;
        if (timeout > 0) {
            uint64_t now = iomux__hrtime();
            if (now >= end) return 0;
            timeout = (int)((end - now + 999999u) / 1000000u);
        }
    }
}

static int iterate(iomux_loop *loop, int mode) {
    unsigned ran;
    int timeout, rc;
    loop->now = iomux__hrtime();                   /* 1 */
    ran = iomux__timers_run(loop);                 /* 2 */
    ran += iomux__post_run(loop);                  /* 3 */
    ran += pending_run(loop, loop->max_pending);
    iomux__et_probe(loop);                         /* 4 */
    iomux__buf_kick(loop);
    iomux__watch_apply(loop);
    timeout = wait_timeout(loop, mode, ran);       /* 5 */
    rc = backend_wait(loop, timeout);
    loop->stats.iterations++;
    if (timeout != 0) {
        loop->stats.waits++;
        loop->now = iomux__hrtime();
    }
    pending_run(loop, loop->max_pending + loop->max_events); /* 6 */
    /* A ONCE call that blocked must make progress even if what ended the
     * wait was a timer (as libuv does), or a caller looping on ONCE until a
     * timer fires could block forever in its next wait. */
    if (mode == IOMUX_RUN_ONCE && timeout != 0) iomux__timers_run(loop);
    return rc < 0 ? rc : 0;
}

int iomux_run(iomux_loop *loop, int mode) {
    int rc = 0;
    if (!loop || mode < IOMUX_RUN_DEFAULT || mode > IOMUX_RUN_NOWAIT) return -EINVAL;
    if (loop->running) return -EBUSY;
    loop->running = 1;
    loop->stop = 0;
    if (mode != IOMUX_RUN_DEFAULT) {
        rc = iterate(loop, mode);
    } else {
        while (rc == 0 && !loop->stop && iomux_loop_alive(loop)) rc = iterate(loop, mode);
    }
    loop->running = 0;
    loop->stop = 0;
    if (rc < 0) return rc;
    return iomux_loop_alive(loop);
}

void iomux_stop(iomux_loop *loop) {
    loop->stop = 1;
}

uint64_t iomux_now(const iomux_loop *loop) {
    return loop->now / 1000000u;
}

void iomux_update_time(iomux_loop *loop) {
    loop->now = iomux__hrtime();
}

const char *iomux_backend_name(const iomux_loop *loop) {
    return loop->backend->name;
}

iomux_backend iomux_loop_backend(const iomux_loop *loop) {
    return loop->backend->id;
}

void iomux_loop_stats(const iomux_loop *loop, iomux_stats *out) {
    *out = loop->stats;
}

void iomux_loop_set_data(iomux_loop *loop, void *data) {
    loop->data = data;
}

void *iomux_loop_data(const iomux_loop *loop) {
    return loop->data;
}

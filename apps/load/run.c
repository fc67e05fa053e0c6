/* The run on one iomux loop: set-up (loop, buffers, connections), the
 * phases (connecting, warm-up, measured period, done) with their timers and
 * --signal-fd bytes, the loop itself, and a teardown that closes every
 * connection and frees everything. Nothing is allocated after set-up
 * (the loop's own tables aside, which stop growing once every connection
 * is open). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "load.h"

#define TEARDOWN_MS 5000
#define OPEN_LOOP_BATCH 64 /* requests one open-loop send may carry */

load_run g;

uint64_t load_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double load_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

void run_fatal(const char *why, int err) {
    if (g.fatal) return;
    g.fatal = why;
    g.fatal_errno = err;
}

static void signal_byte(char b) {
    if (g.o->signal_fd < 0) return;
    if (write(g.o->signal_fd, &b, 1) != 1)
        fprintf(stderr, LOAD_NAME ": --signal-fd %d: cannot write '%c': %s\n", g.o->signal_fd, b, strerror(errno));
}

/* ---- phases ---- */

void run_begin_measure(void) {
    g.phase = PH_MEASURE;
    g.t_begin = load_now_ns();
    g.cpu_begin = load_cpu_s();
    signal_byte('b');
    if (!g.o->requests) iomux_timer_start(&g.end_timer, (uint64_t)(g.o->duration * 1000 + 0.5), 0);
}

void run_end_measure(void) {
    if (g.phase == PH_DONE) return;
    g.t_end = load_now_ns();
    g.cpu_end = load_cpu_s();
    signal_byte('e');
    g.phase = PH_DONE;
}

static void on_warm(iomux_timer *t) {
    (void)t;
    run_begin_measure();
}

static void on_end(iomux_timer *t) {
    (void)t;
    run_end_measure();
}

static void on_deadline(iomux_timer *t) {
    (void)t;
    run_fatal("timed out", 0);
}

/* ---- set-up ---- */

static int make_loop(const load_opts *o) {
    iomux_config cfg;
    size_t batch = (size_t)(o->proto == PROTO_ECHO ? o->size : 256) * (size_t)o->pipeline;
    unsigned bufsize = batch > 2048 ? 16384 : 4096, count = 2 * (unsigned)(o->conns < 4096 ? o->conns : 4096);
    int rc;
    iomux_config_init(&cfg);
    cfg.backend = o->backend;
    /* Each arrival takes a buffer until its callback gives it back, so
     * the pool needs about one per connection with data in one batch. */
    if (count < 512) count = 512;
    if ((size_t)count * bufsize > (32u << 20)) count = (32u << 20) / bufsize;
    cfg.pool_buffers = count;
    cfg.pool_buffer_size = bufsize;
    cfg.uring_entries = o->conns > 512 ? 4096 : 1024;
    rc = iomux_loop_new(&g.loop, &cfg);
    if (rc < 0) {
        static const char *const names[] = {"auto", "select", "poll", "epoll", "uring", "iocp"};
        fprintf(stderr, LOAD_NAME ": cannot start the loop on backend %s: %s\n",
                (unsigned)o->backend < 6 ? names[o->backend] : "?", iomux_strerror(rc));
        return -1;
    }
    return 0;
}

/* The request bytes and the connections. */
static int make_conns(const load_opts *o) {
    unsigned i, copies;
    size_t one;
    char *req;
    copies = o->rate > 0 ? OPEN_LOOP_BATCH : (unsigned)o->pipeline;
    if (o->rate > 0 && o->proto == PROTO_ECHO && (size_t)o->size * copies > (1u << 20))
        copies = (unsigned)((1u << 20) / (size_t)o->size) + 1;
    req = proto_requests(o->proto, (size_t)o->size, o->host, o->path, o->connect_rate, copies, &one);
    g.nconns = (unsigned)o->conns;
    g.c = calloc(g.nconns ? g.nconns : 1, sizeof(*g.c));
    g.dirty = calloc(g.nconns ? g.nconns : 1, sizeof(*g.dirty));
    if (!req || !g.c || !g.dirty) return -1;
    g.req = req;
    g.req_len = one;
    g.req_copies = copies;
    g.rcfg.proto = o->proto;
    g.rcfg.size = (size_t)o->size;
    g.rcfg.ref = req; /* echo: the first copy is the message */
    g.rcfg.allow_close = o->connect_rate;
    for (i = 0; i < g.nconns; i++) {
        g.c[i].idx = i;
        g.c[i].fd = -1;
    }
    return 0;
}

static int setup(const load_opts *o, uint64_t deadline_ns) {
    uint64_t now = load_now_ns();
    memset(&g, 0, sizeof(g));
    g.o = o;
    g.tfd = -1;
    hist_init(&g.lat);
    if (make_loop(o) < 0) return -1;
    if (make_conns(o) < 0) {
        fprintf(stderr, LOAD_NAME ": out of memory\n");
        return -1;
    }
    if (o->rate > 0) g.period_ns = 1e9 / o->rate;
    g.k_limit = o->requests ? (uint64_t)o->requests : UINT64_MAX;
    iomux_timer_init(g.loop, &g.warm_timer, on_warm);
    iomux_timer_init(g.loop, &g.end_timer, on_end);
    iomux_timer_init(g.loop, &g.deadline_timer, on_deadline);
    iomux_timer_start(&g.deadline_timer, deadline_ns > now ? (deadline_ns - now) / 1000000u + 1 : 0, 0);
    return 0;
}

/* ---- the loop, and the end ---- */

static void run_loop(void) {
    int open_loop = g.o->rate > 0;
    while (g.phase != PH_DONE && !g.fatal) {
        int rc = iomux_run(g.loop, IOMUX_RUN_ONCE);
        if (rc < 0) {
            run_fatal("the loop failed", -rc);
            break;
        }
        if (open_loop) traffic_pace(load_now_ns());
    }
}

static void on_teardown_timeout(iomux_timer *t) {
    (void)t;
}

/* Closes every connection and waits (bounded) for their ops to end, so
 * the loop can be freed. */
static void teardown(void) {
    uint64_t end = load_now_ns() + (uint64_t)TEARDOWN_MS * 1000000u;
    unsigned i;
    if (g.phase != PH_DONE) g.phase = PH_DONE;
    iomux_timer_stop(&g.warm_timer);
    iomux_timer_stop(&g.end_timer);
    iomux_timer_stop(&g.deadline_timer);
    traffic_timer_stop();
    for (i = 0; i < g.nconns; i++) {
        lconn *c = &g.c[i];
        if (c->state == C_PAUSED) iomux_cancel(&c->pause);
        else conn_close(c);
    }
    iomux_timer_init(g.loop, &g.deadline_timer, on_teardown_timeout);
    iomux_timer_start(&g.deadline_timer, 100, 100); /* so the waits below end */
    while (g.live_ops > 0 && load_now_ns() < end)
        if (iomux_run(g.loop, IOMUX_RUN_ONCE) < 0) break;
    iomux_timer_stop(&g.deadline_timer);
    if (g.live_ops > 0) {
        fprintf(stderr, LOAD_NAME ": %u operations did not end; the loop is not freed\n", g.live_ops);
        return;
    }
    iomux_loop_free(g.loop);
    free((void *)g.req);
    free(g.c);
    free(g.dirty);
}

static int fail_message(const load_opts *o) {
    if (g.fatal_errno)
        fprintf(stderr, LOAD_NAME ": %s (%s:%d): %s\n", g.fatal, o->host, o->port, strerror(g.fatal_errno));
    else
        fprintf(stderr, LOAD_NAME ": %s (%.1f s; %llu of the responses in)\n", g.fatal, o->timeout_s,
                (unsigned long long)g.completed);
    return 1;
}

int load_run_all(const load_opts *o, uint64_t deadline_ns) {
    if (setup(o, deadline_ns) < 0) return 1;
    if (g.nconns == 0 || o->connect_rate) traffic_begin();
    else traffic_startup();
    run_loop();
    if (!g.fatal) report_print(&g, iomux_backend_name(g.loop));
    teardown();
    return g.fatal ? fail_message(o) : 0;
}

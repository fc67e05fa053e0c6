/* The loop itself: creation and backend choice, freeing, run modes, stop,
 * time, the allocator hook, error text and the interest-update counter. */
#ifndef _WIN32
#include <dirent.h>
#endif
#include <signal.h>

#include "harness.h"

/* ---- helpers ------------------------------------------------------------------ */

static void noop_watch_cb(iomux_watch *w, unsigned revents) {
    (void)w;
    (void)revents;
}

static void noop_timer_cb(iomux_timer *t) {
    (void)t;
}

static void noop_signal_cb(iomux_signal *s, int signum) {
    (void)s;
    (void)signum;
}

static void count_post_cb(iomux_loop *loop, void *arg) {
    (void)loop;
    (*(int *)arg)++;
}

/* Open descriptors of this process: a failed loop_new must not leak any. */
#ifdef _WIN32
static int count_open_fds(void) { /* Windows: the process's kernel handles */
    DWORD n = 0;
    CHECK(GetProcessHandleCount(GetCurrentProcess(), &n));
    return (int)n;
}
#else
static int count_open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;
    CHECK(d != NULL);
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the directory's own fd */
}
#endif

/* 0 on iocp: the sub-tests that need watchers run on the other backends. */
static int reactor_backend(void) {
    return strcmp(test_backend(), "iocp") != 0;
}

/* Sets IOMUX_BACKEND for one loop_new and restores the caller's value, so
 * the rest of the file still runs on the backend ctest asked for. */
static int loop_new_with_env(iomux_loop **loop, const iomux_config *cfg, const char *env) {
    const char *old = getenv("IOMUX_BACKEND");
    char *saved = old ? strdup(old) : NULL;
    int rc;
    CHECK(!old || saved);
    CHECK_SYS(setenv("IOMUX_BACKEND", env, 1));
    rc = iomux_loop_new(loop, cfg);
    if (saved) CHECK_SYS(setenv("IOMUX_BACKEND", saved, 1));
    else CHECK_SYS(unsetenv("IOMUX_BACKEND"));
    free(saved);
    return rc;
}

/* ---- creation and backends ------------------------------------------------------ */

static void test_new_free_defaults(void) {
    iomux_loop *loop = (iomux_loop *)&loop; /* must be overwritten */
    iomux_config cfg;
    int tag;
    CHECK_OK(iomux_loop_new(&loop, NULL));
    CHECK(loop != NULL);
    CHECK_EQ(iomux_loop_alive(loop), 0);
    CHECK(iomux_loop_data(loop) == NULL);
    iomux_loop_set_data(loop, &tag);
    CHECK(iomux_loop_data(loop) == &tag);
    test_loop_free(loop);

    /* config_init must give the same as a zeroed struct. */
    memset(&cfg, 0xff, sizeof(cfg));
    iomux_config_init(&cfg);
    CHECK_EQ(cfg.backend, IOMUX_BACKEND_AUTO);
    CHECK(cfg.allocator == NULL);
    CHECK_EQ(cfg.max_timers_per_iteration, 0);
    CHECK_OK(iomux_loop_new(&loop, &cfg));
    CHECK(iomux_loop_backend(loop) != IOMUX_BACKEND_AUTO);
    test_loop_free(loop);
}

static void test_backend_matches_env(void) {
    const char *env = getenv("IOMUX_BACKEND");
    iomux_loop *loop = test_loop();
    iomux_backend id;
    if (env && *env) CHECK(strcmp(iomux_backend_name(loop), env) == 0);
    /* name and id must describe the same backend */
    CHECK_OK(iomux_backend_parse(iomux_backend_name(loop), &id));
    CHECK_EQ(id, iomux_loop_backend(loop));
    test_loop_free(loop);
}

/* Every advertised name parses, is available, and a loop built with its id
 * really runs on it; "auto" parses to AUTO. */
/* 1 if iomux_backend_names() lists name. */
static int listed(const char *name) {
    const char *p = iomux_backend_names();
    size_t n = strlen(name);
    while ((p = strstr(p, name)) != NULL) {
        if ((p == iomux_backend_names() || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0)) return 1;
        p += n;
    }
    return 0;
}

static void test_backend_parse_names(void) {
    char names[128], *tok, *save = NULL;
    iomux_backend id = IOMUX_BACKEND_SELECT;
    int n = 0;
    snprintf(names, sizeof(names), "%s", iomux_backend_names());
    for (tok = strtok_r(names, " ", &save); tok; tok = strtok_r(NULL, " ", &save), n++) {
        iomux_config cfg;
        iomux_loop *loop;
        CHECK_OK(iomux_backend_parse(tok, &id));
        CHECK(id != IOMUX_BACKEND_AUTO);
        CHECK_EQ(iomux_backend_available(id), 1);
        iomux_config_init(&cfg);
        cfg.backend = id;
        CHECK_OK(iomux_loop_new(&loop, &cfg));
        CHECK(strcmp(iomux_backend_name(loop), tok) == 0);
        CHECK_EQ(iomux_loop_backend(loop), id);
        test_loop_free(loop);
    }
    CHECK(n >= 2); /* select and poll exist everywhere */
    CHECK_OK(iomux_backend_parse("auto", &id));
    CHECK_EQ(id, IOMUX_BACKEND_AUTO);
    CHECK_EQ(iomux_backend_available(IOMUX_BACKEND_AUTO), 1);
    CHECK_EQ(iomux_backend_parse("kqueue", &id), -EINVAL);
    CHECK_EQ(iomux_backend_parse("", &id), -EINVAL);
    /* uring and iocp are iomux names; available exactly when listed */
    CHECK_OK(iomux_backend_parse("uring", &id));
    CHECK_EQ(id, IOMUX_BACKEND_URING);
    CHECK_EQ(iomux_backend_available(IOMUX_BACKEND_URING), listed("uring"));
    CHECK_EQ(iomux_backend_available(IOMUX_BACKEND_IOCP), listed("iocp"));
}

static void test_env_errors(void) {
    iomux_loop *loop = (iomux_loop *)&loop;
    CHECK_EQ(loop_new_with_env(&loop, NULL, "no-such-backend"), -EINVAL);
    CHECK(loop == NULL);
    if (!listed("uring")) {
        CHECK_EQ(loop_new_with_env(&loop, NULL, "uring"), -ENOTSUP);
        CHECK(loop == NULL);
    }
    if (!listed("iocp")) CHECK_EQ(loop_new_with_env(&loop, NULL, "iocp"), -ENOTSUP);
    CHECK_EQ(loop_new_with_env(&loop, NULL, "poll"), 0);
    CHECK(strcmp(iomux_backend_name(loop), "poll") == 0);
    test_loop_free(loop);
}

static void test_cfg_overrides_env(void) {
    iomux_config cfg;
    iomux_loop *loop;
    iomux_config_init(&cfg);
    cfg.backend = IOMUX_BACKEND_POLL;
    /* an explicit backend means the (invalid) variable is not even read */
    CHECK_OK(loop_new_with_env(&loop, &cfg, "no-such-backend"));
    CHECK(strcmp(iomux_backend_name(loop), "poll") == 0);
    test_loop_free(loop);
    /* another backend than the variable's (Windows has no select: iocp) */
    cfg.backend = listed("select") ? IOMUX_BACKEND_SELECT : IOMUX_BACKEND_IOCP;
    CHECK_OK(loop_new_with_env(&loop, &cfg, "poll"));
    CHECK_EQ(iomux_loop_backend(loop), cfg.backend);
    test_loop_free(loop);
    /* one not built here: iocp on POSIX, select on Windows */
    cfg.backend = listed("iocp") ? IOMUX_BACKEND_SELECT : IOMUX_BACKEND_IOCP;
    CHECK_EQ(iomux_loop_new(&loop, &cfg), -ENOTSUP);
    cfg.backend = (iomux_backend)42;
    CHECK_EQ(iomux_loop_new(&loop, &cfg), -EINVAL);
}

/* ---- loop_free refuses while anything is alive ----------------------------------- */

static void test_free_busy(void) {
    iomux_loop *loop = test_loop();
    iomux_watch w;
    iomux_timer t;
    iomux_signal s;
    int fds[2], ran = 0;
    unix_pair(fds);

    if (test_reactor(loop)) { /* iocp has no watchers */
        iomux_watch_init(loop, &w, fds[0], noop_watch_cb);
        CHECK_OK(iomux_watch_start(&w, IOMUX_IN));
        CHECK_EQ(iomux_loop_free(loop), -EBUSY);
        CHECK_OK(iomux_watch_stop(&w));
    }

    iomux_timer_init(loop, &t, noop_timer_cb);
    CHECK_OK(iomux_timer_start(&t, 100000, 0));
    CHECK_EQ(iomux_loop_free(loop), -EBUSY);
    CHECK_OK(iomux_timer_stop(&t));

    iomux_signal_init(loop, &s, noop_signal_cb);
#ifdef _WIN32 /* no signal watchers on Windows: refused, nothing started */
    CHECK_EQ(iomux_signal_start(&s, SIGINT), -ENOTSUP);
    CHECK_EQ(iomux_loop_alive(loop), 0);
#else
    CHECK_OK(iomux_signal_start(&s, SIGUSR1));
    CHECK_EQ(iomux_loop_free(loop), -EBUSY);
    CHECK_OK(iomux_signal_stop(&s));
#endif

    /* a post that has not run yet pins the loop until it runs */
    CHECK_OK(iomux_post(loop, count_post_cb, &ran));
    CHECK_EQ(iomux_loop_alive(loop), 1);
    CHECK_EQ(iomux_loop_free(loop), -EBUSY);
    CHECK_EQ(iomux_run(loop, IOMUX_RUN_NOWAIT), 0);
    CHECK_EQ(ran, 1);

    test_loop_free(loop);
    close(fds[0]);
    close(fds[1]);
}

/* ---- run modes --------------------------------------------------------------------- */

static void test_run_nowait_does_not_block(void) {
    iomux_loop *loop = test_loop();
    iomux_watch w;
    iomux_stats before, after;
    int fds[2];
    unix_pair(fds);
    iomux_watch_init(loop, &w, fds[0], noop_watch_cb);
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN));
    /* Nothing will ever be ready: a blocking wait would hang, and the alarm
     * turns a hang into a failure instead of a ctest timeout. */
    alarm(10);
    iomux_loop_stats(loop, &before);
    CHECK_EQ(iomux_run(loop, IOMUX_RUN_NOWAIT), 1);
    CHECK_EQ(iomux_run(loop, IOMUX_RUN_NOWAIT), 1);
    iomux_loop_stats(loop, &after);
    alarm(0);
    CHECK_EQ(after.iterations - before.iterations, 2);
    CHECK_EQ(after.waits, before.waits); /* no wait with a timeout != 0 */
    CHECK_OK(iomux_watch_stop(&w));
    test_loop_free(loop);
    close(fds[0]);
    close(fds[1]);
}

static void test_run_default_empty(void) {
    iomux_loop *loop = test_loop();
    alarm(10);
    CHECK_EQ(iomux_run(loop, IOMUX_RUN_DEFAULT), 0);
    CHECK_EQ(iomux_run(loop, IOMUX_RUN_ONCE), 0); /* nothing could wake it */
    alarm(0);
    CHECK_EQ(iomux_run(loop, 7), -EINVAL);
    test_loop_free(loop);
}

static void set_flag_timer_cb(iomux_timer *t) {
    *(int *)t->data = 1;
}

/* A ONCE call that blocked until a timer was due runs that timer before it
 * returns (forward progress, as libuv promises): otherwise a caller looping
 * "while (!fired) run(ONCE)" with an idle watcher keeping the loop alive
 * would block forever in its second call. */
static void test_run_once_waits_for_timer(void) {
    iomux_loop *loop = test_loop();
    iomux_timer t;
    iomux_watch w;
    int fired = 0, fds[2];
    uint64_t t0;
    unix_pair(fds);
    iomux_watch_init(loop, &w, fds[0], NULL);
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN)); /* idle: keeps the loop alive */
    iomux_timer_init(loop, &t, set_flag_timer_cb);
    t.data = &fired;
    t0 = test_ns();
    iomux_update_time(loop); /* the timer counts from here (>= t0) */
    CHECK_OK(iomux_timer_start(&t, 30, 0));
    CHECK_EQ(iomux_run(loop, IOMUX_RUN_ONCE), 1);
    CHECK(test_ns() - t0 >= 30u * 1000000u);
    CHECK_EQ(fired, 1);
    CHECK_EQ(iomux_timer_active(&t), 0);
    CHECK_OK(iomux_watch_stop(&w));
    /* With only the timer alive, the ONCE call also ends the loop's work. */
    fired = 0;
    CHECK_OK(iomux_timer_start(&t, 5, 0));
    CHECK_EQ(iomux_run(loop, IOMUX_RUN_ONCE), 0);
    CHECK_EQ(fired, 1);
    close(fds[0]);
    close(fds[1]);
    test_loop_free(loop);
}

static void stop_on_third_cb(iomux_timer *t) {
    int *n = t->data;
    if (++*n == 3) iomux_stop(t->loop);
}

static void test_stop_from_callback(void) {
    iomux_loop *loop = test_loop();
    iomux_timer t;
    int n = 0;
    iomux_timer_init(loop, &t, stop_on_third_cb);
    t.data = &n;
    CHECK_OK(iomux_timer_start(&t, 1, 1));
    CHECK_EQ(iomux_run(loop, IOMUX_RUN_DEFAULT), 1); /* stopped, timer alive */
    CHECK_EQ(n, 3);
    CHECK_EQ(iomux_timer_active(&t), 1);
    /* the stop request was consumed: a new run goes on where it left off */
    CHECK_OK(iomux_timer_start(&t, 0, 0));
    CHECK_EQ(iomux_run(loop, IOMUX_RUN_DEFAULT), 0);
    CHECK_EQ(n, 4);
    test_loop_free(loop);
}

typedef struct reentry {
    int run_rc, free_rc, called;
} reentry;

static void reenter_cb(iomux_timer *t) {
    reentry *r = t->data;
    r->called = 1;
    r->run_rc = iomux_run(t->loop, IOMUX_RUN_NOWAIT);
    /* nothing is started now (one-shot), yet the loop is mid-iteration */
    r->free_rc = iomux_loop_free(t->loop);
}

static void test_run_reentry_busy(void) {
    iomux_loop *loop = test_loop();
    iomux_timer t;
    reentry r = {0, 0, 0};
    iomux_timer_init(loop, &t, reenter_cb);
    t.data = &r;
    CHECK_OK(iomux_timer_start(&t, 0, 0));
    CHECK_EQ(iomux_run(loop, IOMUX_RUN_DEFAULT), 0);
    CHECK_EQ(r.called, 1);
    CHECK_EQ(r.run_rc, -EBUSY);
    CHECK_EQ(r.free_rc, -EBUSY);
    test_loop_free(loop);
}

/* ---- time ---------------------------------------------------------------------------- */

/* iomux_socket_error: a failed socket call's error as iomux reports it
 * (on Windows through the same mapping as the library's own results). */
static void test_socket_error(void) {
    char c;
    int p[2];
    unix_pair(p);
    set_nonblock(p[0]);
    /* (recv): the system's own, not a harness shim that would set errno */
    CHECK_EQ((recv)(p[0], &c, 1, 0), -1);
    CHECK_EQ(iomux_socket_error(), -EAGAIN);
    close(p[1]);
    close(p[0]);
    CHECK_EQ((recv)(p[0], &c, 1, 0), -1);
    /* a closed fd: Linux says EBADF, Winsock "not a socket" */
#ifdef _WIN32
    CHECK_EQ(iomux_socket_error(), -ENOTSOCK);
#else
    CHECK_EQ(iomux_socket_error(), -EBADF);
#endif
}

static void test_now_monotonic(void) {
    /* start is read before the loop caches its time, so that a preemption
     * between the two (seen under load) cannot put a before start */
    uint64_t start = test_ms(), a, b;
    iomux_loop *loop = test_loop();
    a = iomux_now(loop);
    struct timespec ts = {0, 5 * 1000000};
    nanosleep(&ts, NULL);
    /* cached: only the loop or iomux_update_time moves it */
    CHECK_EQ(iomux_now(loop), a);
    iomux_update_time(loop);
    b = iomux_now(loop);
    CHECK(b >= a + 5);
    CHECK(b <= a + (test_ms() - start) + 1);
    CHECK_EQ(iomux_run(loop, IOMUX_RUN_NOWAIT), 0);
    CHECK(iomux_now(loop) >= b); /* phase 1 refreshes, never backwards */
    test_loop_free(loop);
}

/* ---- the allocator hook --------------------------------------------------------------- */

/* A counting, checking allocator: each block carries a header with its size
 * and a guard area after it, so an overrun by the library is caught at the
 * block's realloc/free even without ASan. It can fail one chosen attempt
 * (fail_at, counted from `calls`) or every attempt. */
#define GUARD 64
#define HDR 16

typedef struct alloc_state {
    long live;
    unsigned long mallocs, reallocs, frees, calls, fail_at;
    int fail_all, bad_ud;
} alloc_state;

static alloc_state g_alloc;

static void guard_check(unsigned char *base) {
    size_t size, i;
    memcpy(&size, base, sizeof(size));
    for (i = 0; i < GUARD; i++)
        if (base[HDR + size + i] != 0xA5)
            FAIL("library wrote past the end of a %zu-byte block (guard byte %zu)", size, i);
}

static void *guard_set(unsigned char *base, size_t size) {
    memcpy(base, &size, sizeof(size));
    memset(base + HDR + size, 0xA5, GUARD);
    return base + HDR;
}

static int alloc_should_fail(void *ud) {
    if (ud != &g_alloc) g_alloc.bad_ud = 1;
    g_alloc.calls++;
    return g_alloc.fail_all || g_alloc.calls == g_alloc.fail_at;
}

static void *t_malloc(void *ud, size_t size) {
    unsigned char *p;
    if (alloc_should_fail(ud)) return NULL;
    p = malloc(HDR + size + GUARD);
    CHECK(p != NULL);
    g_alloc.mallocs++;
    g_alloc.live++;
    return guard_set(p, size);
}

static void *t_realloc(void *ud, void *ptr, size_t size) {
    unsigned char *base, *p;
    if (!ptr) {
        void *q = t_malloc(ud, size);
        if (q) g_alloc.reallocs++;
        return q;
    }
    if (alloc_should_fail(ud)) return NULL;
    base = (unsigned char *)ptr - HDR;
    guard_check(base);
    p = realloc(base, HDR + size + GUARD);
    CHECK(p != NULL);
    g_alloc.reallocs++;
    return guard_set(p, size);
}

static void t_free(void *ud, void *ptr) {
    if (ud != &g_alloc) g_alloc.bad_ud = 1;
    if (!ptr) return;
    guard_check((unsigned char *)ptr - HDR);
    free((unsigned char *)ptr - HDR);
    g_alloc.frees++;
    g_alloc.live--;
}

static const iomux_allocator t_allocator = {t_malloc, t_realloc, t_free, &g_alloc};

static iomux_config counting_config(void) {
    iomux_config cfg;
    iomux_config_init(&cfg);
    cfg.allocator = &t_allocator;
    memset(&g_alloc, 0, sizeof(g_alloc));
    return cfg;
}

/* Every block the loop took is given back at loop_free, through our
 * functions, with our ud. */
static void test_allocator_balance(void) {
    iomux_config cfg = counting_config();
    iomux_loop *loop;
    iomux_watch w;
    iomux_timer t[40];
    int fds[2], i, ran = 0;
    unix_pair(fds);
    CHECK_OK(iomux_loop_new(&loop, &cfg));
    iomux_watch_init(loop, &w, fds[0], noop_watch_cb);
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN | IOMUX_OUT));
    for (i = 0; i < 40; i++) { /* past the heap's first capacity */
        iomux_timer_init(loop, &t[i], noop_timer_cb);
        CHECK_OK(iomux_timer_start(&t[i], (uint64_t)i % 2, 0));
    }
    CHECK_OK(iomux_post(loop, count_post_cb, &ran));
    spin(loop, 3);
    CHECK_EQ(ran, 1);
    CHECK_OK(iomux_watch_stop(&w));
    for (i = 0; i < 40; i++) CHECK_OK(iomux_timer_stop(&t[i]));
    CHECK(g_alloc.live > 0);
    CHECK(g_alloc.reallocs > 0); /* the tables grew through realloc */
    test_loop_free(loop);
    CHECK_EQ(g_alloc.live, 0);
    CHECK_EQ(g_alloc.frees, g_alloc.mallocs);
    CHECK_EQ(g_alloc.bad_ud, 0);
    close(fds[0]);
    close(fds[1]);
}

static void test_allocator_fails_loop_new(void) {
    iomux_config cfg = counting_config();
    iomux_loop *loop = (iomux_loop *)&loop;
    int fds0 = count_open_fds();
    unsigned long n;
    g_alloc.fail_all = 1;
    CHECK_EQ(iomux_loop_new(&loop, &cfg), -ENOMEM);
    CHECK(loop == NULL);
    CHECK_EQ(g_alloc.live, 0);
    /* fail each allocation of loop_new in turn: clean -ENOMEM every time */
    for (n = 1; n < 64; n++) {
        int rc;
        cfg = counting_config();
        g_alloc.fail_at = n;
        rc = iomux_loop_new(&loop, &cfg);
        if (rc == 0) break;
        CHECK_EQ(rc, -ENOMEM);
        CHECK(loop == NULL);
        CHECK_EQ(g_alloc.live, 0);
        CHECK_EQ(count_open_fds(), fds0);
    }
    CHECK(n > 1 && n < 64);
    test_loop_free(loop);
    CHECK_EQ(g_alloc.live, 0);
    CHECK_EQ(count_open_fds(), fds0);
}

/* The workload for one fail-the-Nth-allocation round: a watcher on a high fd
 * first (the fd table grows a lot), then watchers on many low fds (so more
 * fds are dirty than the first table held), timers past the heap's first
 * capacity, and a post. */
#define WL_FDS 24
#define WL_TIMERS 40

typedef struct workload {
    int fd[WL_FDS];
    iomux_watch w[WL_FDS];
    iomux_timer t[WL_TIMERS];
    int posted, ran, enomem;
} workload;

static void wl_err_cb(iomux_watch *w, unsigned revents) {
    workload *wl = w->data;
    /* only an apply-time failure may call back: the fds are idle */
    CHECK_EQ(revents, IOMUX_ERR);
    CHECK_EQ(iomux_watch_error(w), -ENOMEM);
    CHECK_EQ(iomux_watch_active(w), 0);
    wl->enomem++;
}

static void wl_note(workload *wl, int rc) {
    if (rc == -ENOMEM) wl->enomem++;
    else CHECK_OK(rc);
}

/* Starts whatever is not started; returns with everything started. */
static void wl_start_all(workload *wl) {
    int i;
    for (i = 0; i < WL_FDS; i++) {
        int rc;
        if (iomux_watch_active(&wl->w[i])) continue;
        rc = iomux_watch_start(&wl->w[i], IOMUX_IN);
        wl_note(wl, rc);
        CHECK_EQ(iomux_watch_active(&wl->w[i]), rc == 0); /* a failed start leaves it stopped */
    }
    for (i = 0; i < WL_TIMERS; i++) {
        int rc;
        if (iomux_timer_active(&wl->t[i])) continue;
        rc = iomux_timer_start(&wl->t[i], 60000, 0);
        wl_note(wl, rc);
        CHECK_EQ(iomux_timer_active(&wl->t[i]), rc == 0);
    }
    if (!wl->posted) {
        int rc = iomux_post(wl->w[0].loop, count_post_cb, &wl->ran);
        wl_note(wl, rc);
        wl->posted = rc == 0;
    }
}

static void wl_open(workload *wl, iomux_loop *loop) {
    int i, pair[2];
    memset(wl, 0, sizeof(*wl));
    for (i = 0; i < WL_FDS; i += 2) {
        unix_pair(pair);
        wl->fd[i] = pair[0];
        wl->fd[i + 1] = pair[1];
    }
#ifndef _WIN32 /* (Windows: socket handles are high numbers already) */
    /* move the first fd high so that starting it grows the fd table */
    i = fcntl(wl->fd[0], F_DUPFD_CLOEXEC, 200);
    CHECK_SYS(i);
    close(wl->fd[0]);
    wl->fd[0] = i;
#endif
    for (i = 0; i < WL_FDS; i++) {
        iomux_watch_init(loop, &wl->w[i], wl->fd[i], wl_err_cb);
        wl->w[i].data = wl;
    }
    for (i = 0; i < WL_TIMERS; i++) iomux_timer_init(loop, &wl->t[i], noop_timer_cb);
}

static void wl_close(workload *wl) {
    int i;
    for (i = 0; i < WL_FDS; i++) {
        CHECK_OK(iomux_watch_stop(&wl->w[i]));
        close(wl->fd[i]);
    }
    for (i = 0; i < WL_TIMERS; i++) CHECK_OK(iomux_timer_stop(&wl->t[i]));
}

/* One round: fail allocation number n (counted after the loop exists); every
 * failure must be a clean -ENOMEM (or an IOMUX_ERR callback for a failure in
 * phase 4), a retry must succeed, and the loop must work and free cleanly.
 * Returns the number of failures seen (0: n was past the last allocation). */
static int alloc_round(unsigned long n) {
    iomux_config cfg = counting_config();
    iomux_loop *loop;
    workload *wl = calloc(1, sizeof(*wl));
    int i, seen;
    CHECK(wl != NULL);
    CHECK_OK(iomux_loop_new(&loop, &cfg));
    spin(loop, 1); /* settle the loop's own interest first */
    wl_open(wl, loop);
    g_alloc.fail_at = g_alloc.calls + n;
    wl_start_all(wl);
    spin(loop, 2);
    seen = wl->enomem;
    g_alloc.fail_at = 0;
    wl_start_all(wl); /* retry what failed: now it must all work */
    CHECK_EQ(wl->enomem, seen);
    spin(loop, 2);
    for (i = 0; i < WL_FDS; i++) CHECK_EQ(iomux_watch_active(&wl->w[i]), 1);
    CHECK_EQ(wl->ran, 1);
    wl_close(wl);
    spin(loop, 1);
    test_loop_free(loop);
    CHECK_EQ(g_alloc.live, 0);
    CHECK_EQ(g_alloc.bad_ud, 0);
    free(wl);
    return seen;
}

/* A start that fails while growing the fd table for a high fd must leave
 * the loop consistent: with memory back, starting watchers on more fds than
 * the first table held must not overrun anything (caught by the guards at
 * loop_free, or by ASan at once). */
static void test_enomem_then_many_watchers(void) {
    unsigned long n;
    for (n = 1; n <= 3; n++) {
        iomux_config cfg = counting_config();
        iomux_loop *loop;
        workload *wl = calloc(1, sizeof(*wl));
        int i, rc;
        CHECK(wl != NULL);
        CHECK_OK(iomux_loop_new(&loop, &cfg));
        spin(loop, 1);
        wl_open(wl, loop);
        g_alloc.fail_at = g_alloc.calls + n;
        rc = iomux_watch_start(&wl->w[0], IOMUX_IN); /* fd >= 200 */
        CHECK(rc == 0 || rc == -ENOMEM);
        g_alloc.fail_at = 0;
        for (i = 0; i < WL_FDS; i++) CHECK_OK(iomux_watch_start(&wl->w[i], IOMUX_IN));
        spin(loop, 2);
        wl_close(wl);
        spin(loop, 1);
        test_loop_free(loop);
        CHECK_EQ(g_alloc.live, 0);
        free(wl);
    }
}

static void test_allocator_fails_nth(void) {
    unsigned long n;
    int failures = 0;
    for (n = 1; n < 64; n++) {
        int seen = alloc_round(n);
        if (seen == 0) break;
        failures += seen;
    }
    CHECK(n > 1 && n < 64); /* some round failed, and a later one did not */
    CHECK(failures > 0);
}

/* ---- error text ------------------------------------------------------------------------ */

static void test_strerror(void) {
    const char *unknown = iomux_strerror(-123456);
    CHECK(strstr(iomux_strerror(-EINVAL), "invalid") != NULL);
    CHECK(strstr(iomux_strerror(-ENOMEM), "memory") != NULL);
    CHECK(strstr(iomux_strerror(-ECANCELED), "cancel") != NULL);
    CHECK(strcmp(iomux_strerror(EINVAL), iomux_strerror(-EINVAL)) == 0);
    CHECK(unknown != NULL && unknown[0] != '\0');
    CHECK(strcmp(unknown, iomux_strerror(-EINVAL)) != 0);
    CHECK(iomux_strerror(-EBUSY) != NULL && strcmp(iomux_strerror(-EBUSY), unknown) != 0);
}

/* ---- interest updates are coalesced per fd per iteration --------------------------------- */

static void test_interest_coalescing(void) {
    iomux_loop *loop = test_loop();
    iomux_watch w;
    uint64_t u;
    int fds[2];
    unix_pair(fds);
    spin(loop, 1); /* the loop's own wake-up fd is applied here */
    iomux_watch_init(loop, &w, fds[0], noop_watch_cb);
    CHECK_EQ(iomux_watch_update(&w, IOMUX_IN), -EINVAL); /* not started */

    u = test_updates(loop);
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN));
    CHECK_OK(iomux_watch_stop(&w));
    spin(loop, 1);
    CHECK_EQ(test_updates(loop) - u, 0); /* net change: nothing */

    u = test_updates(loop);
    CHECK_OK(iomux_watch_start(&w, IOMUX_IN));
    CHECK_OK(iomux_watch_update(&w, IOMUX_IN | IOMUX_OUT));
    CHECK_OK(iomux_watch_update(&w, IOMUX_IN));
    spin(loop, 1);
    CHECK_EQ(test_updates(loop) - u, 1);

    u = test_updates(loop); /* already applied: a round trip costs nothing */
    CHECK_OK(iomux_watch_update(&w, IOMUX_IN | IOMUX_OUT));
    CHECK_OK(iomux_watch_update(&w, IOMUX_IN));
    spin(loop, 1);
    CHECK_EQ(test_updates(loop) - u, 0);

    u = test_updates(loop);
    CHECK_OK(iomux_watch_stop(&w));
    spin(loop, 1);
    CHECK_EQ(test_updates(loop) - u, 1);
    spin(loop, 1);
    CHECK_EQ(test_updates(loop) - u, 1);

    test_loop_free(loop);
    close(fds[0]);
    close(fds[1]);
}

/* The sub-tests that drive watchers (the Reactor) skip iocp. */
#define RUN_REACTOR(test)                 \
    do {                                  \
        if (reactor_backend()) RUN(test); \
    } while (0)

int main(int argc, char **argv) {
    TEST_ARGS(argc, argv);
    RUN(test_new_free_defaults);
    RUN(test_backend_matches_env);
    RUN(test_backend_parse_names);
    RUN(test_env_errors);
    RUN(test_cfg_overrides_env);
    RUN(test_free_busy);
    RUN_REACTOR(test_run_nowait_does_not_block);
    RUN(test_run_default_empty);
    RUN_REACTOR(test_run_once_waits_for_timer);
    RUN(test_stop_from_callback);
    RUN(test_run_reentry_busy);
    RUN(test_now_monotonic);
    RUN(test_socket_error);
    RUN_REACTOR(test_allocator_balance);
    RUN(test_allocator_fails_loop_new);
    RUN(test_strerror);
    RUN_REACTOR(test_interest_coalescing);
    /* regression tests for the fd-table growth fixed after -ENOMEM */
    RUN_REACTOR(test_enomem_then_many_watchers);
    RUN_REACTOR(test_allocator_fails_nth);
    return 0;
}

/* Timers: deadline order, ties in start order, repeat, stop and restart from
 * callbacks, saturating huge timeouts, the per-iteration budget, and a large
 * random population. */
#include "harness.h"

/* Records the order in which timers fire: each timer's data points at its
 * slot in a shared log. */
typedef struct fire_log {
    int order[10000];
    int n;
} fire_log;

typedef struct tag {
    fire_log *log;
    int id;
} tag;

static void log_cb(iomux_timer *t) {
    tag *g = t->data;
    g->log->order[g->log->n++] = g->id;
}

static void start_logged(iomux_loop *loop, iomux_timer *t, tag *g, fire_log *log, int id,
                         uint64_t timeout) {
    iomux_timer_init(loop, t, log_cb);
    g->log = log;
    g->id = id;
    t->data = g;
    CHECK_OK(iomux_timer_start(t, timeout, 0));
}

static fire_log g_log;

/* ---- ordering ----------------------------------------------------------------- */

static void test_deadline_order(void) {
    static const uint64_t timeouts[] = {30, 0, 20, 10, 5};
    static const int expect[] = {1, 4, 3, 2, 0};
    iomux_loop *loop = test_loop();
    iomux_timer t[5];
    tag g[5];
    int i;
    g_log.n = 0;
    for (i = 0; i < 5; i++) start_logged(loop, &t[i], &g[i], &g_log, i, timeouts[i]);
    CHECK_EQ(iomux_run(loop, IOMUX_RUN_DEFAULT), 0);
    CHECK_EQ(g_log.n, 5);
    for (i = 0; i < 5; i++) CHECK_EQ(g_log.order[i], expect[i]);
    test_loop_free(loop);
}

/* Equal deadlines fire in start order; a restart counts as a new start, so
 * the restarted timer moves behind the others. */
static void test_equal_timeouts_start_order(void) {
    iomux_loop *loop = test_loop();
    iomux_timer t[50];
    tag g[50];
    int i, perm[50];
    g_log.n = 0;
    for (i = 0; i < 50; i++) perm[i] = (i * 17) % 50; /* 17 is prime to 50 */
    /* no iteration in between: every start sees the same cached time */
    for (i = 0; i < 50; i++) start_logged(loop, &t[perm[i]], &g[perm[i]], &g_log, perm[i], 2);
    CHECK_OK(iomux_timer_start(&t[perm[0]], 2, 0));
    CHECK_EQ(iomux_run(loop, IOMUX_RUN_DEFAULT), 0);
    CHECK_EQ(g_log.n, 50);
    for (i = 1; i < 50; i++) CHECK_EQ(g_log.order[i - 1], perm[i]);
    CHECK_EQ(g_log.order[49], perm[0]);
    test_loop_free(loop);
}

/* ---- repeat and stop/restart from callbacks ----------------------------------------- */

typedef struct repeat_state {
    int calls, active_in_cb;
} repeat_state;

static void repeat_cb(iomux_timer *t) {
    repeat_state *r = t->data;
    /* re-armed before the callback, so the callback can stop it */
    r->active_in_cb += iomux_timer_active(t);
    if (++r->calls == 5) CHECK_OK(iomux_timer_stop(t));
}

static void test_repeat_then_stop_in_callback(void) {
    iomux_loop *loop = test_loop();
    iomux_timer t;
    repeat_state r = {0, 0};
    struct timespec ts = {0, 10 * 1000000};
    iomux_timer_init(loop, &t, repeat_cb);
    t.data = &r;
    CHECK_OK(iomux_timer_start(&t, 1, 1));
    CHECK_EQ(t.repeat, 1);
    CHECK_EQ(iomux_run(loop, IOMUX_RUN_DEFAULT), 0); /* stop left nothing alive */
    CHECK_EQ(r.calls, 5);
    CHECK_EQ(r.active_in_cb, 5);
    CHECK_EQ(iomux_timer_active(&t), 0);
    CHECK_EQ(iomux_timer_remaining(&t), 0);
    nanosleep(&ts, NULL); /* several periods pass: still no call */
    spin(loop, 3);
    CHECK_EQ(r.calls, 5);
    CHECK_OK(iomux_timer_stop(&t)); /* stopping a stopped timer is a no-op */
    test_loop_free(loop);
}

typedef struct stopper {
    iomux_timer *victim;  /* stopped and freed by the first callback */
    iomux_timer *moved;   /* restarted far away by the first callback */
    int first, victim_calls, moved_calls, last;
} stopper;

static void first_cb(iomux_timer *t) {
    stopper *s = t->data;
    s->first++;
    CHECK_OK(iomux_timer_stop(s->victim));
    free(s->victim); /* the memory is ours again once stop returns */
    s->victim = NULL;
    CHECK_OK(iomux_timer_start(s->moved, 60000, 0));
}

static void victim_cb(iomux_timer *t) {
    ((stopper *)t->data)->victim_calls++;
}

static void moved_cb(iomux_timer *t) {
    ((stopper *)t->data)->moved_calls++;
}

static void last_cb(iomux_timer *t) {
    ((stopper *)t->data)->last++;
}

/* Four timers all due in one iteration; the first stops (and frees) the
 * second and pushes the third out: only the first and the fourth run. */
static void test_stop_other_due_timer(void) {
    iomux_loop *loop = test_loop();
    iomux_timer a, moved, last;
    stopper s = {NULL, &moved, 0, 0, 0, 0};
    s.victim = malloc(sizeof(*s.victim));
    CHECK(s.victim != NULL);
    iomux_timer_init(loop, &a, first_cb);
    iomux_timer_init(loop, s.victim, victim_cb);
    iomux_timer_init(loop, &moved, moved_cb);
    iomux_timer_init(loop, &last, last_cb);
    a.data = s.victim->data = moved.data = last.data = &s;
    CHECK_OK(iomux_timer_start(&a, 0, 0));
    CHECK_OK(iomux_timer_start(s.victim, 0, 0));
    CHECK_OK(iomux_timer_start(&moved, 0, 0));
    CHECK_OK(iomux_timer_start(&last, 0, 0));
    CHECK_EQ(iomux_run(loop, IOMUX_RUN_NOWAIT), 1); /* `moved` is still pending */
    CHECK_EQ(s.first, 1);
    CHECK_EQ(s.last, 1);
    spin(loop, 3);
    CHECK_EQ(s.victim_calls, 0);
    CHECK_EQ(s.moved_calls, 0);
    CHECK(iomux_timer_remaining(&moved) > 59000);
    CHECK_OK(iomux_timer_stop(&moved));
    test_loop_free(loop);
}

static void flag_cb(iomux_timer *t) {
    (*(int *)t->data)++;
}

static void test_restart_moves_deadline(void) {
    iomux_loop *loop = test_loop();
    iomux_timer t;
    int fired = 0;
    struct timespec ts = {0, 30 * 1000000};
    iomux_timer_init(loop, &t, flag_cb);
    t.data = &fired;
    CHECK_EQ(iomux_timer_remaining(&t), 0); /* stopped */
    CHECK_OK(iomux_timer_start(&t, 10000, 0));
    CHECK(iomux_timer_remaining(&t) > 9990 && iomux_timer_remaining(&t) <= 10000);
    /* earlier: would take 10 s if the old deadline were kept */
    CHECK_OK(iomux_timer_start(&t, 10, 0));
    CHECK(iomux_timer_remaining(&t) <= 10);
    run_until(loop, &fired, 2000);
    CHECK_EQ(fired, 1);
    CHECK_EQ(iomux_timer_active(&t), 0);
    /* later: the old 5 ms deadline must be gone */
    fired = 0;
    CHECK_OK(iomux_timer_start(&t, 5, 0));
    CHECK_OK(iomux_timer_start(&t, 10000, 0));
    nanosleep(&ts, NULL);
    spin(loop, 3);
    CHECK_EQ(fired, 0);
    CHECK(iomux_timer_remaining(&t) > 9000);
    CHECK_OK(iomux_timer_stop(&t));
    test_loop_free(loop);
}

/* Restarting a timer deep in a populated heap to the earliest deadline must
 * move it to the front: it fires alone, long before the others. */
static void test_restart_in_full_heap(void) {
    iomux_loop *loop = test_loop();
    iomux_timer t[16];
    int fired[16] = {0}, i;
    for (i = 0; i < 16; i++) {
        iomux_timer_init(loop, &t[i], flag_cb);
        t[i].data = &fired[i];
        CHECK_OK(iomux_timer_start(&t[i], 10000 + (uint64_t)i, 0));
    }
    CHECK_OK(iomux_timer_start(&t[15], 1, 0)); /* the last leaf */
    run_until(loop, &fired[15], 2000);
    for (i = 0; i < 15; i++) {
        CHECK_EQ(fired[i], 0);
        CHECK(iomux_timer_remaining(&t[i]) > 9000);
        CHECK_OK(iomux_timer_stop(&t[i]));
    }
    test_loop_free(loop);
}

/* ---- huge timeouts saturate instead of wrapping ---------------------------------------- */

static void recv_done_cb(iomux_op *op) {
    *(int *)op->data = 1;
}

static void noop_watch_cb(iomux_watch *w, unsigned revents) {
    (void)w;
    (void)revents;
}

static void test_huge_timeouts(void) {
    static const uint64_t huge[] = {UINT64_MAX, UINT64_MAX / 2, UINT64_MAX / 1000000 + 1,
                                    UINT64_MAX / 1000000};
    iomux_loop *loop = test_loop();
    iomux_timer t[4];
    iomux_watch w;
    iomux_stats s0, s1;
    int fired = 0, i, fds[2];
    for (i = 0; i < 4; i++) {
        iomux_timer_init(loop, &t[i], flag_cb);
        t[i].data = &fired;
        CHECK_OK(iomux_timer_start(&t[i], huge[i], 0));
        CHECK(iomux_timer_remaining(&t[i]) > 1000000000000ull); /* > 30 years */
    }
    CHECK_EQ(iomux_run(loop, IOMUX_RUN_NOWAIT), 1);
    spin(loop, 2);
    CHECK_EQ(fired, 0);
    /* With only huge timers the wait must still be a blocking one (not a
     * wrapped-around 0): a readable fd ends it, and no timer fires. (The
     * readable fd is a watcher's: not on iocp, which has no Reactor.) */
    if (test_reactor(loop)) {
        unix_pair(fds);
        write_all(fds[1], "x", 1);
        iomux_watch_init(loop, &w, fds[0], noop_watch_cb);
        CHECK_OK(iomux_watch_start(&w, IOMUX_IN));
        iomux_loop_stats(loop, &s0);
        CHECK_EQ(iomux_run(loop, IOMUX_RUN_ONCE), 1);
        iomux_loop_stats(loop, &s1);
        CHECK_EQ(s1.waits - s0.waits, 1);
        CHECK_EQ(fired, 0);
        CHECK_OK(iomux_watch_stop(&w));
        close(fds[0]);
        close(fds[1]);
    } else { /* the same with a recv op that completes at once */
        iomux_op op;
        char c = 0;
        int done = 0;
        unix_pair(fds);
        write_all(fds[1], "x", 1);
        op.data = &done;
        CHECK_OK(iomux_recv(loop, &op, fds[0], &c, 1, 0, recv_done_cb));
        iomux_loop_stats(loop, &s0);
        CHECK_EQ(iomux_run(loop, IOMUX_RUN_ONCE), 1);
        iomux_loop_stats(loop, &s1);
        CHECK_EQ(s1.waits - s0.waits, 1);
        run_until(loop, &done, 5000); /* the callback may come one iteration later */
        CHECK_EQ(fired, 0);
        CHECK_EQ(op.result, 1);
        CHECK_EQ(c, 'x');
        test_op_close(loop, fds[0]);
        close(fds[1]);
    }
    for (i = 0; i < 4; i++) CHECK_OK(iomux_timer_stop(&t[i]));
    test_loop_free(loop);
}

/* ---- no runaway within one iteration ------------------------------------------------------ */

static void restart_zero_cb(iomux_timer *t) {
    (*(int *)t->data)++;
    CHECK_OK(iomux_timer_start(t, 0, 0));
}

static void test_restart_zero_once_per_iteration(void) {
    iomux_loop *loop = test_loop();
    iomux_timer t;
    int calls = 0, i;
    iomux_timer_init(loop, &t, restart_zero_cb);
    t.data = &calls;
    CHECK_OK(iomux_timer_start(&t, 0, 0));
    for (i = 1; i <= 10; i++) {
        CHECK_EQ(iomux_run(loop, IOMUX_RUN_NOWAIT), 1);
        CHECK_EQ(calls, i);
    }
    CHECK_OK(iomux_timer_stop(&t));
    test_loop_free(loop);
}

/* A repeating timer that fell behind is re-armed from now, not from its
 * old deadline (which would leave it due at once: a burst of catch-ups). */
static void test_repeat_no_catch_up(void) {
    iomux_loop *loop = test_loop();
    iomux_timer t;
    int calls = 0;
    struct timespec ts = {0, 100 * 1000000};
    iomux_timer_init(loop, &t, flag_cb);
    t.data = &calls;
    CHECK_OK(iomux_timer_start(&t, 20, 20));
    nanosleep(&ts, NULL); /* five periods missed */
    CHECK_EQ(iomux_run(loop, IOMUX_RUN_NOWAIT), 1);
    CHECK_EQ(calls, 1);
    /* remaining is computed against the cached time of that iteration */
    CHECK(iomux_timer_remaining(&t) >= 19 && iomux_timer_remaining(&t) <= 20);
    CHECK_OK(iomux_timer_stop(&t));
    test_loop_free(loop);
}

static void test_max_timers_per_iteration(void) {
    static const int per_iter[] = {2, 2, 1};
    iomux_config cfg;
    iomux_loop *loop;
    iomux_timer t[5];
    tag g[5];
    int i, it, before;
    iomux_config_init(&cfg);
    cfg.max_timers_per_iteration = 2;
    CHECK_OK(iomux_loop_new(&loop, &cfg));
    g_log.n = 0;
    for (i = 0; i < 5; i++) start_logged(loop, &t[i], &g[i], &g_log, i, 0);
    for (it = 0; it < 3; it++) {
        before = g_log.n;
        CHECK_EQ(iomux_run(loop, IOMUX_RUN_NOWAIT), it < 2);
        CHECK_EQ(g_log.n - before, per_iter[it]);
    }
    for (i = 0; i < 5; i++) CHECK_EQ(g_log.order[i], i);
    test_loop_free(loop);
}

/* ---- time ---------------------------------------------------------------------------------- */

static void test_run_default_waits(void) {
    iomux_loop *loop = test_loop();
    iomux_timer t;
    int fired = 0;
    uint64_t t0, dt;
    iomux_timer_init(loop, &t, flag_cb);
    t.data = &fired;
    t0 = test_ns();
    iomux_update_time(loop); /* the deadline is now + 50 ms >= t0 + 50 ms */
    CHECK_OK(iomux_timer_start(&t, 50, 0));
    CHECK_EQ(iomux_run(loop, IOMUX_RUN_DEFAULT), 0);
    dt = test_ns() - t0;
    CHECK_EQ(fired, 1);
    CHECK(dt >= 50u * 1000000u);
    CHECK(dt < 2000u * 1000000u);
    test_loop_free(loop);
}

/* 10,000 timers with random timeouts 0..20 ms, all started at one cached
 * time: each fires once, not before its timeout, and the firing order is
 * exactly (timeout, start order). */
#define NRAND 10000

typedef struct rand_timer {
    iomux_timer t;
    uint64_t timeout, fired_at;
    int fired, id;
} rand_timer;

static int g_rand_order[NRAND], g_rand_n;

static void rand_cb(iomux_timer *t) {
    rand_timer *r = t->data;
    r->fired++;
    r->fired_at = iomux_now(t->loop);
    g_rand_order[g_rand_n++] = r->id;
}

static void test_many_random_timers(void) {
    iomux_loop *loop = test_loop();
    rand_timer *r = calloc(NRAND, sizeof(*r));
    int i, k = 0;
    uint64_t start, ms;
    unsigned seed = 12345;
    CHECK(r != NULL);
    g_rand_n = 0;
    start = iomux_now(loop);
    for (i = 0; i < NRAND; i++) {
        seed = seed * 1103515245u + 12345u;
        r[i].timeout = (seed >> 16) % 21;
        r[i].id = i;
        iomux_timer_init(loop, &r[i].t, rand_cb);
        r[i].t.data = &r[i];
        CHECK_OK(iomux_timer_start(&r[i].t, r[i].timeout, 0));
    }
    CHECK_EQ(iomux_run(loop, IOMUX_RUN_DEFAULT), 0);
    CHECK_EQ(g_rand_n, NRAND);
    for (i = 0; i < NRAND; i++) {
        CHECK_EQ(r[i].fired, 1);
        CHECK(r[i].fired_at >= start + r[i].timeout);
    }
    /* expected order: by timeout, then by index (= start order) */
    for (ms = 0; ms <= 20; ms++)
        for (i = 0; i < NRAND; i++)
            if (r[i].timeout == ms) CHECK_EQ(g_rand_order[k++], i);
    CHECK_EQ(k, NRAND);
    free(r);
    test_loop_free(loop);
}

int main(void) {
    RUN(test_deadline_order);
    RUN(test_equal_timeouts_start_order);
    RUN(test_repeat_then_stop_in_callback);
    RUN(test_stop_other_due_timer);
    RUN(test_restart_moves_deadline);
    RUN(test_restart_in_full_heap);
    RUN(test_huge_timeouts);
    RUN(test_restart_zero_once_per_iteration);
    RUN(test_repeat_no_catch_up);
    RUN(test_max_timers_per_iteration);
    RUN(test_run_default_waits);
    RUN(test_many_random_timers);
    return 0;
}

/* Timeout ops (iomux_timeout): result 0 no earlier than asked; cancel of a
 * pending one gives one -ECANCELED callback; many random ones complete
 * exactly once in deadline order, ties in start order, and in start order
 * with plain timers of the same deadline; an op restarted from its own
 * callback; a 0 ms restart does not starve the loop; loop_free is refused
 * while a timeout is pending. Ops are heap-allocated where exactly-once
 * matters and freed in their callback (ASan sees any later touch). */
#include "harness.h"

#define WAIT_MS 3000
#define NS_PER_MS 1000000ull
#define LATE_MS 2000 /* generous upper bound on lateness */

/* Iterates with IOMUX_RUN_ONCE (which blocks until the next deadline) until
 * *count reaches n; fails after ms. */
static void run_once_until(iomux_loop *loop, const int *count, int n, unsigned ms) {
    uint64_t end = test_ms() + ms;
    while (*count < n) {
        if (test_ms() > end) FAIL("timed out after %u ms: %d calls, want %d", ms, *count, n);
        CHECK_OK(iomux_run(loop, IOMUX_RUN_ONCE));
    }
}

/* ---- a heap timeout op that records when and how it completed --------------------- */

#define MAXN 1000

typedef struct rec {
    int calls;
    int64_t result;
    uint64_t at_ns; /* test_ns() in the callback */
    int order;      /* position among all callbacks */
} rec;

static rec R[MAXN];
static int n_calls;

typedef struct tmo {
    iomux_op op; /* first: the callback casts back */
    int id;
} tmo;

static void tmo_cb(iomux_op *op) {
    tmo *t = (tmo *)(void *)op;
    rec *r = &R[t->id];
    CHECK_EQ(op->flags & IOMUX_OP_MORE, 0);
    CHECK_EQ(iomux_op_active(op), 0);
    CHECK_EQ(iomux_cancel(op), -EINVAL); /* idle in its final callback */
    r->calls++;
    r->result = op->result;
    r->at_ns = test_ns();
    r->order = n_calls++;
    free(t);
}

static tmo *start_tmo(iomux_loop *loop, int id, uint64_t ms) {
    tmo *t = calloc(1, sizeof(*t));
    CHECK(t != NULL);
    t->id = id;
    CHECK_OK(iomux_timeout(loop, &t->op, ms, tmo_cb));
    CHECK(iomux_op_active(&t->op));
    return t;
}

static void reset(void) {
    memset(R, 0, sizeof(R));
    n_calls = 0;
}

/* The loop's cached time, refreshed after t0 was read: every deadline is
 * then at least t0 + timeout. */
static uint64_t fresh_start(iomux_loop *loop) {
    uint64_t t0 = test_ns();
    iomux_update_time(loop);
    return t0;
}

static void check_lateness(int id, uint64_t t0, uint64_t ms) {
    uint64_t lo = t0 + ms * NS_PER_MS, hi = lo + LATE_MS * NS_PER_MS;
    if (R[id].at_ns < lo)
        FAIL("timeout %d of %llu ms completed %.3f ms early", id, (unsigned long long)ms,
             (double)(lo - R[id].at_ns) / 1e6);
    if (R[id].at_ns > hi)
        FAIL("timeout %d of %llu ms completed %.3f ms late", id, (unsigned long long)ms,
             (double)(R[id].at_ns - lo) / 1e6);
}

/* ---- tests ------------------------------------------------------------------------------- */

/* 0, 10 and 50 ms, one at a time and then together. */
static void test_basic(void) {
    static const uint64_t ms[] = {0, 10, 50};
    iomux_loop *loop = test_loop();
    uint64_t t0;
    int i;
    for (i = 0; i < 3; i++) {
        reset();
        t0 = fresh_start(loop);
        start_tmo(loop, 0, ms[i]);
        CHECK_EQ(R[0].calls, 0); /* never inside the start call */
        run_once_until(loop, &n_calls, 1, WAIT_MS);
        CHECK_EQ(R[0].result, 0);
        check_lateness(0, t0, ms[i]);
        spin(loop, 3);
        CHECK_EQ(R[0].calls, 1);
        CHECK_EQ(iomux_loop_alive(loop), 0);
    }
    reset();
    t0 = fresh_start(loop);
    for (i = 2; i >= 0; i--) start_tmo(loop, i, ms[i]);
    run_once_until(loop, &n_calls, 3, WAIT_MS);
    for (i = 0; i < 3; i++) {
        CHECK_EQ(R[i].calls, 1);
        CHECK_EQ(R[i].result, 0);
        CHECK_EQ(R[i].order, i);
        check_lateness(i, t0, ms[i]);
    }
    test_loop_free(loop);
}

/* A timeout keeps the loop alive: IOMUX_RUN_DEFAULT returns 0 after it. */
static void test_run_default(void) {
    iomux_loop *loop = test_loop();
    iomux_op op;
    uint64_t t0;
    reset();
    t0 = fresh_start(loop);
    start_tmo(loop, 0, 20);
    CHECK_EQ(iomux_loop_alive(loop), 1);
    CHECK_EQ(iomux_run(loop, IOMUX_RUN_DEFAULT), 0);
    CHECK_EQ(R[0].calls, 1);
    CHECK_EQ(R[0].result, 0);
    check_lateness(0, t0, 20);
    CHECK_EQ(iomux_timeout(loop, &op, 1, NULL), -EINVAL);
    CHECK_EQ(iomux_timeout(NULL, &op, 1, tmo_cb), -EINVAL);
    CHECK_EQ(iomux_loop_alive(loop), 0);
    test_loop_free(loop);
}

/* A stack op, for the stages after its callback. */
static int g_calls;
static int64_t g_result;

static void count_cb(iomux_op *op) {
    g_calls++;
    g_result = op->result;
    CHECK_EQ(iomux_op_active(op), 0);
}

static void test_cancel_pending(void) {
    iomux_loop *loop = test_loop();
    iomux_op op;
    uint64_t t0;
    int *marker = &g_calls;
    memset(&op, 0, sizeof(op));
    op.data = marker;
    g_calls = 0;
    t0 = test_ns();
    CHECK_OK(iomux_timeout(loop, &op, 1000, count_cb));
    CHECK(op.data == marker); /* op->data is yours: untouched */
    CHECK_EQ(iomux_cancel(&op), 0);
    CHECK_EQ(iomux_cancel(&op), -EALREADY); /* its -ECANCELED is on its way */
    CHECK(iomux_op_active(&op));
    CHECK_EQ(iomux_loop_free(loop), -EBUSY);
    CHECK_EQ(g_calls, 0);
    run_once_until(loop, &g_calls, 1, WAIT_MS);
    CHECK_EQ(g_result, -ECANCELED);
    CHECK(test_ns() - t0 < 500 * NS_PER_MS); /* not after its 1000 ms */
    CHECK_EQ(iomux_cancel(&op), -EINVAL);
    spin(loop, 3);
    CHECK_EQ(g_calls, 1);
    CHECK_EQ(iomux_loop_alive(loop), 0);

    /* "Effectively never", cancelled after the loop waited on it once. */
    CHECK_OK(iomux_timeout(loop, &op, UINT64_MAX, count_cb));
    spin(loop, 2);
    CHECK_EQ(g_calls, 1);
    CHECK_EQ(iomux_cancel(&op), 0);
    run_once_until(loop, &g_calls, 2, WAIT_MS);
    CHECK_EQ(g_result, -ECANCELED);
    test_loop_free(loop);
}

/* One timeout's callback cancels another due in the same timer phase. */
static tmo *g_victim;
static int g_victim_rc;

static void cancel_other_cb(iomux_op *op) {
    g_victim_rc = iomux_cancel(&g_victim->op);
    tmo_cb(op);
}

static void test_cancel_from_sibling(void) {
    iomux_loop *loop = test_loop();
    tmo *a = calloc(1, sizeof(*a));
    reset();
    CHECK(a != NULL);
    a->id = 0;
    g_victim_rc = 1;
    CHECK_OK(iomux_timeout(loop, &a->op, 5, cancel_other_cb));
    g_victim = start_tmo(loop, 1, 5); /* same deadline, started after */
    run_once_until(loop, &n_calls, 2, WAIT_MS);
    CHECK_EQ(g_victim_rc, 0);
    CHECK_EQ(R[0].result, 0);
    CHECK_EQ(R[1].result, -ECANCELED);
    spin(loop, 3);
    CHECK_EQ(R[0].calls, 1);
    CHECK_EQ(R[1].calls, 1);
    test_loop_free(loop);
}

/* 1,000 random timeouts, started without an iteration in between (so all
 * see the same cached time): each completes once, in deadline order, equal
 * deadlines in start order. */
static uint64_t g_rng;

static uint64_t rnd(void) {
    return test_rand(&g_rng);
}

static void test_many_random(void) {
    iomux_loop *loop = test_loop();
    static uint64_t ms[MAXN];
    static int expect[MAXN], by_order[MAXN];
    uint64_t t0;
    int i, j, k;
    const char *seed_env = getenv("IOMUX_TEST_SEED");
    g_rng = seed_env ? strtoull(seed_env, NULL, 0) : (test_ns() | 1);
    fprintf(stderr, "   seed %llu (IOMUX_TEST_SEED)\n", (unsigned long long)g_rng);
    reset();
    for (i = 0; i < MAXN; i++) ms[i] = rnd() % 4 == 0 ? rnd() % 5 : rnd() % 100; /* many ties */
    t0 = fresh_start(loop);
    for (i = 0; i < MAXN; i++) start_tmo(loop, i, ms[i]);
    /* The expected order: a stable sort by timeout (insertion sort). */
    for (i = 0; i < MAXN; i++) {
        for (j = i; j > 0 && ms[expect[j - 1]] > ms[i]; j--) expect[j] = expect[j - 1];
        expect[j] = i;
    }
    run_once_until(loop, &n_calls, MAXN, WAIT_MS);
    spin(loop, 3);
    CHECK_EQ(n_calls, MAXN);
    for (i = 0; i < MAXN; i++) {
        if (R[i].calls != 1) FAIL("timeout %d: %d callbacks", i, R[i].calls);
        CHECK_EQ(R[i].result, 0);
        check_lateness(i, t0, ms[i]);
        by_order[R[i].order] = i;
    }
    for (k = 0; k < MAXN; k++)
        if (by_order[k] != expect[k])
            FAIL("callback %d was timeout %d (%llu ms), want %d (%llu ms)", k, by_order[k],
                 (unsigned long long)ms[by_order[k]], expect[k], (unsigned long long)ms[expect[k]]);
    CHECK_EQ(iomux_loop_alive(loop), 0);
    test_loop_free(loop);
}

/* Timeout ops and plain timers share the deadline order: equal deadlines
 * run in start order across both. */
static int g_seq[8], g_nseq;

static void timer_log_cb(iomux_timer *t) {
    g_seq[g_nseq++] = (int)(intptr_t)t->data;
}

static void op_log_cb(iomux_op *op) {
    g_seq[g_nseq++] = (int)(intptr_t)op->data;
}

static void test_mixed_with_timers(void) {
    iomux_loop *loop = test_loop();
    iomux_op ops[3];
    iomux_timer timers[3];
    int i;
    g_nseq = 0;
    for (i = 0; i < 3; i++) {
        ops[i].data = (void *)(intptr_t)(2 * i);
        CHECK_OK(iomux_timeout(loop, &ops[i], 10, op_log_cb));
        iomux_timer_init(loop, &timers[i], timer_log_cb);
        timers[i].data = (void *)(intptr_t)(2 * i + 1);
        CHECK_OK(iomux_timer_start(&timers[i], 10, 0));
    }
    CHECK_EQ(iomux_run(loop, IOMUX_RUN_DEFAULT), 0);
    CHECK_EQ(g_nseq, 6);
    for (i = 0; i < 6; i++) CHECK_EQ(g_seq[i], i);
    test_loop_free(loop);
}

/* The same op restarted from its own callback, 5 times 10 ms. */
static int g_restarts;
static uint64_t g_last_ns;

static void restart_cb(iomux_op *op) {
    CHECK_EQ(op->result, 0);
    g_last_ns = test_ns();
    if (++g_restarts < 5) CHECK_OK(iomux_timeout(op->loop, op, 10, restart_cb));
    else CHECK_EQ(iomux_op_active(op), 0);
}

/* Restarted, then cancelled, from its own callback. */
static int g_rc_calls;
static int64_t g_rc_results[2];

static void restart_cancel_cb(iomux_op *op) {
    g_rc_results[g_rc_calls++] = op->result;
    if (g_rc_calls == 1) {
        CHECK_OK(iomux_timeout(op->loop, op, 10000, restart_cancel_cb));
        CHECK_EQ(iomux_cancel(op), 0);
    }
}

/* A 0 ms timeout restarted from its callback runs once per iteration. */
static int g_zero_calls;

static void zero_again_cb(iomux_op *op) {
    g_zero_calls++;
    if (op->result == 0) CHECK_OK(iomux_timeout(op->loop, op, 0, zero_again_cb));
}

static void test_restart_from_callback(void) {
    iomux_loop *loop = test_loop();
    iomux_op op;
    uint64_t t0;
    int i;
    g_restarts = 0;
    t0 = fresh_start(loop);
    CHECK_OK(iomux_timeout(loop, &op, 10, restart_cb));
    run_once_until(loop, &g_restarts, 5, WAIT_MS);
    spin(loop, 3);
    CHECK_EQ(g_restarts, 5);
    CHECK(g_last_ns >= t0 + 50 * NS_PER_MS);
    CHECK_EQ(iomux_loop_alive(loop), 0);

    g_rc_calls = 0;
    CHECK_OK(iomux_timeout(loop, &op, 1, restart_cancel_cb));
    run_once_until(loop, &g_rc_calls, 2, WAIT_MS);
    spin(loop, 3);
    CHECK_EQ(g_rc_calls, 2);
    CHECK_EQ(g_rc_results[0], 0);
    CHECK_EQ(g_rc_results[1], -ECANCELED);

    g_zero_calls = 0;
    CHECK_OK(iomux_timeout(loop, &op, 0, zero_again_cb));
    for (i = 1; i <= 10; i++) {
        CHECK_OK(iomux_run(loop, IOMUX_RUN_NOWAIT));
        CHECK_EQ(g_zero_calls, i);
    }
    CHECK_EQ(iomux_cancel(&op), 0);
    spin(loop, 2);
    CHECK_EQ(g_zero_calls, 11); /* the -ECANCELED one, which stops it */
    CHECK_EQ(iomux_loop_alive(loop), 0);
    test_loop_free(loop);
}

static void test_loop_free_busy(void) {
    iomux_loop *loop = test_loop();
    tmo *t;
    reset();
    t = start_tmo(loop, 0, 60000);
    CHECK_EQ(iomux_loop_free(loop), -EBUSY);
    spin(loop, 2);
    CHECK_EQ(iomux_loop_free(loop), -EBUSY);
    CHECK_EQ(iomux_cancel(&t->op), 0);
    CHECK_EQ(iomux_loop_free(loop), -EBUSY); /* the callback has not run */
    run_once_until(loop, &n_calls, 1, WAIT_MS);
    CHECK_EQ(R[0].result, -ECANCELED);

    start_tmo(loop, 1, 0); /* due at once, but not run yet */
    CHECK_EQ(iomux_loop_free(loop), -EBUSY);
    run_once_until(loop, &n_calls, 2, WAIT_MS);
    CHECK_EQ(R[1].result, 0);
    CHECK_EQ(iomux_loop_free(loop), 0);
}

int main(void) {
    fprintf(stderr, "backend %s\n", test_backend());
    RUN(test_basic);
    RUN(test_run_default);
    RUN(test_cancel_pending);
    RUN(test_cancel_from_sibling);
    RUN(test_many_random);
    RUN(test_mixed_with_timers);
    RUN(test_restart_from_callback);
    RUN(test_loop_free_busy);
    return 0;
}

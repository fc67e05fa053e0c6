/* Signal watchers: delivery, several watchers and several loops (threads) on
 * one signal, merging, restoring the previous disposition, invalid signals,
 * stop before dispatch, and loop_free while watching. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#include "harness.h"

/* The process's own handlers for SIGUSR1/2 while iomux is not watching, so
 * a stray signal is counted instead of killing the test. */
static volatile sig_atomic_t g_base_calls[3];

static void base_handler(int signum) {
    g_base_calls[signum == SIGUSR1 ? 1 : 2]++;
}

static void install(int signum, void (*fn)(int), struct sigaction *old) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = fn;
    sigemptyset(&sa.sa_mask);
    CHECK_SYS(sigaction(signum, &sa, old));
}

static void (*current_handler(int signum))(int) {
    struct sigaction cur;
    CHECK_SYS(sigaction(signum, NULL, &cur));
    return cur.sa_handler;
}

typedef struct sigrec {
    int calls, signum;
} sigrec;

static void rec_cb(iomux_signal *s, int signum) {
    sigrec *r = s->data;
    r->calls++;
    r->signum = signum;
}

static void watch_signal(iomux_loop *loop, iomux_signal *s, sigrec *r, int signum) {
    memset(r, 0, sizeof(*r));
    iomux_signal_init(loop, s, rec_cb);
    s->data = r;
    CHECK_OK(iomux_signal_start(s, signum));
    CHECK_EQ(iomux_signal_active(s), 1);
    CHECK_EQ(s->signum, signum);
}

/* ---- delivery ----------------------------------------------------------------- */

static void test_raise_delivers(void) {
    iomux_loop *loop = test_loop();
    iomux_signal s;
    sigrec r;
    int base = g_base_calls[1];
    watch_signal(loop, &s, &r, SIGUSR1);
    CHECK_EQ(iomux_loop_alive(loop), 1);
    CHECK_SYS(raise(SIGUSR1));
    run_until(loop, &r.calls, 5000);
    CHECK_EQ(r.calls, 1);
    CHECK_EQ(r.signum, SIGUSR1);
    CHECK_EQ(iomux_signal_active(&s), 1); /* signal watchers are not one-shot */
    CHECK_EQ(g_base_calls[1], base);      /* iomux's handler took it */
    CHECK_OK(iomux_signal_stop(&s));
    CHECK_EQ(iomux_signal_active(&s), 0);
    CHECK_OK(iomux_signal_stop(&s)); /* no-op */
    test_loop_free(loop);
}

static void run_until_both(iomux_loop *loop, const sigrec *a, const sigrec *b, int n) {
    uint64_t end = test_ms() + 5000;
    while (a->calls < n || b->calls < n) {
        struct timespec ts = {0, 200000};
        if (test_ms() > end) FAIL("timed out: %d and %d calls of %d", a->calls, b->calls, n);
        CHECK_OK(iomux_run(loop, IOMUX_RUN_NOWAIT));
        nanosleep(&ts, NULL);
    }
}

/* Both watchers of one signal in one loop run; two deliveries before the
 * loop looks are merged into one callback each. */
static void test_two_watchers_one_loop(void) {
    iomux_loop *loop = test_loop();
    iomux_signal a, b;
    sigrec ra, rb;
    watch_signal(loop, &a, &ra, SIGUSR1);
    watch_signal(loop, &b, &rb, SIGUSR1);
    CHECK_SYS(raise(SIGUSR1));
    CHECK_SYS(raise(SIGUSR1));
    run_until_both(loop, &ra, &rb, 1);
    spin(loop, 3);
    CHECK_EQ(ra.calls, 1);
    CHECK_EQ(rb.calls, 1);
    CHECK_SYS(raise(SIGUSR1)); /* and a later one is a new callback */
    run_until_both(loop, &ra, &rb, 2);
    spin(loop, 3);
    CHECK_EQ(ra.calls, 2);
    CHECK_EQ(rb.calls, 2);
    CHECK_OK(iomux_signal_stop(&a));
    CHECK_OK(iomux_signal_stop(&b));
    test_loop_free(loop);
}

/* ---- two loops in two threads -------------------------------------------------- */

typedef struct sig_thread {
    pthread_t th;
    atomic_int ready;
    sigrec r;
} sig_thread;

static void *sig_thread_main(void *arg) {
    sig_thread *t = arg;
    iomux_loop *loop = test_loop();
    iomux_signal s;
    watch_signal(loop, &s, &t->r, SIGUSR2);
    atomic_store(&t->ready, 1);
    run_until(loop, &t->r.calls, 5000);
    spin(loop, 3); /* one kill: exactly one callback */
    CHECK_OK(iomux_signal_stop(&s));
    test_loop_free(loop);
    return NULL;
}

static void test_two_loops_two_threads(void) {
    sig_thread t[2];
    uint64_t end = test_ms() + 5000;
    int i;
    for (i = 0; i < 2; i++) {
        memset(&t[i], 0, sizeof(t[i]));
        atomic_init(&t[i].ready, 0);
        CHECK(pthread_create(&t[i].th, NULL, sig_thread_main, &t[i]) == 0);
    }
    while (!atomic_load(&t[0].ready) || !atomic_load(&t[1].ready)) {
        struct timespec ts = {0, 1000000};
        if (test_ms() > end) FAIL("threads did not start watching");
        nanosleep(&ts, NULL);
    }
    CHECK_SYS(kill(getpid(), SIGUSR2));
    for (i = 0; i < 2; i++) {
        CHECK(pthread_join(t[i].th, NULL) == 0);
        CHECK_EQ(t[i].r.calls, 1);
        CHECK_EQ(t[i].r.signum, SIGUSR2);
    }
    CHECK(current_handler(SIGUSR2) == base_handler);
}

/* ---- the previous disposition comes back --------------------------------------- */

static volatile sig_atomic_t g_own_calls;

static void own_handler(int signum) {
    (void)signum;
    g_own_calls++;
}

/* Two loops watch SIGUSR1: iomux's handler stays until the last watcher
 * anywhere stops; then ours is back, and it is the one that runs. */
static void test_restore_disposition(void) {
    iomux_loop *l1 = test_loop(), *l2 = test_loop();
    iomux_signal s1, s2;
    sigrec r1, r2;
    struct sigaction saved;
    install(SIGUSR1, own_handler, &saved);
    g_own_calls = 0;
    watch_signal(l1, &s1, &r1, SIGUSR1);
    watch_signal(l2, &s2, &r2, SIGUSR1);
    CHECK(current_handler(SIGUSR1) != own_handler);
    CHECK_OK(iomux_signal_stop(&s1));
    CHECK(current_handler(SIGUSR1) != own_handler);
    CHECK_SYS(raise(SIGUSR1));
    run_until(l2, &r2.calls, 5000);
    CHECK_EQ(g_own_calls, 0);
    CHECK_OK(iomux_signal_stop(&s2));
    CHECK(current_handler(SIGUSR1) == own_handler);
    CHECK_SYS(raise(SIGUSR1));
    CHECK_EQ(g_own_calls, 1);
    spin(l1, 2);
    spin(l2, 2);
    CHECK_EQ(r1.calls, 0);
    CHECK_EQ(r2.calls, 1);
    CHECK_SYS(sigaction(SIGUSR1, &saved, NULL));
    test_loop_free(l1);
    test_loop_free(l2);
}

/* Restarting a watcher on another signal stops the first: SIGUSR1 goes back
 * to the base handler, SIGUSR2 reaches the watcher. */
static void test_restart_other_signal(void) {
    iomux_loop *loop = test_loop();
    iomux_signal s;
    sigrec r;
    int base1 = g_base_calls[1];
    watch_signal(loop, &s, &r, SIGUSR1);
    CHECK_OK(iomux_signal_start(&s, SIGUSR2));
    CHECK_EQ(s.signum, SIGUSR2);
    CHECK(current_handler(SIGUSR1) == base_handler);
    CHECK_SYS(raise(SIGUSR1));
    CHECK_EQ(g_base_calls[1], base1 + 1);
    CHECK_SYS(raise(SIGUSR2));
    run_until(loop, &r.calls, 5000);
    CHECK_EQ(r.signum, SIGUSR2);
    CHECK_OK(iomux_signal_stop(&s));
    test_loop_free(loop);
}

/* ---- errors, stop before dispatch, free -------------------------------------------- */

static void test_invalid_signals(void) {
    static const int bad[] = {SIGKILL, SIGSTOP, 0, 65, -1};
    iomux_loop *loop = test_loop();
    iomux_signal s;
    size_t i;
    iomux_signal_init(loop, &s, rec_cb);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_EQ(iomux_signal_start(&s, bad[i]), -EINVAL);
        CHECK_EQ(iomux_signal_active(&s), 0);
    }
    CHECK_EQ(iomux_loop_alive(loop), 0);
    test_loop_free(loop);
}

/* Received (the handler ran, the byte is in the pipe) but not dispatched:
 * a stop must win. Also after one iteration, when the loop may have read the
 * pipe and queued the callback without running it yet. */
static void test_stop_before_dispatch(void) {
    iomux_loop *loop = test_loop();
    iomux_signal s;
    sigrec r;
    watch_signal(loop, &s, &r, SIGUSR1);
    CHECK_SYS(raise(SIGUSR1));
    CHECK_OK(iomux_signal_stop(&s));
    spin(loop, 5);
    CHECK_EQ(r.calls, 0);

    watch_signal(loop, &s, &r, SIGUSR1);
    CHECK_SYS(raise(SIGUSR1));
    spin(loop, 1);
    if (r.calls == 0) {
        CHECK_OK(iomux_signal_stop(&s));
        spin(loop, 5);
        CHECK_EQ(r.calls, 0);
    }
    CHECK_OK(iomux_signal_stop(&s));
    test_loop_free(loop);
}

/* Two watchers, one signal, one batch: whichever runs first stops and frees
 * the other, whose callback must then not run (ASan sees a use after free). */
typedef struct rival {
    iomux_signal s;
    struct rival **other;
    int *calls;
} rival;

static void rival_cb(iomux_signal *s, int signum) {
    rival *me = (rival *)s;
    (void)signum;
    (*me->calls)++;
    if (*me->other) {
        CHECK_OK(iomux_signal_stop(&(*me->other)->s));
        free(*me->other);
        *me->other = NULL;
    }
}

static void test_stop_sibling_in_batch(void) {
    iomux_loop *loop = test_loop();
    rival *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
    int calls = 0;
    CHECK(a && b);
    iomux_signal_init(loop, &a->s, rival_cb);
    iomux_signal_init(loop, &b->s, rival_cb);
    a->other = &b;
    b->other = &a;
    a->calls = b->calls = &calls;
    CHECK_OK(iomux_signal_start(&a->s, SIGUSR1));
    CHECK_OK(iomux_signal_start(&b->s, SIGUSR1));
    CHECK_SYS(raise(SIGUSR1));
    run_until(loop, &calls, 5000);
    spin(loop, 3);
    CHECK_EQ(calls, 1);
    CHECK((a == NULL) != (b == NULL)); /* exactly one survivor */
    if (a) CHECK_OK(iomux_signal_stop(&a->s));
    if (b) CHECK_OK(iomux_signal_stop(&b->s));
    free(a);
    free(b);
    test_loop_free(loop);
}

static void test_free_busy(void) {
    iomux_loop *loop = test_loop();
    iomux_signal s;
    sigrec r;
    watch_signal(loop, &s, &r, SIGUSR2);
    CHECK_EQ(iomux_loop_free(loop), -EBUSY);
    CHECK_OK(iomux_signal_stop(&s));
    test_loop_free(loop);
    CHECK(current_handler(SIGUSR2) == base_handler);
}

int main(void) {
    install(SIGUSR1, base_handler, NULL);
    install(SIGUSR2, base_handler, NULL);
    RUN(test_raise_delivers);
    RUN(test_two_watchers_one_loop);
    RUN(test_two_loops_two_threads);
    RUN(test_restore_disposition);
    RUN(test_restart_other_signal);
    RUN(test_invalid_signals);
    RUN(test_stop_before_dispatch);
    RUN(test_stop_sibling_in_batch);
    RUN(test_free_busy);
    return 0;
}

/* The work pool: work runs on a pool thread and done on the loop thread,
 * exactly once each; submissions fed from many threads through iomux_post;
 * cancel before start, while running and after the end; done submitting
 * again; loop_free while items are in flight; the pool's size (cfg.threads,
 * $IOMUX_THREADS) and its lazy start; allocator failures. Must be clean
 * under TSan. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#ifndef _WIN32
#include <dirent.h>
#include <sys/resource.h>
#endif

#include "harness.h"
#ifdef _WIN32
#include <tlhelp32.h> /* after harness.h: windows.h first */
#endif

#define WAIT_MS 5000 /* bound on any single wait; a pass takes far less */

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

#ifdef _WIN32
/* Threads of this process, from a Toolhelp snapshot. */
static int task_count(void) {
    HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0);
    THREADENTRY32 te;
    DWORD pid = GetCurrentProcessId();
    int n = 0;
    if (snap == INVALID_HANDLE_VALUE) return -1;
    te.dwSize = sizeof(te);
    if (Thread32First(snap, &te)) {
        do
            if (te.th32OwnerProcessID == pid) n++;
        while (Thread32Next(snap, &te));
    }
    CloseHandle(snap);
    return n;
}
#else
/* Threads of this process, from /proc/self/task. */
static int task_count(void) {
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;
    if (!d) return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}
#endif

/* ---- a gate that work functions wait at ------------------------------------------ */

#define MAX_IDS 300

typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open;
    int arrived;             /* work functions that reached the gate */
    pthread_t ids[MAX_IDS];  /* the thread of each arrival */
} gate;

static void gate_init(gate *g) {
    memset(g, 0, sizeof(*g));
    CHECK(pthread_mutex_init(&g->mu, NULL) == 0);
    CHECK(pthread_cond_init(&g->cv, NULL) == 0);
}

static void gate_destroy(gate *g) {
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

static void gate_open(gate *g) {
    pthread_mutex_lock(&g->mu);
    g->open = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* In a work function: records the thread, then blocks until the gate opens
 * (bounded, so a broken pool fails the test instead of hanging it). */
static void gate_pass(gate *g) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&g->mu);
    if (g->arrived < MAX_IDS) g->ids[g->arrived] = pthread_self();
    g->arrived++;
    while (!g->open)
        if (pthread_cond_timedwait(&g->cv, &g->mu, &until) != 0) FAIL("gate never opened");
    pthread_mutex_unlock(&g->mu);
}

static int gate_arrived(gate *g) {
    int n;
    pthread_mutex_lock(&g->mu);
    n = g->arrived;
    pthread_mutex_unlock(&g->mu);
    return n;
}

/* On the loop thread: waits until n work functions reached the gate. */
static void gate_wait(gate *g, int n) {
    uint64_t end = test_ms() + WAIT_MS;
    while (gate_arrived(g) < n) {
        if (test_ms() > end) FAIL("only %d of %d items reached the gate", gate_arrived(g), n);
        sleep_ms(1);
    }
}

/* Distinct threads among the arrivals (read after every item is done). */
static int gate_threads(gate *g) {
    int i, j, n = 0, m = g->arrived < MAX_IDS ? g->arrived : MAX_IDS;
    for (i = 0; i < m; i++) {
        for (j = 0; j < i && !pthread_equal(g->ids[i], g->ids[j]); j++) {
        }
        if (j == i) n++;
    }
    return n;
}

/* ---- a test item --------------------------------------------------------------------- */

typedef struct item {
    iomux_work w;
    gate *g;            /* work waits at this gate if set */
    pthread_t worker;   /* where work ran (read after done: ordered by it) */
    atomic_int works;   /* work runs; atomic: read by the loop while running */
    int dones, status;  /* loop thread */
    int resubmits;      /* done submits again while > 0 */
    int cancel_in_done; /* done's own cancel result */
    int alive_in_done;  /* iomux_loop_alive, seen from done */
    pthread_t done_thread;
} item;

static pthread_t g_loop_thread;
static int g_dones; /* every done, all items (loop thread) */

static void item_work(iomux_work *w) {
    item *it = w->data;
    it->worker = pthread_self();
    if (it->g) gate_pass(it->g);
    atomic_fetch_add(&it->works, 1);
}

static void item_done(iomux_work *w, int status) {
    item *it = w->data;
    it->dones++;
    it->status = status;
    it->done_thread = pthread_self();
    g_dones++;
    if (!pthread_equal(pthread_self(), g_loop_thread)) FAIL("done off the loop thread");
    it->cancel_in_done = iomux_work_cancel(w);
    it->alive_in_done = iomux_loop_alive(w->loop);
    if (it->resubmits > 0) {
        it->resubmits--;
        CHECK_OK(iomux_work_submit(w->loop, w, item_work, item_done));
    }
}

static void item_init(item *it, gate *g) {
    memset(it, 0, sizeof(*it));
    it->w.data = it;
    it->g = g;
}

static void item_submit(iomux_loop *loop, item *it) {
    CHECK_OK(iomux_work_submit(loop, &it->w, item_work, item_done));
}

/* Waits (bounded) until its work has returned; its done may still be on
 * its way to the loop. */
static void wait_works(item *it) {
    uint64_t end = test_ms() + WAIT_MS;
    while (atomic_load(&it->works) == 0) {
        if (test_ms() > end) FAIL("work never finished");
        sleep_ms(1);
    }
    sleep_ms(10); /* past the worker's hand-back post */
}

static iomux_loop *threads_loop(unsigned threads) {
    iomux_config cfg;
    iomux_loop *loop = NULL;
    iomux_config_init(&cfg);
    cfg.threads = threads;
    CHECK_OK(iomux_loop_new(&loop, &cfg));
    return loop;
}

static void begin(void) {
    g_loop_thread = pthread_self();
    g_dones = 0;
}

/* ---- basics -------------------------------------------------------------------------- */

/* work on a pool thread, done on the loop thread with 0; the item keeps a
 * RUN_DEFAULT loop alive until done, and no longer. */
static void test_work_threads(void) {
    iomux_loop *loop = test_loop();
    item it;
    begin();
    item_init(&it, NULL);
    item_submit(loop, &it);
    CHECK_EQ(iomux_loop_alive(loop), 1);
    alarm(10);
    CHECK_EQ(iomux_run(loop, IOMUX_RUN_DEFAULT), 0);
    alarm(0);
    CHECK_EQ(it.dones, 1);
    CHECK_EQ(it.status, 0);
    CHECK_EQ(atomic_load(&it.works), 1);
    CHECK(!pthread_equal(it.worker, g_loop_thread));
    CHECK(pthread_equal(it.done_thread, g_loop_thread));
    CHECK_EQ(it.cancel_in_done, -EBUSY); /* done has begun: finished */
    CHECK_EQ(it.alive_in_done, 0);       /* it stopped counting before done */
    CHECK_EQ(iomux_work_cancel(&it.w), -EBUSY);
    test_loop_free(loop);
}

#define NMANY 1000

static item g_many[NMANY];

static void test_work_many(void) {
    iomux_loop *loop = test_loop();
    int i;
    begin();
    for (i = 0; i < NMANY; i++) {
        item_init(&g_many[i], NULL);
        item_submit(loop, &g_many[i]);
    }
    run_until_calls(loop, &g_dones, NMANY, WAIT_MS);
    spin(loop, 3);
    CHECK_EQ(g_dones, NMANY);
    for (i = 0; i < NMANY; i++) {
        CHECK_EQ(g_many[i].dones, 1);
        CHECK_EQ(g_many[i].status, 0);
        CHECK_EQ(atomic_load(&g_many[i].works), 1);
        CHECK(!pthread_equal(g_many[i].worker, g_loop_thread));
    }
    CHECK_EQ(iomux_loop_alive(loop), 0);
    test_loop_free(loop);
}

/* ---- submissions fed from many threads ------------------------------------------------- */

#define NPRODUCERS 4
#define NPER 2500
#define NFED (NPRODUCERS * NPER)

static item g_fed[NFED];

typedef struct producer {
    iomux_loop *loop;
    pthread_t th;
    int id, errors;
} producer;

/* Only the loop thread may submit: each request is posted to it. */
static void submit_post(iomux_loop *loop, void *arg) {
    item_submit(loop, arg);
}

static void *producer_main(void *arg) {
    producer *p = arg;
    int i;
    for (i = 0; i < NPER; i++)
        if (iomux_post(p->loop, submit_post, &g_fed[p->id * NPER + i]) != 0) p->errors++;
    return NULL;
}

static void test_work_from_threads(void) {
    iomux_loop *loop = test_loop();
    producer p[NPRODUCERS];
    int i;
    begin();
    for (i = 0; i < NFED; i++) item_init(&g_fed[i], NULL);
    for (i = 0; i < NPRODUCERS; i++) {
        p[i].loop = loop;
        p[i].id = i;
        p[i].errors = 0;
        CHECK(pthread_create(&p[i].th, NULL, producer_main, &p[i]) == 0);
    }
    run_until_calls(loop, &g_dones, NFED, 3 * WAIT_MS / 2);
    for (i = 0; i < NPRODUCERS; i++) {
        CHECK(pthread_join(p[i].th, NULL) == 0);
        CHECK_EQ(p[i].errors, 0);
    }
    spin(loop, 3);
    CHECK_EQ(g_dones, NFED);
    for (i = 0; i < NFED; i++) {
        CHECK_EQ(g_fed[i].dones, 1);
        CHECK_EQ(g_fed[i].status, 0);
        CHECK_EQ(atomic_load(&g_fed[i].works), 1);
    }
    CHECK_EQ(iomux_loop_alive(loop), 0);
    test_loop_free(loop);
}

/* ---- cancel ---------------------------------------------------------------------------- */

/* One thread, held by a blocker: B waits in the queue behind it. */
static void test_cancel_before_start(void) {
    iomux_loop *loop = threads_loop(1);
    gate g;
    item a, b;
    begin();
    gate_init(&g);
    item_init(&a, &g);
    item_init(&b, NULL);
    item_submit(loop, &a);
    gate_wait(&g, 1);
    item_submit(loop, &b);
    CHECK_EQ(iomux_work_cancel(&b.w), 0);
    CHECK_EQ(b.dones, 0); /* never inside the cancel call */
    CHECK_EQ(iomux_work_cancel(&b.w), -EBUSY);
    CHECK_EQ(iomux_work_submit(loop, &b.w, item_work, item_done), -EINVAL); /* still in flight */
    run_until_calls(loop, &b.dones, 1, WAIT_MS);
    CHECK_EQ(b.status, -ECANCELED);
    CHECK(pthread_equal(b.done_thread, g_loop_thread));
    CHECK_EQ(b.cancel_in_done, -EBUSY);
    CHECK_EQ(a.dones, 0);
    CHECK_EQ(iomux_loop_alive(loop), 1); /* a is still out */
    gate_open(&g);
    run_until_calls(loop, &a.dones, 1, WAIT_MS);
    CHECK_EQ(a.status, 0);
    sleep_ms(20); /* the lone worker is idle now: B would have run by now */
    spin(loop, 3);
    CHECK_EQ(atomic_load(&b.works), 0);
    CHECK_EQ(b.dones, 1);
    CHECK_EQ(g_dones, 2);
    CHECK_EQ(iomux_loop_alive(loop), 0);
    test_loop_free(loop);
    gate_destroy(&g);
}

static void test_cancel_running(void) {
    iomux_loop *loop = threads_loop(2);
    gate g;
    item a;
    begin();
    gate_init(&g);
    item_init(&a, &g);
    item_submit(loop, &a);
    gate_wait(&g, 1);
    CHECK_EQ(iomux_work_cancel(&a.w), -EBUSY);
    gate_open(&g);
    /* finished, its done not run yet: still -EBUSY, and done still gets 0 */
    wait_works(&a);
    CHECK_EQ(iomux_work_cancel(&a.w), -EBUSY);
    run_until_calls(loop, &a.dones, 1, WAIT_MS);
    CHECK_EQ(a.status, 0);
    CHECK_EQ(atomic_load(&a.works), 1);
    test_loop_free(loop);
    gate_destroy(&g);
}

/* Cancels race the workers for the items: each cancel that wins (0) means
 * work never ran and done got -ECANCELED; each that loses (-EBUSY) means
 * work ran and done got 0. Either way, done exactly once. */
#define NSTORM 2000

static item g_storm[NSTORM];

static void test_cancel_storm(void) {
    iomux_loop *loop = test_loop();
    int rc[NSTORM], i, won = 0;
    begin();
    for (i = 0; i < NSTORM; i++) {
        item_init(&g_storm[i], NULL);
        item_submit(loop, &g_storm[i]);
    }
    /* from the back: the workers eat the queue from the front, so the
     * two meet somewhere in the middle */
    for (i = NSTORM - 1; i >= 0; i--) {
        rc[i] = iomux_work_cancel(&g_storm[i].w);
        CHECK(rc[i] == 0 || rc[i] == -EBUSY);
        won += rc[i] == 0;
    }
    run_until_calls(loop, &g_dones, NSTORM, WAIT_MS);
    spin(loop, 3);
    CHECK_EQ(g_dones, NSTORM);
    for (i = 0; i < NSTORM; i++) {
        CHECK_EQ(g_storm[i].dones, 1);
        CHECK_EQ(g_storm[i].status, rc[i] == 0 ? -ECANCELED : 0);
        CHECK_EQ(atomic_load(&g_storm[i].works), rc[i] == 0 ? 0 : 1);
    }
    fprintf(stderr, "   %d of %d cancelled before they started\n", won, NSTORM);
    CHECK_EQ(iomux_loop_alive(loop), 0);
    test_loop_free(loop);
}

/* A done that is already on the loop's pending queue must not be "found"
 * by a cancel: the cancel comes from a callback in the same phase. */
typedef struct race {
    item it;
    int cancel_rc;
} race;

static void cancel_post(iomux_loop *loop, void *arg) {
    race *r = arg;
    (void)loop;
    r->cancel_rc = iomux_work_cancel(&r->it.w);
}

static void test_cancel_finished(void) {
    iomux_loop *loop = test_loop();
    iomux_work never;
    item it;
    race r;
    begin();
    memset(&never, 0, sizeof(never));
    CHECK_EQ(iomux_work_cancel(&never), -EINVAL);
    CHECK_EQ(iomux_work_cancel(NULL), -EINVAL);
    item_init(&it, NULL);
    item_submit(loop, &it);
    run_until_calls(loop, &it.dones, 1, WAIT_MS);
    CHECK_EQ(iomux_work_cancel(&it.w), -EBUSY);
    /* back from the pool but done not yet run */
    item_init(&r.it, NULL);
    r.cancel_rc = 1;
    item_submit(loop, &r.it);
    wait_works(&r.it);
    CHECK_OK(iomux_post(loop, cancel_post, &r));
    run_until_calls(loop, &r.it.dones, 1, WAIT_MS);
    spin(loop, 2);
    CHECK_EQ(r.cancel_rc, -EBUSY);
    CHECK_EQ(r.it.status, 0);
    CHECK_EQ(r.it.dones, 1);
    test_loop_free(loop);
}

/* ---- done submits again ------------------------------------------------------------------ */

static void test_resubmit_from_done(void) {
    iomux_loop *loop = test_loop();
    item it;
    begin();
    item_init(&it, NULL);
    it.resubmits = 4;
    item_submit(loop, &it);
    alarm(10);
    CHECK_EQ(iomux_run(loop, IOMUX_RUN_DEFAULT), 0);
    alarm(0);
    CHECK_EQ(it.dones, 5);
    CHECK_EQ(atomic_load(&it.works), 5);
    CHECK_EQ(it.status, 0);
    CHECK_EQ(it.cancel_in_done, -EBUSY);
    test_loop_free(loop);
}

/* ---- argument errors ------------------------------------------------------------------------ */

static void test_submit_invalid(void) {
    iomux_loop *loop = test_loop();
    item it;
    begin();
    item_init(&it, NULL);
    CHECK_EQ(iomux_work_submit(NULL, &it.w, item_work, item_done), -EINVAL);
    CHECK_EQ(iomux_work_submit(loop, NULL, item_work, item_done), -EINVAL);
    CHECK_EQ(iomux_work_submit(loop, &it.w, NULL, item_done), -EINVAL);
    CHECK_EQ(iomux_work_submit(loop, &it.w, item_work, NULL), -EINVAL);
    CHECK_EQ(iomux_loop_alive(loop), 0);
    item_submit(loop, &it);
    CHECK_EQ(iomux_work_submit(loop, &it.w, item_work, item_done), -EINVAL);
    run_until_calls(loop, &it.dones, 1, WAIT_MS);
    spin(loop, 2);
    CHECK_EQ(it.dones, 1);
    CHECK_EQ(atomic_load(&it.works), 1);
    test_loop_free(loop);
}

/* ---- loop_free --------------------------------------------------------------------------- */

static void test_loop_free_busy(void) {
    iomux_loop *loop = test_loop();
    gate g;
    item it;
    begin();
    gate_init(&g);
    item_init(&it, &g);
    item_submit(loop, &it);
    CHECK_EQ(iomux_loop_free(loop), -EBUSY); /* queued or running */
    gate_wait(&g, 1);
    CHECK_EQ(iomux_loop_free(loop), -EBUSY); /* running */
    gate_open(&g);
    wait_works(&it);
    CHECK_EQ(iomux_loop_free(loop), -EBUSY); /* on its way back */
    run_until_calls(loop, &it.dones, 1, WAIT_MS);
    test_loop_free(loop);
    gate_destroy(&g);
}

/* ---- pool size ------------------------------------------------------------------------------ */

/* A loop that never submits starts no thread. Run first: no thread of an
 * earlier test may still be on its way out. */
static void test_no_thread_unless_used(void) {
    int before = task_count(), after;
    iomux_loop *loop;
    CHECK(before > 0);
    loop = test_loop();
    CHECK_EQ(iomux_run(loop, IOMUX_RUN_NOWAIT), 0);
    after = task_count();
    test_loop_free(loop);
    CHECK_EQ(after, before);
}

/* Submits expect + 1 items that block at a gate: exactly `expect` of them
 * must start (all on distinct threads) and the last one must not, until
 * the gate opens. */
static void check_pool_size(iomux_loop *loop, int expect) {
    static item items[MAX_IDS];
    gate g;
    int i;
    CHECK(expect + 1 <= MAX_IDS);
    begin();
    gate_init(&g);
    for (i = 0; i <= expect; i++) {
        item_init(&items[i], &g);
        item_submit(loop, &items[i]);
    }
    gate_wait(&g, expect);
    sleep_ms(100); /* a spare thread would take the last item at once */
    CHECK_EQ(gate_arrived(&g), expect);
    gate_open(&g);
    run_until_calls(loop, &g_dones, expect + 1, WAIT_MS);
    CHECK_EQ(gate_threads(&g), expect);
    test_loop_free(loop);
    gate_destroy(&g);
}

static void check_env_size(const char *env, int expect) {
    fprintf(stderr, "   IOMUX_THREADS=%s -> %d\n", env ? env : "(unset)", expect);
    if (env) CHECK_SYS(setenv("IOMUX_THREADS", env, 1));
    else CHECK_SYS(unsetenv("IOMUX_THREADS"));
    check_pool_size(threads_loop(0), expect);
}

static void test_pool_size(void) {
    const char *saved = getenv("IOMUX_THREADS");
    char *copy = saved ? strdup(saved) : NULL;
    check_pool_size(threads_loop(3), 3);
    check_env_size(NULL, 4);
    check_env_size("2", 2);
    check_env_size("1", 1);
    check_env_size("0", 4);
    check_env_size("-3", 4);
    check_env_size("5x", 4);
    check_env_size("", 4);
    check_env_size("99999999999999999999", 256);
    CHECK_SYS(setenv("IOMUX_THREADS", "2", 1));
    check_pool_size(threads_loop(3), 3); /* cfg.threads wins */
    if (copy) CHECK_SYS(setenv("IOMUX_THREADS", copy, 1));
    else CHECK_SYS(unsetenv("IOMUX_THREADS"));
    free(copy);
}

/* ---- allocator failures --------------------------------------------------------------------- */

typedef struct flaky {
    atomic_int fail_malloc;   /* every malloc fails */
    atomic_int fail_foreign;  /* realloc fails off the loop thread */
    atomic_int failures;
    pthread_t loop_thread;
} flaky;

static void *flaky_malloc(void *ud, size_t size) {
    flaky *f = ud;
    if (atomic_load(&f->fail_malloc)) {
        atomic_fetch_add(&f->failures, 1);
        return NULL;
    }
    return malloc(size);
}

static void *flaky_realloc(void *ud, void *ptr, size_t size) {
    flaky *f = ud;
    if (atomic_load(&f->fail_foreign) && !pthread_equal(pthread_self(), f->loop_thread)) {
        atomic_fetch_add(&f->failures, 1);
        return NULL;
    }
    return realloc(ptr, size);
}

static void flaky_free(void *ud, void *ptr) {
    (void)ud;
    free(ptr);
}

static iomux_loop *flaky_loop(flaky *f, iomux_allocator *a) {
    iomux_config cfg;
    iomux_loop *loop = NULL;
    memset(f, 0, sizeof(*f));
    f->loop_thread = pthread_self();
    *a = (iomux_allocator){flaky_malloc, flaky_realloc, flaky_free, f};
    iomux_config_init(&cfg);
    cfg.allocator = a;
    CHECK_OK(iomux_loop_new(&loop, &cfg));
    return loop;
}

/* The pool cannot be allocated: -ENOMEM, nothing counted, and the next
 * submit starts it. */
static void test_pool_start_enomem(void) {
    iomux_allocator a;
    flaky f;
    iomux_loop *loop = flaky_loop(&f, &a);
    item it;
    int before = task_count();
    begin();
    item_init(&it, NULL);
    atomic_store(&f.fail_malloc, 1);
    CHECK_EQ(iomux_work_submit(loop, &it.w, item_work, item_done), -ENOMEM);
    atomic_store(&f.fail_malloc, 0);
    CHECK(atomic_load(&f.failures) > 0);
    CHECK(task_count() <= before); /* (an earlier test's thread may be leaving) */
    CHECK_EQ(iomux_loop_alive(loop), 0);
    CHECK_EQ(iomux_work_cancel(&it.w), -EINVAL); /* it was never submitted */
    item_submit(loop, &it);
    run_until_calls(loop, &it.dones, 1, WAIT_MS);
    CHECK_EQ(it.status, 0);
    test_loop_free(loop);
}

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__) && !defined(_WIN32)
/* The process's address space in bytes (VmSize), 0 if unknown. */
static unsigned long long vm_size(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long long kb = 0;
    if (!f) return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmSize: %llu kB", &kb) == 1) break;
    fclose(f);
    return kb * 1024;
}
#endif

/* pthread_create fails part-way (no address space left for more stacks):
 * submit returns its error, the threads that did start are joined, and a
 * later submit starts the pool. Not under sanitizers: they need address
 * space of their own at any time. */
static void test_pool_start_partial(void) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    fprintf(stderr, "   skipped under a sanitizer\n");
#elif defined(_WIN32)
    fprintf(stderr, "   skipped: Windows has no RLIMIT_AS to make thread creation fail\n");
#else
    iomux_loop *loop = threads_loop(64);
    struct rlimit old, lim;
    unsigned long long vm = vm_size();
    item it;
    int rc, before = task_count();
    begin();
    item_init(&it, NULL);
    CHECK(vm > 0);
    CHECK_SYS(getrlimit(RLIMIT_AS, &old));
    lim = old;
    lim.rlim_cur = (rlim_t)(vm + (100ull << 20)); /* room for a few stacks */
    CHECK_SYS(setrlimit(RLIMIT_AS, &lim));
    rc = iomux_work_submit(loop, &it.w, item_work, item_done);
    CHECK_SYS(setrlimit(RLIMIT_AS, &old));
    CHECK(rc == -EAGAIN || rc == -ENOMEM);
    CHECK(task_count() <= before); /* the ones that started are gone */
    CHECK_EQ(iomux_loop_alive(loop), 0);
    CHECK_EQ(iomux_work_cancel(&it.w), -EINVAL);
    item_submit(loop, &it);
    run_until_calls(loop, &it.dones, 1, WAIT_MS);
    CHECK_EQ(it.status, 0);
    test_loop_free(loop);
#endif
}

/* The worker's hand-back post cannot grow the post queue for a while: the
 * item must still come back, once. */
static void test_post_enomem_retry(void) {
    iomux_allocator a;
    flaky f;
    iomux_loop *loop = flaky_loop(&f, &a);
    item it;
    uint64_t end = test_ms() + WAIT_MS;
    begin();
    item_init(&it, NULL);
    atomic_store(&f.fail_foreign, 1);
    item_submit(loop, &it);
    while (atomic_load(&f.failures) < 5) { /* tried, and tried again */
        if (test_ms() > end) FAIL("the worker gave up its post: %d tries", atomic_load(&f.failures));
        CHECK_OK(iomux_run(loop, IOMUX_RUN_NOWAIT));
        sleep_ms(1);
    }
    CHECK_EQ(it.dones, 0);
    atomic_store(&f.fail_foreign, 0);
    run_until_calls(loop, &it.dones, 1, WAIT_MS);
    spin(loop, 3);
    CHECK_EQ(it.dones, 1);
    CHECK_EQ(it.status, 0);
    CHECK_EQ(atomic_load(&it.works), 1);
    test_loop_free(loop);
}

int main(void) {
    RUN(test_no_thread_unless_used); /* first: see there */
    RUN(test_work_threads);
    RUN(test_submit_invalid);
    RUN(test_work_many);
    RUN(test_work_from_threads);
    RUN(test_cancel_before_start);
    RUN(test_cancel_running);
    RUN(test_cancel_finished);
    RUN(test_cancel_storm);
    RUN(test_resubmit_from_done);
    RUN(test_loop_free_busy);
    RUN(test_pool_start_enomem);
    RUN(test_pool_start_partial);
    RUN(test_post_enomem_retry);
    RUN(test_pool_size);
    return 0;
}

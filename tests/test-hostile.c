/* Hostile clients and the drain under load, against iomux-httpd run as a
 * child process on 127.0.0.1 port 0 (README "Reliability").
 *
 *   test-hostile IOMUX-HTTPD IOMUX-LOAD SCENARIO
 *
 * Scenarios, each on one model (the suffix: select, poll, epoll, epoll-et,
 * uring, uring-poll):
 *  slowloris-M, slowbody-M  a normal load (iomux-load, closed loop, 4
 *      connections) alone, then again while slowhttptest opens 2,500
 *      connections that send their headers (-H) or their body (-B) slowly.
 *      The attackers must be closed by the deadlines (slowhttptest ends
 *      with "No open connections left" long before its time limit, the
 *      server's fd count goes back to its baseline), the normal load gets
 *      no error and its p99 stays bounded (the ratio to the baseline is
 *      printed: see P99_CEIL_US for why it is not asserted at 2x), and the
 *      server's RSS grows by less than RSS_PER_CONN_KIB per attacker.
 *  slowread-M  slow readers: clients that pipeline GET /plaintext and never
 *      read, at two counts; the server must stop reading them (their sends
 *      block), its RSS per slow reader stays under a bound set by the
 *      write watermarks, and --send-timeout-ms resets them all.
 *  slowfile-M  the same with GET /big.bin (4 then 16 slow readers): each
 *      queued file response may hold an open file, so this bounds the
 *      server's fds per slow reader (SLOWFILE_FDS), and a normal client
 *      must still be served while they hold on.
 *  rst-M  an RST storm: 10,000 connections, 1,000 at a time, of which
 *      1,000 end with a reset (SO_LINGER {1,0}) at a random point: before
 *      sending, mid-request, after the request, mid-response; the other
 *      9,000 make two requests each and must all succeed (full: 10 storms). Then the server's fd
 *      count is back to its baseline, it still answers, and it exits 0
 *      after SIGTERM with no sanitizer or leak report (in the ASan build,
 *      LeakSanitizer runs at that exit).
 *  drain-M  SIGTERM during load, three times: wrk (no non-2xx, no timeout,
 *      read/write errors at most one per connection), iomux-load (it
 *      completes; its first error is not a truncated response), and a
 *      client of ours that checks every byte of every response
 *      (/plaintext and a 1 MiB file): every connection ends at a response
 *      boundary, never inside one. Each time the server exits 0 within
 *      --drain-ms plus slack.
 * Quick sizes by default (make test); IOMUX_HOSTILE_FULL=1 for the full
 * ones (10 RST storms, 4,000 attackers, 400 slow readers, longer loads). IOMUX_HOSTILE_SEED=N fixes the RST storm's
 * random choices. Exit 77 when a tool (slowhttptest, wrk) or io_uring is
 * missing. Every wait is bounded; children are killed on every exit path. */
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "harness.h"
#include "app-server.h"

#define SLOWHTTPTEST "/usr/bin/slowhttptest"
#define WRK "/usr/bin/wrk"
#define BIG_SIZE (1u << 20)
#define DRAIN_MS 5000
#define DRAIN_SLACK_MS 3000
/* The attack: the normal load's p99 must stay below this. A 2x bound on
 * this machine (2 cores shared by several sessions, the server, the load
 * and slowhttptest competing for them) would fail on noise alone; a server
 * that the attack stalls (a blocking loop, a timer scan that runs wild)
 * shows up as hundreds of milliseconds, so the assertion is that, and the
 * ratio is printed for the report. */
#define P99_CEIL_US 200000.0
#define RSS_PER_CONN_KIB 16  /* per attacker: a struct, a parser, a partial request */
#define SLOWREAD_KIB 1024    /* per slow reader: watermarks + the responses to one read */
#define SLOWFILE_FDS 20      /* per slow reader: open files queued for it (the session answers
                               * at most IOMUX_HTTP_OUT_PAUSE_FILES = 16 per read), its socket */

static const char *g_httpd, *g_load;
static int g_full;
static unsigned char *g_big;
static const char get_plain[] = "GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n";
static const char get_big[] = "GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n";
static const char get_small_close[] = "GET /small.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
static const char get_small[] = "GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n";

typedef struct model {
    const char *name;
    const char *args[5];
    int uring;
} model;

static const model models[] = {
    {"select", {"--model", "select"}, 0},     {"poll", {"--model", "poll"}, 0},
    {"epoll", {"--model", "epoll"}, 0},       {"epoll-et", {"--model", "epoll-et"}, 0},
    {"uring", {"--model", "uring"}, 1},       {"uring-poll", {"--model", "uring-poll"}, 1},
    {"epoll-proactor", {"--model", "epoll", "--api", "proactor"}, 0},
};

static void sleep_ms(unsigned ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* ---- children: the server is g_server (app-server.h); the tools are kids --------------- */

static server *g_kids[4];

static void kill_kids(void) {
    for (size_t i = 0; i < sizeof(g_kids) / sizeof(g_kids[0]); i++) {
        server *k = g_kids[i];
        if (!k || k->pid <= 0) continue;
        kill(-k->pid, SIGKILL);
        kill(k->pid, SIGKILL);
        waitpid(k->pid, NULL, 0);
        fprintf(stderr, "---- %s output ----\n%s\n", i == 0 ? "tool" : "other tool", k->text ? k->text : "");
        k->pid = 0;
    }
}

/* Starts a tool (argv NULL-terminated) with its output kept; killed at exit. */
static void spawn_kid(server *k, char *const argv[]) {
    size_t i;
    spawn(k, argv);
    for (i = 0; i < sizeof(g_kids) / sizeof(g_kids[0]) && g_kids[i] && g_kids[i]->pid > 0; i++) {
    }
    CHECK(i < sizeof(g_kids) / sizeof(g_kids[0]));
    g_kids[i] = k;
}

/* 1 while the kid runs; once it ended, its status in *status. */
static int kid_running(server *k, int *status) {
    pid_t r;
    if (k->pid <= 0) return 0;
    pump(k, 0);
    r = waitpid(k->pid, status, WNOHANG);
    CHECK_SYS(r);
    if (r == 0) return 1;
    k->pid = 0;
    while (pump(k, 50)) {
    }
    return 0;
}

/* Waits up to ms for the kid to end; its exit status. */
static int kid_wait(server *k, int ms) {
    int status = 0;
    CHECK(k->pid > 0); /* not reaped yet: its status is still to come */
    uint64_t end = test_ms() + (uint64_t)ms;
    while (kid_running(k, &status)) {
        if (test_ms() > end) FAIL("%s did not end within %d ms:\n%s", "a tool", ms, k->text ? k->text : "");
        pump(k, 20);
    }
    return status;
}

static void kid_free(server *k) {
    for (size_t i = 0; i < sizeof(g_kids) / sizeof(g_kids[0]); i++)
        if (g_kids[i] == k) g_kids[i] = NULL;
    free(k->text);
    k->text = NULL;
}

/* ---- the root directory ------------------------------------------------------------- */

/* g_dir/root: big.bin (1 MiB pseudo-random), small.txt. */
static void make_root(void) {
    make_scratch("/tmp/iomux-hostile-XXXXXX");
    g_big = test_random_bytes(BIG_SIZE, 0x2545f4914f6cdd1du);
    put_file("big.bin", g_big, BIG_SIZE);
    put_file("small.txt", "a small file\n", 13);
}

/* ---- the server ----------------------------------------------------------------------- */

/* Starts iomux-httpd on model m with extra options (NULL-terminated). */
static void start_httpd(server *s, const model *m, const char *const *extra) {
    char *argv[48];
    int k = 0, i;
    argv[k++] = (char *)g_httpd;
    argv[k++] = "--port";
    argv[k++] = "0";
    argv[k++] = "--root";
    argv[k++] = g_root;
    for (i = 0; m->args[i]; i++) argv[k++] = (char *)m->args[i];
    for (i = 0; extra[i] && k < 47; i++) argv[k++] = (char *)extra[i];
    argv[k] = NULL;
    spawn(s, argv);
    g_server = s;
    wait_ready(s);
    fprintf(stderr, "   %s", strstr(s->text, "listening"));
}

/* SIGTERM; the server must exit 0 within bound_ms and print nothing bad.
 * Returns how long it took. */
static uint64_t stop_httpd(server *s, int bound_ms) {
    uint64_t t0 = test_ms(), took;
    int status;
    CHECK_SYS(kill(s->pid, SIGTERM));
    status = wait_exit(s, bound_ms);
    took = test_ms() - t0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        FAIL("the server's exit status after SIGTERM is 0x%x:\n%s", status, s->text ? s->text : "");
    check_output(s, 0);
    g_server = NULL;
    free(s->text);
    s->text = NULL;
    return took;
}

/* Pss of pid in KiB (/proc/PID/smaps_rollup), or -1. */
static long proc_pss_kib(pid_t pid) {
    char path[64], line[256];
    long kib = -1;
    FILE *f;
    snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
    if (!(f = fopen(path, "r"))) return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "Pss:", 4) == 0) {
            kib = atol(line + 4);
            break;
        }
    fclose(f);
    return kib;
}

/* Waits up to ms for the server's fd count to fall to at most want;
 * returns the ms it took, or -1 (the count is in *last). */
static long fds_settle(server *s, long want, int ms, long *last) {
    uint64_t t0 = test_ms();
    for (;;) {
        *last = proc_fd_count(s->pid);
        if (*last >= 0 && *last <= want) return (long)(test_ms() - t0);
        if (test_ms() - t0 > (uint64_t)ms) return -1;
        pump(s, 20);
    }
}

/* The sanitizers' shadow memory and quarantine make RSS say little. */
static int sanitized(void) {
#if defined(__SANITIZE_ADDRESS__)
    return 1;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return 1;
#endif
#endif
    return 0;
}

/* ---- a raw client connection ------------------------------------------------------- */

static void send_all(int fd, const void *p, size_t n) {
    const char *q = p;
    while (n) {
        ssize_t w = send(fd, q, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) FAIL("send: %s", strerror(errno));
        q += w;
        n -= (size_t)w;
    }
}

/* Sends GET path on fd and reads one whole response (blocking, 5 s): its
 * status; the body must be want_len bytes. */
static int get_once(int port, const char *path, size_t want_len) {
    char req[128], buf[4096];
    size_t len = 0;
    uint64_t end = test_ms() + 5000;
    int fd = connect_to(port, 0), status = 0;
    if (fd < 0) FAIL("connect: %s", strerror(-fd));
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", path);
    send_all(fd, req, strlen(req));
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t n;
        if (test_ms() > end) FAIL("GET %s: no whole response within 5 s", path);
        if (poll(&p, 1, 100) <= 0) continue;
        n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (n <= 0) break;
        len += (size_t)n;
        if (len == sizeof(buf) - 1) break;
    }
    buf[len] = '\0';
    close(fd);
    if (len > 12) status = atoi(buf + 9);
    {
        const char *body = strstr(buf, "\r\n\r\n");
        if (status == 200 && (!body || len - (size_t)(body + 4 - buf) != want_len))
            FAIL("GET %s: a body of the wrong length:\n%s", path, buf);
    }
    return status;
}

/* ---- iomux-load's JSON -------------------------------------------------------------- */

typedef struct load_res {
    double requests, rps, errors, io_errors, connect_errors, status_errors, p50, p99, max;
} load_res;

static double json_num(const char *text, const char *key) {
    char k[64];
    const char *p;
    snprintf(k, sizeof(k), "\"%s\":", key);
    if (!text || !(p = strstr(text, k))) FAIL("iomux-load printed no %s:\n%s", key, text ? text : "");
    return strtod(p + strlen(k), NULL);
}

static void load_parse(const server *k, load_res *r) {
    const char *j = k->text ? strstr(k->text, "{\"proto\"") : NULL;
    if (!j) FAIL("iomux-load printed no JSON:\n%s", k->text ? k->text : "");
    r->requests = json_num(j, "requests");
    r->rps = json_num(j, "rps");
    r->errors = json_num(j, "errors");
    r->io_errors = json_num(j, "io_errors");
    r->connect_errors = json_num(j, "connect_errors");
    r->status_errors = json_num(j, "status_errors");
    r->p50 = json_num(j, "p50");
    r->p99 = json_num(j, "p99");
    r->max = json_num(j, "max");
}

/* Starts iomux-load: closed loop, conns connections, GET path. */
static void load_start(server *k, int port, int conns, double warmup, double duration, const char *path) {
    static char sport[16], sconns[16], swarm[32], sdur[32];
    char *argv[] = {(char *)g_load, "--port", sport, "--proto", "http", "--conns", sconns, "--warmup", swarm,
                    "--duration", sdur, "--path", (char *)path, "--json", NULL};
    snprintf(sport, sizeof(sport), "%d", port);
    snprintf(sconns, sizeof(sconns), "%d", conns);
    snprintf(swarm, sizeof(swarm), "%.2f", warmup);
    snprintf(sdur, sizeof(sdur), "%.2f", duration);
    spawn_kid(k, argv);
}

/* iomux-load ended with status: it must have completed its run. */
static void load_check(server *k, int status, load_res *r) {
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        FAIL("iomux-load: status 0x%x:\n%s", status, k->text ? k->text : "");
    load_parse(k, r);
}

static void load_finish(server *k, int ms, load_res *r) {
    load_check(k, kid_wait(k, ms), r);
}

/* ---- 1. slowloris and slow body ------------------------------------------------------- */

typedef struct sample {
    long fds0, rss0, fds_peak, rss_peak, pss_peak;
    uint64_t t_peak;    /* ms since the attack began */
} sample;

static void sample_now(server *s, sample *m, uint64_t t0) {
    long f = proc_fd_count(s->pid), r = proc_rss_kib(s->pid);
    if (f > m->fds_peak) {
        m->fds_peak = f;
        m->t_peak = test_ms() - t0;
    }
    if (r > m->rss_peak) {
        m->rss_peak = r;
        m->pss_peak = proc_pss_kib(s->pid);
    }
}

/* The largest value in column col of slowhttptest's CSV (1: closed, 3:
 * connected). */
static long csv_max(const char *path, int col) {
    char line[256];
    long best = -1;
    FILE *f = fopen(path, "r");
    if (!f) FAIL("slowhttptest wrote no %s", path);
    while (fgets(line, sizeof(line), f)) {
        char *p = line;
        long v;
        if (line[0] < '0' || line[0] > '9') continue;
        for (int c = 0; c < col && p; c++) p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL;
        if (p && (v = atol(p)) > best) best = v;
    }
    fclose(f);
    return best;
}

typedef struct attack {
    const char *mode;  /* -H or -B */
    int conns, rate, interval_s, limit_s;
    int deadline_ms;   /* the server deadline that should close them */
} attack;

static void start_slowhttptest(server *k, const attack *a, int port, char *prefix, size_t cap) {
    static char sc[16], sr[16], si[16], sl[16], url[96];
    char *argv[] = {SLOWHTTPTEST, (char *)a->mode, "-c", sc, "-r", sr, "-i", si, "-l", sl, "-s", "65536",
                    "-u", url, "-g", "-o", prefix, "-v", "1", NULL};
    snprintf(prefix, cap, "%s/slow%s", g_dir, a->mode);
    snprintf(sc, sizeof(sc), "%d", a->conns);
    snprintf(sr, sizeof(sr), "%d", a->rate);
    snprintf(si, sizeof(si), "%d", a->interval_s);
    snprintf(sl, sizeof(sl), "%d", a->limit_s);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/%s", port, a->mode[1] == 'B' ? "upload" : "plaintext");
    spawn_kid(k, argv);
}

static void run_attack(const model *m, const char *mode) {
    /* the deadlines outlast slowhttptest's ramp (1 to 5 s for 2,500 on a
     * busy machine), so they all hold a connection at once; the body
     * attackers wait 8 s between bytes, past the idle deadline */
    const int conns = g_full ? 4000 : 2500, deadline_ms = 6000;
    const double base_s = g_full ? 10 : 3, load_s = g_full ? 15 : 9;
    attack a = {mode, conns, 2500, mode[1] == 'H' ? 1 : 8, 40, deadline_ms};
    const char *extra[] = {"--header-timeout-ms", "6000", "--idle-timeout-ms", "6000", "--drain-ms", "5000", NULL};
    char prefix[128], csv[160];
    server s, load, slow;
    load_res base, hit;
    sample smp = {0};
    long fds_after, settle_ms, closed_ms = -1, held;
    int st_load = -1, st_slow = -1;
    uint64_t t0;
    if (access(SLOWHTTPTEST, X_OK) != 0) {
        fprintf(stderr, "skip: no %s\n", SLOWHTTPTEST);
        exit(TEST_SKIP);
    }
    start_httpd(&s, m, extra);
    /* the baseline: the normal load alone */
    load_start(&load, s.port, 4, 1, base_s, "/plaintext");
    load_finish(&load, (int)(base_s * 1000) + 30000, &base);
    kid_free(&load);
    if (base.errors != 0 || base.requests <= 0) FAIL("the baseline load: %.0f errors, %.0f requests", base.errors, base.requests);
    if (fds_settle(&s, 64, 3000, &smp.fds0) < 0) FAIL("the server still holds %ld fds after the baseline", smp.fds0);
    smp.rss0 = proc_rss_kib(s.pid);
    /* the same load, with the attack starting after its warm-up */
    load_start(&load, s.port, 4, 1, load_s, "/plaintext");
    sleep_ms(1000);
    t0 = test_ms();
    start_slowhttptest(&slow, &a, s.port, prefix, sizeof(prefix));
    while (kid_running(&load, &st_load) | kid_running(&slow, &st_slow)) { /* both pumped */
        long f;
        sample_now(&s, &smp, t0);
        f = smp.fds_peak > conns / 2 ? proc_fd_count(s.pid) : -1;
        if (closed_ms < 0 && f >= 0 && f <= smp.fds0 + 8) closed_ms = (long)(test_ms() - t0);
        pump(&s, 0);
        if (test_ms() - t0 > (uint64_t)(load_s + a.limit_s + 30) * 1000) FAIL("the attack did not end");
        sleep_ms(50);
    }
    if (closed_ms < 0) { /* slowhttptest may end before the server's lingering closes do */
        long f;
        if (fds_settle(&s, smp.fds0 + 8, 8000, &f) >= 0) closed_ms = (long)(test_ms() - t0);
    }
    held = csv_max((snprintf(csv, sizeof(csv), "%s.csv", prefix), csv), 3);
    load_check(&load, st_load, &hit);
    settle_ms = fds_settle(&s, smp.fds0, 5000, &fds_after);
    fprintf(stderr,
            "   baseline: %.0f req/s, p50 %.0f us, p99 %.0f us, errors %.0f\n"
            "   attack %s x %d (slowhttptest -r %d -i %d): %.0f req/s, p50 %.0f us, p99 %.0f us (%.2fx the "
            "baseline), max %.0f us, errors %.0f\n"
            "   attackers connected at once (slowhttptest): %ld; server fds %ld -> peak %ld at %llu ms -> back to "
            "baseline at %ld ms after the attack began (%s deadline %d ms); %ld fds after\n"
            "   server RSS %ld -> peak %ld KiB (Pss %ld KiB): %+.1f KiB per attacker\n",
            base.rps, base.p50, base.p99, base.errors, mode, conns, a.rate, a.interval_s, hit.rps, hit.p50, hit.p99,
            hit.p99 / base.p99, hit.max, hit.errors, held, smp.fds0, smp.fds_peak,
            (unsigned long long)smp.t_peak, closed_ms, mode[1] == 'H' ? "header" : "idle", a.deadline_ms, fds_after, smp.rss0, smp.rss_peak,
            smp.pss_peak, (double)(smp.rss_peak - smp.rss0) / conns);
    if (!slow.text || !strstr(slow.text, "No open connections left"))
        FAIL("slowhttptest did not see every connection closed:\n%s", slow.text ? slow.text : "");
    /* 2,000+ at once, unless slowhttptest's ramp outlasted the deadline (a
     * loaded machine): then the first ones are rightly gone before the
     * last ones come, which says nothing against the server */
    if (held < 2000 || smp.fds_peak < smp.fds0 + 2000) {
        if (smp.t_peak < (uint64_t)deadline_ms)
            FAIL("the attack held only %ld connections at once (server peak %ld fds), want 2,000+", held, smp.fds_peak);
        fprintf(stderr, "   warning: slowhttptest took %llu ms to connect (deadline %d ms): only %ld at once\n",
                (unsigned long long)smp.t_peak, deadline_ms, held);
    }
    if (settle_ms < 0) FAIL("the server holds %ld fds after the attack, %ld before", fds_after, smp.fds0);
    /* the last one connected by the peak; its deadline ran from then (header)
     * or from its last byte (body: slowhttptest's ticks are global, so one
     * tick may fall inside a connection's first idle period); slack for a
     * loaded machine */
    if (closed_ms < 0 || closed_ms > (long)smp.t_peak + deadline_ms + (mode[1] == 'B' ? a.interval_s * 1000 : 0) + 4000)
        FAIL("the attackers were closed %ld ms after the attack began (all connected at %llu ms, deadline %d ms)",
             closed_ms, (unsigned long long)smp.t_peak, deadline_ms);
    if (hit.errors != 0) FAIL("the normal load got %.0f errors during the attack:\n%s", hit.errors, load.text);
    if (hit.requests < base.requests * 0.02 * load_s / base_s) FAIL("the normal load was starved: %.0f requests", hit.requests);
    if (hit.p99 > P99_CEIL_US) FAIL("the normal load's p99 is %.0f us during the attack (baseline %.0f us)", hit.p99, base.p99);
    if (!sanitized() && smp.rss_peak - smp.rss0 > (long)conns * RSS_PER_CONN_KIB)
        FAIL("the server's RSS grew by %ld KiB for %d attackers", smp.rss_peak - smp.rss0, conns);
    kid_free(&load);
    kid_free(&slow);
    if (get_once(s.port, "/small.txt", 13) != 200) FAIL("the server does not answer after the attack");
    stop_httpd(&s, DRAIN_MS + DRAIN_SLACK_MS);
}

/* ---- 2. slow readers ------------------------------------------------------------------ */

/* TCP state of fd (TCP_ESTABLISHED, TCP_CLOSE, ...). */
static int tcp_state(int fd) {
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0) return -1;
    return ti.tcpi_state;
}

/* n clients that pipeline req without reading, each with a small receive
 * buffer, until every send has blocked for 500 ms (at most 20 s); one
 * the server resets meanwhile (its send timeout) counts as blocked.
 * Returns the bytes they sent in all. */
static uint64_t slow_readers(int port, int *fds, int n, const char *req) {
    const size_t rl = strlen(req), copies = 512;
    char *reqs = malloc(rl * copies), *gone = calloc((size_t)n, 1);
    uint64_t sent = 0, quiet_since = test_ms(), end = test_ms() + 20000;
    int rcvbuf = 4096, i;
    CHECK(reqs && gone);
    for (size_t c = 0; c < copies; c++) memcpy(reqs + c * rl, req, rl);
    for (i = 0; i < n; i++) {
        /* a small window: the responses back up into the server at once */
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        CHECK_SYS(fd);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        CHECK_SYS(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)));
        CHECK_SYS(connect(fd, (struct sockaddr *)&a, sizeof(a)));
        fds[i] = fd;
    }
    while (test_ms() - quiet_since < 500) {
        if (test_ms() > end) FAIL("slow readers: the server kept reading for 20 s (%llu bytes)", (unsigned long long)sent);
        for (i = 0; i < n; i++) {
            ssize_t w;
            if (gone[i]) continue;
            w = send(fds[i], reqs + (sent % rl), rl * copies - (sent % rl), MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0) {
                sent += (uint64_t)w;
                quiet_since = test_ms();
            } else if (w < 0 && (errno == ECONNRESET || errno == EPIPE)) {
                gone[i] = 1;
            } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                FAIL("slow reader %d: send: %s", i, strerror(errno));
            }
        }
        sleep_ms(5);
    }
    free(reqs);
    free(gone);
    return sent;
}

/* How long until every fd is reset (TCP_CLOSE), at most ms; -1 if not. */
static long all_reset(int *fds, int n, int ms) {
    uint64_t t0 = test_ms();
    for (;;) {
        int open = 0;
        for (int i = 0; i < n; i++)
            if (tcp_state(fds[i]) != TCP_CLOSE) open++;
        if (!open) return (long)(test_ms() - t0);
        if (test_ms() - t0 > (uint64_t)ms) {
            fprintf(stderr, "   %d of %d slow readers still open after %d ms\n", open, n, ms);
            return -1;
        }
        sleep_ms(50);
    }
}

/* A normal client while the slow readers hold on: answered within 2 s?
 * (Not get_once: that fails the test at once; here the figures come first.) */
static int served_meanwhile(int port) {
    char buf[512];
    size_t len = 0;
    uint64_t end = test_ms() + 2000;
    int fd = connect_to(port, 0); /* the kernel completes it, accepted or not */
    if (fd < 0) return 0;
    if (send(fd, get_plain, sizeof(get_plain) - 1, MSG_NOSIGNAL) > 0)
        while (test_ms() < end && len < 12) {
            struct pollfd p = {.fd = fd, .events = POLLIN};
            ssize_t n;
            if (poll(&p, 1, 100) <= 0) continue;
            if ((n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0)) <= 0) break;
            len += (size_t)n;
        }
    close(fd);
    return len >= 12 && memcmp(buf, "HTTP/1.1 200", 12) == 0;
}

/* files: GET /big.bin (each queued file response may hold an open file
 * and its own head segment) rather than GET /plaintext (memory only).
 * Two counts of slow readers, the second adding to the first, then one
 * wait for the send timeout to reset them all. */
static void run_slowread(const model *m, int files) {
    /* long enough that the normal client's 2 s try comes well before it */
    const int send_ms = 8000;
    const int counts[2] = {files ? 4 : (g_full ? 100 : 20), files ? 16 : (g_full ? 400 : 80)};
    const char *extra[] = {"--send-timeout-ms", "8000", "--idle-timeout-ms", "30000", "--header-timeout-ms", "30000",
                           "--drain-ms", "5000", NULL};
    const char *req = files ? get_big : get_plain;
    long rss0, fds0, per_kib = 0, per_fd = 0, reset_ms, settle, after;
    int served[2], *cl = calloc((size_t)counts[1], sizeof(int)), have = 0;
    uint64_t t_blocked = 0;
    server s;
    CHECK(cl);
    start_httpd(&s, m, extra);
    rss0 = proc_rss_kib(s.pid);
    fds0 = proc_fd_count(s.pid);
    for (int r = 0; r < 2; r++) {
        int n = counts[r];
        uint64_t sent, t0 = test_ms();
        long rss, fds;
        sent = slow_readers(s.port, cl + have, n - have, req);
        if (!t_blocked) t_blocked = test_ms();
        have = n;
        rss = proc_rss_kib(s.pid);
        fds = proc_fd_count(s.pid);
        served[r] = served_meanwhile(s.port);
        fprintf(stderr,
                "   %d slow readers (%s): %.1f MB more sent before every send blocked, in %llu ms; server RSS %ld -> "
                "%ld KiB (%+.1f KiB each), fds %ld -> %ld (%+.1f each); a normal client meanwhile: %s\n",
                n, files ? "/big.bin" : "/plaintext", (double)sent / 1e6, (unsigned long long)(test_ms() - t0), rss0,
                rss, (double)(rss - rss0) / n, fds0, fds, (double)(fds - fds0) / n,
                served[r] ? "served" : "NOT served within 2 s");
        if ((rss - rss0) / n > per_kib) per_kib = (rss - rss0) / n;
        if ((fds - fds0 - n) / n > per_fd) per_fd = (fds - fds0 - n) / n;
    }
    /* they never read: the send timeout must reset them all (once the
     * server has filled its socket's send buffer: up to tcp_wmem's 4 MiB
     * of responses each) */
    reset_ms = all_reset(cl, have, send_ms + (g_full ? 30000 : 10000));
    settle = fds_settle(&s, fds0, 3000, &after);
    fprintf(stderr, "   all reset %llu ms after the first ones' sends blocked (--send-timeout-ms %d); server fds back "
                    "to %ld\n",
            (unsigned long long)(test_ms() - t_blocked), send_ms, after);
    if (reset_ms < 0) FAIL("slow readers were not reset by the send timeout");
    if (settle < 0) FAIL("the server holds %ld fds after the slow readers, %ld before", after, fds0);
    for (int i = 0; i < have; i++) close(cl[i]);
    free(cl);
    if (!sanitized() && per_kib > SLOWREAD_KIB)
        FAIL("the server's RSS grows by %ld KiB per slow reader (bound %d)", per_kib, SLOWREAD_KIB);
    if (per_fd > SLOWFILE_FDS)
        FAIL("the server holds %ld extra fds per slow reader (bound %d): open files queued for them", per_fd,
             SLOWFILE_FDS);
    if (!served[0] || !served[1]) FAIL("a normal client was not served while the slow readers held on");
    if (get_once(s.port, "/small.txt", 13) != 200) FAIL("the server does not answer after the slow readers");
    stop_httpd(&s, DRAIN_MS + DRAIN_SLACK_MS);
}

/* ---- responses, read as a stream and checked byte for byte -------------------------- */

typedef struct reader {
    char head[4096];
    size_t hlen;
    int in_body, last_close;
    size_t body_left, body_off;
    const void *want;   /* the body the request in flight must get */
    size_t want_len;
    uint64_t responses, closes;
} reader;

static void reader_expect(reader *r, const void *want, size_t len) {
    r->want = want;
    r->want_len = len;
}

static void head_done(reader *r, const char *what) {
    const char *cl;
    r->head[r->hlen] = '\0';
    if (strncmp(r->head, "HTTP/1.1 200 ", 13) != 0) FAIL("%s: not a 200: '%.80s'", what, r->head);
    if (!(cl = strcasestr(r->head, "\r\nContent-Length:")) || strtoul(cl + 17, NULL, 10) != r->want_len)
        FAIL("%s: Content-Length is not %zu:\n%s", what, r->want_len, r->head);
    r->last_close = strcasestr(r->head, "\r\nConnection: close\r\n") != NULL;
    r->in_body = 1;
    r->body_left = r->want_len;
    r->body_off = 0;
    r->hlen = 0;
}

/* n bytes from the server; fails on anything but the expected response. */
static void reader_feed(reader *r, const char *p, size_t n, const char *what) {
    while (n) {
        if (!r->in_body) {
            size_t take = sizeof(r->head) - 1 - r->hlen, used;
            const char *e;
            if (take > n) take = n;
            memcpy(r->head + r->hlen, p, take);
            if (!(e = memmem(r->head, r->hlen + take, "\r\n\r\n", 4))) {
                r->hlen += take;
                if (r->hlen == sizeof(r->head) - 1) FAIL("%s: a response head over 4 KiB", what);
                return;
            }
            used = (size_t)(e + 4 - r->head) - r->hlen;
            r->hlen += used;
            p += used;
            n -= used;
            head_done(r, what);
        } else {
            size_t take = n < r->body_left ? n : r->body_left;
            if (memcmp(p, (const char *)r->want + r->body_off, take) != 0)
                FAIL("%s: response %llu: body differs near byte %zu", what, (unsigned long long)r->responses,
                     r->body_off);
            r->body_off += take;
            r->body_left -= take;
            p += take;
            n -= take;
        }
        if (r->in_body && r->body_left == 0) {
            r->in_body = 0;
            r->want = NULL;
            r->responses++;
            r->closes += (uint64_t)r->last_close;
        }
    }
}

/* Between responses: nothing of one has arrived. */
static int reader_idle(const reader *r) {
    return !r->in_body && r->hlen == 0;
}

/* ---- 3. the RST storm ------------------------------------------------------------------ */

enum { K_NORMAL, K_RST_BEFORE, K_RST_MIDREQ, K_RST_AFTERREQ, K_RST_MIDRESP, K_COUNT };
static const char *const kind_names[K_COUNT] = {"normal", "before sending", "mid-request", "after the request",
                                                "mid-response"};

typedef struct slot {
    int fd, kind, step;     /* step: normal: requests sent so far */
    int connected;
    const char *req;        /* being sent */
    size_t req_len, req_off;
    size_t cut;             /* mid-request: bytes sent; mid-response: bytes read before the reset */
    size_t got;             /* bytes received */
    reader rd;
} slot;

static uint64_t g_rng;

static uint64_t rnd(void) {
    return test_rand(&g_rng);
}

typedef struct storm {
    int ep, port, total, resets, conc;
    int started, active, done_normal, rst_done[K_COUNT];
    char *kinds;            /* the kind of each connection, shuffled */
    slot *slots;
} storm;

static void rst_close(int fd) {
    static const struct linger l = {1, 0};
    CHECK_SYS(setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)));
    close(fd);
}

static void slot_end(storm *st, slot *c, int reset) {
    epoll_ctl(st->ep, EPOLL_CTL_DEL, c->fd, NULL);
    if (reset) rst_close(c->fd);
    else close(c->fd);
    if (c->kind == K_NORMAL) st->done_normal++;
    else st->rst_done[c->kind]++;
    c->fd = -1;
    st->active--;
}

static void slot_watch(storm *st, slot *c, unsigned ev) {
    struct epoll_event e = {.events = ev, .data.ptr = c};
    CHECK_SYS(epoll_ctl(st->ep, EPOLL_CTL_MOD, c->fd, &e));
}

static void slot_request(storm *st, slot *c, const char *req, size_t len) {
    c->req = req;
    c->req_len = len;
    c->req_off = 0;
    slot_watch(st, c, EPOLLOUT);
}

static void slot_start(storm *st, slot *c) {
    struct epoll_event e = {.events = EPOLLOUT};
    int kind = st->kinds[st->started++];
    memset(c, 0, sizeof(*c));
    c->kind = kind;
    c->fd = connect_to(st->port, 1);
    if (c->fd < 0) FAIL("storm: connect: %s", strerror(-c->fd));
    e.data.ptr = c;
    CHECK_SYS(epoll_ctl(st->ep, EPOLL_CTL_ADD, c->fd, &e));
    st->active++;
    if (kind == K_RST_MIDREQ) c->cut = 1 + (size_t)(rnd() % (sizeof(get_big) - 2));
    if (kind == K_RST_MIDRESP) c->cut = 1 + (size_t)(rnd() % BIG_SIZE);
}

/* Connected: what each kind does first. */
static void slot_connected(storm *st, slot *c) {
    int err = 0;
    socklen_t len = sizeof(err);
    CHECK_SYS(getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len));
    if (err) FAIL("storm: a %s connection failed to connect: %s", kind_names[c->kind], strerror(err));
    c->connected = 1;
    switch (c->kind) {
    case K_RST_BEFORE: slot_end(st, c, 1); return;
    case K_RST_MIDREQ: slot_request(st, c, get_big, c->cut); return;
    case K_RST_AFTERREQ:
    case K_RST_MIDRESP: slot_request(st, c, get_big, sizeof(get_big) - 1); return;
    default:
        c->step = 1;
        reader_expect(&c->rd, "a small file\n", 13);
        slot_request(st, c, get_small, sizeof(get_small) - 1);
    }
}

/* The request is out. */
static void slot_sent(storm *st, slot *c) {
    if (c->kind == K_RST_MIDREQ || c->kind == K_RST_AFTERREQ) slot_end(st, c, 1);
    else slot_watch(st, c, EPOLLIN);
}

static void slot_write(storm *st, slot *c) {
    ssize_t w;
    if (!c->connected) {
        slot_connected(st, c);
        if (c->fd < 0 || c->req_off < c->req_len) return; /* ended, or sends when writable */
    }
    w = send(c->fd, c->req + c->req_off, c->req_len - c->req_off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (w < 0) FAIL("storm: a %s connection: send: %s", kind_names[c->kind], strerror(errno));
    c->req_off += (size_t)w;
    if (c->req_off == c->req_len) slot_sent(st, c);
}

/* Normal connections: /small.txt twice, the second with Connection: close. */
static void normal_read(storm *st, slot *c, const char *buf, ssize_t n) {
    uint64_t before = c->rd.responses;
    if (n <= 0) {
        if (c->step == 2 && c->rd.responses == 2 && reader_idle(&c->rd) && n == 0) {
            slot_end(st, c, 0);
            return;
        }
        FAIL("storm: a normal connection %s after %llu responses", n == 0 ? "ended" : strerror(errno),
             (unsigned long long)c->rd.responses);
    }
    reader_feed(&c->rd, buf, (size_t)n, "storm");
    if (c->rd.responses > before && c->step == 1) {
        c->step = 2;
        reader_expect(&c->rd, "a small file\n", 13);
        slot_request(st, c, get_small_close, sizeof(get_small_close) - 1);
    }
}

static void slot_read(storm *st, slot *c) {
    static char buf[65536];
    ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (c->kind == K_NORMAL) {
        normal_read(st, c, buf, n);
        return;
    }
    if (n <= 0) FAIL("storm: a mid-response connection got %s after %zu bytes", n ? strerror(errno) : "EOF", c->got);
    c->got += (size_t)n;
    if (c->got >= c->cut) slot_end(st, c, 1);
}

static void storm_run(storm *st, int ms) {
    struct epoll_event ev[256];
    uint64_t end = test_ms() + (uint64_t)ms;
    while (st->started < st->total || st->active > 0) {
        int n;
        while (st->active < st->conc && st->started < st->total) {
            slot *c = NULL;
            for (int i = 0; i < st->conc && !c; i++)
                if (st->slots[i].fd < 0) c = &st->slots[i];
            CHECK(c);
            slot_start(st, c);
        }
        if (test_ms() > end)
            FAIL("storm: %d of %d connections started, %d still open after %d ms", st->started, st->total, st->active, ms);
        n = epoll_wait(st->ep, ev, 256, 100);
        if (n < 0 && errno == EINTR) continue;
        CHECK_SYS(n);
        for (int i = 0; i < n; i++) {
            slot *c = ev[i].data.ptr;
            if (c->fd < 0) continue; /* ended by an earlier event of this batch? not reused before the next wait */
            if (!c->connected || c->req_off < c->req_len) slot_write(st, c);
            else slot_read(st, c);
        }
    }
}

/* The kinds of total connections, resets of them resets, in random order,
 * the resets spread evenly over the four points. */
static char *storm_kinds(int total, int resets) {
    char *k = malloc((size_t)total);
    CHECK(k);
    for (int i = 0; i < total; i++) k[i] = i < resets ? (char)(K_RST_BEFORE + i % 4) : K_NORMAL;
    for (int i = total - 1; i > 0; i--) {
        int j = (int)(rnd() % (uint64_t)(i + 1));
        char t = k[i];
        k[i] = k[j];
        k[j] = t;
    }
    return k;
}

/* One storm; fails unless every normal connection succeeded and the
 * server's fds are back to fds0 afterwards. */
static void storm_round(server *s, int round, long fds0) {
    storm st = {0};
    long fds_end, after, settle;
    uint64_t t0 = test_ms();
    st.port = s->port;
    st.total = 10000;
    st.resets = 1000;
    st.conc = 1000;
    st.kinds = storm_kinds(st.total, st.resets);
    CHECK((st.slots = calloc((size_t)st.conc, sizeof(slot))));
    for (int i = 0; i < st.conc; i++) st.slots[i].fd = -1;
    CHECK_SYS(st.ep = epoll_create1(EPOLL_CLOEXEC));
    storm_run(&st, 60000);
    fds_end = proc_fd_count(s->pid);
    settle = fds_settle(s, fds0, 10000, &after);
    fprintf(stderr,
            "   storm %d: %d connections, %d at a time, in %llu ms: %d normal ones made 2 requests each; resets: %d "
            "before sending, %d mid-request, %d after the request, %d mid-response; server fds %ld before, %ld at the "
            "end, back to %ld after %ld ms\n",
            round, st.total, st.conc, (unsigned long long)(test_ms() - t0), st.done_normal, st.rst_done[K_RST_BEFORE],
            st.rst_done[K_RST_MIDREQ], st.rst_done[K_RST_AFTERREQ], st.rst_done[K_RST_MIDRESP], fds0, fds_end, after,
            settle);
    CHECK_EQ(st.done_normal, st.total - st.resets);
    if (settle < 0) FAIL("the server holds %ld fds after the storm, %ld before", after, fds0);
    close(st.ep);
    free(st.slots);
    free(st.kinds);
}

static void run_rst(const model *m) {
    const char *extra[] = {"--drain-ms", "5000", NULL};
    const char *seed_env = getenv("IOMUX_HOSTILE_SEED");
    uint64_t seed = seed_env ? strtoull(seed_env, NULL, 10) : (uint64_t)time(NULL);
    int rounds = g_full ? 10 : 1;
    long fds0, rss0;
    server s;
    g_rng = seed ? seed : 1;
    fprintf(stderr, "   seed %llu (IOMUX_HOSTILE_SEED)\n", (unsigned long long)seed);
    start_httpd(&s, m, extra);
    fds0 = proc_fd_count(s.pid);
    rss0 = proc_rss_kib(s.pid);
    for (int r = 1; r <= rounds; r++) storm_round(&s, r, fds0);
    fprintf(stderr, "   server RSS %ld -> %ld KiB after %d storm(s)\n", rss0, proc_rss_kib(s.pid), rounds);
    if (get_once(s.port, "/small.txt", 13) != 200) FAIL("the server does not answer after the storm");
    fprintf(stderr, "   SIGTERM: exit 0 after %llu ms, no sanitizer or leak report\n",
            (unsigned long long)stop_httpd(&s, DRAIN_MS + DRAIN_SLACK_MS));
}

/* ---- 4. the drain under load ------------------------------------------------------------ */

/* A number after label in text ("read 3"), 0 if absent. */
static long after_label(const char *text, const char *label) {
    const char *p = text ? strstr(text, label) : NULL;
    return p ? atol(p + strlen(label)) : 0;
}

/* wrk's "  N requests in 4.00s, ..." line: N, or -1. */
static long wrk_requests(const char *text) {
    const char *p = text ? strstr(text, " requests in ") : NULL;
    if (!p) return -1;
    while (p > text && p[-1] != '\n') p--;
    return atol(p);
}

static void drain_wrk(const model *m, const char *const *extra) {
    const int conns = 16, secs = g_full ? 10 : 4, signal_ms = g_full ? 4000 : 1500;
    static char script[160], url[96], sdur[16], sconns[16];
    char *argv[] = {WRK, "-t1", "-c", sconns, "-d", sdur, "--timeout", "5s", "-s", script, url, NULL};
    server s, w;
    uint64_t took;
    long rd, wr, to, non2xx, reqs, conn_err;
    FILE *f;
    snprintf(script, sizeof(script), "%s/mix.lua", g_dir);
    CHECK((f = fopen(script, "w")));
    /* one request in four is the 1 MiB file: some are mid-transfer at the signal */
    fputs("local n = 0\nrequest = function()\n  n = n + 1\n"
          "  if n % 4 == 0 then return wrk.format(nil, \"/big.bin\") end\n"
          "  return wrk.format(nil, \"/plaintext\")\nend\n", f);
    CHECK_EQ(fclose(f), 0);
    start_httpd(&s, m, extra);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", s.port);
    snprintf(sdur, sizeof(sdur), "%ds", secs);
    snprintf(sconns, sizeof(sconns), "%d", conns);
    spawn_kid(&w, argv);
    for (uint64_t end = test_ms() + (uint64_t)signal_ms; test_ms() < end;) pump(&w, 20);
    took = stop_httpd(&s, DRAIN_MS + DRAIN_SLACK_MS);
    kid_wait(&w, secs * 1000 + 15000);
    reqs = wrk_requests(w.text);
    conn_err = after_label(w.text, "Socket errors: connect ");
    rd = after_label(w.text, ", read ");
    wr = after_label(w.text, ", write ");
    to = after_label(w.text, ", timeout ");
    non2xx = after_label(w.text, "Non-2xx or 3xx responses: ");
    fprintf(stderr, "   wrk, SIGTERM after %d ms: the server exited 0 in %llu ms; wrk: %ld requests, socket errors "
                    "connect %ld, read %ld, write %ld, timeout %ld; non-2xx %ld\n",
            signal_ms, (unsigned long long)took, reqs, conn_err, rd, wr, to, non2xx);
    if (!w.text || !strstr(w.text, "requests in")) FAIL("wrk printed no summary:\n%s", w.text ? w.text : "");
    if (non2xx != 0 || to != 0) FAIL("wrk: %ld non-2xx responses, %ld timeouts:\n%s", non2xx, to, w.text);
    /* a read error is a connection closed with a request of wrk's in
     * flight: the drain closes each one once (an idle one at once, a busy
     * one after a response with Connection: close, which wrk does not
     * count), plus those accepted just before the listener closed */
    if (rd > 2 * conns) FAIL("wrk: %ld read errors with %d connections:\n%s", rd, conns, w.text);
    kid_free(&w);
}

static void drain_load(const model *m, const char *const *extra) {
    const double secs = g_full ? 10 : 3, signal_s = g_full ? 4 : 1.5;
    const char *first;
    server s, k;
    load_res r;
    uint64_t took;
    start_httpd(&s, m, extra);
    load_start(&k, s.port, 8, 0.5, secs, "/plaintext");
    for (uint64_t end = test_ms() + (uint64_t)((0.5 + signal_s) * 1000); test_ms() < end;) pump(&k, 20);
    took = stop_httpd(&s, DRAIN_MS + DRAIN_SLACK_MS);
    load_finish(&k, (int)(secs * 1000) + 30000, &r);
    first = strstr(k.text, "first error: ");
    fprintf(stderr, "   iomux-load, SIGTERM after %.1f s: the server exited 0 in %llu ms; iomux-load: %.0f responses, "
                    "errors %.0f (connect %.0f, io %.0f, status %.0f), %.*s\n",
            signal_s, (unsigned long long)took, r.requests, r.errors, r.connect_errors, r.io_errors, r.status_errors,
            first ? (int)strcspn(first, "\n") : 14, first ? first : "no first error");
    if (r.requests <= 0 || r.status_errors != 0) FAIL("iomux-load: %.0f responses, %.0f status errors", r.requests, r.status_errors);
    if (first && strstr(first, "end of stream inside a response")) FAIL("iomux-load saw a truncated response:\n%s", k.text);
    kid_free(&k);
}

/* Our own client: conns connections, each alternating GET /plaintext and
 * GET /big.bin (every byte checked) until the server closes it, which must
 * happen between responses. */
typedef struct dconn {
    int fd, n;
    reader rd;
} dconn;

static void dconn_next(dconn *c) {
    int big = c->n++ % 2;
    reader_expect(&c->rd, big ? (const void *)g_big : "Hello, World!", big ? BIG_SIZE : 13);
    send_all(c->fd, big ? get_big : get_plain, big ? sizeof(get_big) - 1 : sizeof(get_plain) - 1);
}

/* Reads what c has; 0 when it ended (cleanly: checked). */
static int dconn_read(dconn *c, uint64_t *resets) {
    static char buf[65536];
    uint64_t before = c->rd.responses;
    ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 1;
    if (n <= 0) {
        if (n < 0 && errno != ECONNRESET) FAIL("drain client: recv: %s", strerror(errno));
        if (!reader_idle(&c->rd))
            FAIL("drain client: %s inside a response (%zu of %zu body bytes)", n ? "reset" : "end of stream",
                 c->rd.body_off, c->rd.want_len);
        *resets += n < 0;
        close(c->fd);
        c->fd = -1;
        return 0;
    }
    reader_feed(&c->rd, buf, (size_t)n, "drain client");
    if (c->rd.responses > before) {
        if (c->rd.last_close) return 1; /* the last one: wait for the end */
        dconn_next(c);
    }
    return 1;
}

static void drain_ours(const model *m, const char *const *extra) {
    enum { CONNS = 16 };
    const int signal_ms = g_full ? 4000 : 1500;
    dconn c[CONNS];
    struct pollfd p[CONNS];
    uint64_t t0, took = 0, responses = 0, closes = 0, resets = 0, end;
    int open = CONNS, signalled = 0;
    server s;
    start_httpd(&s, m, extra);
    for (int i = 0; i < CONNS; i++) {
        memset(&c[i], 0, sizeof(c[i]));
        c[i].n = i; /* half start with the big file */
        if ((c[i].fd = connect_to(s.port, 0)) < 0) FAIL("connect: %s", strerror(-c[i].fd));
        dconn_next(&c[i]);
    }
    t0 = test_ms();
    end = t0 + (uint64_t)signal_ms + DRAIN_MS + DRAIN_SLACK_MS;
    while (open > 0) {
        if (!signalled && test_ms() - t0 >= (uint64_t)signal_ms) {
            CHECK_SYS(kill(s.pid, SIGTERM));
            signalled = 1;
        }
        if (test_ms() > end) FAIL("drain client: %d connections still open %d ms after the signal", open, DRAIN_MS + DRAIN_SLACK_MS);
        for (int i = 0; i < CONNS; i++) p[i] = (struct pollfd){.fd = c[i].fd, .events = POLLIN};
        if (poll(p, CONNS, 20) > 0)
            for (int i = 0; i < CONNS; i++)
                if (p[i].revents && c[i].fd >= 0 && !dconn_read(&c[i], &resets)) open--;
        pump(&s, 0);
    }
    {
        int status = wait_exit(&s, DRAIN_MS + DRAIN_SLACK_MS);
        took = test_ms() - t0 - (uint64_t)signal_ms;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) FAIL("the server's exit status is 0x%x", status);
        check_output(&s, 0);
        g_server = NULL;
        free(s.text);
    }
    for (int i = 0; i < CONNS; i++) responses += c[i].rd.responses, closes += c[i].rd.closes;
    fprintf(stderr, "   our client, SIGTERM after %d ms: %llu responses checked byte for byte, %llu of %d connections "
                    "ended after a 'Connection: close' response, the others between responses; %llu resets; the "
                    "server exited 0 %llu ms after the signal\n",
            signal_ms, (unsigned long long)responses, (unsigned long long)closes, CONNS, (unsigned long long)resets,
            (unsigned long long)took);
    if (resets) FAIL("drain client: %llu connections reset before --drain-ms", (unsigned long long)resets);
    if (took > DRAIN_MS + DRAIN_SLACK_MS) FAIL("the drain took %llu ms", (unsigned long long)took);
}

static void run_drain(const model *m) {
    const char *extra[] = {"--drain-ms", "5000", NULL};
    if (access(WRK, X_OK) == 0) drain_wrk(m, extra);
    else fprintf(stderr, "   skip the wrk run: no %s\n", WRK);
    drain_load(m, extra);
    drain_ours(m, extra);
}

/* ---- main -------------------------------------------------------------------------------- */

static void raise_nofile(void) {
    struct rlimit r;
    CHECK_SYS(getrlimit(RLIMIT_NOFILE, &r));
    r.rlim_cur = r.rlim_max; /* the children inherit it */
    CHECK_SYS(setrlimit(RLIMIT_NOFILE, &r));
    if (r.rlim_cur < (g_full ? 12000u : 6000u)) {
        fprintf(stderr, "skip: RLIMIT_NOFILE is %llu\n", (unsigned long long)r.rlim_cur);
        exit(TEST_SKIP);
    }
}

int main(int argc, char **argv) {
    const model *m = NULL;
    const char *dash, *sc;
    if (argc != 4) {
        fprintf(stderr, "usage: %s IOMUX-HTTPD IOMUX-LOAD SCENARIO\n", argv[0]);
        return 2;
    }
    g_httpd = argv[1];
    g_load = argv[2];
    sc = argv[3];
    g_full = getenv("IOMUX_HOSTILE_FULL") && atoi(getenv("IOMUX_HOSTILE_FULL")) > 0;
    signal(SIGPIPE, SIG_IGN);
    fprintf(stderr, "-- %s%s\n", sc, g_full ? " (full)" : "");
    if (!(dash = strchr(sc, '-'))) FAIL("unknown scenario %s", sc);
    for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++)
        if (strcmp(models[i].name, dash + 1) == 0) m = &models[i];
    if (!m) FAIL("unknown model in %s", sc);
    if (m->uring && !uring_available()) {
        fprintf(stderr, "skip: io_uring is not available here\n");
        return TEST_SKIP;
    }
    raise_nofile();
    make_root();
    atexit(kill_server); /* after the tools: atexit runs in reverse */
    atexit(kill_kids);
    if (strncmp(sc, "slowloris-", 10) == 0) run_attack(m, "-H");
    else if (strncmp(sc, "slowbody-", 9) == 0) run_attack(m, "-B");
    else if (strncmp(sc, "slowread-", 9) == 0) run_slowread(m, 0);
    else if (strncmp(sc, "slowfile-", 9) == 0) run_slowread(m, 1);
    else if (strncmp(sc, "rst-", 4) == 0) run_rst(m);
    else if (strncmp(sc, "drain-", 6) == 0) run_drain(m);
    else FAIL("unknown scenario %s", sc);
    free(g_big);
    return 0;
}

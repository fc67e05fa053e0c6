/* The echo scenarios: 1. every model and peer at 1, 100 and 1,000
 * connections; 2. throughput as idle connections grow (the seeds' O(n) vs
 * O(1)); 5. business logic inline or on the thread pool; 6. two event loops,
 * SO_REUSEPORT or one acceptor. Each writes its section of the report, its
 * chart, and its findings for the verdict. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"

static cmp_matrix g_m; /* big: one at a time, static */

static cmp_matrix *matrix(const char *name, cmp_proto proto) {
    cmp_matrix_init(&g_m, name, proto);
    return &g_m;
}

static void add_load(cmp_matrix *m, const char *name, int conns, int idle) {
    cmp_matrix_load(m, name, conns, idle, 1);
}


static const char *cell_text(const cmp_cell *c, cmp_metric what, int decimals, char *buf, size_t len) {
    if (!cmp_cell_ok(c)) return snprintf(buf, len, "not run: %s", c->why[0] ? c->why : "?"), buf;
    return cmp_fmt(cmp_cell_median(c, what), decimals, buf, len);
}

static void ratio_text(double a, double b, char *buf, size_t len) {
    if (isnan(a) || isnan(b) || b <= 0) snprintf(buf, len, "–");
    else snprintf(buf, len, "%.2fx", a / b);
}

/* ---- 1. models ---- */

static void models_table(cmp_report *r, const cmp_matrix *m, int j) {
    static const char *const cols[] = {"server", "req/s", "spread", "p50 µs", "p99 µs", "server CPU µs/req",
                                       "syscalls/req", "load CPU %", "vs raw epoll"};
    double base = cmp_med(m, "raw-epoll", j, M_RPS);
    int i;
    fprintf(r->md, "\n**%s**\n\n", m->load_names[j]);
    cmp_md_header(r->md, 9, cols);
    for (i = 0; i < m->nservers; i++) {
        const cmp_cell *c = &m->cells[i][j];
        char b[8][CMP_WHY + 16];
        const char *row[9] = {m->servers[i]->label, b[0], b[7], b[1], b[2], b[3], b[4], b[5], b[6]};
        double load_cpu = NAN, spread = cmp_cell_spread(c, M_RPS);
        int k;
        cell_text(c, M_RPS, 0, b[0], sizeof(b[0]));
        if (isnan(spread)) snprintf(b[7], sizeof(b[7]), "–");
        else snprintf(b[7], sizeof(b[7]), "%.0f%%", spread * 100);
        if (!cmp_cell_ok(c)) {
            for (k = 1; k < 7; k++) snprintf(b[k], sizeof(b[k]), "–");
        } else {
            for (load_cpu = 0, k = 0; k < c->n; k++) load_cpu += c->s[k].load_cpu_s;
            cmp_fmt(cmp_cell_median(c, M_P50), 1, b[1], sizeof(b[1]));
            cmp_fmt(cmp_cell_median(c, M_P99), 1, b[2], sizeof(b[2]));
            cmp_fmt(cmp_cell_median(c, M_CPU), 2, b[3], sizeof(b[3]));
            cmp_fmt(cmp_cell_median(c, M_SYS), 3, b[4], sizeof(b[4]));
            cmp_fmt(load_cpu / c->n / g_opt.duration * 100, 0, b[5], sizeof(b[5]));
            ratio_text(cmp_cell_median(c, M_RPS), base, b[6], sizeof(b[6]));
        }
        cmp_md_row(r->md, 9, row);
    }
}

/* The terminal's main table: req/s per connection count, ratio to raw epoll. */
static void models_terminal(const cmp_matrix *m) {
    int i, j;
    printf("\n%-28s", "echo 64 B, req/s");
    for (j = 0; j < m->nloads; j++) printf(" %14s", m->load_names[j]);
    printf(" %12s\n", "vs raw epoll");
    for (i = 0; i < m->nservers; i++) {
        char buf[64];
        printf("%-28s", m->servers[i]->label);
        for (j = 0; j < m->nloads; j++)
            printf(" %14s", cmp_cell_ok(&m->cells[i][j]) ? cmp_fmt(cmp_cell_median(&m->cells[i][j], M_RPS), 0, buf,
                                                                        sizeof(buf))
                                                            : "not run");
        ratio_text(cmp_cell_median(&m->cells[i][m->nloads - 1], M_RPS), cmp_med(m, "raw-epoll", m->nloads - 1, M_RPS),
                   buf, sizeof(buf));
        printf(" %12s\n", buf);
    }
    printf("\n");
    fflush(stdout);
}

/* "a / b: 1.27x req/s, 0.76x server CPU per request", and, when the req/s
 * ratio is closer to 1 than the repeats of either cell spread, says so. */
static const char *vs(const cmp_matrix *m, const char *a, const char *b, int j) {
    static char bufs[8][200];
    static int k;
    char *buf = bufs[k++ % 8];
    int ia = cmp_matrix_index(m, a), ib = cmp_matrix_index(m, b);
    double r = cmp_med(m, a, j, M_RPS) / cmp_med(m, b, j, M_RPS), sa, sb, spread;
    sa = ia < 0 ? NAN : cmp_cell_spread(&m->cells[ia][j], M_RPS);
    sb = ib < 0 ? NAN : cmp_cell_spread(&m->cells[ib][j], M_RPS);
    spread = isnan(sa) ? sb : isnan(sb) ? sa : sa > sb ? sa : sb;
    snprintf(buf, 200, "%s req/s%s, %s server CPU per request", cmp_x(r),
             !isnan(r) && !isnan(spread) && fabs(r - 1) < spread ? " (within the repeats' spread: noise)" : "",
             cmp_x(cmp_med(m, a, j, M_CPU) / cmp_med(m, b, j, M_CPU)));
    return buf;
}

static void models_verdict(cmp_report *r, const cmp_matrix *m) {
    int j = m->nloads - 1, i, best = -1;
    const char *at = m->load_names[j];
    for (i = 0; i < m->nservers; i++)
        if (cmp_cell_ok(&m->cells[i][j]) &&
            (best < 0 || cmp_cell_median(&m->cells[i][j], M_RPS) > cmp_cell_median(&m->cells[best][j], M_RPS)))
            best = i;
    if (best >= 0)
        cmp_verdict(r, "Echo at %s: the fastest server was %s (%s req/s).", at, m->servers[best]->label,
                    cmp_fmt(cmp_cell_median(&m->cells[best][j], M_RPS), 0, (char[32]){0}, 32));
    cmp_verdict(r, "Seed: \"Proactor/IOCP may have a slight theoretical edge with very many connections\"; \"on "
                   "Linux epoll + Reactor is the most efficient choice\". Measured at %s, io_uring (Proactor) / "
                   "epoll LT: %s (target >= 1.3x req/s).",
                at, vs(m, "uring", "epoll", j));
    cmp_verdict(r, "Seed: \"ET is more efficient than LT\". Measured at %s, epoll ET / LT: %s.", at,
                vs(m, "epoll-et", "epoll", j));
    cmp_verdict(r, "The emulated Proactor on epoll / the Reactor on epoll at %s: %s.", at,
                vs(m, "epoll-proactor", "epoll", j));
    cmp_verdict(r, "iomux against the minimal hand-written loops at %s: iomux epoll / raw epoll %s (target >= "
                   "0.97x); iomux uring / raw liburing %s (target >= 0.97x).",
                at, vs(m, "epoll", "raw-epoll", j), vs(m, "uring", "raw-uring", j));
    cmp_verdict(r, "iomux epoll against the libraries at %s (target >= 1.1x each): / libuv %s; / libevent %s; / "
                   "libev %s.",
                at, vs(m, "epoll", "libuv", j), vs(m, "epoll", "libevent", j), vs(m, "epoll", "libev", j));
    cmp_verdict(r, "iomux uring against the libraries at %s: / libuv %s; / libevent %s; / libev %s.", at,
                vs(m, "uring", "libuv", j), vs(m, "uring", "libevent", j), vs(m, "uring", "libev", j));
}

void cmp_scenario_models(cmp_report *r) {
    static const int smoke[] = {8}, normal[] = {1, 100, 1000};
    static char names[3][32];
    const int *conns = g_opt.mode == CMP_SMOKE ? smoke : normal;
    int n = g_opt.mode == CMP_SMOKE ? 1 : 3, i, j;
    cmp_matrix *m = matrix("1/6 models", CMP_ECHO);
    for (i = 0; i < cmp_n_echo_servers; i++)
        if (g_opt.mode != CMP_SMOKE || cmp_listed("epoll,uring,raw-epoll,threads", cmp_echo_servers[i].key))
            cmp_matrix_add(m, &cmp_echo_servers[i]);
    for (j = 0; j < n; j++) {
        snprintf(names[j], sizeof(names[j]), "%d conn%s", conns[j], conns[j] > 1 ? "s" : "");
        add_load(m, names[j], conns[j], 0);
    }
    m->processes = conns[n - 1]; /* prefork: a worker per connection */
    m->count_syscalls = 1;
    cmp_matrix_run(m, r);
    cmp_progress_done();
    fprintf(r->md, "## 1. Models: echo ping-pong, 64 B\n\nEach connection keeps one 64-byte message in flight. "
                   "prefork runs %d worker processes (one per connection). \"spread\" is (max - min) / median of "
                   "the repeats' req/s: differences smaller than it are noise. Server CPU per request is the "
                   "server's run time (all its threads and processes) over the measured period / requests.\n",
            m->processes);
    for (j = 0; j < m->nloads; j++) models_table(r, m, j);
    cmp_matrix_chart(r, m, "models.svg", "Echo ping-pong, 64 B: requests/s per server");
    models_terminal(m);
    models_verdict(r, m);
}

/* ---- 2. idle fds ---- */

static void idle_tables(cmp_report *r, const cmp_matrix *m, cmp_metric what, const char *title, int decimals) {
    const char *cols[CMP_MAX_LOADS + 2];
    char head[CMP_MAX_LOADS][48];
    int i, j;
    cols[0] = "server";
    for (j = 0; j < m->nloads; j++) {
        snprintf(head[j], sizeof(head[j]), "%s idle", m->load_names[j]);
        cols[j + 1] = head[j];
    }
    cols[m->nloads + 1] = "last / first";
    fprintf(r->md, "\n**%s**\n\n", title);
    cmp_md_header(r->md, m->nloads + 2, cols);
    for (i = 0; i < m->nservers; i++) {
        char b[CMP_MAX_LOADS + 1][CMP_WHY + 16];
        const char *row[CMP_MAX_LOADS + 2];
        row[0] = m->servers[i]->label;
        for (j = 0; j < m->nloads; j++) row[j + 1] = cell_text(&m->cells[i][j], what, decimals, b[j], sizeof(b[j]));
        ratio_text(cmp_cell_median(&m->cells[i][m->nloads - 1], what), cmp_cell_median(&m->cells[i][0], what),
                   b[m->nloads], sizeof(b[m->nloads]));
        row[m->nloads + 1] = b[m->nloads];
        cmp_md_row(r->md, m->nloads + 2, row);
    }
}

static void idle_chart(cmp_report *r, const cmp_matrix *m) {
    static double x[CMP_MAX_LOADS], y[CMP_MAX_SERVERS][CMP_MAX_LOADS];
    svg_series s[CMP_MAX_SERVERS];
    char path[600], title[96];
    int i, j;
    for (j = 0; j < m->nloads; j++) x[j] = m->loads[j].idle;
    for (i = 0; i < m->nservers; i++) {
        for (j = 0; j < m->nloads; j++) y[i][j] = cmp_cell_median(&m->cells[i][j], M_RPS);
        s[i].name = m->servers[i]->label;
        s[i].n = m->nloads;
        s[i].x = x;
        s[i].y = y[i];
    }
    snprintf(path, sizeof(path), "%s/idle.svg", g_opt.outdir);
    snprintf(title, sizeof(title), "%d active connections while idle ones are held open", m->loads[0].conns);
    svg_lines(path, title, "idle connections", "requests/s", s, m->nservers, 0);
    fprintf(r->md, "\n![throughput as idle connections grow](idle.svg)\n");
}

static void idle_verdict(cmp_report *r, const cmp_matrix *m) {
    int last = m->nloads - 1;
#define GROWTH(k, what) cmp_x(cmp_med(m, k, last, what) / cmp_med(m, k, 0, what))
    cmp_verdict(r, "Seed: \"epoll is O(1) in the number of fds, select/poll are O(n)\". With %d active connections, "
                   "from 0 to %s idle ones: server CPU per request grew epoll LT %s, epoll ET %s, uring %s, "
                   "uring-poll %s; select %s, poll %s. Throughput at the end / at the start: epoll LT %s, "
                   "select %s, poll %s.",
                m->loads[0].conns, m->load_names[last], GROWTH("epoll", M_CPU), GROWTH("epoll-et", M_CPU), GROWTH("uring", M_CPU),
                GROWTH("uring-poll", M_CPU), GROWTH("select", M_CPU), GROWTH("poll", M_CPU),
                GROWTH("epoll", M_RPS), GROWTH("select", M_RPS), GROWTH("poll", M_RPS));
#undef GROWTH
    cmp_verdict(r, "Seed: \"select is limited by FD_SETSIZE (1024)\". iomux's select backend sizes its fd sets "
                   "itself, so it %s at %s idle connections (%s req/s): the limit is glibc's fd_set type, the cost "
                   "is the O(n) scan.",
                cmp_matrix_index(m, "select") >= 0 && cmp_cell_ok(&m->cells[cmp_matrix_index(m, "select")][last]) ? "ran"
                                                                                      : "did not run",
                m->load_names[last],
                cmp_fmt(cmp_med(m, "select", last, M_RPS), 0, (char[32]){0}, 32));
}

void cmp_scenario_idle(cmp_report *r) {
    static const int smoke[] = {0, 200}, quick[] = {0, 5000, 15000}, full[] = {0, 1000, 2500, 5000, 10000, 15000};
    static char names[8][32];
    const int *idle = g_opt.mode == CMP_SMOKE ? smoke : g_opt.mode == CMP_QUICK ? quick : full;
    int n = g_opt.mode == CMP_SMOKE ? 2 : g_opt.mode == CMP_QUICK ? 3 : 6, i, j;
    cmp_matrix *m = matrix("2/6 idle fds", CMP_ECHO);
    for (i = 0; i < cmp_n_echo_servers; i++)
        if (cmp_listed(g_opt.mode == CMP_SMOKE   ? "select,epoll,uring"
                       : g_opt.mode == CMP_QUICK ? "select,poll,epoll,epoll-et,uring,uring-poll,raw-epoll"
                                                 : "select,poll,epoll,epoll-et,uring,uring-poll,raw-epoll,libev",
                       cmp_echo_servers[i].key))
            cmp_matrix_add(m, &cmp_echo_servers[i]);
    for (j = 0; j < n; j++) {
        snprintf(names[j], sizeof(names[j]), "%d", idle[j]);
        add_load(m, names[j], g_opt.mode == CMP_SMOKE ? 8 : 100, idle[j]);
    }
    cmp_matrix_run(m, r);
    cmp_progress_done();
    fprintf(r->md, "\n## 2. Idle connections: the O(n) vs O(1) claim\n\n%d active echo connections (64 B ping-pong) "
                   "while 0 to %d idle connections, each of which served one exchange, are held open by "
                   "iomux-load's helper processes. The blocking models are left out: they would hold a thread "
                   "or a process per idle connection (their memory is in section 4).\n",
            m->loads[0].conns, idle[n - 1]);
    idle_tables(r, m, M_RPS, "requests/s", 0);
    idle_tables(r, m, M_CPU, "server CPU µs per request", 2);
    idle_chart(r, m);
    idle_verdict(r, m);
}

/* ---- 5. business logic: --work-us 50 inline or on the thread pool ---- */

#define ECHO_BIN "apps/echo/iomux-echo"
static const cmp_server work_servers[] = {
    {"epoll-inline", "epoll, work inline", ECHO_BIN, {"--model", "epoll", "--work-us", "50"}, 0, 0},
    {"epoll-offload", "epoll, work on the pool", ECHO_BIN, {"--model", "epoll", "--work-us", "50", "--offload"}, 0, 0},
    {"uring-inline", "uring, work inline", ECHO_BIN, {"--model", "uring", "--work-us", "50"}, 0, 0},
    {"uring-offload", "uring, work on the pool", ECHO_BIN, {"--model", "uring", "--work-us", "50", "--offload"}, 0, 0},
    {"threads", "threads, work in each thread", ECHO_BIN, {"--model", "threads", "--work-us", "50"}, 1, 0},
};

static void simple_table(cmp_report *r, const cmp_matrix *m, const char *first) {
    static const char *const cols[] = {"server", "req/s", "p50 µs", "p99 µs", "server CPU µs/req", "vs first row"};
    double base = cmp_cell_median(&m->cells[0][0], M_RPS);
    int i;
    fprintf(r->md, "\n**%s**\n\n", first);
    cmp_md_header(r->md, 6, cols);
    for (i = 0; i < m->nservers; i++) {
        const cmp_cell *c = &m->cells[i][0];
        char b[5][CMP_WHY + 16];
        const char *row[6] = {m->servers[i]->label, b[0], b[1], b[2], b[3], b[4]};
        cell_text(c, M_RPS, 0, b[0], sizeof(b[0]));
        cell_text(c, M_P50, 1, b[1], sizeof(b[1]));
        cell_text(c, M_P99, 1, b[2], sizeof(b[2]));
        cell_text(c, M_CPU, 2, b[3], sizeof(b[3]));
        ratio_text(cmp_cell_median(c, M_RPS), base, b[4], sizeof(b[4]));
        if (!cmp_cell_ok(c)) snprintf(b[1], sizeof(b[1]), "–"), snprintf(b[2], sizeof(b[2]), "–"),
                snprintf(b[3], sizeof(b[3]), "–");
        cmp_md_row(r->md, 6, row);
    }
}

static double work_ratio(const cmp_matrix *m, const char *a, const char *b) {
    return cmp_med(m, a, 0, M_RPS) / cmp_med(m, b, 0, M_RPS);
}

void cmp_scenario_work(cmp_report *r) {
    static const char *const titles[] = {"server pinned to CPU %d (the pool's threads share it)",
                                         "server free to use every CPU (the pool's threads can run beside the "
                                         "loop, and beside the load)"};
    static char title[2][160];
    double off[2][2];
    int k, i, conns = g_opt.mode == CMP_SMOKE ? 8 : 100;
    fprintf(r->md, "\n## 5. Business logic: 50 µs per message, inline or on the thread pool\n\n"
                   "Each echoed message costs 50 µs of CPU in the handler (`--work-us 50`, a busy wait), %d "
                   "connections. Inline, the loop does it; `--offload` hands it to the loop's work pool (4 threads) "
                   "and echoes when it is done; `threads` does it in each connection's thread.\n",
            conns);
    for (k = 0; k < 2; k++) {
        cmp_matrix *m = matrix(k ? "5/6 work, unpinned" : "5/6 work, pinned", CMP_ECHO);
        for (i = 0; i < (int)(sizeof(work_servers) / sizeof(work_servers[0])); i++)
            if (g_opt.mode != CMP_SMOKE || i < 2) cmp_matrix_add(m, &work_servers[i]);
        add_load(m, "work", conns, 0);
        m->server_cpu = k ? -1 : g_opt.server_cpu;
        cmp_matrix_run(m, r);
        cmp_progress_done();
        snprintf(title[k], sizeof(title[k]), titles[k], g_opt.server_cpu);
        simple_table(r, m, title[k]);
        off[k][0] = work_ratio(m, "epoll-offload", "epoll-inline");
        off[k][1] = work_ratio(m, "uring-offload", "uring-inline");
    }
    cmp_verdict(r, "Seed: \"put business logic that takes varying time in a thread pool\". With 50 µs per message: "
                   "offloaded / inline req/s = %s (epoll), %s (uring) with the server on one CPU; %s (epoll), %s "
                   "(uring) when the pool may use the second CPU. A pool pays only when it has a CPU the loop does "
                   "not use.",
                cmp_x(off[0][0]), cmp_x(off[0][1]), cmp_x(off[1][0]), cmp_x(off[1][1]));
}

/* ---- 6. multi-reactor: two loops, SO_REUSEPORT or one acceptor ---- */

static const cmp_server mt_servers[] = {
    {"epoll-t1", "epoll, 1 loop", ECHO_BIN, {"--model", "epoll"}, 0, 0},
    {"epoll-reuseport", "epoll, 2 loops, reuseport", ECHO_BIN, {"--model", "epoll", "--threads", "2"}, 0, 0},
    {"epoll-acceptor", "epoll, 2 loops, acceptor", ECHO_BIN,
     {"--model", "epoll", "--threads", "2", "--balance", "acceptor"}, 0, 0},
    {"uring-t1", "uring, 1 loop", ECHO_BIN, {"--model", "uring"}, 0, 0},
    {"uring-reuseport", "uring, 2 loops, reuseport", ECHO_BIN, {"--model", "uring", "--threads", "2"}, 0, 0},
    {"uring-acceptor", "uring, 2 loops, acceptor", ECHO_BIN,
     {"--model", "uring", "--threads", "2", "--balance", "acceptor"}, 0, 0},
};

void cmp_scenario_threads(cmp_report *r) {
    int i, conns = g_opt.mode == CMP_SMOKE ? 8 : 1000;
    cmp_matrix *m = matrix("6/6 multi-reactor", CMP_ECHO);
    for (i = 0; i < (int)(sizeof(mt_servers) / sizeof(mt_servers[0])); i++)
        if (g_opt.mode != CMP_SMOKE || i < 3) cmp_matrix_add(m, &mt_servers[i]);
    add_load(m, "mt", conns, 0);
    m->server_cpu = -1;
    cmp_matrix_run(m, r);
    cmp_progress_done();
    fprintf(r->md, "\n## 6. Multi-reactor: two event loops\n\n"
                   "Echo, %d connections. Here the server is not pinned: its two loops may use both CPUs, and the "
                   "load generator runs on CPU %d. On a 2-core machine this cannot show scaling (the load needs a "
                   "core of its own, so the second loop competes with it); it shows what each way of sharing "
                   "connections costs: `reuseport` gives each loop its own listener and the kernel spreads the "
                   "connections, `acceptor` (muduo's main/sub reactor) has one more loop accept and hand each "
                   "connection over.\n",
            conns, g_opt.load_cpu);
    simple_table(r, m, "2 loops against 1");
    fprintf(r->md, "\n");
    cmp_verdict(r, "Multi-reactor on this machine (%d connections, server unpinned): epoll 2 loops reuseport / 1 loop "
                   "= %s, acceptor / 1 loop = %s; uring reuseport / 1 loop = %s, acceptor / 1 loop = %s. With 2 "
                   "cores and the load on one of them, these ratios measure contention, not scaling.",
                conns, cmp_x(cmp_med(m, "epoll-reuseport", 0, M_RPS) / cmp_med(m, "epoll-t1", 0, M_RPS)),
                cmp_x(cmp_med(m, "epoll-acceptor", 0, M_RPS) / cmp_med(m, "epoll-t1", 0, M_RPS)),
                cmp_x(cmp_med(m, "uring-reuseport", 0, M_RPS) / cmp_med(m, "uring-t1", 0, M_RPS)),
                cmp_x(cmp_med(m, "uring-acceptor", 0, M_RPS) / cmp_med(m, "uring-t1", 0, M_RPS)));
}

/* 3. HTTP /plaintext in every model and nginx, with wrk and with iomux-load,
 * pipelined and not; 4. memory per idle connection, echo and HTTP. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"

static cmp_matrix g_m;

static cmp_matrix *matrix(const char *name, cmp_proto proto) {
    cmp_matrix_init(&g_m, name, proto);
    return &g_m;
}

/* idle-only loads (memory) hold their connections half a second, no warm-up */
static void add_load(cmp_matrix *m, const char *name, int conns, int pipeline, int wrk, int idle) {
    cmp_load *l = cmp_matrix_load(m, name, conns, idle, pipeline);
    l->wrk = wrk;
    if (idle && !conns) l->duration = 0.5, l->warmup = 0;
}


static const char *cell(const cmp_cell *c, cmp_metric what, double scale, int decimals, char *buf, size_t len) {
    if (!cmp_cell_ok(c)) return snprintf(buf, len, "not run: %s", c->why[0] ? c->why : "?"), buf;
    return cmp_fmt(cmp_cell_median(c, what) * scale, decimals, buf, len);
}

/* ---- 3. HTTP ---- */

enum { WRK, WRK_PIPE, LOAD, LOAD_PIPE };

static const char *need_wrk(const cmp_matrix *m, const cmp_server *s, cmp_load *l) {
    (void)m, (void)s;
    if (l->wrk && system("command -v wrk >/dev/null 2>&1") != 0) return "wrk is not installed (Debian: wrk)";
    return NULL;
}

static void http_table(cmp_report *r, const cmp_matrix *m) {
    static const char *const cols[] = {"server", "wrk req/s", "wrk p99 ms", "wrk pipelined req/s",
                                       "iomux-load req/s", "iomux-load p99 ms", "iomux-load pipelined req/s",
                                       "iomux-load / wrk"};
    int i;
    cmp_md_header(r->md, 8, cols);
    for (i = 0; i < m->nservers; i++) {
        char b[7][CMP_WHY + 16];
        const char *row[8] = {m->servers[i]->label, b[0], b[1], b[2], b[3], b[4], b[5], b[6]};
        double a = cmp_cell_median(&m->cells[i][LOAD], M_RPS), w = cmp_cell_median(&m->cells[i][WRK], M_RPS);
        cell(&m->cells[i][WRK], M_RPS, 1, 0, b[0], sizeof(b[0]));
        cell(&m->cells[i][WRK], M_P99, 1e-3, 2, b[1], sizeof(b[1]));
        cell(&m->cells[i][WRK_PIPE], M_RPS, 1, 0, b[2], sizeof(b[2]));
        cell(&m->cells[i][LOAD], M_RPS, 1, 0, b[3], sizeof(b[3]));
        cell(&m->cells[i][LOAD], M_P99, 1e-3, 2, b[4], sizeof(b[4]));
        cell(&m->cells[i][LOAD_PIPE], M_RPS, 1, 0, b[5], sizeof(b[5]));
        snprintf(b[6], sizeof(b[6]), "%s", cmp_x(a / w));
        if (!cmp_cell_ok(&m->cells[i][WRK])) snprintf(b[1], sizeof(b[1]), "–");
        if (!cmp_cell_ok(&m->cells[i][LOAD])) snprintf(b[4], sizeof(b[4]), "–");
        cmp_md_row(r->md, 8, row);
    }
}

/* The best iomux model by one tool's req/s, and its ratio to nginx. */
static void best_vs_nginx(cmp_report *r, const cmp_matrix *m, int load, const char *what) {
    int i, best = -1;
    double nginx = cmp_med(m, "nginx", load, M_RPS);
    for (i = 0; i < m->nservers; i++) {
        double v = cmp_cell_median(&m->cells[i][load], M_RPS);
        if (!m->servers[i]->peer && !isnan(v) && (best < 0 || v > cmp_cell_median(&m->cells[best][load], M_RPS)))
            best = i;
    }
    if (best < 0) return;
    cmp_verdict(r, "HTTP, %s: the best iomux model was %s, %s nginx's req/s (target >= 1.5x); pipelined 16 deep / "
                   "not pipelined: %s.",
                what, m->servers[best]->label, cmp_x(cmp_cell_median(&m->cells[best][load], M_RPS) / nginx),
                cmp_x(cmp_cell_median(&m->cells[best][load + 1], M_RPS) /
                      cmp_cell_median(&m->cells[best][load], M_RPS)));
}

void cmp_scenario_http(cmp_report *r) {
    int i, conns = g_opt.mode == CMP_SMOKE ? 8 : 256;
    cmp_matrix *m = matrix("3/6 http", CMP_HTTP);
    for (i = 0; i < cmp_n_http_servers; i++)
        if (g_opt.mode != CMP_SMOKE || cmp_listed("epoll,uring,nginx", cmp_http_servers[i].key))
            cmp_matrix_add(m, &cmp_http_servers[i]);
    add_load(m, "wrk", conns, 1, 1, 0);
    add_load(m, "wrk, pipelined 16", conns, 16, 1, 0);
    add_load(m, "iomux-load", conns, 1, 0, 0);
    add_load(m, "iomux-load, pipelined 16", conns, 16, 0, 0);
    m->processes = conns;
    m->adjust = need_wrk;
    cmp_matrix_run(m, r);
    cmp_progress_done();
    fprintf(r->md, "\n## 3. HTTP: GET /plaintext\n\n%d keep-alive connections; nginx with `bench/http/nginx.conf` "
                   "(one worker, `access_log off`, `return 200`). wrk runs `-t1` for %d s; pipelined means 16 "
                   "requests per write (`bench/http/pipeline.lua`; wrk reports no percentiles for those). "
                   "prefork runs %d processes. The last column shows whether iomux-load keeps up with wrk on the "
                   "same server.\n\n",
            conns, g_opt.wrk_seconds, conns);
    http_table(r, m);
    cmp_matrix_chart(r, m, "http.svg", "HTTP GET /plaintext: requests/s");
    best_vs_nginx(r, m, WRK, "measured with wrk");
    best_vs_nginx(r, m, LOAD, "measured with iomux-load");
    cmp_verdict(r, "iomux-load against wrk on the same server (epoll LT): %s the req/s, %s pipelined; on nginx: "
                   "%s.",
                cmp_x(cmp_med(m, "epoll", LOAD, M_RPS) / cmp_med(m, "epoll", WRK, M_RPS)),
                cmp_x(cmp_med(m, "epoll", LOAD_PIPE, M_RPS) / cmp_med(m, "epoll", WRK_PIPE, M_RPS)),
                cmp_x(cmp_med(m, "nginx", LOAD, M_RPS) / cmp_med(m, "nginx", WRK, M_RPS)));
}

/* ---- 4. memory per idle connection ---- */

static int g_idle;

/* A thread or a process per connection: fewer of them. */
static const char *memory_adjust(const cmp_matrix *m, const cmp_server *s, cmp_load *l) {
    if (strcmp(s->key, "threads") == 0 && l->idle > 1000) l->idle = 1000;
    if (strcmp(s->key, "prefork") == 0) l->idle = m->processes;
    return NULL;
}

static void memory_run(cmp_report *r, cmp_matrix *m, const cmp_server *list, int n, int smoke_only) {
    int i;
    for (i = 0; i < n; i++)
        if (!smoke_only || cmp_listed("epoll,uring,nginx", list[i].key)) cmp_matrix_add(m, &list[i]);
    add_load(m, "idle", 0, 1, 0, g_idle);
    m->per_idle_conn = 1;
    m->processes = g_opt.mode == CMP_SMOKE ? 16 : 256;
    m->adjust = memory_adjust;
    m->repeats = g_opt.mode == CMP_FULL ? g_opt.repeats : 1;
    cmp_matrix_run(m, r);
    cmp_progress_done();
}

static void memory_table(cmp_report *r, const cmp_matrix *m, const char *title) {
    static const char *const cols[] = {"server", "idle connections", "bytes per connection"};
    int i;
    fprintf(r->md, "\n**%s**\n\n", title);
    cmp_md_header(r->md, 3, cols);
    for (i = 0; i < m->nservers; i++) {
        cmp_load l = m->loads[0];
        char b[2][CMP_WHY + 16];
        const char *row[3] = {m->servers[i]->label, b[0], b[1]};
        memory_adjust(m, m->servers[i], &l);
        snprintf(b[0], sizeof(b[0]), "%d", l.idle);
        cell(&m->cells[i][0], M_RSS, 1, 0, b[1], sizeof(b[1]));
        cmp_md_row(r->md, 3, row);
    }
}

/* One group per server key (echo's, then HTTP's own, e.g. nginx), two bars. */
static void memory_chart(cmp_report *r, const cmp_matrix *echo, const cmp_matrix *http) {
    static const char *const names[] = {"echo", "HTTP"};
    const char *groups[CMP_MAX_SERVERS * 2];
    double v[CMP_MAX_SERVERS * 4];
    char path[600];
    int i, n = 0;
    for (i = 0; i < echo->nservers; i++) groups[n++] = echo->servers[i]->key;
    for (i = 0; i < http->nservers; i++)
        if (isnan(cmp_med(echo, http->servers[i]->key, 0, M_RSS)) && !cmp_find_server(cmp_echo_servers,
                                                                                   cmp_n_echo_servers,
                                                                                   http->servers[i]->key))
            groups[n++] = http->servers[i]->key;
    for (i = 0; i < n; i++) {
        v[i * 2] = cmp_med(echo, groups[i], 0, M_RSS);
        v[i * 2 + 1] = cmp_med(http, groups[i], 0, M_RSS);
    }
    snprintf(path, sizeof(path), "%s/memory.svg", g_opt.outdir);
    svg_bars(path, "Bytes of RSS per idle connection (log scale)", "bytes", groups, n, names, 2, v, 1);
    fprintf(r->md, "\n![memory per idle connection](memory.svg)\n");
}

void cmp_scenario_memory(cmp_report *r) {
    static cmp_matrix echo; /* kept for the chart while the HTTP one runs */
    char b[5][32];
    g_idle = g_opt.mode == CMP_SMOKE ? 100 : 10000;
    memory_run(r, matrix("4/6 memory, echo", CMP_ECHO), cmp_echo_servers, cmp_n_echo_servers, g_opt.mode == CMP_SMOKE);
    echo = g_m;
    memory_run(r, matrix("4/6 memory, http", CMP_HTTP), cmp_http_servers, cmp_n_http_servers, g_opt.mode == CMP_SMOKE);
    fprintf(r->md, "\n## 4. Memory per idle connection\n\nThe server's RSS growth per connection (its user-space "
                   "memory; the kernel's socket buffers are in no process's RSS) with %d idle connections, each of "
                   "which served one exchange (echo: 64 bytes; HTTP: one GET). A thread or a process per "
                   "connection is measured with fewer connections (threads 1,000, prefork one per worker) and, "
                   "for prefork, as Pss summed over its processes.\n",
            g_idle);
    memory_table(r, &echo, "echo");
    memory_table(r, &g_m, "HTTP");
    memory_chart(r, &echo, &g_m);
    cmp_verdict(r, "Memory per idle connection: echo epoll %s B, uring %s B (target <= 128 B); HTTP epoll %s B, "
                   "uring %s B, nginx %s B (target <= 256 B for HTTP keep-alive).",
                cmp_fmt(cmp_med(&echo, "epoll", 0, M_RSS), 0, b[0], 32), cmp_fmt(cmp_med(&echo, "uring", 0, M_RSS), 0, b[1], 32),
                cmp_fmt(cmp_med(&g_m, "epoll", 0, M_RSS), 0, b[2], 32), cmp_fmt(cmp_med(&g_m, "uring", 0, M_RSS), 0, b[3], 32),
                cmp_fmt(cmp_med(&g_m, "nginx", 0, M_RSS), 0, b[4], 32));
}

/* One measurement: a load run (iomux-load or wrk) on the load CPU against a
 * server already running on the server CPU.
 *
 * iomux-load tells us, through --signal-fd, when its measured period begins
 * ('b': every connection open, warm-up over) and ends ('e': nothing closed
 * yet). Between the two we read the server's CPU time from /proc (all its
 * processes: prefork's workers count) and at 'e' its RSS. System calls are
 * counted by `perf stat -p` over a window inside the period (perf's attach
 * takes a few milliseconds, and its --control enable/disable does not work
 * with -p in the perf of Debian 12), so they are a steady-state rate:
 * syscalls per second over the window / requests per second over the period.
 * wrk has no such signal: its cells report its own req/s and p99 only. */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compare.h"

/* "key": number, anywhere in a one-line JSON object (iomux-load's keys are
 * unique, nested ones included). */
static int json_num(const char *json, const char *key, double *out) {
    char pat[64];
    const char *p;
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    if (!(p = strstr(json, pat))) return -1;
    *out = strtod(p + strlen(pat), NULL);
    return 0;
}

/* The last line of a log file that starts with `prefix`. */
static int log_line(const char *log, const char *prefix, char *line, size_t len) {
    FILE *f = fopen(log, "r");
    char buf[4096];
    int found = 0;
    if (!f) return -1;
    while (fgets(buf, sizeof(buf), f))
        if (strncmp(buf, prefix, strlen(prefix)) == 0) {
            snprintf(line, len, "%s", buf);
            found = 1;
        }
    fclose(f);
    return found ? 0 : -1;
}

static void log_tail(const char *log, char *why, size_t len) {
    FILE *f = fopen(log, "r");
    char buf[512], last[512] = "";
    if (f) {
        while (fgets(buf, sizeof(buf), f))
            if (buf[0] != '\n') snprintf(last, sizeof(last), "%s", buf);
        fclose(f);
    }
    last[strcspn(last, "\n")] = '\0';
    snprintf(why, len, "%s", last[0] ? last : "no output");
}

static int wait_byte(int fd, char want, double timeout_s) {
    double end = cmp_now() + timeout_s;
    char c;
    while (cmp_now() < end) {
        struct pollfd p = {fd, POLLIN, 0};
        int ms = (int)((end - cmp_now()) * 1000) + 1;
        if (poll(&p, 1, ms) <= 0) continue;
        if (read(fd, &c, 1) != 1) return -1; /* the load exited */
        if (c == want) return 0;
    }
    return -1;
}

void cmp_load_cmdline(const cmp_load *l, char *buf, size_t len) {
    if (l->wrk)
        snprintf(buf, len, "taskset -c %d wrk -t1 -c%d -d%ds --latency%s http://127.0.0.1:PORT/plaintext",
                 g_opt.load_cpu, l->conns, g_opt.wrk_seconds, l->pipeline > 1 ? " -s bench/http/pipeline.lua" : "");
    else
        snprintf(buf, len,
                 "iomux-load --cpu %d --port PORT --proto %s --conns %d --pipeline %d --size %d --idle %d "
                 "--warmup %g --duration %g --json --signal-fd FD",
                 g_opt.load_cpu, l->proto == CMP_HTTP ? "http" : "echo", l->conns, l->pipeline, l->size,
                 l->idle, l->warmup, l->duration);
}

/* ---- iomux-load ---- */

typedef struct window {
    pid_t pids[CMP_MAX_PIDS];
    int npids;
    double cpu0, cpu1, t0, t1, rss, perf_s, perf_count;
    cmp_perf perf;
} window;

static void window_begin(window *w, const cmp_running *srv, const cmp_load *l, int count_syscalls) {
    w->npids = cmp_group_pids(srv->child.pid, w->pids, CMP_MAX_PIDS);
    w->t0 = cmp_now();
    w->cpu0 = cmp_cpu_s(w->pids, w->npids);
    w->perf_count = -1;
    w->perf_s = 0;
    if (count_syscalls && g_opt.use_perf && l->duration >= 0.25) {
        w->perf_s = l->duration * 0.7; /* perf starts after 'b' and must end before 'e' */
        snprintf(w->perf.child.log, sizeof(w->perf.child.log), "%s/perf.log", g_opt.tmpdir);
        if (cmp_perf_start(&w->perf, w->pids, w->npids, w->perf_s) < 0) w->perf_s = 0;
    }
}

static void window_end(window *w) {
    w->t1 = cmp_now();
    w->cpu1 = cmp_cpu_s(w->pids, w->npids);
    /* a prefork server's own RSS counts its workers' shared pages once each */
    w->rss = cmp_rss_bytes(w->pids, w->npids, w->npids > 1);
}

static void parse_load(const char *json, const cmp_load *l, const window *w, cmp_sample *out) {
    double req = 0, e = 0;
    json_num(json, "requests", &req);
    json_num(json, "rps", &out->rps);
    json_num(json, "p50", &out->p50_us);
    json_num(json, "p99", &out->p99_us);
    json_num(json, "errors", &e);
    json_num(json, "cpu_s", &out->load_cpu_s);
    out->errors = e;
    out->rss_bytes = w->rss;
    out->cpu_us_per_req = req > 0 ? (w->cpu1 - w->cpu0) / req * 1e6 : NAN;
    out->sys_per_req = -1;
    if (w->perf_count >= 0 && out->rps > 0) out->sys_per_req = w->perf_count / w->perf_s / out->rps;
    out->ok = req > 0 || l->conns == 0;
    if (!out->ok) snprintf(out->why, sizeof(out->why), "no request answered");
}

static void load_argv(const cmp_load *l, int port, int sigfd, char *bin, size_t blen, char *num, char **argv) {
    int n = 0;
    snprintf(bin, blen, "%s/apps/load/iomux-load", g_opt.bindir);
    argv[n++] = bin;
#define ARG(flag, fmt, v)                                                                                            \
    do {                                                                                                             \
        argv[n++] = flag;                                                                                            \
        argv[n++] = num;                                                                                             \
        num += sprintf(num, fmt, v) + 1;                                                                             \
    } while (0)
    ARG("--port", "%d", port);
    argv[n++] = "--proto";
    argv[n++] = l->proto == CMP_HTTP ? "http" : "echo";
    ARG("--conns", "%d", l->conns);
    ARG("--pipeline", "%d", l->pipeline > 0 ? l->pipeline : 1);
    ARG("--size", "%d", l->size > 0 ? l->size : 64);
    ARG("--idle", "%d", l->idle);
    ARG("--warmup", "%g", l->warmup);
    ARG("--duration", "%g", l->duration);
    ARG("--signal-fd", "%d", sigfd);
#undef ARG
    argv[n++] = "--json";
    argv[n] = NULL;
}

static void run_load(const cmp_running *srv, const cmp_load *l, int count_syscalls, cmp_sample *out) {
    static window w;
    char bin[600], nums[256], *argv[32], log[300], json[4096];
    double setup = 30 + l->idle / 500.0; /* idle connections take a while to open */
    cmp_child load;
    int sig[2];
    memset(&w, 0, sizeof(w));
    if (pipe(sig) < 0) {
        snprintf(out->why, sizeof(out->why), "pipe: %s", strerror(errno));
        return;
    }
    load_argv(l, srv->port, sig[1], bin, sizeof(bin), nums, argv);
    snprintf(log, sizeof(log), "%s/load.log", g_opt.tmpdir);
    unlink(log);
    if (cmp_spawn(&load, argv, g_opt.load_cpu, log, sig[1]) < 0) {
        close(sig[0]);
        close(sig[1]);
        snprintf(out->why, sizeof(out->why), "cannot start iomux-load");
        return;
    }
    close(sig[1]);
    if (wait_byte(sig[0], 'b', setup + l->warmup) == 0) {
        window_begin(&w, srv, l, count_syscalls);
        if (wait_byte(sig[0], 'e', l->duration + 10) == 0) window_end(&w);
        if (w.perf_s > 0) w.perf_count = cmp_perf_stop(&w.perf);
    }
    close(sig[0]);
    cmp_child_wait(&load, 30);
    if (log_line(log, "{", json, sizeof(json)) == 0 && w.t1 > 0) {
        parse_load(json, l, &w, out);
    } else {
        char tail[160];
        log_tail(log, tail, sizeof(tail));
        snprintf(out->why, sizeof(out->why), "iomux-load failed: %s", tail);
    }
}

/* ---- wrk ---- */

/* "  99%    2.23ms" -> microseconds */
static double wrk_time_us(const char *s) {
    char *end;
    double v = strtod(s, &end);
    if (strncmp(end, "us", 2) == 0) return v;
    if (strncmp(end, "ms", 2) == 0) return v * 1e3;
    if (*end == 's') return v * 1e6;
    if (*end == 'm') return v * 60e6;
    return NAN;
}

static void parse_wrk(const char *log, cmp_sample *out) {
    FILE *f = fopen(log, "r");
    char line[512];
    double a, b, c, d;
    if (!f) return;
    while (fgets(line, sizeof(line), f)) {
        char *p = line + strspn(line, " \t");
        if (strncmp(p, "Requests/sec:", 13) == 0) out->rps = strtod(p + 13, NULL);
        else if (strncmp(p, "50%", 3) == 0) out->p50_us = wrk_time_us(p + 3 + strspn(p + 3, " \t"));
        else if (strncmp(p, "99%", 3) == 0) out->p99_us = wrk_time_us(p + 3 + strspn(p + 3, " \t"));
        else if (sscanf(p, "Socket errors: connect %lf, read %lf, write %lf, timeout %lf", &a, &b, &c, &d) == 4)
            out->errors += a + b + c + d;
        else if (strncmp(p, "Non-2xx or 3xx responses:", 25) == 0) out->errors += strtod(p + 25, NULL);
    }
    fclose(f);
}

static void run_wrk(const cmp_running *srv, const cmp_load *l, cmp_sample *out) {
    char url[64], conns[16], secs[16], script[600], log[300];
    char *argv[16];
    cmp_child wrk;
    int n = 0;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/plaintext", srv->port);
    snprintf(conns, sizeof(conns), "-c%d", l->conns);
    snprintf(secs, sizeof(secs), "-d%ds", g_opt.wrk_seconds);
    snprintf(script, sizeof(script), "%s/bench/http/pipeline.lua", g_opt.srcdir);
    snprintf(log, sizeof(log), "%s/wrk.log", g_opt.tmpdir);
    unlink(log);
    argv[n++] = "wrk";
    argv[n++] = "-t1";
    argv[n++] = conns;
    argv[n++] = secs;
    argv[n++] = "--latency";
    if (l->pipeline > 1) {
        argv[n++] = "-s";
        argv[n++] = script;
    }
    argv[n++] = url;
    argv[n] = NULL;
    out->p50_us = out->p99_us = NAN;
    if (cmp_spawn(&wrk, argv, g_opt.load_cpu, log, -1) < 0 || cmp_child_wait(&wrk, g_opt.wrk_seconds + 30) != 0) {
        char tail[160];
        log_tail(log, tail, sizeof(tail));
        snprintf(out->why, sizeof(out->why), "wrk failed: %s", tail);
        return;
    }
    parse_wrk(log, out);
    if (l->pipeline > 1) out->p50_us = out->p99_us = NAN; /* wrk 4.1 reports 0 for pipelined percentiles */
    out->cpu_us_per_req = NAN;
    out->sys_per_req = -1;
    out->ok = out->rps > 0;
    if (!out->ok) snprintf(out->why, sizeof(out->why), "wrk measured nothing");
}

void cmp_measure(const cmp_running *srv, const cmp_load *l, int count_syscalls, cmp_sample *out) {
    memset(out, 0, sizeof(*out));
    out->rss_bytes = out->cpu_us_per_req = NAN;
    out->sys_per_req = -1;
    if (l->wrk) run_wrk(srv, l, out);
    else run_load(srv, l, count_syscalls, out);
}

/* ---- cells ---- */

void cmp_cell_add(cmp_cell *c, const cmp_sample *s) {
    if (!s->ok) {
        c->failed++;
        snprintf(c->why, sizeof(c->why), "%s", s->why);
        return;
    }
    if (c->n < CMP_MAX_REPEATS) c->s[c->n++] = *s;
}

void cmp_cell_fail(cmp_cell *c, const char *why) {
    c->failed++;
    snprintf(c->why, sizeof(c->why), "%s", why);
}

int cmp_cell_ok(const cmp_cell *c) {
    return c->n > 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double metric(const cmp_sample *s, cmp_metric m) {
    switch (m) {
    case M_RPS: return s->rps;
    case M_P50: return s->p50_us;
    case M_P99: return s->p99_us;
    case M_CPU: return s->cpu_us_per_req;
    case M_SYS: return s->sys_per_req < 0 ? NAN : s->sys_per_req;
    case M_RSS: return s->rss_bytes;
    case M_ERRORS: return s->errors;
    }
    return NAN;
}

double cmp_cell_median(const cmp_cell *c, cmp_metric m) {
    double v[CMP_MAX_REPEATS];
    int i, n = 0;
    for (i = 0; i < c->n; i++) {
        double x = metric(&c->s[i], m);
        if (!isnan(x)) v[n++] = x;
    }
    if (n == 0) return NAN;
    qsort(v, (size_t)n, sizeof(v[0]), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* (max - min) / median over the repeats: how far the repeats disagreed. */
double cmp_cell_spread(const cmp_cell *c, cmp_metric m) {
    double lo = NAN, hi = NAN, mid = cmp_cell_median(c, m);
    int i;
    for (i = 0; i < c->n; i++) {
        double x = metric(&c->s[i], m);
        if (isnan(x)) continue;
        if (isnan(lo) || x < lo) lo = x;
        if (isnan(hi) || x > hi) hi = x;
    }
    return c->n < 2 || !(mid > 0) ? NAN : (hi - lo) / mid;
}

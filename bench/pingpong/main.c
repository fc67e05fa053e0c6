/* iomux-pingpong: echo ping-pong, 64-byte messages, one server per model on
 * CPU 0 and the client in its own process on CPU 1. `run` (the default)
 * measures the matrix: every server model x 1, 100, 1,000 connections,
 * several rounds in alternating order, medians reported; requests/s from
 * the client, the server's system calls per request from
 * `perf stat -e raw_syscalls:sys_enter -p <server>` over the measured period
 * (n/a without perf), and the server's CPU use from /proc/<pid>/stat, which
 * tells whether the server (what we compare) or the client was the limit.
 * `server` and `client` run one side alone. */
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pingpong.h"

typedef struct spec {
    const char *name;
    iomux_backend backend;
    pp_api api;
} spec;

static const spec specs[] = {
    {"select", IOMUX_BACKEND_SELECT, PP_REACTOR},
    {"poll", IOMUX_BACKEND_POLL, PP_REACTOR},
    {"epoll", IOMUX_BACKEND_EPOLL, PP_REACTOR},
    {"epoll-et", IOMUX_BACKEND_EPOLL, PP_REACTOR_ET},
    {"epoll-proactor", IOMUX_BACKEND_EPOLL, PP_PROACTOR},
    {"uring-poll", IOMUX_BACKEND_URING, PP_REACTOR},
    {"uring", IOMUX_BACKEND_URING, PP_PROACTOR},
};
#define NSPECS (sizeof(specs) / sizeof(specs[0]))
#define MAX_ROUNDS 15

typedef struct cell {
    double rps, sys_per_req, cpu_util, cpu_us_per_req, client_util;
} cell;
#define NMETRICS 5

typedef struct run_opts {
    int conns[8], nconns, rounds, size;
    double duration, warmup;
    iomux_backend client_backend;
    int use[NSPECS];
} run_opts;

int pp_pin(int cpu) {
    cpu_set_t set;
    if (cpu < 0) return 0;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof(set), &set) < 0 ? -errno : 0;
}

/* ---- one measurement ---------------------------------------------------------- */

static pid_t spawn_server(const spec *s, int *port) {
    int p[2];
    pid_t pid;
    if (pipe(p) < 0) return -1;
    fflush(NULL); /* or the child inherits, and later writes, our buffer */
    pid = fork();
    if (pid == 0) {
        pp_server_opts o = {s->backend, s->api, 0, p[1]};
        close(p[0]);
        _exit(pp_server(&o) < 0 ? 1 : 0);
    }
    close(p[1]);
    if (pid < 0 || read(p[0], port, sizeof(*port)) != (ssize_t)sizeof(*port)) {
        close(p[0]);
        if (pid > 0) kill(pid, SIGKILL);
        return -1;
    }
    close(p[0]);
    return pid;
}

/* The client, its stdout (the result) and its ready byte come back as fds. */
static pid_t spawn_client(const run_opts *ro, int port, int conns, int *out_fd, int *ready_fd) {
    int out[2], rdy[2];
    pid_t pid;
    if (pipe(out) < 0 || pipe(rdy) < 0) return -1;
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        pp_client_opts o = {ro->client_backend, port, conns, ro->size, ro->warmup, ro->duration, 1, rdy[1]};
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        dup2(out[1], 1);
        close(out[0]);
        close(rdy[0]);
        _exit(pp_client(&o) < 0 ? 1 : 0);
    }
    close(out[1]);
    close(rdy[1]);
    *out_fd = out[0];
    *ready_fd = rdy[0];
    return pid;
}

static double cpu_seconds(pid_t pid) {
    char path[64], buf[1024], *p;
    unsigned long utime = 0, stime = 0;
    FILE *f;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (!f) return NAN;
    p = fgets(buf, sizeof(buf), f);
    fclose(f);
    if (!p || !(p = strrchr(buf, ')'))) return NAN;
    /* after "comm)": state ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2) return NAN;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* Starts perf counting the server's system calls for `secs`; -1 if perf is
 * not installed (then the column says n/a). Output goes to a temp file. */
static pid_t spawn_perf(pid_t server, double secs, FILE **out) {
    char pidstr[16], secstr[32];
    pid_t pid;
    *out = tmpfile();
    if (!*out) return -1;
    snprintf(pidstr, sizeof(pidstr), "%d", (int)server);
    snprintf(secstr, sizeof(secstr), "%.3f", secs);
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        dup2(fileno(*out), 2);
        execlp("perf", "perf", "stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "-p", pidstr, "--", "sleep",
               secstr, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static double perf_count(pid_t perf, FILE *out) {
    int status = 0;
    double v = NAN;
    char line[256];
    if (perf < 0) return NAN;
    waitpid(perf, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fclose(out);
        return NAN;
    }
    rewind(out);
    while (fgets(line, sizeof(line), out))
        if (strstr(line, "raw_syscalls:sys_enter") && line[0] >= '0' && line[0] <= '9') v = atof(line);
    fclose(out);
    return v;
}

static int measure(const run_opts *ro, const spec *s, int conns, cell *c) {
    int port = 0, out_fd, ready_fd, status;
    char one, buf[128];
    unsigned long long reqs = 0;
    double secs = 0, cpu0, cpu1, calls, client_cpu = NAN;
    FILE *perf_out = NULL;
    pid_t perf, client, server = spawn_server(s, &port);
    ssize_t n;
    if (server < 0) return -1;
    client = spawn_client(ro, port, conns, &out_fd, &ready_fd);
    if (client < 0 || read(ready_fd, &one, 1) != 1) {
        kill(server, SIGKILL);
        waitpid(server, NULL, 0);
        return -1;
    }
    cpu0 = cpu_seconds(server);
    perf = spawn_perf(server, ro->duration, &perf_out);
    n = read(out_fd, buf, sizeof(buf) - 1);
    cpu1 = cpu_seconds(server);
    waitpid(client, &status, 0);
    calls = perf_count(perf, perf_out);
    kill(server, SIGTERM);
    waitpid(server, NULL, 0);
    close(out_fd);
    close(ready_fd);
    if (n <= 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
    buf[n] = 0;
    if (sscanf(buf, "%llu %lf %lf", &reqs, &secs, &client_cpu) != 3 || secs <= 0 || reqs == 0) return -1;
    c->rps = (double)reqs / secs;
    c->sys_per_req = calls / (double)reqs;
    c->cpu_util = (cpu1 - cpu0) / secs;
    c->cpu_us_per_req = (cpu1 - cpu0) * 1e6 / (double)reqs;
    c->client_util = client_cpu / secs;
    return 0;
}

/* ---- the matrix ------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of the rounds that succeeded (NaN-free); NaN if none did. */
static double median(double *v, int n) {
    double tmp[MAX_ROUNDS];
    int i, m = 0;
    for (i = 0; i < n; i++)
        if (!isnan(v[i])) tmp[m++] = v[i];
    if (m == 0) return NAN;
    qsort(tmp, (size_t)m, sizeof(double), cmp_double);
    return m % 2 ? tmp[m / 2] : (tmp[m / 2 - 1] + tmp[m / 2]) / 2;
}

static void print_cell(const char *name, const cell *c, double base) {
    char sys[16];
    if (isnan(c->rps)) {
        printf("  %-15s %12s\n", name, "failed");
        return;
    }
    if (isnan(c->sys_per_req)) snprintf(sys, sizeof(sys), "n/a");
    else snprintf(sys, sizeof(sys), "%.3f", c->sys_per_req);
    printf("  %-15s %12.0f %8.2fx %10s %8.0f%% %10.2f %8.0f%%\n", name, c->rps, base > 0 ? c->rps / base : NAN,
           sys, c->cpu_util * 100, c->cpu_us_per_req, c->client_util * 100);
}

static void print_table(const run_opts *ro, int conns, cell *med) {
    size_t i;
    double base = NAN;
    for (i = 0; i < NSPECS; i++)
        if (ro->use[i] && strcmp(specs[i].name, "epoll") == 0) base = med[i].rps;
    printf("\n%d connection%s, %d-byte messages (medians of %d rounds)\n", conns, conns == 1 ? "" : "s", ro->size,
           ro->rounds);
    printf("  %-15s %12s %9s %10s %9s %10s %9s\n", "server", "requests/s", "vs epoll", "sys/req", "srv CPU",
           "CPU us/req", "cli CPU");
    for (i = 0; i < NSPECS; i++)
        if (ro->use[i]) print_cell(specs[i].name, &med[i], base);
}

static void run_conns(const run_opts *ro, int conns) {
    double v[NSPECS][NMETRICS][MAX_ROUNDS];
    cell med[NSPECS];
    int r, m;
    size_t k;
    for (r = 0; r < ro->rounds; r++) {
        for (k = 0; k < NSPECS; k++) {
            size_t i = (r % 2) ? NSPECS - 1 - k : k; /* alternate the order */
            cell c;
            if (!ro->use[i]) continue;
            if (isatty(2))
                fprintf(stderr, "\r  %d conns, round %d/%d: %-15s", conns, r + 1, ro->rounds, specs[i].name);
            if (measure(ro, &specs[i], conns, &c) < 0) c.rps = c.sys_per_req = c.cpu_util = c.cpu_us_per_req = c.client_util = NAN;
            v[i][0][r] = c.rps;
            v[i][1][r] = c.sys_per_req;
            v[i][2][r] = c.cpu_util;
            v[i][3][r] = c.cpu_us_per_req;
            v[i][4][r] = c.client_util;
        }
    }
    if (isatty(2)) fprintf(stderr, "\r%60s\r", "");
    for (k = 0; k < NSPECS; k++) {
        double mv[NMETRICS];
        for (m = 0; m < NMETRICS; m++) mv[m] = median(v[k][m], ro->rounds);
        med[k].rps = mv[0];
        med[k].sys_per_req = mv[1];
        med[k].cpu_util = mv[2];
        med[k].cpu_us_per_req = mv[3];
        med[k].client_util = mv[4];
    }
    print_table(ro, conns, med);
}

/* ---- options ----------------------------------------------------------------------- */

static void usage(FILE *f) {
    fprintf(f,
            "usage: iomux-pingpong [run] [--conns LIST] [--duration S] [--rounds R] [--size B]\n"
            "                      [--servers LIST] [--client-backend NAME]\n"
            "       iomux-pingpong server --server NAME [--cpu C]\n"
            "       iomux-pingpong client --port P [--conns N] [--duration S] [--size B] [--cpu C]\n"
            "servers: select poll epoll epoll-et epoll-proactor uring-poll uring\n"
            "defaults: --conns 1,100,1000 --duration 2 --rounds 3 --size 64, client on uring\n");
}

static const spec *spec_find(const char *name) {
    size_t i;
    for (i = 0; i < NSPECS; i++)
        if (strcmp(specs[i].name, name) == 0) return &specs[i];
    return NULL;
}

static int parse_servers(const char *s, run_opts *o) {
    char buf[256], *tok, *save = NULL;
    snprintf(buf, sizeof(buf), "%s", s);
    memset(o->use, 0, sizeof(o->use));
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        const spec *sp = spec_find(tok);
        if (!sp || !iomux_backend_available(sp->backend)) return -1;
        o->use[sp - specs] = 1;
    }
    return 0;
}

static int parse_run(int argc, char **argv, run_opts *o) {
    int i;
    size_t k;
    memset(o, 0, sizeof(*o));
    o->conns[0] = 1, o->conns[1] = 100, o->conns[2] = 1000, o->nconns = 3;
    o->rounds = 3, o->size = 64, o->duration = 2, o->warmup = 0.5;
    o->client_backend = iomux_backend_available(IOMUX_BACKEND_URING) ? IOMUX_BACKEND_URING : IOMUX_BACKEND_EPOLL;
    for (k = 0; k < NSPECS; k++) o->use[k] = iomux_backend_available(specs[k].backend);
    for (i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return -1;
        if (!strcmp(a, "--conns")) {
            char *p = (char *)v;
            for (o->nconns = 0; *p && o->nconns < 8; p += *p == ',') o->conns[o->nconns++] = (int)strtol(p, &p, 10);
        } else if (!strcmp(a, "--duration")) o->duration = atof(v);
        else if (!strcmp(a, "--rounds")) o->rounds = atoi(v);
        else if (!strcmp(a, "--size")) o->size = atoi(v);
        else if (!strcmp(a, "--servers")) {
            if (parse_servers(v, o) < 0) return -1;
        } else if (!strcmp(a, "--client-backend")) {
            if (iomux_backend_parse(v, &o->client_backend) < 0) return -1;
        } else return -1;
        i++;
    }
    if (o->rounds < 1 || o->rounds > MAX_ROUNDS || o->duration <= 0 || o->size < 1 || o->size > 4096) return -1;
    return 0;
}

static int cmd_run(int argc, char **argv) {
    run_opts o;
    int i;
    if (parse_run(argc, argv, &o) < 0) {
        usage(stderr);
        return 2;
    }
    printf("iomux ping-pong: server on CPU 0, client (iomux %s) on CPU 1, %.1f s per measurement\n",
           o.client_backend == IOMUX_BACKEND_URING ? "uring" : "epoll", o.duration);
    for (i = 0; i < o.nconns; i++) run_conns(&o, o.conns[i]);
    return 0;
}

static int cmd_side(int argc, char **argv, int server) {
    const spec *sp = spec_find("epoll");
    pp_client_opts c = {IOMUX_BACKEND_URING, 0, 1, 64, 0.5, 2, 1, -1};
    int i, cpu = server ? 0 : 1, rc;
    for (i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--server")) sp = spec_find(argv[i + 1]);
        else if (!strcmp(argv[i], "--cpu")) cpu = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--port")) c.port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--conns")) c.conns = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--duration")) c.duration = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--size")) c.size = atoi(argv[i + 1]);
        else sp = NULL;
    }
    if (!sp || i != argc || (!server && c.port <= 0)) {
        usage(stderr);
        return 2;
    }
    if (server) {
        pp_server_opts s = {sp->backend, sp->api, cpu, 1};
        rc = pp_server(&s);
    } else {
        c.cpu = cpu;
        rc = pp_client(&c);
    }
    if (rc < 0) fprintf(stderr, "iomux-pingpong: %s\n", iomux_strerror(rc));
    return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "server")) return cmd_side(argc - 1, argv + 1, 1);
    if (argc > 1 && !strcmp(argv[1], "client")) return cmd_side(argc - 1, argv + 1, 0);
    if (argc > 1 && !strcmp(argv[1], "run")) return cmd_run(argc - 2, argv + 2);
    return cmd_run(argc - 1, argv + 1);
}

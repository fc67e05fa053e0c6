/* iomux-compare: what `make run` runs. See compare.h for the pieces and
 * --help for the options. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compare.h"

#ifndef IOMUX_BUILD_DIR
#define IOMUX_BUILD_DIR "build"
#endif
#ifndef IOMUX_SOURCE_DIR
#define IOMUX_SOURCE_DIR "."
#endif

cmp_opts g_opt;

static void usage(FILE *f) {
    fprintf(f,
            "usage: iomux-compare [--quick | --full | --smoke] [options]\n"
            "Runs every I/O model on this machine (servers on one CPU, the load on another) and writes\n"
            "REPORT.md and its charts (SVG) to the output directory; prints the main table.\n\n"
            "  --quick          the default: every scenario, 3 repeats, short cells (a few minutes)\n"
            "  --full           5 repeats, 3 s cells, more idle-connection points (about an hour)\n"
            "  --smoke          seconds: a tiny matrix, to check that everything runs (make test)\n"
            "  --only LIST      scenarios to run, e.g. 1,3 (1 models, 2 idle fds, 3 HTTP, 4 memory,\n"
            "                   5 business logic, 6 multi-reactor)\n"
            "  --repeats N      repeats per cell (medians are reported)\n"
            "  --duration S     measured seconds per cell     --warmup S   warm-up seconds per cell\n"
            "  --server-cpu N   CPU for the servers (default 0)\n"
            "  --load-cpu N     CPU for the load (default 1)\n"
            "  --no-perf        do not count system calls with perf\n"
            "  --out DIR        where to write the report (default report)\n"
            "  --build DIR      the build directory with the programs (default %s)\n"
            "  --src DIR        the source tree, for bench/http (default %s)\n"
            "  --help           print this and exit\n"
            "Exit codes: 0, 1 (cannot run: a program is missing), 2 (bad command line).\n",
            IOMUX_BUILD_DIR, IOMUX_SOURCE_DIR);
}

static void defaults(void) {
    g_opt.mode = CMP_QUICK;
    g_opt.bindir = IOMUX_BUILD_DIR;
    g_opt.srcdir = IOMUX_SOURCE_DIR;
    g_opt.outdir = "report";
    g_opt.server_cpu = 0;
    g_opt.load_cpu = 1;
    g_opt.use_perf = 1;
    g_opt.repeats = g_opt.wrk_seconds = 0;
    g_opt.duration = g_opt.warmup = -1;
}

static void mode_defaults(void) {
    static const struct {
        int repeats, wrk;
        double duration, warmup;
    } d[] = {[CMP_SMOKE] = {1, 1, 0.3, 0.1}, [CMP_QUICK] = {3, 1, 0.3, 0.15}, [CMP_FULL] = {5, 5, 3, 1}};
    if (g_opt.repeats <= 0) g_opt.repeats = d[g_opt.mode].repeats;
    if (g_opt.duration <= 0) g_opt.duration = d[g_opt.mode].duration;
    if (g_opt.warmup < 0) g_opt.warmup = d[g_opt.mode].warmup;
    g_opt.wrk_seconds = g_opt.duration > d[g_opt.mode].wrk ? (int)(g_opt.duration + 0.5) : d[g_opt.mode].wrk;
}

static int bad(const char *what, const char *arg) {
    fprintf(stderr, "iomux-compare: %s: '%s' (try --help)\n", what, arg);
    return 2;
}

static int number(const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    return errno || end == s || *end || *out < lo || *out > hi ? -1 : 0;
}

static int parse(int argc, char **argv) {
    int i;
    double v;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quick")) g_opt.mode = CMP_QUICK;
        else if (!strcmp(a, "--full")) g_opt.mode = CMP_FULL;
        else if (!strcmp(a, "--smoke")) g_opt.mode = CMP_SMOKE;
        else if (!strcmp(a, "--no-perf")) g_opt.use_perf = 0, snprintf(g_opt.perf_why, sizeof(g_opt.perf_why), "--no-perf");
        else if (!strcmp(a, "--help")) usage(stdout), exit(0);
        else if (!val) return bad("unknown option or missing value", a);
        else if (!strcmp(a, "--only")) g_opt.only = argv[++i];
        else if (!strcmp(a, "--out")) g_opt.outdir = argv[++i];
        else if (!strcmp(a, "--build")) g_opt.bindir = argv[++i];
        else if (!strcmp(a, "--src")) g_opt.srcdir = argv[++i];
        else if (!strcmp(a, "--repeats") && !number(val, 1, CMP_MAX_REPEATS, &v)) g_opt.repeats = (int)v, i++;
        else if (!strcmp(a, "--duration") && !number(val, 0.1, 600, &v)) g_opt.duration = v, i++;
        else if (!strcmp(a, "--warmup") && !number(val, 0, 600, &v)) g_opt.warmup = v, i++;
        else if (!strcmp(a, "--server-cpu") && !number(val, 0, 4095, &v)) g_opt.server_cpu = (int)v, i++;
        else if (!strcmp(a, "--load-cpu") && !number(val, 0, 4095, &v)) g_opt.load_cpu = (int)v, i++;
        else return bad("unknown option or bad value", a);
    }
    return 0;
}

static int scenario_on(int n) {
    char key[4];
    snprintf(key, sizeof(key), "%d", n);
    return !g_opt.only || cmp_listed(g_opt.only, key);
}

/* The output directory, the logs beside it, the fd limit, the CPUs, perf. */
static int setup(int argc, char **argv) {
    struct rlimit rl;
    char cmd[700], load[600], abs[PATH_MAX];
    size_t off = 0;
    int i;
    for (i = 0; i < argc && off + 2 < sizeof(g_opt.cmdline); i++)
        off += (size_t)snprintf(g_opt.cmdline + off, sizeof(g_opt.cmdline) - off, "%s%s", i ? " " : "",
                                i ? argv[i] : "iomux-compare");
    snprintf(load, sizeof(load), "%s/apps/load/iomux-load", g_opt.bindir);
    if (access(load, X_OK) != 0) {
        fprintf(stderr, "iomux-compare: %s is not built (cmake --build %s)\n", load, g_opt.bindir);
        return 1;
    }
    snprintf(g_opt.tmpdir, sizeof(g_opt.tmpdir), "%s/logs", g_opt.outdir);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s'", g_opt.tmpdir, g_opt.tmpdir);
    if (system(cmd) != 0) {
        fprintf(stderr, "iomux-compare: cannot create %s\n", g_opt.tmpdir);
        return 1;
    }
    /* nginx -p takes relative paths from its prefix: make them absolute */
    if (!realpath(g_opt.tmpdir, abs) || strlen(abs) >= sizeof(g_opt.tmpdir)) {
        fprintf(stderr, "iomux-compare: %s: no absolute path shorter than %zu bytes\n", g_opt.tmpdir,
                sizeof(g_opt.tmpdir));
        return 1;
    }
    memcpy(g_opt.tmpdir, abs, strlen(abs) + 1);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max; /* the servers inherit it: 15,000 idle connections */
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2) {
        fprintf(stderr, "iomux-compare: one CPU: the servers and the load share it\n");
        g_opt.server_cpu = g_opt.load_cpu = 0;
    }
    if (g_opt.use_perf) g_opt.use_perf = cmp_perf_probe(g_opt.perf_why, sizeof(g_opt.perf_why));
    if (!g_opt.use_perf) fprintf(stderr, "iomux-compare: syscalls per request not counted: %s\n", g_opt.perf_why);
    cmp_kill_children_on_signals();
    return 0;
}

int main(int argc, char **argv) {
    static void (*const scenarios[])(cmp_report *) = {cmp_scenario_models, cmp_scenario_idle,
                                                      cmp_scenario_http,   cmp_scenario_memory,
                                                      cmp_scenario_work,   cmp_scenario_threads};
    cmp_report r;
    double t0 = cmp_now();
    int rc, i;
    defaults();
    if ((rc = parse(argc, argv)) != 0) return rc;
    mode_defaults();
    if ((rc = setup(argc, argv)) != 0) return rc;
    if (cmp_report_open(&r) < 0) {
        fprintf(stderr, "iomux-compare: cannot write in %s\n", g_opt.tmpdir);
        return 1;
    }
    fprintf(stderr, "iomux-compare: %s run, %d repeat(s) of %.2g s cells; servers on CPU %d, load on CPU %d\n",
            g_opt.mode == CMP_SMOKE ? "smoke" : g_opt.mode == CMP_QUICK ? "quick" : "full", g_opt.repeats,
            g_opt.duration, g_opt.server_cpu, g_opt.load_cpu);
    for (i = 0; i < 6; i++)
        if (scenario_on(i + 1)) scenarios[i](&r);
    if (cmp_report_finish(&r, cmp_now() - t0) < 0) {
        fprintf(stderr, "iomux-compare: cannot write %s/REPORT.md\n", g_opt.outdir);
        return 1;
    }
    printf("report: %s/REPORT.md (charts and logs beside it), %.0f s\n", g_opt.outdir, cmp_now() - t0);
    return 0;
}

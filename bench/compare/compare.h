/* iomux-compare: runs every I/O model on this machine and writes the answer
 * to "which model is faster, and where?" (report/REPORT.md and charts).
 *
 * The pieces, one file each:
 *   main.c      options, set-up, the order of the scenarios
 *   proc.c      child processes: start pinned, stop, /proc readings, perf
 *   servers.c   what a server is (iomux apps, peers, nginx) and starting one
 *   measure.c   one cell: a load run against a running server, with the
 *               server's CPU, syscalls and RSS over the measured period
 *   matrix.c    a scenario's matrix (servers x loads), run in alternating
 *               order, repeated
 *   scen_echo.c the echo scenarios: models (and the terminal table), idle fds,
 *               business logic, multi-reactor
 *   scen_http.c HTTP, and memory per idle connection
 *   report.c    REPORT.md: header, tables, verdict
 *   svg.c       the charts, written as SVG by hand (no plotting package)
 *
 * Every figure is a median over repeats; a cell that cannot run carries the
 * reason instead of a number. */
#ifndef IOMUX_COMPARE_H
#define IOMUX_COMPARE_H

#include <stdio.h>
#include <sys/types.h>

#define CMP_MAX_REPEATS 9
#define CMP_MAX_PIDS 2048
#define CMP_WHY 512 /* a reason a cell has no number */

/* ---- options ---- */

typedef enum cmp_mode { CMP_SMOKE, CMP_QUICK, CMP_FULL } cmp_mode;

typedef struct cmp_opts {
    cmp_mode mode;
    int repeats;
    double duration, warmup;   /* seconds per measured cell */
    int wrk_seconds;           /* wrk takes whole seconds */
    const char *bindir;        /* the build directory */
    const char *srcdir;        /* the source tree (bench/http/nginx.conf) */
    const char *outdir;        /* report/ */
    char tmpdir[256];          /* logs and nginx's files: an absolute path */
    int server_cpu, load_cpu;
    int use_perf;              /* 1 if perf can count syscalls here */
    char perf_why[160];        /* why not, when it cannot */
    const char *only;          /* comma list of scenario numbers, or NULL */
    char cmdline[512];
} cmp_opts;

extern cmp_opts g_opt;

/* ---- processes (proc.c) ---- */

typedef struct cmp_child {
    pid_t pid;
    char log[300];             /* its stdout and stderr */
} cmp_child;

int cmp_spawn(cmp_child *c, char *const argv[], int cpu, const char *log, int keep_fd);
int cmp_wait_port(cmp_child *c, double timeout_s);       /* the ready line's port */
int cmp_wait_connect(int port, double timeout_s);       /* 0 once the port accepts */
void cmp_stop(cmp_child *c, double timeout_s);
void cmp_kill_children_on_signals(void);
int cmp_child_wait(cmp_child *c, double timeout_s);      /* exit status, -1: killed */
int cmp_group_pids(pid_t pgid, pid_t *out, int max);
double cmp_cpu_s(const pid_t *pids, int n);              /* run time of every thread */
double cmp_rss_bytes(const pid_t *pids, int n, int pss); /* Rss or Pss sum */
int cmp_free_port(void);
double cmp_now(void);

/* perf stat counting raw_syscalls:sys_enter over a set of pids. */
typedef struct cmp_perf {
    cmp_child child;
    char out[300];
    double secs;
} cmp_perf;
int cmp_perf_start(cmp_perf *p, const pid_t *pids, int n, double secs);
double cmp_perf_stop(cmp_perf *p);                       /* count, or -1 */
int cmp_perf_probe(char *why, size_t len);

/* ---- servers (servers.c) ---- */

typedef enum cmp_proto { CMP_ECHO, CMP_HTTP } cmp_proto;

typedef struct cmp_server {
    const char *key;           /* file-name safe id, "epoll-et" */
    const char *label;         /* table label, "epoll ET" */
    const char *bin;           /* relative to the build dir; "nginx" for nginx */
    const char *args[8];       /* NULL-terminated extra arguments */
    int blocking;              /* a thread or process per connection */
    int peer;                  /* not iomux */
} cmp_server;

typedef struct cmp_running {
    const cmp_server *def;
    cmp_child child;
    int port;
} cmp_running;

/* Why a server cannot run here ("" when it can). */
const char *cmp_server_missing(const cmp_server *s, char *why, size_t len);
int cmp_server_start(cmp_running *r, const cmp_server *s, cmp_proto proto, int processes);
void cmp_server_stop(cmp_running *r);
void cmp_server_cmdline(const cmp_server *s, cmp_proto proto, int processes, char *buf, size_t len);

extern const cmp_server cmp_echo_servers[];
extern const int cmp_n_echo_servers;
extern const cmp_server cmp_http_servers[];
extern const int cmp_n_http_servers;
const cmp_server *cmp_find_server(const cmp_server *list, int n, const char *key);

/* ---- one measurement (measure.c) ---- */

typedef struct cmp_load {
    cmp_proto proto;
    int conns, idle, pipeline, size;
    int wrk;                   /* 1: wrk instead of iomux-load */
    double duration, warmup;
} cmp_load;

typedef struct cmp_sample {
    int ok;
    char why[CMP_WHY];
    double rps, p50_us, p99_us, errors;
    double cpu_us_per_req;     /* the server's */
    double sys_per_req;        /* the server's; < 0 when not counted */
    double rss_bytes;          /* the server's at the end of the period */
    double load_cpu_s;         /* the load generator's own CPU */
} cmp_sample;

void cmp_measure(const cmp_running *srv, const cmp_load *l, int count_syscalls, cmp_sample *out);
void cmp_load_cmdline(const cmp_load *l, char *buf, size_t len);   /* PORT for the port */

/* ---- a cell: the samples of its repeats and their medians ---- */

typedef struct cmp_cell {
    int n, failed;
    cmp_sample s[CMP_MAX_REPEATS];
    char why[CMP_WHY];             /* why it has no number, if so */
} cmp_cell;

typedef enum cmp_metric { M_RPS, M_P50, M_P99, M_CPU, M_SYS, M_RSS, M_ERRORS } cmp_metric;

void cmp_cell_add(cmp_cell *c, const cmp_sample *s);
int cmp_cell_ok(const cmp_cell *c);
double cmp_cell_median(const cmp_cell *c, cmp_metric m);   /* NAN if none */
double cmp_cell_spread(const cmp_cell *c, cmp_metric m);   /* (max - min) / median */
void cmp_cell_fail(cmp_cell *c, const char *why);

/* ---- a scenario's matrix: servers x loads, repeated (matrix.c) ---- */

#define CMP_MAX_SERVERS 24
#define CMP_MAX_LOADS 12

typedef struct cmp_matrix cmp_matrix;
struct cmp_matrix {
    const char *name;          /* for the progress line */
    cmp_proto proto;
    const cmp_server *servers[CMP_MAX_SERVERS];
    int nservers;
    cmp_load loads[CMP_MAX_LOADS];
    const char *load_names[CMP_MAX_LOADS];
    int nloads;
    int repeats;
    int processes;             /* prefork's workers */
    int server_cpu;            /* -1: not pinned */
    int count_syscalls;
    int per_idle_conn;         /* rss_bytes becomes (RSS - RSS at start) / idle */
    /* may change a load for one server, or return why it cannot run */
    const char *(*adjust)(const cmp_matrix *m, const cmp_server *s, cmp_load *l);
    cmp_cell cells[CMP_MAX_SERVERS][CMP_MAX_LOADS];
    char missing[CMP_MAX_SERVERS][CMP_WHY];
};

typedef struct cmp_report cmp_report;
void cmp_matrix_init(cmp_matrix *m, const char *name, cmp_proto proto);
void cmp_matrix_add(cmp_matrix *m, const cmp_server *s);
cmp_load *cmp_matrix_load(cmp_matrix *m, const char *name, int conns, int idle, int pipeline);
void cmp_matrix_run(cmp_matrix *m, cmp_report *r);
int cmp_matrix_index(const cmp_matrix *m, const char *key);             /* -1: not in it */
double cmp_med(const cmp_matrix *m, const char *key, int load, cmp_metric what); /* NAN: none */
void cmp_matrix_chart(cmp_report *r, const cmp_matrix *m, const char *file, const char *title);

/* ---- the scenarios (scen_echo.c, scen_http.c) ---- */

void cmp_scenario_models(cmp_report *r);
void cmp_scenario_idle(cmp_report *r);
void cmp_scenario_http(cmp_report *r);
void cmp_scenario_memory(cmp_report *r);
void cmp_scenario_work(cmp_report *r);
void cmp_scenario_threads(cmp_report *r);

/* ---- the report (report.c) ---- */

struct cmp_report {
    FILE *md;                  /* the body, appended to REPORT.md at the end */
    char body_path[300];
    FILE *cmds;                /* every command run, for the appendix */
    char cmds_path[300];
    char verdict[64][800];     /* one line per finding */
    int n_verdict;
};

int cmp_report_open(cmp_report *r);
int cmp_report_finish(cmp_report *r, double elapsed_s);
void cmp_verdict(cmp_report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cmp_command(cmp_report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cmp_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cmp_progress_done(void);
const char *cmp_fmt(double v, int decimals, char *buf, size_t len);  /* "1,234" or "–" */
const char *cmp_x(double ratio);   /* "1.23x" or "n/a"; rotating buffers */
int cmp_listed(const char *list, const char *key);   /* key in "a,b,c" */
void cmp_md_header(FILE *f, int n, const char *const *cols);
void cmp_md_row(FILE *f, int n, const char *const *cells);

/* ---- charts (svg.c) ---- */

typedef struct svg_series {
    const char *name;
    int n;
    const double *x, *y;       /* NAN y: a gap */
} svg_series;

int svg_lines(const char *path, const char *title, const char *xlabel, const char *ylabel,
              const svg_series *s, int nseries, int logy);
int svg_bars(const char *path, const char *title, const char *ylabel, const char *const *groups,
             int ngroups, const char *const *names, int nnames, const double *values /* [g][n] */, int logy);

#endif

/* report/REPORT.md: a header that lets a reader reproduce the run (machine,
 * kernel, versions, the command), the scenarios' sections as they were
 * written, the verdict generated from the numbers, and every command that
 * was run. Sections go to a temporary body file while the run goes on, so
 * the header can say how long it took. Also the progress line. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "compare.h"

int cmp_report_open(cmp_report *r) {
    memset(r, 0, sizeof(*r));
    snprintf(r->body_path, sizeof(r->body_path), "%s/body.md", g_opt.tmpdir);
    snprintf(r->cmds_path, sizeof(r->cmds_path), "%s/commands.txt", g_opt.tmpdir);
    r->md = fopen(r->body_path, "w+");
    r->cmds = fopen(r->cmds_path, "w+");
    return r->md && r->cmds ? 0 : -1;
}

void cmp_verdict(cmp_report *r, const char *fmt, ...) {
    va_list ap;
    if (r->n_verdict >= (int)(sizeof(r->verdict) / sizeof(r->verdict[0]))) return;
    va_start(ap, fmt);
    vsnprintf(r->verdict[r->n_verdict++], sizeof(r->verdict[0]), fmt, ap);
    va_end(ap);
}

/* Each distinct command once, in the order first run. */
void cmp_command(cmp_report *r, const char *fmt, ...) {
    static char *seen[1024];
    static int nseen;
    char line[700];
    va_list ap;
    int i;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    for (i = 0; i < nseen; i++)
        if (strcmp(seen[i], line) == 0) return;
    if (nseen < 1024) seen[nseen++] = strdup(line);
    fprintf(r->cmds, "%s\n", line);
}

/* ---- numbers and tables ---- */

const char *cmp_fmt(double v, int decimals, char *buf, size_t len) {
    char raw[64], *dot;
    int intlen, i, o = 0;
    if (isnan(v) || isinf(v)) return snprintf(buf, len, "–"), buf;
    snprintf(raw, sizeof(raw), "%.*f", decimals, fabs(v));
    dot = strchr(raw, '.');
    intlen = dot ? (int)(dot - raw) : (int)strlen(raw);
    if (v < 0 && o + 1 < (int)len) buf[o++] = '-';
    for (i = 0; raw[i] && o + 2 < (int)len; i++) {
        if (i < intlen && i > 0 && (intlen - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = raw[i];
    }
    buf[o] = '\0';
    return buf;
}

/* "1.23x", or "n/a" when a side was not measured; rotating buffers so one
 * verdict line can hold several. */
const char *cmp_x(double v) {
    static char bufs[16][24];
    static int k;
    char *b = bufs[k++ % 16];
    if (isnan(v) || isinf(v)) snprintf(b, 24, "n/a");
    else snprintf(b, 24, "%.2fx", v);
    return b;
}

/* Is `key` one of the comma-separated words of `list`? */
int cmp_listed(const char *list, const char *key) {
    size_t n = strlen(key);
    const char *p = list;
    while ((p = strstr(p, key))) {
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) return 1;
        p += n;
    }
    return 0;
}

void cmp_md_header(FILE *f, int n, const char *const *cols) {
    int i;
    for (i = 0; i < n; i++) fprintf(f, "| %s ", cols[i]);
    fprintf(f, "|\n");
    for (i = 0; i < n; i++) fprintf(f, i ? "|---:" : "|---");
    fprintf(f, "|\n");
}

void cmp_md_row(FILE *f, int n, const char *const *cells) {
    int i;
    for (i = 0; i < n; i++) fprintf(f, "| %s ", cells[i]);
    fprintf(f, "|\n");
}

/* ---- progress ---- */

static int progress_tty = -1;

void cmp_progress(const char *fmt, ...) {
    char line[300];
    va_list ap;
    if (progress_tty < 0) progress_tty = isatty(2);
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (progress_tty) fprintf(stderr, "\r\033[K%s", line);
    else fprintf(stderr, "  %s\n", line);
}

void cmp_progress_done(void) {
    if (progress_tty > 0) fprintf(stderr, "\r\033[K");
}

/* ---- the header ---- */

static void first_line_of(const char *cmd, char *buf, size_t len) {
    FILE *p = popen(cmd, "r");
    buf[0] = '\0';
    if (p) {
        if (!fgets(buf, (int)len, p)) buf[0] = '\0';
        pclose(p);
    }
    buf[strcspn(buf, "\n")] = '\0';
}

static void machine(FILE *f) {
    char cpu[256] = "?", line[512], mem[128] = "?", deb[64] = "?";
    struct utsname u;
    FILE *c = fopen("/proc/cpuinfo", "r");
    while (c && fgets(line, sizeof(line), c))
        if (strncmp(line, "model name", 10) == 0) {
            snprintf(cpu, sizeof(cpu), "%s", strchr(line, ':') + 2);
            cpu[strcspn(cpu, "\n")] = '\0';
            break;
        }
    if (c) fclose(c);
    first_line_of("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo", mem, sizeof(mem));
    first_line_of("cat /etc/debian_version 2>/dev/null", deb, sizeof(deb));
    uname(&u);
    fprintf(f, "- Machine: %s, %ld CPUs online, %s RAM; Debian %s\n", cpu, sysconf(_SC_NPROCESSORS_ONLN), mem,
            deb);
    fprintf(f, "- Kernel: %s %s %s\n", u.sysname, u.release, u.version);
    fprintf(f, "- Compiler of this build: %s\n", __VERSION__);
}

static void versions(FILE *f) {
    char line[256];
    FILE *p = popen("dpkg-query -W -f '${Package} ${Version}\\n' liburing-dev node-llhttp libuv1-dev libevent-dev "
                    "libev-dev wrk nginx-light nginx-core nginx linux-perf 2>/dev/null",
                    "r");
    fprintf(f, "- Packages:");
    while (p && fgets(line, sizeof(line), p)) {
        line[strcspn(line, "\n")] = '\0';
        if (strchr(line, ' ') && strchr(line, ' ')[1]) fprintf(f, " %s;", line);
    }
    if (p) pclose(p);
    fprintf(f, "\n");
}

static void header(FILE *f, double elapsed_s) {
    char date[64], rev[64];
    time_t t = time(NULL);
    char cmd[700];
    strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S %Z", localtime(&t));
    snprintf(cmd, sizeof(cmd), "git -C '%s' describe --always --dirty 2>/dev/null", g_opt.srcdir);
    first_line_of(cmd, rev, sizeof(rev));
    fprintf(f, "# iomux-compare: which I/O model is faster on this machine, and where?\n\n");
    fprintf(f, "Generated by `%s` on %s in %.0f s (iomux %s).\n\n", g_opt.cmdline, date, elapsed_s,
            rev[0] ? rev : "(not a git tree)");
    machine(f);
    versions(f);
    fprintf(f, "- Placement: servers on CPU %d, the load (iomux-load, wrk) on CPU %d; every figure is the median "
               "of %d repeat(s), servers run in alternating order.\n",
            g_opt.server_cpu, g_opt.load_cpu, g_opt.repeats);
    fprintf(f, "- Per cell: warm-up %.2g s, measured %.2g s (wrk: %d s).\n", g_opt.warmup, g_opt.duration,
            g_opt.wrk_seconds);
    if (g_opt.use_perf)
        fprintf(f, "- Syscalls per request: `perf stat -e raw_syscalls:sys_enter -p <server>` over 70%% of the "
                   "measured period (a steady-state rate; perf's counting itself costs the server a little).\n");
    else fprintf(f, "- Syscalls per request: not measured: %s.\n", g_opt.perf_why);
    if (g_opt.mode != CMP_FULL)
        fprintf(f, "- This is a %s run: cells are short, so on a noisy machine a difference smaller than the "
                   "\"spread\" of the repeats is noise. `iomux-compare --full` gives the figures to quote.\n",
                g_opt.mode == CMP_SMOKE ? "smoke" : "quick");
    fprintf(f, "\nThe load generator and the server share one machine: on loopback the sender also pays for the "
               "receiver's TCP work, so the busiest cells may be capped by the load's CPU; \"load CPU\" figures "
               "say when.\n\n");
}

static void copy_file(FILE *from, FILE *to) {
    char buf[8192];
    size_t n;
    rewind(from);
    while ((n = fread(buf, 1, sizeof(buf), from)) > 0) fwrite(buf, 1, n, to);
}

int cmp_report_finish(cmp_report *r, double elapsed_s) {
    char path[600];
    FILE *f;
    int i;
    snprintf(path, sizeof(path), "%s/REPORT.md", g_opt.outdir);
    if (!(f = fopen(path, "w"))) return -1;
    header(f, elapsed_s);
    fprintf(f, "<details><summary>Every server and load command of this run (ports vary)</summary>\n\n```\n");
    copy_file(r->cmds, f);
    fprintf(f, "```\n</details>\n\n");
    copy_file(r->md, f);
    fprintf(f, "## Verdict\n\nGenerated from the numbers above, beside the claims of the seed documents "
               "(`../shared/seeds/`).\n\n");
    for (i = 0; i < r->n_verdict; i++) fprintf(f, "- %s\n", r->verdict[i]);
    fclose(f);
    fclose(r->md);
    fclose(r->cmds);
    return 0;
}

/* Child processes for iomux-compare: started pinned to a CPU in a process
 * group of their own (so a prefork server and its workers are stopped and
 * measured as one), their output in a log file, and what /proc says about
 * them. perf counts their system calls when this machine lets it. */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "compare.h"

double cmp_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* In the child: its own group, pinned, output to the log, every fd but
 * 0-2 and keep_fd closed (a server must not hold the driver's pipes). */
static void child_setup(int cpu, const char *log, int keep_fd) {
    int fd, max = (int)sysconf(_SC_OPEN_MAX);
    setpgid(0, 0);
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        sched_setaffinity(0, sizeof(set), &set);
    }
    fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    fd = open("/dev/null", O_RDONLY);
    if (fd >= 0) dup2(fd, 0);
    for (fd = 3; fd < max && fd < 65536; fd++)
        if (fd != keep_fd) close(fd);
}

/* The process groups alive, so an interrupted run leaves no server behind:
 * they are groups of their own, a Ctrl-C on the terminal does not reach them. */
static volatile pid_t live[16];

static void track(pid_t pgid, pid_t was) {
    int i;
    for (i = 0; i < 16; i++)
        if (live[i] == was) {
            live[i] = pgid;
            return;
        }
}

static void on_fatal_signal(int sig) {
    int i;
    for (i = 0; i < 16; i++)
        if (live[i] > 0) kill(-live[i], SIGKILL);
    signal(sig, SIG_DFL);
    raise(sig);
}

void cmp_kill_children_on_signals(void) {
    signal(SIGINT, on_fatal_signal);
    signal(SIGTERM, on_fatal_signal);
    signal(SIGHUP, on_fatal_signal);
}

int cmp_spawn(cmp_child *c, char *const argv[], int cpu, const char *log, int keep_fd) {
    snprintf(c->log, sizeof(c->log), "%s", log);
    c->pid = fork();
    if (c->pid < 0) return -errno;
    if (c->pid == 0) {
        child_setup(cpu, log, keep_fd);
        execvp(argv[0], argv);
        fprintf(stderr, "iomux-compare: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    setpgid(c->pid, c->pid); /* also here: no race with a signal to the group */
    track(c->pid, 0);
    return 0;
}

static int exited(cmp_child *c) {
    int st;
    if (c->pid <= 0) return 1;
    if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
        track(0, c->pid);
        c->pid = 0;
        return 1;
    }
    return 0;
}

/* The port from a ready line "...listening on 127.0.0.1:PORT ..." in the
 * log; -1 if the child exits or the time runs out first. */
int cmp_wait_port(cmp_child *c, double timeout_s) {
    double end = cmp_now() + timeout_s;
    char buf[4096];
    while (cmp_now() < end) {
        FILE *f = fopen(c->log, "r");
        if (f) {
            while (fgets(buf, sizeof(buf), f)) {
                char *p = strstr(buf, "listening on ");
                if (p && (p = strstr(p, "127.0.0.1:"))) {
                    fclose(f);
                    return atoi(p + strlen("127.0.0.1:"));
                }
            }
            fclose(f);
        }
        if (exited(c)) return -1;
        sleep_s(0.01);
    }
    return -1;
}

int cmp_wait_connect(int port, double timeout_s) {
    double end = cmp_now() + timeout_s;
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    while (cmp_now() < end) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), rc;
        if (fd < 0) return -errno;
        rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
        close(fd);
        if (rc == 0) return 0;
        sleep_s(0.02);
    }
    return -ETIMEDOUT;
}

/* Waits up to timeout_s for the child to exit by itself (then kills it):
 * its exit status, or -1 when it had to be killed. */
int cmp_child_wait(cmp_child *c, double timeout_s) {
    double end = cmp_now() + timeout_s;
    int st;
    while (c->pid > 0 && cmp_now() < end) {
        if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
            track(0, c->pid);
            c->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        }
        sleep_s(0.005);
    }
    cmp_stop(c, 1);
    return -1;
}

/* SIGTERM to the group, then SIGKILL if it has not exited in time. The
 * group is killed either way: workers of a prefork server, nginx's worker. */
void cmp_stop(cmp_child *c, double timeout_s) {
    pid_t pgid = c->pid;
    double end = cmp_now() + timeout_s;
    if (c->pid <= 0) return;
    kill(-pgid, SIGTERM);
    while (!exited(c) && cmp_now() < end) sleep_s(0.005);
    kill(-pgid, SIGKILL);
    if (c->pid > 0) waitpid(c->pid, NULL, 0);
    track(0, pgid);
    c->pid = 0;
}

/* Field `idx` (1-based, as in proc(5)) of /proc/PID/stat, after the
 * command name, which may hold spaces and parentheses. */
static int stat_fields(pid_t pid, unsigned long long *vals, const int *idx, int n) {
    char path[64], buf[1024], *p;
    FILE *f;
    int field = 3, k = 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (!(f = fopen(path, "r"))) return -1;
    p = fgets(buf, sizeof(buf), f);
    fclose(f);
    if (!p || !(p = strrchr(buf, ')'))) return -1;
    p += 2; /* ") " */
    while (*p && k < n) {
        if (field == idx[k]) vals[k++] = strtoull(p, NULL, 10);
        while (*p && *p != ' ') p++;
        while (*p == ' ') p++;
        field++;
    }
    return k == n ? 0 : -1;
}

int cmp_group_pids(pid_t pgid, pid_t *out, int max) {
    DIR *d = opendir("/proc");
    struct dirent *e;
    int n = 0;
    static const int idx[] = {5};
    if (!d) return 0;
    while ((e = readdir(d)) && n < max) {
        unsigned long long grp;
        if (!isdigit((unsigned char)e->d_name[0])) continue;
        if (stat_fields(atoi(e->d_name), &grp, idx, 1) == 0 && (pid_t)grp == pgid) out[n++] = atoi(e->d_name);
    }
    closedir(d);
    return n;
}

/* CPU time of one process, the larger of two readings: utime + stime from
 * /proc/PID/stat, which counts threads that have exited but only in whole
 * clock ticks (10 ms: each of a prefork server's many briefly running
 * workers showed none), and the run time of its live threads from
 * /proc/PID/task/TID/schedstat, in nanoseconds. */
static double process_cpu_s(pid_t pid) {
    static const int idx[] = {14, 15};
    char path[64];
    unsigned long long v[2];
    struct dirent *e;
    double ns = 0, ticks;
    int found = 0;
    DIR *d;
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    if ((d = opendir(path))) {
        while ((e = readdir(d))) {
            char sp[320];
            unsigned long long run;
            FILE *f;
            if (!isdigit((unsigned char)e->d_name[0])) continue;
            snprintf(sp, sizeof(sp), "/proc/%d/task/%s/schedstat", (int)pid, e->d_name);
            if (!(f = fopen(sp, "r"))) continue;
            if (fscanf(f, "%llu", &run) == 1) ns += (double)run, found = 1;
            fclose(f);
        }
        closedir(d);
    }
    if (stat_fields(pid, v, idx, 2) < 0) v[0] = v[1] = 0;
    ticks = (double)(v[0] + v[1]) / (double)sysconf(_SC_CLK_TCK);
    return found && ns / 1e9 > ticks ? ns / 1e9 : ticks;
}

double cmp_cpu_s(const pid_t *pids, int n) {
    double sum = 0;
    int i;
    for (i = 0; i < n; i++) sum += process_cpu_s(pids[i]);
    return sum;
}

/* Rss (or Pss, which divides shared pages among their users: the fair sum
 * over a prefork server's processes) from smaps_rollup, in bytes. */
double cmp_rss_bytes(const pid_t *pids, int n, int pss) {
    const char *key = pss ? "Pss:" : "Rss:";
    double sum = 0;
    int i;
    for (i = 0; i < n; i++) {
        char path[64], line[256];
        FILE *f;
        snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pids[i]);
        if (!(f = fopen(path, "r"))) continue;
        while (fgets(line, sizeof(line), f))
            if (strncmp(line, key, strlen(key)) == 0) {
                sum += strtod(line + strlen(key), NULL) * 1024.0;
                break;
            }
        fclose(f);
    }
    return sum;
}

int cmp_free_port(void) {
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

/* ---- perf ---- */

/* perf stat on the pids for `secs` seconds (perf ends with its `sleep`).
 * task-clock rides along: without a second event, Debian 12's perf reports
 * the tracepoint alone as "<not counted>" when attached with -p. */
int cmp_perf_start(cmp_perf *p, const pid_t *pids, int n, double secs) {
    static char list[CMP_MAX_PIDS * 8];
    char dur[32];
    char *argv[] = {"perf", "stat", "-x", ",", "-e", "raw_syscalls:sys_enter,task-clock", "-p", list,
                    "-o", p->out, "--", "sleep", dur, NULL};
    size_t off = 0;
    int i;
    list[0] = '\0';
    for (i = 0; i < n && off + 16 < sizeof(list); i++)
        off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%d", i ? "," : "", (int)pids[i]);
    snprintf(dur, sizeof(dur), "%.3f", secs);
    snprintf(p->out, sizeof(p->out), "%s/perf.out", g_opt.tmpdir);
    unlink(p->out);
    p->secs = secs;
    return cmp_spawn(&p->child, argv, g_opt.load_cpu, p->child.log[0] ? p->child.log : "/dev/null", -1);
}

/* Waits for perf to end on its own, then reads the count (-1: none). */
double cmp_perf_stop(cmp_perf *p) {
    char line[512];
    double count = -1;
    FILE *f;
    if (p->child.pid <= 0) return -1;
    if (cmp_child_wait(&p->child, p->secs + 5) != 0) return -1;
    if (!(f = fopen(p->out, "r"))) return -1;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, "raw_syscalls:sys_enter") && isdigit((unsigned char)line[0])) count = strtod(line, NULL);
    fclose(f);
    return count;
}

/* Can perf count a process's system calls here? Try on a sleeping child. */
int cmp_perf_probe(char *why, size_t len) {
    cmp_child spinner;
    cmp_perf p;
    char *argv[] = {"sh", "-c", "while :; do :; done", NULL}; /* perf says "not counted" of a sleeper */
    double n;
    memset(&p, 0, sizeof(p));
    if (system("command -v perf >/dev/null 2>&1") != 0) {
        snprintf(why, len, "perf is not installed (Debian: linux-perf)");
        return 0;
    }
    if (cmp_spawn(&spinner, argv, -1, "/dev/null", -1) < 0) return 0;
    snprintf(p.child.log, sizeof(p.child.log), "%s/perf-probe.log", g_opt.tmpdir);
    n = cmp_perf_start(&p, &spinner.pid, 1, 0.2) < 0 ? -1 : cmp_perf_stop(&p);
    cmp_stop(&spinner, 1);
    if (n < 0) {
        snprintf(why, len, "perf stat -e raw_syscalls:sys_enter is refused here (see %s)", p.child.log);
        return 0;
    }
    why[0] = '\0';
    return 1;
}

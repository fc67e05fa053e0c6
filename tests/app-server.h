/* A server program under test, run as a child process (test-app-echo,
 * test-app-httpd): started on 127.0.0.1 port 0, its ready line read for the
 * port, its output (stdout and stderr merged) kept for the "no alerts"
 * check at the end, killed with its process group if the test fails.
 *
 *     server s;
 *     spawn(&s, argv);               // argv[0]: the binary; NULL-terminated
 *     g_server = &s;                 // atexit(kill_server) kills it on FAIL
 *     wait_ready(&s);                // "...listening on 127.0.0.1:PORT (...)\n"
 *     fd = connect_to(s.port, 0);
 *     ...
 *     kill(s.pid, SIGTERM);
 *     status = wait_exit(&s, ms);    // fails after ms
 *     check_output(&s, 0);           // no error, alert, sanitizer, leak line
 *     g_server = NULL; free(s.text);
 *
 * spawn_with() runs a function in the child just before exec (seccomp,
 * setrlimit); spawn_nofile() starts it with RLIMIT_NOFILE lowered. The
 * child gets no fd of the test but its stdout and stderr (the pipe).
 * run_to_end() / expect_exit() run a command line that is meant to end
 * (--help, bad options). proc_rss_kib() and proc_cpu_ms() read a process's
 * VmRSS (/proc/PID/status) and utime + stime (/proc/PID/stat),
 * proc_fd_count() its open fds (/proc/PID/fd); the
 * proc_group_* variants sum them over a process group (the server's pid:
 * spawn makes it a group leader), for servers that fork (prefork).
 * Every wait is bounded. Include after harness.h. */
#ifndef IOMUX_TEST_APP_SERVER_H
#define IOMUX_TEST_APP_SERVER_H

#include <dirent.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "harness.h"

#ifndef APP_READY_MS
#define APP_READY_MS 15000 /* start-up, sanitizers included */
#endif

typedef struct server {
    pid_t pid;
    int out;            /* its stdout and stderr, merged */
    char *text;         /* everything it printed */
    size_t len, cap;
    int port;
} server;

static inline void append(server *s, const char *p, size_t n) {
    if (s->len + n + 1 > s->cap) {
        s->cap = (s->len + n + 1) * 2;
        s->text = realloc(s->text, s->cap);
        CHECK(s->text);
    }
    memcpy(s->text + s->len, p, n);
    s->len += n;
    s->text[s->len] = '\0';
}

/* Reads what the server printed, waiting up to ms; 0 at end of output. */
static inline int pump(server *s, int ms) {
    struct pollfd p = {.fd = s->out, .events = POLLIN};
    char buf[4096];
    ssize_t n;
    if (s->out < 0) return 0;
    if (poll(&p, 1, ms) <= 0) return 1;
    n = read(s->out, buf, sizeof(buf));
    if (n <= 0) {
        close(s->out);
        s->out = -1;
        return 0;
    }
    append(s, buf, (size_t)n);
    return 1;
}

/* Closes every fd from 3 up (in the child, before exec). */
static inline void close_from_3(void) {
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 3u, ~0u, 0u) == 0) return;
#endif
    for (int fd = 3; fd < 4096; fd++) close(fd);
}

/* Starts argv[0] with argv (NULL-terminated); the child's output goes to
 * s->out. In the child, before exec, pre(arg) runs if pre is not NULL. */
static inline void spawn_with(server *s, char *const argv[], void (*pre)(void *), void *arg) {
    int p[2];
    memset(s, 0, sizeof(*s));
    CHECK_SYS(pipe2(p, O_CLOEXEC));
    s->pid = fork();
    CHECK_SYS(s->pid);
    if (s->pid == 0) {
        setpgid(0, 0); /* so a failing test can kill it with its children */
        dup2(p[1], 1);
        dup2(p[1], 2);
        close_from_3();
        signal(SIGPIPE, SIG_DFL);
        if (pre) pre(arg);
        execv(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(p[1]);
    s->out = p[0];
}

static inline void spawn(server *s, char *const argv[]) {
    spawn_with(s, argv, NULL, NULL);
}

static inline void set_nofile(void *arg) {
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    r.rlim_cur = *(const rlim_t *)arg;
    if (setrlimit(RLIMIT_NOFILE, &r) < 0) {
        fprintf(stderr, "setrlimit(RLIMIT_NOFILE): %s\n", strerror(errno));
        _exit(127);
    }
}

/* spawn() with RLIMIT_NOFILE (its soft limit) set to nofile. */
static inline void spawn_nofile(server *s, char *const argv[], rlim_t nofile) {
    spawn_with(s, argv, set_nofile, &nofile); /* read in the child, before spawn_with returns */
}

static server *g_server __attribute__((unused)); /* killed (with its group) when the test fails */

/* For atexit(): kills g_server's process group and prints its output. */
static inline void kill_server(void) {
    if (g_server && g_server->pid > 0) {
        kill(-g_server->pid, SIGKILL);
        kill(g_server->pid, SIGKILL);
        waitpid(g_server->pid, NULL, 0);
        fprintf(stderr, "---- server output ----\n%s-----------------------\n",
                g_server->text ? g_server->text : "");
        g_server->pid = 0;
    }
}

/* Waits for the ready line and reads the port from it. */
static inline void wait_ready(server *s) {
    uint64_t end = test_ms() + APP_READY_MS;
    const char *line, *paren, *colon;
    while (!s->text || !(line = strstr(s->text, "listening on ")) || !strstr(line, ")\n")) {
        if (test_ms() > end) FAIL("no ready line within %d ms", APP_READY_MS);
        if (!pump(s, 50)) FAIL("the server ended before it was ready:\n%s", s->text ? s->text : "");
    }
    paren = strstr(line, " (");
    CHECK(paren);
    for (colon = paren; colon > line && *colon != ':'; colon--) {
    }
    s->port = atoi(colon + 1);
    CHECK(s->port > 0 && s->port < 65536);
}

/* Waits for the server to exit; returns its status, or fails after ms. */
static inline int wait_exit(server *s, int ms) {
    uint64_t end = test_ms() + (uint64_t)ms;
    int status;
    for (;;) {
        pid_t r = waitpid(s->pid, &status, WNOHANG);
        CHECK_SYS(r);
        if (r == s->pid) break;
        if (test_ms() > end) FAIL("the server did not exit within %d ms", ms);
        pump(s, 10);
    }
    s->pid = 0;
    end = test_ms() + 3000; /* the rest of its output (prefork: children hold the pipe) */
    while (pump(s, 50) && test_ms() < end) {
    }
    return status;
}

static inline int contains_ci(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0) return 1;
    return 0;
}

/* Nothing alarming may have been printed; a forced drain ("drain: ...")
 * only where the test forced it. */
static inline void check_output(const server *s, int forced) {
    static const char *const bad[] = {"error", "alert", "sanitizer", "runtime error", "leak", "drain:"};
    size_t i, n = sizeof(bad) / sizeof(bad[0]) - (forced ? 1 : 0);
    for (i = 0; i < n; i++)
        if (s->text && contains_ci(s->text, bad[i]))
            FAIL("server output has '%s':\n%s", bad[i], s->text);
    if (forced && (!s->text || !strstr(s->text, "drain: "))) FAIL("no line about the forced drain:\n%s", s->text);
}

/* Runs bin with args (NULL-terminated) to its end (10 s at most); returns
 * the status. */
static inline int run_to_end(server *s, const char *bin, const char *const *args) {
    char *argv[32];
    int k = 0;
    argv[k++] = (char *)bin;
    while (*args && k < 31) argv[k++] = (char *)*args++;
    argv[k] = NULL;
    spawn(s, argv);
    g_server = s;
    return wait_exit(s, 10000);
}

/* bin with args must exit with code, its output saying must_say (if not NULL). */
static inline void expect_exit(const char *bin, const char *const *args, int code, const char *must_say) {
    server s;
    int status = run_to_end(&s, bin, args);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != code)
        FAIL("%s ...: status 0x%x, expected exit %d; output:\n%s", args[0] ? args[0] : "(no args)", status, code,
             s.text ? s.text : "");
    if (must_say && (!s.text || !strstr(s.text, must_say)))
        FAIL("%s ...: output lacks '%s':\n%s", args[0] ? args[0] : "(no args)", must_say, s.text ? s.text : "");
    g_server = NULL;
    free(s.text);
}

/* ---- clients ------------------------------------------------------------------------- */

/* Byte `off` of message `msg` of client `id` in the echo tests: no period a
 * lost or repeated chunk could hide in (a multiplicative hash of the offset). */
static inline uint8_t echo_pat(unsigned id, unsigned msg, size_t off) {
    return (uint8_t)((((uint32_t)off * 2654435761u) >> 24) ^ (id * 131u + msg * 29u + 1u));
}

/* Sends up to n bytes of message msg from offset off, without blocking:
 * the bytes sent (0 when the socket is full); a send error fails the test. */
static inline size_t echo_send(int fd, unsigned id, unsigned msg, size_t off, size_t n) {
    static char buf[65536];
    size_t i;
    ssize_t w;
    if (n > sizeof(buf)) n = sizeof(buf);
    for (i = 0; i < n; i++) buf[i] = (char)echo_pat(id, msg, off + i);
    w = send(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0 && errno == EAGAIN) return 0;
    if (w < 0) FAIL("client %u: send: %s", id, strerror(errno));
    return (size_t)w;
}

/* Checks n bytes received of message msg from offset off. */
static inline void echo_check(const char *buf, size_t n, unsigned id, unsigned msg, size_t off) {
    size_t i;
    for (i = 0; i < n; i++)
        if ((uint8_t)buf[i] != echo_pat(id, msg, off + i))
            FAIL("client %u: message %u: byte %zu is wrong", id, msg, off + i);
}


/* A TCP connection to 127.0.0.1:port (close-on-exec); nonblock: the
 * connect may still be in progress. Returns the fd, or -errno. */
static inline int connect_to(int port, int nonblock) {
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    CHECK_SYS(fd);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS) {
        int err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

/* Waits up to ms for end of stream on fd (data is not expected). */
static inline void expect_eof(int fd, int ms, const char *what) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char c;
    ssize_t n;
    if (poll(&p, 1, ms) <= 0) FAIL("%s: the server did not close it within %d ms", what, ms);
    n = recv(fd, &c, 1, MSG_DONTWAIT);
    if (n != 0) FAIL("%s: expected end of stream, got %zd (%s)", what, n, n < 0 ? strerror(errno) : "data");
}

/* 1 if an io_uring loop can be made here. */
static inline int uring_available(void) {
    iomux_config cfg;
    iomux_loop *loop;
    iomux_config_init(&cfg);
    cfg.backend = IOMUX_BACKEND_URING;
    if (iomux_loop_new(&loop, &cfg) < 0) return 0;
    iomux_loop_free(loop);
    return 1;
}

/* ---- /proc ----------------------------------------------------------------------------- */

/* VmRSS of pid in KiB, or -1 (gone, or a zombie). */
static inline long proc_rss_kib(pid_t pid) {
    char path[64], line[256];
    long kib = -1;
    FILE *f;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    if (!(f = fopen(path, "r"))) return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = atol(line + 6);
            break;
        }
    fclose(f);
    return kib;
}

/* Open fds of pid (/proc/PID/fd), or -1. */
static inline long proc_fd_count(pid_t pid) {
    char path[64];
    struct dirent *e;
    long n = 0;
    DIR *d;
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    if (!(d = opendir(path))) return -1;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* Fields of /proc/PID/stat after the command name: pgrp, utime + stime in
 * ms. 0, or -1 if the process is gone. */
static inline int proc_stat(pid_t pid, long *pgrp, long *cpu_ms) {
    char path[64], buf[1024], *p;
    unsigned long utime, stime;
    long tck = sysconf(_SC_CLK_TCK);
    size_t n;
    FILE *f;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (!(f = fopen(path, "r"))) return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (!(p = strrchr(buf, ')'))) return -1;
    /* ") S ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime" */
    if (sscanf(p + 2, "%*c %*d %ld %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", pgrp, &utime, &stime) != 3)
        return -1;
    *cpu_ms = (long)((utime + stime) * 1000 / (unsigned long)(tck > 0 ? tck : 100));
    return 0;
}

/* utime + stime of pid (all its threads) in ms, or -1. */
static inline long proc_cpu_ms(pid_t pid) {
    long pgrp, ms;
    return proc_stat(pid, &pgrp, &ms) < 0 ? -1 : ms;
}

/* Sums VmRSS (which) or CPU ms over the processes of group pgid. */
static inline long proc_group_sum(pid_t pgid, int cpu) {
    DIR *d = opendir("/proc");
    struct dirent *e;
    long sum = 0;
    CHECK(d);
    while ((e = readdir(d))) {
        long pgrp, ms, v;
        pid_t pid = (pid_t)atoi(e->d_name);
        if (pid <= 0 || proc_stat(pid, &pgrp, &ms) < 0 || pgrp != (long)pgid) continue;
        v = cpu ? ms : proc_rss_kib(pid);
        if (v > 0) sum += v;
    }
    closedir(d);
    return sum;
}

static inline long proc_group_rss_kib(pid_t pgid) {
    return proc_group_sum(pgid, 0);
}

static inline long proc_group_cpu_ms(pid_t pgid) {
    return proc_group_sum(pgid, 1);
}

/* ---- a scratch directory with a document root, removed at exit ---------------------------- */

static char g_dir[64];   /* the scratch directory (root/ and whatever else the test puts there) */
static char g_root[128]; /* g_dir/root */

static inline void put_file(const char *rel, const void *data, size_t len) {
    char path[256];
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s", g_root, rel);
    if (!(f = fopen(path, "wb"))) FAIL("%s: %s", path, strerror(errno));
    CHECK_EQ(fwrite(data, 1, len, f), len);
    CHECK_EQ(fclose(f), 0);
}

static inline int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static inline void remove_dir(void) {
    if (g_dir[0]) nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    g_dir[0] = '\0';
}

/* Creates g_dir from a mkdtemp template ("/tmp/name-XXXXXX") and g_root in
 * it, both removed at exit. */
static inline void make_scratch(const char *tmpl) {
    snprintf(g_dir, sizeof(g_dir), "%s", tmpl);
    if (!mkdtemp(g_dir)) FAIL("mkdtemp: %s", strerror(errno));
    atexit(remove_dir);
    snprintf(g_root, sizeof(g_root), "%s/root", g_dir);
    CHECK_SYS(mkdir(g_root, 0755));
}

#endif

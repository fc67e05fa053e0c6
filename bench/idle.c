/* iomux-idle: what one idle connection costs a server, in bytes of its RSS.
 *
 *   iomux-idle --port P [--host 127.0.0.1] --conns N --pid SERVER_PID
 *              [--http] [--hold-ms MS] [--batch B] [--timeout-s S]
 *
 * Reads the server's RSS, opens N TCP connections and makes each one serve
 * one exchange, so that it is a live, now idle connection and not one still
 * waiting in the accept queue: with --http a `GET /plaintext` and its whole
 * response (a keep-alive connection that served a request), otherwise 64
 * bytes sent and the same 64 read back (an echo server). It then waits
 * --hold-ms (default 500) for the server to settle, reads the RSS again and
 * prints one line:
 *
 *   conns N rss_before B rss_after B per_conn B procs K
 *         pss_before B pss_after B pss_per_conn B          (on one line)
 *
 * per_conn = (after - before) / N. The RSS is the sum over SERVER_PID and
 * its descendants (K processes: prefork's workers count), from
 * /proc/PID/smaps_rollup "Rss:" (or /proc/PID/status "VmRSS:"). Summed over
 * several processes, Rss counts a shared page once per process that touches
 * it (a prefork worker waking up touches libc's), so pss_per_conn, from
 * "Pss:" (shared pages divided among their users), is the fairer figure
 * there; for one process the two agree. Either way it is the server's
 * user-space memory only: the kernel's socket structures and buffers are
 * not in any process's RSS.
 *
 * Connections are opened in batches of --batch (default 256) non-blocking
 * connects, each batch finished (connected, exchanged) before the next
 * starts, so the server's accept queue is never overrun. A connect refused
 * (ECONNREFUSED, EAGAIN, ECONNRESET, ETIMEDOUT) is retried up to 5 times.
 * Exit 0 after closing everything; 1 with a message if a connection failed
 * or --timeout-s (default 60) passed; 2 on a bad command line. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ECHO_SIZE 64
#define RESP_MAX 4096
#define CONNECT_TRIES 5
#define MAX_PROCS 8192

static const char http_request[] = "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";

typedef enum { ST_CONNECTING, ST_SENDING, ST_READING, ST_DONE } conn_state;

/* One connection of the batch being opened. */
typedef struct conn {
    int fd;
    conn_state st;
    int tries;     /* connects attempted */
    size_t sent;   /* request bytes written */
    size_t got;    /* response bytes read */
    size_t want;   /* response length, 0 while the HTTP head is incomplete */
    char buf[RESP_MAX];
} conn;

typedef struct options {
    const char *host;
    int port;
    long conns;
    long pid;
    int http;
    long hold_ms;
    long batch;
    long timeout_s;
} options;

static struct sockaddr_in server;
static uint64_t deadline_ns;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("iomux-idle: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: iomux-idle --port P --conns N --pid SERVER_PID [--host 127.0.0.1] [--http]\n"
            "                  [--hold-ms 500] [--batch 256] [--timeout-s 60]\n"
            "Opens N connections to a server, one exchange on each (--http: a GET, else 64\n"
            "echoed bytes), and prints the server's RSS growth per idle connection.\n");
}

/* ---- RSS of a process tree ---- */

/* Rss and Pss of pid in bytes, from smaps_rollup, else VmRSS of status
 * (then Pss = Rss); -1 if the process is gone. */
static int mem_of(long pid, long long *rss, long long *pss) {
    char path[64], line[256];
    *rss = *pss = -1;
    snprintf(path, sizeof(path), "/proc/%ld/smaps_rollup", pid);
    FILE *f = fopen(path, "r");
    if (f) {
        while (fgets(line, sizeof(line), f)) {
            if (strncmp(line, "Rss:", 4) == 0) *rss = strtoll(line + 4, NULL, 10) * 1024;
            else if (strncmp(line, "Pss:", 4) == 0) *pss = strtoll(line + 4, NULL, 10) * 1024;
        }
        fclose(f);
        if (*rss >= 0 && *pss >= 0) return 0;
    }
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    f = fopen(path, "r");
    if (!f) return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0) *rss = *pss = strtoll(line + 6, NULL, 10) * 1024;
    fclose(f);
    return *rss >= 0 ? 0 : -1;
}

/* Appends the children of pid (of each of its threads) to list[*n]. */
static void add_children(long pid, long *list, int *n) {
    char path[64], tid_path[384];
    snprintf(path, sizeof(path), "/proc/%ld/task", pid);
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(tid_path, sizeof(tid_path), "%s/%s/children", path, e->d_name);
        FILE *f = fopen(tid_path, "r");
        if (!f) continue;
        long child;
        while (*n < MAX_PROCS && fscanf(f, "%ld", &child) == 1) list[(*n)++] = child;
        fclose(f);
    }
    closedir(d);
}

/* The memory of pid and its descendants, summed. */
typedef struct tree_mem {
    long long rss, pss;
    int procs;
} tree_mem;

static tree_mem tree_of(long pid) {
    static long list[MAX_PROCS];
    int n = 0;
    tree_mem t = {0, 0, 0};
    list[n++] = pid;
    for (int i = 0; i < n; i++) add_children(list[i], list, &n);
    for (int i = 0; i < n; i++) {
        long long rss, pss;
        if (mem_of(list[i], &rss, &pss) < 0) {
            if (i == 0) die("cannot read the RSS of process %ld (is it running?)", pid);
            continue; /* a descendant that just exited */
        }
        t.rss += rss;
        t.pss += pss;
        t.procs++;
    }
    return t;
}

/* ---- connections ---- */

static int retryable(int err) {
    return err == ECONNREFUSED || err == EAGAIN || err == ECONNRESET || err == ETIMEDOUT;
}

/* A connect failed with err: close, then pause before the next try, or
 * give up (exit 1) when err is final or the tries are spent. */
static void drop_or_die(conn *c, long idx, int err) {
    close(c->fd);
    c->fd = -1;
    if (!retryable(err) || c->tries >= CONNECT_TRIES)
        die("connection %ld: connect to %s:%d failed after %d tries: %s", idx, inet_ntoa(server.sin_addr),
            ntohs(server.sin_port), c->tries, strerror(err));
    usleep(20000u * (unsigned)c->tries);
}

/* Starts a connect; one refused at once is retried here, with a pause. */
static void conn_connect(conn *c, long idx) {
    for (;;) {
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
        if (c->fd < 0) die("socket: %s (open-file limit?)", strerror(errno));
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->tries++;
        c->st = ST_CONNECTING;
        if (connect(c->fd, (struct sockaddr *)&server, sizeof(server)) == 0) c->st = ST_SENDING;
        if (c->st == ST_SENDING || errno == EINPROGRESS) return;
        drop_or_die(c, idx, errno);
    }
}

/* A connect in progress failed with err: reconnect after a pause, or give up. */
static void connect_failed(conn *c, long idx, int err) {
    drop_or_die(c, idx, err);
    conn_connect(c, idx);
}

/* In an HTTP response head, the Content-Length; -1 if absent. */
static long content_length(const char *head, size_t len) {
    const char *p = head, *end = head + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) break;
        if ((size_t)(eol - p) > 15 && strncasecmp(p, "Content-Length:", 15) == 0) return strtol(p + 15, NULL, 10);
        p = eol + 1;
    }
    return -1;
}

/* After bytes arrived: does c->buf hold the whole response yet? */
static void check_response(conn *c, const options *o, long idx) {
    if (!o->http) {
        if (c->got == ECHO_SIZE) c->st = ST_DONE;
        return;
    }
    if (c->want == 0) {
        char *hend = NULL;
        for (size_t i = 3; i < c->got; i++)
            if (memcmp(c->buf + i - 3, "\r\n\r\n", 4) == 0) {
                hend = c->buf + i + 1;
                break;
            }
        if (!hend) {
            if (c->got == RESP_MAX) die("connection %ld: response head larger than %d bytes", idx, RESP_MAX);
            return;
        }
        if (strncmp(c->buf, "HTTP/1.1 200", 12) != 0)
            die("connection %ld: expected 'HTTP/1.1 200', got '%.*s'", idx, (int)strcspn(c->buf, "\r\n"), c->buf);
        long cl = content_length(c->buf, (size_t)(hend - c->buf));
        if (cl < 0) die("connection %ld: response without Content-Length (chunked is not supported)", idx);
        if ((size_t)(hend - c->buf) + (size_t)cl > RESP_MAX)
            die("connection %ld: response larger than %d bytes", idx, RESP_MAX);
        c->want = (size_t)(hend - c->buf) + (size_t)cl;
    }
    if (c->got > c->want) die("connection %ld: %zu bytes more than the response", idx, c->got - c->want);
    if (c->got == c->want) c->st = ST_DONE;
}

/* One step of c after poll reported re (0: none yet). */
static void conn_step(conn *c, short re, const options *o, long idx) {
    static char echo_msg[ECHO_SIZE];
    const char *req = o->http ? http_request : echo_msg;
    size_t req_len = o->http ? sizeof(http_request) - 1 : ECHO_SIZE;
    if (c->st == ST_CONNECTING) {
        if (!(re & (POLLOUT | POLLERR | POLLHUP))) return;
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        if (err == 0 && (re & (POLLERR | POLLHUP))) err = ECONNRESET;
        if (err) {
            connect_failed(c, idx, err);
            return;
        }
        c->st = ST_SENDING;
    }
    if (c->st == ST_SENDING) {
        if (!o->http) memset(echo_msg, 'x', sizeof(echo_msg));
        ssize_t n = send(c->fd, req + c->sent, req_len - c->sent, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN) die("connection %ld: send: %s", idx, strerror(errno));
        if (n > 0) c->sent += (size_t)n;
        if (c->sent == req_len) c->st = ST_READING;
        return;
    }
    if (c->st == ST_READING && (re & (POLLIN | POLLERR | POLLHUP))) {
        size_t room = (o->http ? RESP_MAX : ECHO_SIZE) - c->got;
        ssize_t n = recv(c->fd, c->buf + c->got, room, 0);
        if (n < 0 && errno == EAGAIN) return;
        if (n < 0) die("connection %ld: recv: %s", idx, strerror(errno));
        if (n == 0) die("connection %ld: the server closed it after %zu bytes of the response", idx, c->got);
        c->got += (size_t)n;
        check_response(c, o, idx);
    }
}

/* Opens connections [first, first + n) into fds[], each one exchange done. */
static void open_batch(const options *o, conn *cs, struct pollfd *pfd, long first, long n, int *fds) {
    for (long i = 0; i < n; i++) {
        cs[i].tries = 0;
        cs[i].sent = cs[i].got = cs[i].want = 0;
        conn_connect(&cs[i], first + i);
    }
    for (;;) {
        long pending = 0;
        for (long i = 0; i < n; i++) {
            conn *c = &cs[i];
            pfd[i].fd = c->st == ST_DONE ? -1 : c->fd;
            pfd[i].events = c->st == ST_READING ? POLLIN : POLLOUT;
            pfd[i].revents = 0;
            if (c->st != ST_DONE) pending++;
        }
        if (pending == 0) break;
        uint64_t now = now_ns();
        if (now >= deadline_ns)
            die("timed out after %ld s: %ld of %ld connections open and served, %ld pending", o->timeout_s,
                first + n - pending, o->conns, pending);
        int ms = (int)((deadline_ns - now) / 1000000u) + 1;
        int r = poll(pfd, (nfds_t)n, ms > 1000 ? 1000 : ms);
        if (r < 0 && errno != EINTR) die("poll: %s", strerror(errno));
        if (r <= 0) continue;
        for (long i = 0; i < n; i++)
            if (pfd[i].revents) conn_step(&cs[i], pfd[i].revents, o, first + i);
    }
    for (long i = 0; i < n; i++) fds[first + i] = cs[i].fd;
}

/* ---- command line ---- */

static long num_arg(const char *name, const char *v, long lo, long hi) {
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || *end || end == v || x < lo || x > hi) {
        fprintf(stderr, "iomux-idle: --%s needs a number in [%ld, %ld] (try --help)\n", name, lo, hi);
        exit(2);
    }
    return x;
}

static void parse(int argc, char **argv, options *o) {
    *o = (options){.host = "127.0.0.1", .port = -1, .conns = -1, .pid = -1, .hold_ms = 500, .batch = 256,
                   .timeout_s = 60};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--http") == 0) {
            o->http = 1;
            continue;
        } else if (strcmp(a, "--host") == 0 && v) o->host = v;
        else if (strcmp(a, "--port") == 0) o->port = (int)num_arg("port", v, 1, 65535);
        else if (strcmp(a, "--conns") == 0) o->conns = num_arg("conns", v, 1, 1000000);
        else if (strcmp(a, "--pid") == 0) o->pid = num_arg("pid", v, 1, 1L << 30);
        else if (strcmp(a, "--hold-ms") == 0) o->hold_ms = num_arg("hold-ms", v, 0, 3600000);
        else if (strcmp(a, "--batch") == 0) o->batch = num_arg("batch", v, 1, 65536);
        else if (strcmp(a, "--timeout-s") == 0) o->timeout_s = num_arg("timeout-s", v, 1, 86400);
        else {
            fprintf(stderr, "iomux-idle: unknown or incomplete option '%s' (try --help)\n", a);
            exit(2);
        }
        i++;
    }
    if (o->port < 0 || o->conns < 0 || o->pid < 0) {
        fprintf(stderr, "iomux-idle: --port, --conns and --pid are required (try --help)\n");
        exit(2);
    }
    memset(&server, 0, sizeof(server));
    server.sin_family = AF_INET;
    server.sin_port = htons((uint16_t)o->port);
    if (inet_pton(AF_INET, o->host, &server.sin_addr) != 1) {
        fprintf(stderr, "iomux-idle: --host '%s' is not a numeric IPv4 address\n", o->host);
        exit(2);
    }
}

/* Soft open-file limit up to the hard one; dies if N connections cannot fit. */
static void raise_nofile(long conns) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) die("getrlimit: %s", strerror(errno));
    if (rl.rlim_cur != rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) die("setrlimit: %s", strerror(errno));
    }
    if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)conns + 16 > rl.rlim_cur)
        die("%ld connections need more than the open-file limit %llu allows", conns, (unsigned long long)rl.rlim_cur);
}

int main(int argc, char **argv) {
    options o;
    parse(argc, argv, &o);
    raise_nofile(o.conns);
    deadline_ns = now_ns() + (uint64_t)o.timeout_s * 1000000000u;

    int *fds = malloc((size_t)o.conns * sizeof(*fds));
    long bsize = o.batch < o.conns ? o.batch : o.conns;
    conn *cs = malloc((size_t)bsize * sizeof(*cs));
    struct pollfd *pfd = malloc((size_t)bsize * sizeof(*pfd));
    if (!fds || !cs || !pfd) die("out of memory");

    tree_mem before = tree_of(o.pid);
    for (long first = 0; first < o.conns; first += bsize)
        open_batch(&o, cs, pfd, first, o.conns - first < bsize ? o.conns - first : bsize, fds);

    /* Let the server finish what the last exchanges started (buffers freed
     * or kept, allocator caches), then measure. */
    struct timespec hold = {o.hold_ms / 1000, (o.hold_ms % 1000) * 1000000L};
    while (nanosleep(&hold, &hold) < 0 && errno == EINTR) {
    }
    tree_mem after = tree_of(o.pid);
    printf("conns %ld rss_before %lld rss_after %lld per_conn %.0f procs %d pss_before %lld pss_after %lld "
           "pss_per_conn %.0f\n",
           o.conns, before.rss, after.rss, (double)(after.rss - before.rss) / (double)o.conns, after.procs, before.pss,
           after.pss, (double)(after.pss - before.pss) / (double)o.conns);
    fflush(stdout);

    for (long i = 0; i < o.conns; i++) close(fds[i]);
    free(fds);
    free(cs);
    free(pfd);
    return 0;
}

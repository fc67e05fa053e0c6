/* iomux-httpd, run as a user would: the built binary in a child process on
 * 127.0.0.1, port 0, serving a temporary root directory.
 *
 *   test-app-httpd IOMUX-HTTPD SCENARIO
 *
 * A model scenario ("epoll", "uring-reactor", "prefork", ...) starts the
 * server with that scenario's options and short timeouts (header 600 ms,
 * idle 800 ms, bodies up to 64 KiB), then checks, in order:
 *  1. curl (skipped if /usr/bin/curl is missing): /plaintext, keep-alive
 *     across two URLs, a 1 MiB file byte for byte, HEAD, If-Modified-Since;
 *  2. 16 pipelined requests in one write, answered in order, exactly 16;
 *     HEAD has no body (a request pipelined behind it parses);
 *  3. every rejection, one connection each (400, 404, 405, 413, 414, 431,
 *     501, request smuggling shapes): the status, and for the closing ones
 *     that a request pipelined behind is not answered (one response, EOF);
 *  4. path escapes (.., encoded, NUL, a symlink out of the root) are never
 *     served; a symlink inside is;
 *  5. a header that never ends: 408 (event models) and EOF within 3 s; an
 *     idle keep-alive connection: EOF after 0.8..3 s; a client pipelining
 *     steadily, each write ending inside a request: never 408;
 *  6. backpressure: a client pipelines without reading until its send
 *     blocks for 1 s (at most 200,000 requests, 10 s); the server's RSS
 *     grows by less than 64 MiB; then every request is answered;
 *  7. SIGTERM: an idle connection is closed, a half-sent request finished
 *     after the signal is answered with "Connection: close", new
 *     connections are refused, the server exits 0 within --drain-ms;
 *  8. its output holds no error, alert, sanitizer, leak or forced-drain line.
 * "emfile-*" scenarios start the server with RLIMIT_NOFILE 40 and 80
 * clients: the server must not spin (CPU < 0.3 s over 1 s), and serves
 * again once the clients are gone. "options" checks --help and bad command
 * lines (exit 2). Every wait is bounded. A third argument (curl, pipeline,
 * rejects, paths, timeouts, backpressure) runs only that step of a model
 * scenario, then the drain. */
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "harness.h"
#include "app-server.h"

#define HEADER_MS 600
#define IDLE_MS 800
#define DRAIN_MS 3000
#define DRAIN_IDLE_MS 1000 /* blocking models: a half-sent request must survive the signal */
#define IO_MS 5000         /* any one response */
#define BIG_SIZE (1u << 20)
#define MAX_PIPELINE 200000
#define RSS_BOUND_KIB (64 * 1024)
#define EMFILE_NOFILE 40
#define EMFILE_CLIENTS 80
#define CURL "/usr/bin/curl"

static const char *g_bin;
static unsigned char *g_big;
static const char small_txt[] = "a small file\n";
static const char index_html[] = "<p>the index</p>\n";
static const char get_plain[] = "GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n";

typedef struct scenario {
    const char *name;
    const char *args[8];
    int uring;    /* needs io_uring */
    int blocking; /* threads, prefork: per-read timeouts only */
} scenario;

static const scenario models[] = {
    {"select", {"--model", "select"}, 0, 0},
    {"poll", {"--model", "poll"}, 0, 0},
    {"epoll", {"--model", "epoll"}, 0, 0},
    {"epoll-proactor", {"--model", "epoll", "--api", "proactor"}, 0, 0},
    {"epoll-et", {"--model", "epoll-et"}, 0, 0},
    {"uring", {"--model", "uring"}, 1, 0},
    {"uring-reactor", {"--model", "uring", "--api", "reactor"}, 1, 0},
    {"uring-poll", {"--model", "uring-poll"}, 1, 0},
    {"threads", {"--model", "threads"}, 0, 1},
    {"prefork", {"--model", "prefork", "--processes", "8"}, 0, 1},
    {"epoll-t2-acceptor", {"--model", "epoll", "--threads", "2", "--balance", "acceptor"}, 0, 0},
    {"uring-t2-reuseport", {"--model", "uring", "--threads", "2", "--balance", "reuseport"}, 1, 0},
};

static const scenario emfiles[] = {
    {"emfile-epoll", {"--model", "epoll"}, 0, 0},
    {"emfile-epoll-proactor", {"--model", "epoll", "--api", "proactor"}, 0, 0},
    {"emfile-epoll-et", {"--model", "epoll-et"}, 0, 0},
    {"emfile-poll", {"--model", "poll"}, 0, 0},
    {"emfile-uring", {"--model", "uring"}, 1, 0},
    {"emfile-uring-reactor", {"--model", "uring", "--api", "reactor"}, 1, 0},
    {"emfile-epoll-t2-acceptor", {"--model", "epoll", "--threads", "2", "--balance", "acceptor"}, 0, 0},
    {"emfile-threads", {"--model", "threads"}, 0, 1},
};

static void sleep_ms(unsigned ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* ---- the root directory ----------------------------------------------------------- */

/* g_dir/root: big.bin (1 MiB pseudo-random), small.txt, sub/index.html,
 * out-link -> /etc/passwd, in-link -> small.txt. Removed at exit. */
static void make_root(void) {
    char path[256];
    make_scratch("/tmp/iomux-httpd-test-XXXXXX");
    g_big = test_random_bytes(BIG_SIZE, 0x9e3779b97f4a7c15u);
    put_file("big.bin", g_big, BIG_SIZE);
    put_file("small.txt", small_txt, sizeof(small_txt) - 1);
    snprintf(path, sizeof(path), "%s/sub", g_root);
    CHECK_SYS(mkdir(path, 0755));
    put_file("sub/index.html", index_html, sizeof(index_html) - 1);
    snprintf(path, sizeof(path), "%s/out-link", g_root);
    CHECK_SYS(symlink("/etc/passwd", path));
    snprintf(path, sizeof(path), "%s/in-link", g_root);
    CHECK_SYS(symlink("small.txt", path));
}

/* ---- responses ----------------------------------------------------------------------- */

typedef struct resp {
    int status;
    const char *head; /* status line and headers, the blank line included */
    size_t head_len;
    const char *body;
    size_t body_len, total;
} resp;

/* The value of header name (case-insensitive) into out; 1 if present. */
static int header(const resp *r, const char *name, char *out, size_t cap) {
    size_t n = strlen(name);
    const char *p = r->head, *end = r->head + r->head_len;
    while ((p = memmem(p, (size_t)(end - p), "\r\n", 2)) && p + 2 + n < end) {
        p += 2;
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1, *eol = memmem(v, (size_t)(end - v), "\r\n", 2);
            size_t len;
            while (*v == ' ') v++;
            len = (size_t)(eol - v);
            if (len >= cap) len = cap - 1;
            memcpy(out, v, len);
            out[len] = '\0';
            return 1;
        }
    }
    return 0;
}

/* One response at the start of buf: 1 if it is all there, 0 if not yet.
 * head_req: the answer to HEAD (no body whatever Content-Length says). */
static int parse_resp(const char *buf, size_t len, int head_req, resp *r) {
    const char *end;
    char cl[32];
    memset(r, 0, sizeof(*r));
    if (memcmp(buf, "HTTP/1.1 ", len < 9 ? len : 9) != 0) FAIL("not a response: '%.60s'", buf);
    if (!(end = memmem(buf, len, "\r\n\r\n", 4))) {
        if (len > 65536) FAIL("a response head over 64 KiB");
        return 0;
    }
    r->head = buf;
    r->head_len = (size_t)(end + 4 - buf);
    r->status = atoi(buf + 9);
    if (r->status < 100 || r->status > 599) FAIL("bad status line: '%.40s'", buf);
    if (!head_req && r->status != 304) {
        if (!header(r, "Content-Length", cl, sizeof(cl))) FAIL("no Content-Length in:\n%.*s", (int)r->head_len, buf);
        r->body_len = strtoul(cl, NULL, 10);
    }
    if (len < r->head_len + r->body_len) return 0;
    r->body = buf + r->head_len;
    r->total = r->head_len + r->body_len;
    return 1;
}

static int body_is(const resp *r, const char *s) {
    return r->body_len == strlen(s) && memcmp(r->body, s, r->body_len) == 0;
}

/* A client connection with an input buffer. */
typedef struct conn {
    int fd;
    char *buf;
    size_t off, len, cap;
    int eof, reset;
} conn;

static void conn_open(conn *c, int port) {
    int one = 1;
    memset(c, 0, sizeof(*c));
    c->fd = connect_to(port, 0);
    if (c->fd < 0) FAIL("connect: %s", strerror(-c->fd));
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void conn_close(conn *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
}

static void conn_send(conn *c, const void *p, size_t n) {
    const char *q = p;
    while (n) {
        ssize_t w = send(c->fd, q, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) FAIL("send: %s", strerror(errno));
        q += w;
        n -= (size_t)w;
    }
}

static void conn_sends(conn *c, const char *s) {
    conn_send(c, s, strlen(s));
}

/* One read, waiting up to ms: 1 data, 0 end of stream (or reset), -1 nothing. */
static int conn_fill(conn *c, int ms) {
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    ssize_t n;
    if (c->eof) return 0;
    if (c->off) {
        memmove(c->buf, c->buf + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    if (c->cap - c->len < 65536) {
        c->cap = (c->cap + 65536) * 2;
        c->buf = realloc(c->buf, c->cap + 1);
        CHECK(c->buf);
    }
    if (poll(&p, 1, ms) == 0) return -1;
    n = recv(c->fd, c->buf + c->len, c->cap - c->len, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 1;
    if (n < 0 && errno != ECONNRESET) FAIL("recv: %s", strerror(errno));
    if (n <= 0) {
        c->eof = 1;
        c->reset = n < 0;
        return 0;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    return 1;
}

/* The next response (valid until the next call), waiting up to ms: 1, or 0
 * at end of stream before one is complete. */
static int conn_resp(conn *c, int head_req, resp *r, int ms) {
    uint64_t end = test_ms() + (uint64_t)ms;
    for (;;) {
        if (c->len > c->off && parse_resp(c->buf + c->off, c->len - c->off, head_req, r)) {
            c->off += r->total;
            return 1;
        }
        if (test_ms() > end) FAIL("no complete response within %d ms (%zu bytes)", ms, c->len - c->off);
        if (conn_fill(c, 50) == 0) {
            if (c->len > c->off) FAIL("end of stream inside a response: '%.80s'", c->buf + c->off);
            return 0;
        }
    }
}

/* Nothing more arrives within ms (neither bytes nor end of stream). */
static void expect_quiet(conn *c, int ms, const char *what) {
    int r = conn_fill(c, ms);
    if (r == 1 || c->len > c->off) FAIL("%s: unexpected bytes: '%.80s'", what, c->buf + c->off);
    if (r == 0) FAIL("%s: the server closed the connection", what);
}

/* One request on a fresh connection; the response in *r, the connection
 * open in *c (close it). */
static void request(int port, conn *c, const char *req, int head_req, resp *r) {
    conn_open(c, port);
    conn_sends(c, req);
    if (!conn_resp(c, head_req, r, IO_MS)) FAIL("no response to '%.60s'", req);
}

/* ---- 1. curl -------------------------------------------------------------------------- */

/* Runs curl with args (NULL-terminated) after the common ones; its stdout
 * (the -w output) lands in out (NUL-terminated). Returns the exit code. */
static int curl(char *out, size_t cap, const char *const *args) {
    char *argv[32], errpath[128], outpath[128];
    int k = 0, status = 0, fd;
    uint64_t end = test_ms() + 20000;
    pid_t pid;
    ssize_t n;
    snprintf(outpath, sizeof(outpath), "%s/curl.out", g_dir);
    snprintf(errpath, sizeof(errpath), "%s/curl.err", g_dir);
    argv[k++] = CURL;
    argv[k++] = "--noproxy";
    argv[k++] = "*";
    argv[k++] = "-sS";
    argv[k++] = "--max-time";
    argv[k++] = "10";
    while (*args) argv[k++] = (char *)*args++;
    argv[k] = NULL;
    CHECK_SYS(pid = fork());
    if (pid == 0) {
        int o = open(outpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (o < 0 || e < 0) _exit(126);
        dup2(o, 1);
        dup2(e, 2);
        execv(CURL, argv);
        _exit(127);
    }
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (test_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            FAIL("curl did not end within 20 s");
        }
        sleep_ms(5);
    }
    CHECK_SYS(fd = open(outpath, O_RDONLY));
    n = read(fd, out, cap - 1);
    close(fd);
    out[n > 0 ? n : 0] = '\0';
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char err[512] = "";
        if ((fd = open(errpath, O_RDONLY)) >= 0) {
            n = read(fd, err, sizeof(err) - 1);
            err[n > 0 ? n : 0] = '\0';
            close(fd);
        }
        FAIL("curl %s: status 0x%x: %s", argv[k - 1], status, err);
    }
    return 0;
}

/* The whole file at path (at most cap bytes) into buf; its length. */
static size_t slurp(const char *path, void *buf, size_t cap) {
    int fd = open(path, O_RDONLY);
    size_t got = 0;
    ssize_t n;
    if (fd < 0) FAIL("%s: %s", path, strerror(errno));
    while (got < cap && (n = read(fd, (char *)buf + got, cap - got)) > 0) got += (size_t)n;
    close(fd);
    return got;
}

static void run_curl(int port) {
    char out[1024], url[4][96], file[128], lm[128], ims[160], head[4096];
    unsigned char *got = malloc(BIG_SIZE + 1);
    size_t n;
    CHECK(got);
    if (access(CURL, X_OK) != 0) {
        fprintf(stderr, "   skip the curl checks: no %s\n", CURL);
        free(got);
        return;
    }
    snprintf(url[0], sizeof(url[0]), "http://127.0.0.1:%d/plaintext", port);
    snprintf(url[1], sizeof(url[1]), "http://127.0.0.1:%d/json", port);
    snprintf(url[2], sizeof(url[2]), "http://127.0.0.1:%d/big.bin", port);
    snprintf(file, sizeof(file), "%s/curl.body", g_dir);
    {
        const char *a[] = {"-o", file, "-w", "%{http_code}", url[0], NULL};
        curl(out, sizeof(out), a);
        n = slurp(file, got, BIG_SIZE);
        if (strcmp(out, "200") != 0 || n != 13 || memcmp(got, "Hello, World!", 13) != 0)
            FAIL("curl /plaintext: %s, %zu bytes", out, n);
    }
    {
        const char *a[] = {"-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n",
                           url[0], url[1], NULL};
        curl(out, sizeof(out), a);
        if (strcmp(out, "200 1\n200 0\n") != 0) FAIL("curl, two URLs on one connection: '%s'", out);
    }
    {
        const char *a[] = {"-o", file, "-w", "%{http_code} %{size_download}", url[2], NULL};
        curl(out, sizeof(out), a);
        n = slurp(file, got, BIG_SIZE + 1);
        if (strcmp(out, "200 1048576") != 0 || n != BIG_SIZE || memcmp(got, g_big, BIG_SIZE) != 0)
            FAIL("curl /big.bin: '%s', %zu bytes, %s", out, n, n == BIG_SIZE ? "content differs" : "");
    }
    {
        const char *a[] = {"-I", "-o", file, "-w", "%{http_code} %{size_download}", url[2], NULL};
        resp r = {0};
        curl(out, sizeof(out), a);
        n = slurp(file, head, sizeof(head) - 1);
        head[n] = '\0';
        r.head = head;
        r.head_len = n;
        if (strcmp(out, "200 0") != 0 || !header(&r, "Content-Length", lm, sizeof(lm)) || strcmp(lm, "1048576") != 0)
            FAIL("curl -I /big.bin: '%s', headers:\n%s", out, head);
        if (!header(&r, "Last-Modified", lm, sizeof(lm))) FAIL("curl -I /big.bin: no Last-Modified:\n%s", head);
    }
    {
        const char *a[] = {"-o", file, "-H", ims, "-w", "%{http_code} %{size_download}", url[2], NULL};
        snprintf(ims, sizeof(ims), "If-Modified-Since: %s", lm);
        curl(out, sizeof(out), a);
        if (strcmp(out, "304 0") != 0) FAIL("curl with If-Modified-Since: %s: '%s'", lm, out);
    }
    fprintf(stderr, "   curl: plaintext, keep-alive, 1 MiB file, HEAD, 304: ok\n");
    free(got);
}

/* ---- 2. pipelining ----------------------------------------------------------------------- */

static void run_pipeline(int port) {
    static const char *const paths[] = {"/plaintext", "/json", "/small.txt", "/nope"};
    char req[16 * 64];
    size_t len = 0;
    conn c;
    resp r;
    int i;
    for (i = 0; i < 16; i++)
        len += (size_t)snprintf(req + len, sizeof(req) - len, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", paths[i % 4]);
    conn_open(&c, port);
    conn_send(&c, req, len); /* one write */
    for (i = 0; i < 16; i++) {
        static const char *const bodies[] = {"Hello, World!", "{\"message\":\"Hello, World!\"}", small_txt, NULL};
        if (!conn_resp(&c, 0, &r, IO_MS)) FAIL("pipeline: end of stream after %d responses", i);
        if (r.status != (i % 4 == 3 ? 404 : 200) || (bodies[i % 4] && !body_is(&r, bodies[i % 4])))
            FAIL("pipeline: response %d (%s): %d, body '%.*s'", i, paths[i % 4], r.status, (int)r.body_len, r.body);
    }
    expect_quiet(&c, 200, "pipeline, after 16 responses");
    conn_close(&c);
    /* HEAD: the headers of GET, no body: the next response follows at once */
    conn_open(&c, port);
    conn_sends(&c, "HEAD /big.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
    {
        char cl[32];
        if (!conn_resp(&c, 1, &r, IO_MS) || r.status != 200 || !header(&r, "Content-Length", cl, sizeof(cl)) ||
            strcmp(cl, "1048576") != 0)
            FAIL("HEAD /big.bin: %d, Content-Length %s", r.status, cl);
    }
    if (!conn_resp(&c, 0, &r, IO_MS) || r.status != 200 || !body_is(&r, "Hello, World!"))
        FAIL("the GET behind a HEAD: %d (HEAD sent a body?)", r.status);
    expect_quiet(&c, 100, "HEAD then GET");
    conn_close(&c);
    fprintf(stderr, "   pipeline: 16 in order, HEAD without a body: ok\n");
}

/* ---- 3. rejections ----------------------------------------------------------------------- */

typedef struct reject {
    const char *name;
    int status, closes;
} reject;

/* The request for rejection case i into buf (some are long). */
static size_t reject_req(int i, char *buf, size_t cap) {
    size_t n = 0;
    int k;
    switch (i) {
    case 0: return (size_t)snprintf(buf, cap, "THIS IS NOT HTTP\r\n\r\n");
    case 1: return (size_t)snprintf(buf, cap, "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
    case 2: return (size_t)snprintf(buf, cap, "DELETE /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
    case 3: return (size_t)snprintf(buf, cap, "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 70000\r\n\r\n");
    case 4:
        n = (size_t)snprintf(buf, cap, "GET /");
        memset(buf + n, 'a', 9000);
        n += 9000;
        return n + (size_t)snprintf(buf + n, cap - n, " HTTP/1.1\r\nHost: t\r\n\r\n");
    case 5:
        n = (size_t)snprintf(buf, cap, "GET /plaintext HTTP/1.1\r\nHost: t\r\nX-Big: ");
        memset(buf + n, 'b', 9000);
        n += 9000;
        return n + (size_t)snprintf(buf + n, cap - n, "\r\n\r\n");
    case 6:
        n = (size_t)snprintf(buf, cap, "GET /plaintext HTTP/1.1\r\nHost: t\r\n");
        for (k = 0; k < 101; k++) n += (size_t)snprintf(buf + n, cap - n, "X-H%d: v\r\n", k);
        return n + (size_t)snprintf(buf + n, cap - n, "\r\n");
    case 7:
        return (size_t)snprintf(buf, cap, "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n");
    case 8:
        return (size_t)snprintf(buf, cap, "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                                          "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    case 9:
        return (size_t)snprintf(buf, cap, "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                                          "Content-Length: 6\r\n\r\nhello!");
    case 10:
        return (size_t)snprintf(buf, cap, "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                                          "zz\r\nhello\r\n0\r\n\r\n");
    case 11: return (size_t)snprintf(buf, cap, "GET /plaintext HTTP/3.0\r\nHost: t\r\n\r\n");
    case 12: return (size_t)snprintf(buf, cap, "GET /plaintext HTTP/1.1\r\n\r\n");
    case 13: return (size_t)snprintf(buf, cap, "GET /plaintext HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n folded\r\n\r\n");
    }
    return 0;
}

static const reject rejects[] = {
    {"garbage request line", 400, 1}, {"missing file", 404, 0},
    {"DELETE /plaintext", 405, 0},    {"Content-Length over 64 KiB", 413, 1},
    {"target over 8 KiB", 414, 1},    {"header line over 8 KiB", 431, 1},
    {"101 headers", 431, 1},          {"Transfer-Encoding: gzip", 400, 1},
    {"Content-Length and Transfer-Encoding", 400, 1},
    {"two Content-Lengths", 400, 1},  {"bad chunk size", 400, 1},
    {"HTTP/3.0", 505, 1},             {"HTTP/1.1 without Host", 400, 1},
    {"obs-fold", 400, 1},
};

/* Case i, with a GET pipelined behind it in the same write: answered only
 * if the rejection keeps the connection. */
static void run_reject(int port, int i) {
    static char req[32768];
    const reject *rj = &rejects[i];
    size_t n = reject_req(i, req, sizeof(req) - 64);
    char v[128];
    conn c;
    resp r;
    memcpy(req + n, get_plain, sizeof(get_plain) - 1);
    n += sizeof(get_plain) - 1;
    conn_open(&c, port);
    conn_send(&c, req, n);
    if (!conn_resp(&c, 0, &r, IO_MS)) FAIL("%s: no response%s", rj->name, c.reset ? " (reset)" : "");
    if (r.status != rj->status) FAIL("%s: status %d, expected %d", rj->name, r.status, rj->status);
    if (rj->status == 405 && !header(&r, "Allow", v, sizeof(v))) FAIL("405 without Allow");
    if (rj->closes) {
        if (!header(&r, "Connection", v, sizeof(v)) || strcasecmp(v, "close") != 0)
            FAIL("%s: %d without 'Connection: close'", rj->name, r.status);
        if (conn_resp(&c, 0, &r, IO_MS)) FAIL("%s: the request pipelined behind it got %d", rj->name, r.status);
        if (c.reset) FAIL("%s: reset instead of end of stream", rj->name);
    } else {
        if (!conn_resp(&c, 0, &r, IO_MS) || r.status != 200 || !body_is(&r, "Hello, World!"))
            FAIL("%s: the request pipelined behind it was not answered", rj->name);
        expect_quiet(&c, 50, rj->name);
    }
    conn_close(&c);
}

static void run_rejects(int port) {
    size_t i;
    for (i = 0; i < sizeof(rejects) / sizeof(rejects[0]); i++) run_reject(port, (int)i);
    fprintf(stderr, "   %zu rejections: ok\n", i);
}

/* ---- 4. paths ------------------------------------------------------------------------------ */

static void run_paths(int port) {
    static const struct {
        const char *path;
        int status; /* as <iomux/http.h> says */
    } escapes[] = {
        {"/../etc/passwd", 400},
        {"/%2e%2e/%2e%2e/etc/passwd", 400},
        {"/sub%2f..%2f..%2fetc/passwd", 400},
        {"/sub/../../etc/passwd", 400},
        {"/..%5c..%5cetc/passwd", 400},
        {"/a%00b", 400},
        {"/out-link", 404},
        {"/%zz", 400},
    };
    static const struct {
        const char *path;
        int status;
        const char *body;
    } good[] = {{"/in-link", 200, small_txt}, {"/small.txt?x=1", 200, small_txt},
                {"/sub/", 200, index_html}, {"/sub", 301, NULL}};
    char req[256];
    size_t i;
    conn c;
    resp r;
    for (i = 0; i < sizeof(escapes) / sizeof(escapes[0]); i++) {
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", escapes[i].path);
        request(port, &c, req, 0, &r);
        if (r.status == 200 || memmem(r.body, r.body_len, "root:", 5))
            FAIL("%s was served: %d '%.*s'", escapes[i].path, r.status, (int)r.body_len, r.body);
        if (r.status != escapes[i].status)
            FAIL("%s: %d, expected %d", escapes[i].path, r.status, escapes[i].status);
        conn_close(&c);
    }
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", good[i].path);
        request(port, &c, req, 0, &r);
        if (r.status != good[i].status || (good[i].body && !body_is(&r, good[i].body)))
            FAIL("%s: %d '%.*s'", good[i].path, r.status, (int)r.body_len, r.body);
        conn_close(&c);
    }
    fprintf(stderr, "   paths: %zu escapes refused, symlink inside and index served: ok\n",
            sizeof(escapes) / sizeof(escapes[0]));
}

/* ---- 5. timeouts ---------------------------------------------------------------------------- */

/* Reads until end of stream, at most ms; returns the ms it took. */
static uint64_t until_eof(conn *c, int ms, const char *what) {
    uint64_t t0 = test_ms(), end = t0 + (uint64_t)ms;
    while (conn_fill(c, 20) != 0)
        if (test_ms() > end) FAIL("%s: no end of stream within %d ms", what, ms);
    return test_ms() - t0;
}

/* A client that pipelines steadily and reads as it goes, each write ending
 * inside a request: every request is done well within the header timeout,
 * so none may get 408 (the deadline is per request, not since the first
 * write that ended mid-request). */
static void run_steady(int port) {
    const size_t rl = sizeof(get_plain) - 1, step = 50, writes = 2 * HEADER_MS / 100;
    char stream[64 * sizeof(get_plain)];
    size_t i, want = writes * step / rl, got = 0;
    uint64_t end;
    conn c;
    resp r;
    for (i = 0; i < sizeof(stream) / rl; i++) memcpy(stream + i * rl, get_plain, rl);
    conn_open(&c, port);
    for (i = 0; i < writes; i++) {
        end = test_ms() + 100;
        conn_send(&c, stream + i * step, step);
        while (test_ms() < end) {
            conn_fill(&c, 10);
            if (c.eof) FAIL("steady pipelining: closed after %zu responses, %zu ms", got, i * 100);
            while (c.len > c.off && parse_resp(c.buf + c.off, c.len - c.off, 0, &r)) {
                if (r.status != 200)
                    FAIL("steady pipelining: response %zu is %d (after %zu ms)", got, r.status, i * 100);
                c.off += r.total;
                got++;
            }
        }
    }
    while (got < want && conn_resp(&c, 0, &r, IO_MS) && r.status == 200) got++;
    if (got != want) FAIL("steady pipelining: %zu responses, want %zu", got, want);
    conn_close(&c);
    fprintf(stderr, "   steady pipelining, writes ending mid-request for %zu ms: %zu x 200\n", writes * 100, got);
}

static void run_timeouts(int port, int blocking) {
    uint64_t took;
    conn c;
    resp r;
    conn_open(&c, port);
    conn_sends(&c, "GET /plaintext HTTP/1.1\r\nHo");
    took = until_eof(&c, 3000, "a header that never ends");
    if (took < HEADER_MS - 200) FAIL("a header that never ends: closed after %llu ms", (unsigned long long)took);
    if (c.len > c.off) {
        if (!parse_resp(c.buf + c.off, c.len - c.off, 0, &r) || r.status != 408)
            FAIL("a header that never ends: '%.60s'", c.buf + c.off);
    } else if (!blocking) {
        FAIL("a header that never ends: closed after %llu ms without 408", (unsigned long long)took);
    }
    fprintf(stderr, "   slow header: %s after %llu ms\n", c.len > c.off ? "408" : "closed", (unsigned long long)took);
    conn_close(&c);

    request(port, &c, get_plain, 0, &r);
    CHECK_EQ(r.status, 200);
    took = until_eof(&c, 3000, "an idle keep-alive connection");
    if (took < IDLE_MS - 200) FAIL("an idle keep-alive connection: closed after %llu ms", (unsigned long long)took);
    if (c.len > c.off) FAIL("an idle connection got '%.60s'", c.buf + c.off);
    fprintf(stderr, "   idle: closed after %llu ms\n", (unsigned long long)took);
    conn_close(&c);
    run_steady(port);
}

/* ---- 6. backpressure --------------------------------------------------------------------- */

/* Pipelines GET /plaintext without reading until send blocks for 1 s;
 * returns the bytes sent. */
static uint64_t flood(int fd, const char *reqs, size_t reqs_len, size_t rl, int *stalled) {
    uint64_t sent = 0, limit = (uint64_t)MAX_PIPELINE * rl, end = test_ms() + 10000;
    *stalled = 0;
    while (sent < limit && test_ms() < end) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        size_t at = (size_t)(sent % rl), len = reqs_len - at;
        ssize_t n;
        if (poll(&p, 1, 1000) == 0) {
            *stalled = 1;
            break;
        }
        if (len > limit - sent) len = (size_t)(limit - sent);
        n = send(fd, reqs + at, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n < 0) FAIL("flood: send: %s after %llu requests", strerror(errno), (unsigned long long)(sent / rl));
        sent += (uint64_t)n;
    }
    return sent;
}

static void run_backpressure(server *s) {
    const size_t rl = sizeof(get_plain) - 1, copies = 2048;
    char *reqs = malloc(rl * copies);
    uint64_t sent, nreq, got = 0, t0, end;
    long rss0, rss1;
    int stalled;
    size_t i;
    conn c;
    resp r;
    CHECK(reqs);
    for (i = 0; i < copies; i++) memcpy(reqs + i * rl, get_plain, rl);
    conn_open(&c, s->port);
    rss0 = proc_group_rss_kib(s->pid);
    t0 = test_ms();
    sent = flood(c.fd, reqs, rl * copies, rl, &stalled);
    rss1 = proc_group_rss_kib(s->pid);
    nreq = (sent + rl - 1) / rl;
    fprintf(stderr,
            "   backpressure: %llu requests (%.1f MB) sent in %llu ms, %s; server RSS %ld -> %ld KiB (%+ld KiB)\n",
            (unsigned long long)nreq, (double)sent / 1e6, (unsigned long long)(test_ms() - t0),
            stalled ? "then send blocked for 1 s" : "send never blocked for 1 s", rss0, rss1, rss1 - rss0);
    if (rss1 - rss0 >= RSS_BOUND_KIB) FAIL("the server's RSS grew by %ld KiB", rss1 - rss0);
    if (sent % rl) { /* finish the last request */
        size_t at = (size_t)(sent % rl);
        set_nonblock(c.fd);
        while (at < rl) {
            struct pollfd p = {.fd = c.fd, .events = POLLOUT | POLLIN};
            ssize_t n;
            CHECK_SYS(poll(&p, 1, 100));
            if (p.revents & POLLIN) conn_fill(&c, 0);
            while (c.len > c.off && parse_resp(c.buf + c.off, c.len - c.off, 0, &r)) c.off += r.total, got++;
            n = send(c.fd, get_plain + at, rl - at, MSG_NOSIGNAL);
            if (n > 0) at += (size_t)n;
            else if (n < 0 && errno != EAGAIN) FAIL("send: %s", strerror(errno));
        }
    }
    end = test_ms() + 30000;
    while (got < nreq) {
        if (test_ms() > end) FAIL("backpressure: %llu of %llu responses within 30 s", (unsigned long long)got,
                                  (unsigned long long)nreq);
        if (conn_fill(&c, 100) == 0)
            FAIL("backpressure: %s after %llu of %llu responses", c.reset ? "reset" : "end of stream",
                 (unsigned long long)got, (unsigned long long)nreq);
        while (c.len > c.off && parse_resp(c.buf + c.off, c.len - c.off, 0, &r)) {
            if (r.status != 200 || r.body_len != 13)
                FAIL("backpressure: response %llu: %d", (unsigned long long)got, r.status);
            c.off += r.total;
            got++;
        }
    }
    /* no more bytes; end of stream is fine: the idle timeout runs from the
     * server's last send, and the client may still have been parsing */
    if (conn_fill(&c, 100) == 1 || c.len > c.off) FAIL("backpressure: bytes after the last response");
    fprintf(stderr, "   backpressure: all %llu answered, %llu ms in all\n", (unsigned long long)got,
            (unsigned long long)(test_ms() - t0));
    conn_close(&c);
    free(reqs);
}

/* ---- 7. the drain ------------------------------------------------------------------------------ */

/* Waits until connecting is refused (the listeners are closed). */
static void expect_refused(int port, int ms) {
    uint64_t end = test_ms() + (uint64_t)ms;
    for (;;) {
        int fd = connect_to(port, 0);
        if (fd == -ECONNREFUSED) return;
        if (fd < 0) FAIL("connect during the drain: %s", strerror(-fd));
        close(fd); /* accepted before the listener closed: it ends with the drain */
        if (test_ms() > end) FAIL("connections still accepted %d ms into the drain", ms);
        sleep_ms(50);
    }
}

static void run_drain(server *s) {
    static const char half1[] = "GET /plaintext HTTP/1.1\r\nHost: t\r\n", half2[] = "X-Rest: 1\r\n\r\n";
    conn idle, half;
    resp r;
    char v[64];
    int status;
    uint64_t t0, took;
    request(s->port, &idle, get_plain, 0, &r);
    CHECK_EQ(r.status, 200);
    conn_open(&half, s->port);
    conn_sends(&half, half1);
    sleep_ms(50);
    t0 = test_ms();
    CHECK_SYS(kill(s->pid, SIGTERM));
    sleep_ms(200); /* the drain has begun */
    conn_sends(&half, half2);
    if (!conn_resp(&half, 0, &r, DRAIN_MS))
        FAIL("drain: the half-sent request got no response (%s)", half.reset ? "reset" : "end of stream");
    if (r.status != 200 || !body_is(&r, "Hello, World!") || !header(&r, "Connection", v, sizeof(v)) ||
        strcasecmp(v, "close") != 0)
        FAIL("drain: the half-sent request got:\n%.*s", (int)r.total, r.head);
    until_eof(&half, DRAIN_MS, "drain: after the last response");
    conn_close(&half);
    until_eof(&idle, DRAIN_MS, "drain: the idle connection");
    if (idle.len > idle.off) FAIL("drain: the idle connection got '%.60s'", idle.buf + idle.off);
    conn_close(&idle);
    expect_refused(s->port, DRAIN_MS);
    status = wait_exit(s, DRAIN_MS + 2000);
    took = test_ms() - t0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) FAIL("the server exited with status 0x%x", status);
    if (took > DRAIN_MS) FAIL("the drain took %llu ms (bound %d)", (unsigned long long)took, DRAIN_MS);
    fprintf(stderr, "   drained in %llu ms\n", (unsigned long long)took);
}

/* ---- scenarios -------------------------------------------------------------------------------- */

static const char *g_step; /* a third argument: run only this step (and the drain) */

static int step(const char *name) {
    return !g_step || strcmp(g_step, name) == 0;
}

/* argv: the binary, --port 0, common, the scenario's args; NULL-terminated. */
static void make_argv(char **argv, const char *const *common, const scenario *sc) {
    int k = 0, i;
    argv[k++] = (char *)g_bin;
    argv[k++] = "--port";
    argv[k++] = "0";
    for (i = 0; common[i]; i++) argv[k++] = (char *)common[i];
    for (i = 0; sc->args[i]; i++) argv[k++] = (char *)sc->args[i];
    argv[k] = NULL;
}

static void run_model(const scenario *sc) {
    const char *common[] = {"--root", g_root, "--header-timeout-ms", "600", "--idle-timeout-ms", "800",
                            "--drain-ms", "3000", "--drain-idle-ms", "1000", "--max-body-kib", "64", NULL};
    char *argv[40];
    server s;
    uint64_t t0 = test_ms();
    make_argv(argv, common, sc);
    spawn(&s, argv);
    g_server = &s;
    wait_ready(&s);
    fprintf(stderr, "   %s", strstr(s.text, "listening"));
    if (step("curl")) run_curl(s.port);
    if (step("pipeline")) run_pipeline(s.port);
    if (step("rejects")) run_rejects(s.port);
    if (step("paths")) run_paths(s.port);
    if (step("timeouts")) run_timeouts(s.port, sc->blocking);
    if (step("backpressure")) run_backpressure(&s);
    run_drain(&s);
    check_output(&s, 0);
    g_server = NULL;
    free(s.text);
    fprintf(stderr, "   %s: %llu ms\n", sc->name, (unsigned long long)(test_ms() - t0));
}

/* Out of fds with a backlog waiting: no spinning; serving again after. */
static void run_emfile(const scenario *sc) {
    const char *common[] = {"--drain-ms", "3000", NULL};
    char *argv[40];
    int fds[EMFILE_CLIENTS], i, status;
    long cpu0, cpu1, fds_open;
    server s;
    conn c;
    resp r;
    make_argv(argv, common, sc);
    spawn_nofile(&s, argv, EMFILE_NOFILE);
    g_server = &s;
    wait_ready(&s);
    fprintf(stderr, "   %s", strstr(s.text, "listening"));
    for (i = 0; i < EMFILE_CLIENTS; i++) {
        if ((fds[i] = connect_to(s.port, 1)) < 0) FAIL("client %d: connect: %s", i, strerror(-fds[i]));
        send(fds[i], get_plain, sizeof(get_plain) - 1, MSG_NOSIGNAL); /* if connected already */
    }
    sleep_ms(300);
    fds_open = proc_fd_count(s.pid);
    if (fds_open < EMFILE_NOFILE - 3) FAIL("the server holds only %ld fds: not out of them", fds_open);
    cpu0 = proc_group_cpu_ms(s.pid);
    sleep_ms(1000);
    cpu1 = proc_group_cpu_ms(s.pid);
    if (waitpid(s.pid, &status, WNOHANG) != 0) FAIL("the server died out of fds");
    fprintf(stderr, "   %d clients, RLIMIT_NOFILE %d, %ld fds open: the server used %ld ms of CPU in 1 s\n",
            EMFILE_CLIENTS, EMFILE_NOFILE, fds_open, cpu1 - cpu0);
    if (cpu1 - cpu0 >= 300) FAIL("the server spins out of fds: %ld ms of CPU in 1 s", cpu1 - cpu0);
    for (i = 0; i < EMFILE_CLIENTS; i++) close(fds[i]);
    sleep_ms(300);
    request(s.port, &c, get_plain, 0, &r);
    if (r.status != 200 || !body_is(&r, "Hello, World!")) FAIL("after the clients left: %d", r.status);
    conn_close(&c);
    fprintf(stderr, "   serving again once they left: ok\n");
    CHECK_SYS(kill(s.pid, SIGTERM));
    status = wait_exit(&s, DRAIN_MS + 2000);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) FAIL("the server exited with status 0x%x", status);
    check_output(&s, 0);
    g_server = NULL;
    free(s.text);
}

static void run_options(void) {
    static const char *const bad[][4] = {
        {"--nonsense"}, {"--model", "kqueue"}, {"--offload"}, {"--max-body-kib", "0"},
        {"--header-timeout-ms", "x"}, {"--idle-timeout-ms", "0"}, {"--root"}, {"stray"},
    };
    static const char *const help_says[] = {"--root", "--access-log", "--header-timeout-ms", "--idle-timeout-ms",
                                            "--send-timeout-ms", "--max-body-kib", "--model", "--drain-ms"};
    const char *help[] = {"--help", NULL};
    char missing[160], file[160], logdir[160];
    const char *no_root[] = {"--port", "0", "--root", missing, NULL};
    const char *file_root[] = {"--port", "0", "--root", file, NULL};
    const char *no_log[] = {"--port", "0", "--access-log", logdir, NULL};
    size_t i;
    for (i = 0; i < sizeof(help_says) / sizeof(help_says[0]); i++) expect_exit(g_bin, help, 0, help_says[i]);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *args[6] = {0};
        memcpy(args, bad[i], sizeof(bad[i]));
        expect_exit(g_bin, args, 2, "iomux-httpd: ");
    }
    {
        const char *args[] = {"--offload", NULL};
        expect_exit(g_bin, args, 2, "--offload");
    }
    snprintf(missing, sizeof(missing), "%s/no-such-dir", g_dir);
    snprintf(file, sizeof(file), "%s/small.txt", g_root);
    snprintf(logdir, sizeof(logdir), "%s/no-such-dir/log", g_dir);
    expect_exit(g_bin, no_root, 2, "--root");
    expect_exit(g_bin, file_root, 2, "--root");
    expect_exit(g_bin, no_log, 2, "--access-log");
    fprintf(stderr, "   options: ok\n");
}

static const scenario *find(const scenario *list, size_t n, const char *name) {
    size_t i;
    for (i = 0; i < n; i++)
        if (strcmp(list[i].name, name) == 0) return &list[i];
    return NULL;
}

int main(int argc, char **argv) {
    const scenario *sc;
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s IOMUX-HTTPD SCENARIO [STEP]\n", argv[0]);
        return 2;
    }
    g_bin = argv[1];
    g_step = argc == 4 ? argv[3] : NULL;
    signal(SIGPIPE, SIG_IGN);
    fprintf(stderr, "-- %s\n", argv[2]);
    make_root();          /* atexit: removed after ... */
    atexit(kill_server);  /* ... the server is gone */
    if (strcmp(argv[2], "options") == 0) {
        run_options();
        return 0;
    }
    sc = find(models, sizeof(models) / sizeof(models[0]), argv[2]);
    if (!sc) sc = find(emfiles, sizeof(emfiles) / sizeof(emfiles[0]), argv[2]);
    if (!sc) FAIL("unknown scenario %s", argv[2]);
    if (sc->uring && !uring_available()) {
        fprintf(stderr, "skip: io_uring is not available here\n");
        return TEST_SKIP;
    }
    if (strncmp(sc->name, "emfile-", 7) == 0) run_emfile(sc);
    else run_model(sc);
    free(g_big);
    return 0;
}

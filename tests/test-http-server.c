/* The HTTP driver on a real loop (once per backend): curl for /plaintext,
 * for keep-alive (two URLs, one connection) and for a static file that
 * must arrive byte for byte (sendfile); raw sockets for pipelining (16
 * requests in one write, and 2000 written without reading, which the
 * write queue's watermarks must survive), a rejected request, the header
 * deadline, the idle timeout, the access log, and the drain (idle
 * connections closed, a request in progress answered with Connection:
 * close, a stuck one aborted when the drain times out). */
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "harness.h"
#include "iomux/http.h"
#include "iomux/net.h"

#define BIG_SIZE 300001

static iomux_loop *loop;
static iomux_http_server *srv;
static int lfd, port;
static char top[128];
static unsigned char big[BIG_SIZE];

/* ---- files --------------------------------------------------------------------------------- */

static void write_file(const char *path, const void *data, size_t len) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CHECK_SYS(fd);
    write_all(fd, data, len);
    close(fd);
}

static size_t read_file(const char *path, unsigned char *buf, size_t cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;
    size_t total = 0;
    CHECK_SYS(fd);
    while ((n = read(fd, buf + total, cap - total)) > 0) total += (size_t)n;
    close(fd);
    return total;
}

static void make_root(void) {
    char p[256];
    snprintf(top, sizeof(top), "/tmp/iomux-http-server-XXXXXX");
    CHECK(mkdtemp(top) != NULL);
    for (size_t i = 0; i < sizeof(big); i++) big[i] = (unsigned char)(i * 2654435761u >> 11);
    snprintf(p, sizeof(p), "%s/big.bin", top);
    write_file(p, big, sizeof(big));
    snprintf(p, sizeof(p), "%s/small.txt", top);
    write_file(p, "small file\n", 11);
}

static void remove_root(void) {
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
    CHECK_EQ(system(cmd), 0);
}

/* ---- the server ---------------------------------------------------------------------------- */

static int drained;

static void on_drained(iomux_http_server *s, void *data) {
    (void)s;
    *(int *)data = 1;
}

static void start(iomux_http_config *cfg) {
    cfg->root = top;
    lfd = iomux_listen("127.0.0.1", 0, NULL);
    CHECK_OK(lfd);
    port = iomux_listen_port(lfd);
    CHECK_OK(port);
    CHECK_OK(iomux_http_server_new(&srv, loop, lfd, cfg));
}

static void stop(void) {
    drained = 0;
    CHECK_OK(iomux_http_server_drain(srv, 2000, on_drained, &drained));
    run_until(loop, &drained, 5000);
    CHECK_OK(iomux_http_server_free(srv));
    close(lfd);
    spin(loop, 5);
}

static void start_default(void) {
    iomux_http_config cfg = {0};
    start(&cfg);
}

/* ---- curl, in a child process while the loop runs ------------------------------------------- */

/* Runs argv with stdout and stderr in files; returns its exit status. */
static int run_child(char *const argv[], const char *out, const char *err) {
    uint64_t end = test_ms() + 20000;
    int status;
    pid_t pid = fork();
    CHECK_SYS(pid);
    if (pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644), e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(o, 1);
        dup2(e, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        CHECK_SYS(r);
        if (r == pid) break;
        if (test_ms() > end) {
            kill(pid, SIGKILL);
            FAIL("%s did not finish", argv[0]);
        }
        CHECK_OK(iomux_run(loop, IOMUX_RUN_NOWAIT));
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int have_curl(void) {
    return access("/usr/bin/curl", X_OK) == 0;
}

static void url(char *buf, size_t n, const char *path) {
    snprintf(buf, n, "http://127.0.0.1:%d%s", port, path);
}

static void tmp_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", top, name);
}

static void test_curl_plaintext(void) {
    char u[128], out[256], err[256], body[256];
    unsigned char got[64];
    if (!have_curl()) return;
    start_default();
    url(u, sizeof(u), "/plaintext");
    tmp_path(body, sizeof(body), "curl-body");
    tmp_path(out, sizeof(out), "curl-out");
    tmp_path(err, sizeof(err), "curl-err");
    char *argv[] = {"/usr/bin/curl", "-q", "-s", "--noproxy", "*", "--max-time", "10", "-o", body,
                    "-w", "%{http_code} %{content_type}", u, NULL};
    CHECK_EQ(run_child(argv, out, err), 0);
    CHECK_EQ(read_file(body, got, sizeof(got)), 13);
    CHECK(memcmp(got, "Hello, World!", 13) == 0);
    CHECK_EQ(read_file(out, got, sizeof(got)), strlen("200 text/plain"));
    CHECK(memcmp(got, "200 text/plain", 14) == 0);
    stop();
}

/* Two URLs in one curl: the second reuses the connection. */
static void test_curl_keepalive(void) {
    char u1[128], u2[128], out[256], err[256];
    unsigned char got[64];
    iomux_http_stats st;
    if (!have_curl()) return;
    start_default();
    url(u1, sizeof(u1), "/plaintext");
    url(u2, sizeof(u2), "/json");
    tmp_path(out, sizeof(out), "curl-out");
    tmp_path(err, sizeof(err), "curl-err");
    char *argv[] = {"/usr/bin/curl", "-q", "-s", "--noproxy", "*", "--max-time", "10", "-o", "/dev/null",
                    "-o", "/dev/null", "-w", "%{http_code}:%{num_connects};", u1, u2, NULL};
    CHECK_EQ(run_child(argv, out, err), 0);
    got[read_file(out, got, sizeof(got) - 1)] = '\0';
    if (strcmp((char *)got, "200:1;200:0;") != 0) FAIL("curl said %s", got);
    iomux_http_server_stats(srv, &st);
    CHECK_EQ(st.accepted, 1);
    stop();
}

/* A 300 KB file with sendfile, byte for byte; HEAD says the same length. */
static void test_curl_static(void) {
    static unsigned char got[BIG_SIZE + 16];
    char u[128], out[256], err[256], body[256];
    if (!have_curl()) return;
    start_default();
    url(u, sizeof(u), "/big.bin");
    tmp_path(body, sizeof(body), "curl-big");
    tmp_path(out, sizeof(out), "curl-out");
    tmp_path(err, sizeof(err), "curl-err");
    char *argv[] = {"/usr/bin/curl", "-q", "-s", "--noproxy", "*", "--max-time", "10", "-o", body, u, NULL};
    CHECK_EQ(run_child(argv, out, err), 0);
    CHECK_EQ(read_file(body, got, sizeof(got)), BIG_SIZE);
    CHECK(memcmp(got, big, BIG_SIZE) == 0);
    char *head[] = {"/usr/bin/curl", "-q", "-s", "-I", "--noproxy", "*", "--max-time", "10", u, NULL};
    CHECK_EQ(run_child(head, out, err), 0);
    got[read_file(out, got, sizeof(got) - 1)] = '\0';
    CHECK(strstr((char *)got, "Content-Length: 300001\r\n") != NULL);
    CHECK(strstr((char *)got, "Content-Type: application/octet-stream\r\n") != NULL);
    stop();
}

/* ---- raw clients ------------------------------------------------------------------------------ */

typedef struct client {
    int fd;
    char *in;
    size_t len, cap;
    int eof;
} client;

static void client_open(client *c) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_SYS(c->fd);
    CHECK_SYS(connect(c->fd, (struct sockaddr *)&a, sizeof(a))); /* the backlog completes it */
    set_nonblock(c->fd);
}

static void client_close(client *c) {
    close(c->fd);
    free(c->in);
}

/* Reads what is there; notes EOF (or a reset, which counts as the end). */
static void client_read(client *c) {
    for (;;) {
        ssize_t n;
        if (c->cap - c->len < 4096) {
            c->cap = c->cap ? c->cap * 2 : 65536;
            c->in = realloc(c->in, c->cap + 1);
            CHECK(c->in != NULL);
        }
        n = read(c->fd, c->in + c->len, c->cap - c->len);
        if (n > 0) {
            c->len += (size_t)n;
            c->in[c->len] = '\0';
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) c->eof = 1;
        return;
    }
}

/* Complete responses in c->in (each has a Content-Length, or none: 304). */
static int responses(const client *c) {
    const char *p = c->in, *end = c->in + c->len;
    int n = 0;
    while (p && p < end) {
        const char *h = strstr(p, "\r\n\r\n"), *cl;
        size_t body = 0;
        if (!h) break;
        cl = strstr(p, "Content-Length: ");
        if (cl && cl < h) body = (size_t)atol(cl + 16);
        if (strncmp(p, "HTTP/1.1 100 ", 13) == 0) body = 0;
        if ((size_t)(end - (h + 4)) < body) break;
        p = h + 4 + body;
        n++;
    }
    return n;
}

/* Runs the loop until the client has want responses (or EOF, if want < 0). */
static void client_wait(client *c, int want, unsigned ms) {
    uint64_t end = test_ms() + ms;
    for (;;) {
        client_read(c);
        if (want >= 0 ? responses(c) >= want : c->eof) return;
        if (c->eof) FAIL("connection closed after %d responses, want %d:\n%s", responses(c), want, c->in);
        if (test_ms() > end) FAIL("timed out: %d responses, want %d", responses(c), want);
        CHECK_OK(iomux_run(loop, IOMUX_RUN_NOWAIT));
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
}

static void client_send(client *c, const char *s) {
    write_all(c->fd, s, strlen(s));
}

#define GET(path) "GET " path " HTTP/1.1\r\nHost: x\r\n\r\n"

/* 16 requests in one write: 16 answers in order, as one stream. */
static void test_pipelining(void) {
    client c;
    const char *p;
    int i;
    start_default();
    client_open(&c);
    client_send(&c, GET("/plaintext") GET("/json") GET("/small.txt") GET("/nope") GET("/plaintext") GET("/json")
                    GET("/small.txt") GET("/nope") GET("/plaintext") GET("/json") GET("/small.txt") GET("/nope")
                    GET("/plaintext") GET("/json") GET("/small.txt") GET("/nope"));
    client_wait(&c, 16, 5000);
    for (i = 0, p = c.in; i < 16; i++) {
        static const char *const want[] = {"Hello, World!", "{\"message\":\"Hello, World!\"}", "small file\n",
                                           "404 Not Found\n"};
        p = strstr(p, "\r\n\r\n");
        CHECK(p != NULL);
        p += 4;
        if (strncmp(p, want[i % 4], strlen(want[i % 4])) != 0) FAIL("response %d: %.40s", i, p);
    }
    CHECK(!c.eof);
    client_close(&c);
    stop();
}

/* 2000 requests written without reading: the server stops reading while
 * its queue is above the high watermark, and every answer still comes. */
static void test_pipelining_backpressure(void) {
    static const char req[] = GET("/plaintext");
    const size_t total = 2000 * (sizeof(req) - 1);
    char *all = malloc(total);
    size_t sent = 0;
    uint64_t end = test_ms() + 20000;
    client c;
    start_default();
    client_open(&c);
    for (int i = 0; i < 2000; i++) memcpy(all + (size_t)i * (sizeof(req) - 1), req, sizeof(req) - 1);
    while (responses(&c) < 2000) {
        if (sent < total) {
            ssize_t n = write(c.fd, all + sent, total - sent);
            if (n > 0) sent += (size_t)n;
        }
        if (sent == total || (test_ms() & 7) == 0) client_read(&c); /* read late, to push back */
        CHECK(!c.eof);
        if (test_ms() > end) FAIL("timed out: %d responses", responses(&c));
        CHECK_OK(iomux_run(loop, IOMUX_RUN_NOWAIT));
    }
    free(all);
    client_close(&c);
    stop();
}

/* A request the parser refuses: 400, Connection: close, then EOF. */
static void test_rejected(void) {
    client c;
    start_default();
    client_open(&c);
    client_send(&c, GET("/plaintext") "BOGUS\r\n\r\n" GET("/json"));
    client_wait(&c, -1, 5000);
    CHECK_EQ(responses(&c), 2);
    CHECK(strstr(c.in, "HTTP/1.1 400 Bad Request\r\n") != NULL);
    CHECK(strstr(c.in, "Connection: close\r\n") != NULL);
    CHECK(strstr(c.in, "{\"message\"") == NULL);
    client_close(&c);
    stop();
}

static void test_header_timeout(void) {
    iomux_http_config cfg = {.header_timeout_ms = 200};
    uint64_t t0;
    client c;
    start(&cfg);
    client_open(&c);
    t0 = test_ms();
    client_send(&c, "GET /plaintext HTTP/1.1\r\nHo");
    client_wait(&c, -1, 5000);
    CHECK(test_ms() - t0 >= 150);
    CHECK(strncmp(c.in, "HTTP/1.1 408 ", 13) == 0);
    client_close(&c);
    stop();
}

static void test_idle_timeout(void) {
    iomux_http_config cfg = {.idle_timeout_ms = 200};
    uint64_t t0;
    client c;
    start(&cfg);
    client_open(&c);
    client_send(&c, GET("/plaintext"));
    client_wait(&c, 1, 5000);
    t0 = test_ms();
    client_wait(&c, -1, 5000);
    CHECK(test_ms() - t0 >= 150);
    CHECK_EQ(responses(&c), 1); /* closed without a word */
    client_close(&c);
    stop();
}

static void test_access_log(void) {
    iomux_http_config cfg = {0};
    char line[512];
    client c;
    cfg.access_log = tmpfile();
    CHECK(cfg.access_log != NULL);
    start(&cfg);
    client_open(&c);
    client_send(&c, GET("/plaintext") GET("/nope"));
    client_wait(&c, 2, 5000);
    client_close(&c);
    stop();
    rewind(cfg.access_log);
    CHECK(fgets(line, sizeof(line), cfg.access_log) != NULL);
    CHECK(strncmp(line, "127.0.0.1 - - [", 15) == 0);
    CHECK(strstr(line, " +0000] \"GET /plaintext HTTP/1.1\" 200 13\n") != NULL);
    CHECK(fgets(line, sizeof(line), cfg.access_log) != NULL);
    CHECK(strstr(line, "\"GET /nope HTTP/1.1\" 404 ") != NULL);
    CHECK(fgets(line, sizeof(line), cfg.access_log) == NULL);
    fclose(cfg.access_log);
}

/* Drain: the idle connection is closed, the one mid-request gets its
 * answer with Connection: close, then done runs. */
static void test_drain(void) {
    client idle, busy;
    start_default();
    client_open(&idle);
    client_open(&busy);
    client_send(&idle, GET("/plaintext"));
    client_wait(&idle, 1, 5000);
    client_send(&busy, "GET /json HTTP/1.1\r\nHo");
    spin(loop, 20); /* the partial request is in */
    drained = 0;
    CHECK_OK(iomux_http_server_drain(srv, 5000, on_drained, &drained));
    CHECK_EQ(iomux_http_server_drain(srv, 5000, on_drained, &drained), -EALREADY);
    client_wait(&idle, -1, 5000);
    CHECK_EQ(responses(&idle), 1);
    CHECK(!drained);
    CHECK_EQ(iomux_http_server_free(srv), -EBUSY);
    client_send(&busy, "st: x\r\n\r\n");
    client_wait(&busy, -1, 5000);
    CHECK_EQ(responses(&busy), 1);
    CHECK(strstr(busy.in, "Connection: close\r\n") != NULL);
    run_until(loop, &drained, 5000);
    CHECK_OK(iomux_http_server_free(srv));
    close(lfd);
    client_close(&idle);
    client_close(&busy);
    spin(loop, 5);
}

/* A request that never completes is aborted when the drain times out. */
static void test_drain_timeout(void) {
    client stuck;
    uint64_t t0;
    start_default();
    client_open(&stuck);
    client_send(&stuck, "GET /json HTTP/1.1\r\nHo");
    spin(loop, 20);
    drained = 0;
    t0 = test_ms();
    CHECK_OK(iomux_http_server_drain(srv, 200, on_drained, &drained));
    run_until(loop, &drained, 5000);
    CHECK(test_ms() - t0 >= 150);
    client_wait(&stuck, -1, 5000);
    CHECK_EQ(responses(&stuck), 0);
    CHECK_OK(iomux_http_server_free(srv));
    close(lfd);
    client_close(&stuck);
    spin(loop, 5);
}

/* Connections handed over (no acceptor): served, counted by on_close,
 * reset by abort; adopt refuses once draining. */
static int closed_count;

static void count_close(iomux_http_server *s, void *data) {
    (void)s;
    (*(int *)data)++;
}

static void test_adopt_abort(void) {
    iomux_http_config cfg = {0};
    iomux_http_stats st;
    client a, b;
    int accepted_fd;
    lfd = iomux_listen("127.0.0.1", 0, NULL);
    CHECK_OK(lfd);
    port = iomux_listen_port(lfd);
    CHECK_OK(iomux_http_server_new(&srv, loop, -1, &cfg));
    closed_count = 0;
    iomux_http_server_on_close(srv, count_close, &closed_count);
    client_open(&a);
    client_open(&b);
    for (int i = 0; i < 2; i++) {
        accepted_fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        CHECK_SYS(accepted_fd);
        CHECK_OK(iomux_http_server_adopt(srv, accepted_fd));
    }
    client_send(&a, GET("/plaintext"));
    client_wait(&a, 1, 5000);
    CHECK(strstr(a.in, "Hello, World!") != NULL);
    client_send(&b, "GET /json HTTP/1.1\r\nHo"); /* stays mid-request */
    spin(loop, 20);
    iomux_http_server_stats(srv, &st);
    CHECK_EQ(st.accepted, 2);
    CHECK_EQ(st.open, 2);
    CHECK_EQ(closed_count, 0);
    iomux_http_server_abort(srv);
    for (uint64_t end = test_ms() + 5000; closed_count < 2 && test_ms() < end;) spin(loop, 5);
    CHECK_EQ(closed_count, 2);
    client_wait(&b, -1, 5000);
    CHECK_EQ(responses(&b), 0);
    drained = 0;
    CHECK_OK(iomux_http_server_drain(srv, 1000, on_drained, &drained));
    run_until(loop, &drained, 5000);
    accepted_fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_EQ(iomux_http_server_adopt(srv, accepted_fd), -ECANCELED);
    CHECK(fcntl(accepted_fd, F_GETFD) < 0); /* closed for us */
    CHECK_OK(iomux_http_server_free(srv));
    close(lfd);
    client_close(&a);
    client_close(&b);
    spin(loop, 5);
}

int main(int argc, char **argv) {
    TEST_ARGS(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    make_root();
    loop = test_loop();
    RUN(test_curl_plaintext);
    RUN(test_curl_keepalive);
    RUN(test_curl_static);
    RUN(test_pipelining);
    RUN(test_pipelining_backpressure);
    RUN(test_rejected);
    RUN(test_header_timeout);
    RUN(test_idle_timeout);
    RUN(test_access_log);
    RUN(test_drain);
    RUN(test_drain_timeout);
    RUN(test_adopt_abort);
    test_loop_free(loop);
    remove_root();
    return 0;
}

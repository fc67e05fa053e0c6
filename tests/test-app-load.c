/* iomux-load, run as a driver would: the built binary in a child process,
 * against tiny servers this test runs in a thread (plain blocking sockets
 * and poll), which count what they see.
 *
 *   test-app-load IOMUX-LOAD SCENARIO
 *
 * echo-B        (B: a backend) --requests 1000 exact: the JSON says 1000
 *               and no error, the server received exactly 1000 x size
 *               bytes; also with --pipeline 8, and 5000-byte messages
 * http-B        --requests 500 --pipeline 4 against a responder with a
 *               fixed Content-Length, then one that writes its responses
 *               in pieces of 1 to 21 bytes (cut anywhere, a header line
 *               longer than the parser keeps), then one answering 404
 *               (status_errors); each exactly 500 (100 for 404); and
 *               responses without Content-Length or with Connection:
 *               close: io errors, reconnects, exit 0
 * open-loop     --rate 1000 --conns 4 for 2 s against an echo server that
 *               stops answering for 500 ms in the middle: p99 and p90 show
 *               the stall (latency from the intended send time), max ~500
 *               ms; without the stall p99 stays small
 * idle          --idle 300 --conns 2: at the 'b' of --signal-fd the server
 *               holds 302 connections; all closed after the run
 * connect-rate  --connect-rate --requests 200: 200 accepts (echo), and 100
 *               with HTTP and Connection: close
 * options       --help; bad command lines exit 2; a closed port and a
 *               server that never answers (--timeout-s) exit 1
 * Every wait is bounded. */
#include <pthread.h>
#include <stdatomic.h>
#include <strings.h>

#include "harness.h"
#include "app-server.h"

static const char *g_bin;

/* ---- a tiny server, in a thread ----------------------------------------------------------- */

enum { K_ECHO, K_HTTP };

typedef struct tconn {
    int fd;
    size_t inlen;
    char in[8192];
} tconn;

typedef struct tsrv {
    int kind, status, split;      /* split: http responses written in small pieces */
    int bad;                      /* http: 1 no Content-Length, 2 Connection: close */
    int stall_after_ms, stall_ms; /* echo: stop answering for stall_ms, stall_after_ms after the first byte */
    int lfd, port;
    pthread_t th;
    atomic_int stop;
    atomic_long accepts, open, bytes_in, requests;
    tconn *c[1024];
    int nc;
} tsrv;

static void srv_write(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return; /* the client is gone: it may reset after its response */
        p += w;
        n -= (size_t)w;
    }
}

/* Writes in pieces of 1..21 bytes, each its own segment, so the client's
 * receives end anywhere: inside the status line, a CRLF, a header, the
 * Content-Length digits, the body, between responses. */
static void srv_write_split(int fd, const char *p, size_t n) {
    static const size_t cuts[] = {1, 1, 2, 3, 5, 8, 13, 21, 4, 17, 1, 9};
    static unsigned at;
    while (n > 0) {
        size_t k = cuts[at++ % (sizeof(cuts) / sizeof(cuts[0]))];
        if (k > n) k = n;
        srv_write(fd, p, k);
        p += k;
        n -= k;
        usleep(30);
    }
}

static void srv_close(tsrv *s, int i) {
    close(s->c[i]->fd);
    free(s->c[i]);
    s->c[i] = s->c[--s->nc];
    atomic_fetch_sub(&s->open, 1);
}

static size_t http_response(const tsrv *s, int close_it, char *out) {
    /* a header line longer than the prefix iomux-load keeps of a split line */
    static const char pad[] = "X-Padding: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                              "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n";
    static const char *const bad[] = {"", "Content-Type: text/plain\r\n",
                                      "Content-Length: 5\r\nConnection: close\r\n"};
    if (s->bad)
        return (size_t)sprintf(out, "HTTP/1.1 200 OK\r\n%s\r\nHello", bad[s->bad]);
    if (s->status != 200)
        return (size_t)sprintf(out, "HTTP/1.1 %d Not Found\r\nContent-Length: 9\r\n%s\r\nnot found", s->status,
                               close_it ? "Connection: close\r\n" : "");
    return (size_t)sprintf(out,
                           "HTTP/1.1 200 OK\r\nServer: test\r\n%sContent-Type: text/plain\r\ncontent-length: "
                           "13\r\n%s\r\nHello, World!",
                           pad, close_it ? "Connection: close\r\n" : "");
}

/* Answers every complete request in c->in; returns 1 if it closed c. */
static int srv_http(tsrv *s, int i) {
    tconn *c = s->c[i];
    char out[65536];
    size_t olen = 0, start = 0;
    int close_it = 0;
    char *end;
    c->in[c->inlen] = '\0';
    while ((end = strstr(c->in + start, "\r\n\r\n")) != NULL) {
        char save = end[2];
        end[2] = '\0';
        close_it = strcasestr(c->in + start, "Connection: close") != NULL || s->bad == 2;
        end[2] = save;
        atomic_fetch_add(&s->requests, 1);
        if (olen + 512 < sizeof(out)) olen += http_response(s, close_it, out + olen);
        start = (size_t)(end + 4 - c->in);
        if (close_it) break;
    }
    memmove(c->in, c->in + start, c->inlen - start);
    c->inlen -= start;
    if (s->split) srv_write_split(c->fd, out, olen);
    else srv_write(c->fd, out, olen);
    if (close_it) srv_close(s, i);
    return close_it;
}

static void srv_read(tsrv *s, int i) {
    tconn *c = s->c[i];
    char buf[65536];
    size_t room = sizeof(c->in) - 1 - c->inlen;
    ssize_t n = s->kind == K_ECHO ? read(c->fd, buf, sizeof(buf)) : read(c->fd, c->in + c->inlen, room);
    if (n <= 0) {
        srv_close(s, i);
        return;
    }
    atomic_fetch_add(&s->bytes_in, n);
    if (s->kind == K_ECHO) {
        srv_write(c->fd, buf, (size_t)n);
        return;
    }
    c->inlen += (size_t)n;
    srv_http(s, i);
}

static void srv_accept(tsrv *s) {
    int fd, one = 1;
    while ((fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
        tconn *c;
        if (s->nc == 1024 || !(c = calloc(1, sizeof(*c)))) FAIL("test server: too many connections");
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->fd = fd;
        s->c[s->nc++] = c;
        atomic_fetch_add(&s->accepts, 1);
        atomic_fetch_add(&s->open, 1);
    }
}

static void *srv_main(void *arg) {
    tsrv *s = arg;
    struct pollfd p[1025];
    uint64_t first = 0;
    int stalled = 0, i, n;
    while (!atomic_load(&s->stop)) {
        if (!first && atomic_load(&s->bytes_in) > 0) first = test_ms();
        if (s->stall_ms && first && !stalled && test_ms() >= first + (uint64_t)s->stall_after_ms) {
            usleep((useconds_t)s->stall_ms * 1000); /* answers nothing meanwhile */
            stalled = 1;
        }
        p[0] = (struct pollfd){.fd = s->lfd, .events = POLLIN};
        for (i = 0; i < s->nc; i++) p[i + 1] = (struct pollfd){.fd = s->c[i]->fd, .events = POLLIN};
        n = s->nc;
        if (poll(p, (nfds_t)n + 1, 20) <= 0) continue;
        if (p[0].revents) srv_accept(s);
        for (i = n - 1; i >= 0; i--) /* backwards: srv_close moves the last one into i */
            if (p[i + 1].revents) srv_read(s, i);
    }
    while (s->nc > 0) srv_close(s, 0);
    return NULL;
}

static void srv_start(tsrv *s, int kind) {
    struct sockaddr_in a;
    memset(s, 0, sizeof(*s));
    s->kind = kind;
    s->status = 200;
    s->lfd = tcp_listener(&a);
    set_nonblock(s->lfd);
    s->port = ntohs(a.sin_port);
    if (pthread_create(&s->th, NULL, srv_main, s) != 0) FAIL("pthread_create");
}

static void srv_stop(tsrv *s) {
    atomic_store(&s->stop, 1);
    pthread_join(s->th, NULL);
    close(s->lfd);
}

/* Waits until the server has no connection open (the load exited). */
static void srv_wait_closed(tsrv *s) {
    uint64_t end = test_ms() + 5000;
    while (atomic_load(&s->open) > 0) {
        if (test_ms() > end) FAIL("the server still has %ld connections open", atomic_load(&s->open));
        usleep(2000);
    }
}

/* ---- running iomux-load ------------------------------------------------------------------- */

/* Starts iomux-load with args; if keep >= 0, that fd is its fd 3. */
static void load_spawn(server *s, const char *const *args, int port, int keep) {
    char *argv[40], portbuf[16];
    int k = 0, p[2];
    snprintf(portbuf, sizeof(portbuf), "%d", port);
    argv[k++] = (char *)g_bin;
    argv[k++] = "--port";
    argv[k++] = portbuf;
    while (*args && k < 39) argv[k++] = (char *)*args++;
    argv[k] = NULL;
    memset(s, 0, sizeof(*s));
    CHECK_SYS(pipe2(p, O_CLOEXEC));
    s->pid = fork();
    CHECK_SYS(s->pid);
    if (s->pid == 0) {
        setpgid(0, 0);
        dup2(p[1], 1);
        dup2(p[1], 2);
        if (keep >= 0) dup2(keep, 3); /* dup2 clears close-on-exec */
        for (int fd = keep >= 0 ? 4 : 3; fd < 4096; fd++) close(fd);
        execv(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(p[1]);
    s->out = p[0];
    g_server = s;
}

/* No sanitizer or leak report in what it printed (nor an error, unless
 * errors are expected). */
static void check_clean(const server *s, int errors_expected) {
    static const char *const bad[] = {"Sanitizer", "runtime error", "leak", "first error"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]) - (errors_expected ? 1 : 0); i++)
        if (s->text && strstr(s->text, bad[i])) FAIL("iomux-load said '%s':\n%s", bad[i], s->text);
}

/* Runs iomux-load to its end; returns its output (malloc'd), having
 * checked that it exited with `code`. */
static char *load_run_errors(const char *const *args, int port, int code, int errors_expected) {
    server s;
    int status;
    load_spawn(&s, args, port, -1);
    status = wait_exit(&s, 45000);
    g_server = NULL;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != code)
        FAIL("iomux-load %s ...: status 0x%x, expected exit %d; output:\n%s", args[0], status, code,
             s.text ? s.text : "");
    if (code == 0) check_clean(&s, errors_expected);
    return s.text ? s.text : strdup("");
}

static char *load_run(const char *const *args, int port, int code) {
    return load_run_errors(args, port, code, 0);
}

/* The number after "key": in a JSON text; fails if absent. */
static double jnum(const char *text, const char *key) {
    char pat[64];
    const char *at;
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    at = strstr(text, pat);
    if (!at) FAIL("no %s in the output:\n%s", pat, text);
    return strtod(at + strlen(pat), NULL);
}

static void expect_counts(const char *out, double requests, double errors) {
    if (jnum(out, "requests") != requests || jnum(out, "errors") != errors)
        FAIL("expected requests %.0f and errors %.0f:\n%s", requests, errors, out);
}

/* ---- scenarios ---------------------------------------------------------------------------- */

/* args: the scenario's, then --backend b (NULL: iomux-load's default). */
static void echo_exact(const char *backend, const char *pipeline, const char *size, long n) {
    const char *args[] = {"--requests", "1000", "--conns", "10", "--json", "--pipeline", pipeline, "--size", size,
                          backend ? "--backend" : NULL, backend, NULL};
    tsrv s;
    char *out;
    srv_start(&s, K_ECHO);
    out = load_run(args, s.port, 0);
    expect_counts(out, 1000, 0);
    srv_wait_closed(&s);
    CHECK_EQ(atomic_load(&s.bytes_in), 1000 * n);
    if (backend) {
        char want[64];
        snprintf(want, sizeof(want), "\"backend\":\"%s\"", backend);
        if (!strstr(out, want)) FAIL("not run on %s:\n%s", backend, out);
    }
    fprintf(stderr, "echo pipeline %s size %s: %s", pipeline, size, out);
    free(out);
    srv_stop(&s);
}

static void scenario_echo(const char *backend) {
    echo_exact(backend, "1", "64", 64);
    echo_exact(backend, "8", "64", 64);
    echo_exact(backend, "3", "5000", 5000);
}

static void http_exact(const char *backend, int split, int status, const char *n) {
    const char *args[] = {"--proto", "http", "--requests", n, "--pipeline", "4", "--conns", "10", "--json",
                          backend ? "--backend" : NULL, backend, NULL};
    double want = atof(n);
    tsrv s;
    char *out;
    srv_start(&s, K_HTTP);
    s.split = split;
    s.status = status;
    out = load_run(args, s.port, 0);
    if (jnum(out, "requests") != want || jnum(out, "io_errors") != 0 || jnum(out, "connect_errors") != 0 ||
        jnum(out, "status_errors") != (status == 200 ? 0 : want))
        FAIL("http (split %d, status %d): expected %.0f responses, status errors only for 404:\n%s", split, status,
             want, out);
    srv_wait_closed(&s);
    CHECK_EQ(atomic_load(&s.requests), (long)want);
    fprintf(stderr, "http split %d status %d: %s", split, status, out);
    free(out);
    srv_stop(&s);
}

/* Responses without Content-Length, or with Connection: close: errors,
 * the connection closed and opened again, and the run still completes. */
static void http_bad(const char *backend, int bad, const char *why) {
    const char *args[] = {"--proto", "http", "--duration", "0.3", "--warmup", "0", "--conns", "2", "--json",
                          "--backend", backend, NULL};
    tsrv s;
    char *out;
    srv_start(&s, K_HTTP);
    s.bad = bad;
    out = load_run_errors(args, s.port, 0, 1);
    if (jnum(out, "requests") != 0 || jnum(out, "io_errors") < 4 || !strstr(out, why))
        FAIL("expected io errors (%s), reconnects and no response counted:\n%s", why, out);
    if (atomic_load(&s.accepts) < 4) FAIL("no reconnects: %ld accepts", atomic_load(&s.accepts));
    fprintf(stderr, "http bad %d: %ld accepts: %s", bad, atomic_load(&s.accepts), out);
    free(out);
    srv_wait_closed(&s);
    srv_stop(&s);
}

static void scenario_http(const char *backend) {
    http_exact(backend, 0, 200, "500");
    http_exact(backend, 1, 200, "500");
    http_exact(backend, 0, 404, "100");
    http_bad(backend, 1, "without Content-Length");
    http_bad(backend, 2, "Connection: close");
}

/* Open loop, with or without a 500 ms stall 800 ms into the run. */
static void open_loop(int stall) {
    const char *args[] = {"--rate", "1000", "--conns", "4", "--duration", "2", "--warmup", "0", "--json", NULL};
    tsrv s;
    char *out;
    double p90, p99, max, n;
    srv_start(&s, K_ECHO);
    if (stall) {
        s.stall_after_ms = 800;
        s.stall_ms = 500;
    }
    out = load_run(args, s.port, 0);
    fprintf(stderr, "open loop, stall %d: %s", stall, out);
    n = jnum(out, "requests");
    p90 = jnum(out, "p90") / 1000;
    p99 = jnum(out, "p99") / 1000;
    max = jnum(out, "max") / 1000;
    if (n < 1800 || n > 2001) FAIL("about 2000 responses expected, not %.0f", n);
    if (jnum(out, "errors") != 0) FAIL("errors in the open loop");
    if (stall && (p99 < 400 || p90 < 200 || max < 450))
        FAIL("the 500 ms stall is hidden: p90 %.1f ms, p99 %.1f ms, max %.1f ms", p90, p99, max);
    if (!stall && p99 > 50) FAIL("no stall, yet p99 %.1f ms", p99);
    free(out);
    srv_wait_closed(&s);
    srv_stop(&s);
}

static void scenario_open_loop(void) {
    open_loop(1);
    open_loop(0);
}

/* Reads one byte from fd within ms. */
static char read_signal(int fd, int ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char c;
    if (poll(&p, 1, ms) <= 0) FAIL("no byte on --signal-fd within %d ms", ms);
    if (read(fd, &c, 1) != 1) FAIL("--signal-fd closed without a byte");
    return c;
}

static void scenario_idle(void) {
    const char *args[] = {"--idle", "300", "--conns", "2", "--duration", "1", "--warmup", "0.3", "--json",
                          "--signal-fd", "3", NULL};
    int sig[2], status;
    server ls;
    tsrv s;
    long open;
    srv_start(&s, K_ECHO);
    CHECK_SYS(pipe2(sig, O_CLOEXEC));
    load_spawn(&ls, args, s.port, sig[1]);
    close(sig[1]);
    if (read_signal(sig[0], 30000) != 'b') FAIL("the first byte on --signal-fd is not 'b'");
    open = atomic_load(&s.open);
    if (open != 302) FAIL("at 'b' the server holds %ld connections, not 302", open);
    if (read_signal(sig[0], 10000) != 'e') FAIL("the second byte on --signal-fd is not 'e'");
    status = wait_exit(&ls, 20000);
    g_server = NULL;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) FAIL("status 0x%x:\n%s", status, ls.text);
    check_clean(&ls, 0);
    if (jnum(ls.text, "idle") != 300 || jnum(ls.text, "requests") <= 0) FAIL("bad report:\n%s", ls.text);
    fprintf(stderr, "idle: %s", ls.text);
    srv_wait_closed(&s); /* the idle holders are gone too */
    CHECK_EQ(atomic_load(&s.accepts), 302);
    free(ls.text);
    close(sig[0]);
    srv_stop(&s);
}

static void connect_rate(int kind, const char *n) {
    const char *args[] = {"--connect-rate", "--requests", n, "--conns", "8", "--json", "--proto",
                          kind == K_HTTP ? "http" : "echo", NULL};
    tsrv s;
    char *out;
    srv_start(&s, kind);
    out = load_run(args, s.port, 0);
    fprintf(stderr, "connect-rate %s: %s", kind == K_HTTP ? "http" : "echo", out);
    expect_counts(out, atof(n), 0);
    srv_wait_closed(&s);
    CHECK_EQ(atomic_load(&s.accepts), atol(n));
    free(out);
    srv_stop(&s);
}

static void scenario_connect_rate(void) {
    connect_rate(K_ECHO, "200");
    connect_rate(K_HTTP, "100");
}

static void bad_options(void) {
    static const char *const cases[][8] = {
        {"--conns", "5", NULL},
        {"--port", "0", NULL},
        {"--port", "80", "--proto", "ftp", NULL},
        {"--port", "80", "--bogus", NULL},
        {"--port", "80", "--backend", "nope", NULL},
        {"--port", "80", "--rate", "100", "--connect-rate", NULL},
        {"--port", "80", "--conns", "0", NULL},
        {"--port", "80", "--duration", "-1", NULL},
        {"--port", "80", "--pipeline", "4", "--rate", "10", NULL},
        {"--port", "80", "--signal-fd", "999", NULL},
        {"--port", "80", "--host", "not-an-ip", NULL},
        {"--port", "80", "--size", NULL},
        {"--port", "80", "--path", "nope", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) expect_exit(g_bin, cases[i], 2, "iomux-load: ");
}

static void scenario_options(void) {
    const char *help[] = {"--help", NULL};
    char port[16];
    struct sockaddr_in a;
    int lfd;
    expect_exit(g_bin, help, 0, "usage: iomux-load");
    bad_options();
    /* A closed port: nothing to connect to. */
    lfd = tcp_listener(&a);
    close(lfd);
    snprintf(port, sizeof(port), "%d", ntohs(a.sin_port));
    {
        const char *args[] = {"--port", port, "--requests", "10", "--conns", "2", NULL};
        expect_exit(g_bin, args, 1, "cannot connect");
    }
    /* A server that accepts (its backlog does) but never answers. */
    lfd = tcp_listener(&a);
    snprintf(port, sizeof(port), "%d", ntohs(a.sin_port));
    {
        const char *args[] = {"--port", port, "--requests", "10", "--conns", "2", "--timeout-s", "1", NULL};
        expect_exit(g_bin, args, 1, "timed out");
    }
    close(lfd);
}

int main(int argc, char **argv) {
    const char *sc;
    if (argc != 3) {
        fprintf(stderr, "usage: test-app-load IOMUX-LOAD SCENARIO\n");
        return 2;
    }
    g_bin = argv[1];
    sc = argv[2];
    atexit(kill_server);
    signal(SIGPIPE, SIG_IGN);
    if (strncmp(sc, "echo-", 5) == 0 || strncmp(sc, "http-", 5) == 0) {
        const char *b = sc + 5;
        iomux_backend id;
        if (iomux_backend_parse(b, &id) < 0) FAIL("unknown backend in %s", sc);
        if (!iomux_backend_available(id) || (id == IOMUX_BACKEND_URING && !uring_available())) {
            fprintf(stderr, "skip: backend %s is not available here\n", b);
            return TEST_SKIP;
        }
        if (sc[0] == 'e') scenario_echo(b);
        else scenario_http(b);
    } else if (strcmp(sc, "open-loop") == 0) {
        scenario_open_loop();
    } else if (strcmp(sc, "idle") == 0) {
        scenario_idle();
    } else if (strcmp(sc, "connect-rate") == 0) {
        scenario_connect_rate();
    } else if (strcmp(sc, "options") == 0) {
        scenario_options();
    } else {
        FAIL("unknown scenario %s", sc);
    }
    fprintf(stderr, "test-app-load %s: ok\n", sc);
    return 0;
}

/* The whole HTTP connection on a real loop: iomux_http_server (the driver)
 * over iomux_conn, a connected socketpair handed over with
 * iomux_http_server_adopt, a client on the other end that sends the input
 * in pieces (letting the server read each piece before the next), reads
 * whatever comes back, then half-closes and reads until the server closes.
 *
 * Input: one control byte, then the bytes the client sends.
 *   bit 0     the third split: 0 random pieces, 1 pieces ending at each
 *             delimiter (':', ';', SP, CR, LF)
 *   bit 1     a slow reader: socket buffers shrunk to the minimum, and the
 *             client reads only when its send would block (so the server's
 *             writes are partial and its write queue fills)
 *   bits 4-7  with the length, the seed of the random split
 *
 * Each input is sent all at once, one byte at a time, and in the third
 * split. Each way must give the same response stream (Dates masked), which
 * must be well-formed (hf_check_stream: nothing after a closing response),
 * must equal what the sans-I/O core answers to the same bytes fed at once,
 * and must end with the server closing the connection once it has the
 * client's EOF. Afterwards no connection is open and no fd is left.
 *
 * The loop's backend: $IOMUX_BACKEND, else epoll, while fuzzing; every
 * backend this machine has in the corpus replay, or with
 * FUZZ_HTTP_BACKENDS=all (the streams must agree across backends too);
 * FUZZ_HTTP_BACKENDS=one forces the single one. FUZZ_HTTP_PRINT=1 prints every stream. */
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>

#include "http-fuzz-common.h"

enum { C_TOKENS = 1u << 0, C_SLOW = 1u << 1 };

#define MAX_BACKENDS 4
#define CLOSE_WAIT_MS 8000 /* the server must close this soon after the client's EOF (its timeouts: 10 s) */

typedef struct backend {
    iomux_loop *loop;
    iomux_http_server *srv;
    iomux_timer tick;      /* keeps a blocking iteration short */
    unsigned closed;       /* connections closed (on_close) */
} backend;

static struct {
    int ready;
    hf_root root;
    hf_handler_env env;
    iomux_http_config cfg;
    iomux_http_ctx *core;  /* the sans-I/O reference, same configuration */
    backend be[MAX_BACKENDS];
    int nbe;
    hf_fds fds;            /* the fd leak check */
    int print;             /* $FUZZ_HTTP_PRINT: show each run (to study an input) */
} G;

/* ---- setup ---------------------------------------------------------------------------- */

static void on_conn_close(iomux_http_server *srv, void *data) {
    (void)srv;
    ((backend *)data)->closed++;
}

static void on_tick(iomux_timer *t) {
    (void)t; /* only wakes the loop */
}

static void drained(iomux_http_server *srv, void *data) {
    (void)srv;
    *(int *)data = 1;
}

static void backend_free(backend *b) {
    int done = 0;
    if (!b->loop) return;
    iomux_timer_stop(&b->tick);
    if (iomux_http_server_drain(b->srv, 1000, drained, &done) == 0)
        for (int i = 0; i < 1000 && !done; i++) iomux_run(b->loop, IOMUX_RUN_ONCE);
    iomux_http_server_free(b->srv);
    iomux_loop_free(b->loop);
    b->loop = NULL;
}

static void cleanup(void) {
    for (int i = 0; i < G.nbe; i++) backend_free(&G.be[i]);
    iomux_http_ctx_free(G.core);
    hf_root_remove(&G.root);
}

static void backend_new(backend *b, iomux_backend which) {
    iomux_config lc;
    int rc;
    iomux_config_init(&lc);
    lc.backend = which;
    rc = iomux_loop_new(&b->loop, &lc);
    if (rc < 0) { /* as the tests do (harness.h): a backend this machine refuses is a skip */
        fprintf(stderr, "fuzz-http-conn: no loop on backend %s: %s\n", getenv("IOMUX_BACKEND") ? getenv("IOMUX_BACKEND") : "epoll",
                iomux_strerror(rc));
        exit(77);
    }
    HF_CHECK(iomux_http_server_new(&b->srv, b->loop, -1, &G.cfg) == 0);
    iomux_http_server_on_close(b->srv, on_conn_close, b);
    iomux_timer_init(b->loop, &b->tick, on_tick);
}

/* libFuzzer defines it; the corpus replay (replay.c) does not. */
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size) __attribute__((weak));

/* FUZZ_HTTP_BACKENDS=all: every backend built here that starts; =one:
 * $IOMUX_BACKEND, else epoll. By default one while fuzzing (speed), all in
 * the corpus replay (so `make test` checks the corpus on every backend). */
static void backends_new(void) {
    static const iomux_backend all[] = {IOMUX_BACKEND_SELECT, IOMUX_BACKEND_POLL, IOMUX_BACKEND_EPOLL,
                                        IOMUX_BACKEND_URING};
    const char *env = getenv("FUZZ_HTTP_BACKENDS");
    iomux_backend one = IOMUX_BACKEND_EPOLL;
    if (env ? strcmp(env, "all") == 0 : LLVMFuzzerMutate == NULL) {
        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
            iomux_loop *probe;
            iomux_config lc;
            if (!iomux_backend_available(all[i])) continue;
            iomux_config_init(&lc);
            lc.backend = all[i];
            if (iomux_loop_new(&probe, &lc) < 0) continue; /* e.g. io_uring refused here */
            iomux_loop_free(probe);
            backend_new(&G.be[G.nbe++], all[i]);
        }
        return;
    }
    if (getenv("IOMUX_BACKEND")) one = IOMUX_BACKEND_AUTO; /* AUTO reads it */
    backend_new(&G.be[G.nbe++], one);
}

static void init(void) {
    if (G.ready) return;
    G.ready = 1;
    G.print = getenv("FUZZ_HTTP_PRINT") != NULL;
    signal(SIGPIPE, SIG_IGN);
    hf_root_create(&G.root);
    /* The small limits of fuzz-http-parse's first context; timeouts long
     * enough never to fire in a run, short enough to end a stuck one. */
    G.cfg.max_body = 64;
    G.cfg.max_uri = 64;
    G.cfg.max_header_line = 96;
    G.cfg.max_headers = 8;
    G.cfg.max_header_bytes = 384;
    G.cfg.handler = hf_handler;
    G.cfg.handler_data = &G.env;
    G.cfg.root = G.root.root;
    G.cfg.server_name = "iomux-fuzz";
    G.cfg.header_timeout_ms = 10000;
    G.cfg.idle_timeout_ms = 10000;
    G.cfg.send_timeout_ms = 10000;
    G.env.root = G.root.root;
    G.env.max_body = G.cfg.max_body;
    HF_CHECK(iomux_http_ctx_new(&G.core, &G.cfg) == 0);
    backends_new();
    atexit(cleanup);
    hf_fds_init(&G.fds, G.root.base);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    init();
    return 0;
}

/* ---- the client ------------------------------------------------------------------------- */

typedef struct client {
    backend *b;
    int fd, server_fd;     /* our end; the server's (its number, while it is open) */
    unsigned closed0;      /* b->closed when the connection was adopted */
    hf_buf in;             /* what the server sent */
    int eof, reset;
    int slow;
} client;

static int server_open(const client *c) {
    return c->b->closed == c->closed0;
}

static void client_read(client *c) {
    char buf[4096];
    while (!c->eof && !c->reset) {
        ssize_t n = read(c->fd, buf, sizeof(buf));
        if (n > 0) hf_add(&c->in, buf, (size_t)n);
        else if (n == 0) c->eof = 1;
        else if (errno == ECONNRESET) c->reset = 1;
        else if (errno == EINTR) continue;
        else {
            HF_CHECK(errno == EAGAIN);
            return;
        }
    }
}

/* Unread bytes in the server's receive queue. */
static int server_unread(const client *c) {
    int n = 0;
    if (!server_open(c) || ioctl(c->server_fd, FIONREAD, &n) < 0) return 0;
    return n;
}

/* Runs the loop until the server has read what was sent (at least two
 * iterations: on uring the kernel may have taken the bytes already while
 * the completion waits to be reaped). */
static void pump(client *c) {
    for (int i = 0; i < 64 && server_open(c); i++) {
        HF_CHECK(iomux_run(c->b->loop, IOMUX_RUN_NOWAIT) >= 0);
        if (!c->slow) client_read(c);
        if (i >= 1 && server_unread(c) == 0) break;
    }
}

/* Sends one piece; a full socket (slow reader) makes the client read and
 * the loop run. Returns 0 once the server stopped taking bytes. */
static int client_send(client *c, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL);
        if (k > 0) {
            p += k;
            n -= (size_t)k;
        } else if (k < 0 && errno == EAGAIN && server_open(c)) {
            HF_CHECK(iomux_run(c->b->loop, IOMUX_RUN_NOWAIT) >= 0);
            client_read(c);
        } else if (k < 0 && (errno == EPIPE || errno == ECONNRESET || errno == EAGAIN)) {
            return 0; /* the server is gone: the rest is not sent */
        } else {
            HF_FAIL("send: %s", strerror(errno));
        }
    }
    pump(c);
    return 1;
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Half-closes, then reads until the server has closed its end. */
static void client_finish(client *c) {
    uint64_t deadline = now_ms() + CLOSE_WAIT_MS;
    shutdown(c->fd, SHUT_WR);
    HF_CHECK(iomux_timer_start(&c->b->tick, 10, 10) == 0);
    while (server_open(c) || (!c->eof && !c->reset)) {
        HF_CHECK(iomux_run(c->b->loop, IOMUX_RUN_ONCE) >= 0);
        client_read(c);
        if (now_ms() > deadline)
            HF_FAIL("the server did not close within %d ms of the client's EOF (got %zu bytes):\n%s",
                    CLOSE_WAIT_MS, c->in.len, c->in.p ? c->in.p : "");
    }
    iomux_timer_stop(&c->b->tick);
}

static void small_buffers(int fd) {
    int sz = 1; /* the kernel rounds up to its minimum */
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
}

typedef struct result {
    hf_buf out;
    int reset;
} result;

static void run(backend *b, const uint8_t *data, size_t len, int mode, uint32_t seed, unsigned ctl,
                result *res) {
    int sv[2];
    client c;
    hf_splitter sp;
    size_t off = 0;
    iomux_http_stats st;
    memset(&c, 0, sizeof(c));
    HF_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    c.slow = (ctl & C_SLOW) != 0;
    if (c.slow) {
        small_buffers(sv[0]);
        small_buffers(sv[1]);
    }
    c.b = b;
    c.fd = sv[0];
    c.server_fd = sv[1];
    c.closed0 = b->closed;
    HF_CHECK(iomux_http_server_adopt(b->srv, sv[1]) == 0);
    hf_split_init(&sp, mode, seed);
    while (off < len) {
        size_t n = hf_split_next(&sp, (const char *)data + off, len - off);
        if (!client_send(&c, data + off, n)) break;
        off += n;
    }
    client_finish(&c);
    close(c.fd);
    iomux_http_server_stats(b->srv, &st);
    HF_CHECK(st.open == 0);
    hf_mask_dates(&c.in);
    res->out = c.in;
    res->reset = c.reset;
}

/* ---- the reference: the core, fed at once ------------------------------------------------ */

/* Moves the session's output into out. */
static void core_take(iomux_http_session *s, hf_buf *out) {
    iomux_http_chunk v[8];
    size_t n;
    while ((n = iomux_http_out_peek(s, 0, v, 8)) > 0) {
        size_t total = 0;
        for (size_t i = 0; i < n; i++) {
            if (v[i].data) {
                hf_add(out, v[i].data, v[i].len);
            } else {
                char tmp[4096];
                HF_CHECK(v[i].len <= sizeof(tmp));
                HF_CHECK(pread(v[i].fd, tmp, v[i].len, v[i].offset) == (ssize_t)v[i].len);
                hf_add(out, tmp, v[i].len);
            }
            total += v[i].len;
        }
        iomux_http_out_consume(s, total);
    }
}

static void core_answer(const uint8_t *data, size_t len, hf_buf *out) {
    iomux_http_session s;
    iomux_http_next nx = IOMUX_HTTP_CONTINUE;
    iomux_http_session_init(&s, G.core);
    if (len) nx = iomux_http_feed(&s, data, len);
    core_take(&s, out);
    while (nx == IOMUX_HTTP_CONTINUE && iomux_http_input_held(&s)) { /* the output was full */
        nx = iomux_http_resume(&s);
        core_take(&s, out);
    }
    iomux_http_session_close(&s);
    hf_mask_dates(out);
}

/* ---- the checks ---------------------------------------------------------------------------- */

static void compare(const result *ref, const result *r, const char *what) {
    if (!hf_same(&r->out, &ref->out))
        HF_FAIL("%s: the response stream differs:\n%s\n---- reference ----\n%s", what, r->out.p ? r->out.p : "",
                ref->out.p ? ref->out.p : "");
    if (r->reset != ref->reset) HF_FAIL("%s: reset %d, reference %d", what, r->reset, ref->reset);
}


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const int modes[3] = {HF_ALL, HF_BYTES, HF_RANDOM};
    result ref = {0}, core = {0};
    hf_summary sum;
    unsigned ctl;
    uint32_t seed;
    char what[64];
    if (size < 1) return 0;
    init();
    ctl = data[0];
    seed = (ctl >> 4) | (uint32_t)size << 4;
    data++;
    size--;
    core_answer(data, size, &core.out);
    hf_check_stream(core.out.p, core.out.len, &sum);
    for (int bi = 0; bi < G.nbe; bi++) {
        for (int m = 0; m < 3; m++) {
            result r = {0};
            int mode = m == 2 && (ctl & C_TOKENS) ? HF_TOKENS : modes[m];
            run(&G.be[bi], data, size, mode, seed, ctl, &r);
            snprintf(what, sizeof(what), "%s, %s", iomux_backend_name(G.be[bi].loop), hf_mode_name(mode));
            if (G.print) fprintf(stderr, "---- %s: %zu bytes%s\n%s\n", what, r.out.len, r.reset ? ", reset" : "",
                                 r.out.p ? r.out.p : "");
            if (bi == 0 && m == 0) {
                compare(&core, &r, what); /* the driver answers as the core does */
                ref = r;
                continue;
            }
            compare(&ref, &r, what);
            free(r.out.p);
        }
    }
    free(ref.out.p);
    free(core.out.p);
    hf_check_fds(&G.fds);
    return 0;
}

/* iomux_conn: echo for 200 concurrent clients (1 B - 1 MiB, byte-exact);
 * backpressure (the queue stays within the high watermark plus one read,
 * reading stops and resumes, nothing lost or reordered); read_stop and
 * read_start; the idle timeout (closes the idle, spares the active), the
 * deadline (fires at its time), 1,000 connections with timers; half-close
 * both ways; graceful close flushing 1 MiB before the FIN; abortive close
 * (the peer sees a reset); write batching and cork; sendfile in order with
 * writes; 100 idle connections on a 4-buffer pool; on_close exactly once,
 * after every op ended, whatever the way of closing (each connection is
 * freed in on_close, so ASan catches any later use). */
#include <pthread.h>

#include "harness.h"
#include "iomux/net.h"

#define DEADLINE_MS 20000
#define MAGIC 0x5eedc0deu
#define MAXCONN 1200

static unsigned char pattern(unsigned id, size_t i) {
    uint32_t x = (uint32_t)i * 2654435761u + id * 40503u;
    return (unsigned char)((x >> 13) ^ (x >> 24) ^ (i >> 16));
}

static void fill(unsigned char *p, size_t len, unsigned id) {
    size_t i;
    for (i = 0; i < len; i++) p[i] = pattern(id, i);
}

static int check_pattern(const unsigned char *p, size_t len, unsigned id, size_t from) {
    size_t i;
    for (i = 0; i < len; i++)
        if (p[i] != pattern(id, from + i)) return 0;
    return 1;
}

/* ---- a server: listener, acceptor, one malloc'd sconn per connection -------------- */

typedef struct srv srv;

typedef struct sconn {
    iomux_conn c;
    srv *s;
    unsigned magic;
    int id;
    size_t rx, max_queued;
    int data_calls, eofs, drains, timeouts, last_which;
    uint64_t timeout_at;
    unsigned char *keep; /* received bytes, when the test keeps them */
    size_t keep_cap;
} sconn;

struct srv {
    iomux_loop *loop;
    iomux_acceptor acc;
    int lfd, port;
    iomux_conn_opts opts;
    const iomux_conn_callbacks *cbs;
    void (*on_conn)(sconn *sc);
    int accepted, closed, stops;
    int timeouts, last_which;
    uint64_t timeout_at;
    int r_zero, r_timeout, r_other, last_reason;
    sconn *conns[MAXCONN];
};

static void srv_accept(iomux_acceptor *a, iomux_fd fd) {
    srv *s = a->data;
    sconn *sc = calloc(1, sizeof(*sc));
    CHECK(fd >= 0);
    CHECK(sc != NULL);
    CHECK(s->accepted < MAXCONN);
    sc->s = s;
    sc->magic = MAGIC;
    sc->id = s->accepted++;
    sc->c.data = sc;
    CHECK_OK(iomux_conn_start(s->loop, &sc->c, fd, s->cbs, &s->opts));
    CHECK_EQ(iomux_conn_active(&sc->c), 1);
    s->conns[sc->id] = sc;
    if (s->on_conn) s->on_conn(sc);
}

static sconn *sc_of(iomux_conn *c) {
    sconn *sc = c->data;
    CHECK(sc != NULL);
    CHECK_EQ(sc->magic, MAGIC);
    return sc;
}

/* on_close: exactly once, the fd closed and both ops ended; then freed. */
static void srv_close(iomux_conn *c, int reason) {
    sconn *sc = sc_of(c);
    srv *s = sc->s;
    CHECK_EQ(iomux_conn_active(c), 0);
    CHECK_EQ(iomux_op_active(&c->internal.rx), 0);
    CHECK_EQ(iomux_op_active(&c->internal.tx), 0);
    CHECK_EQ(iomux_timer_active(&c->internal.timer), 0);
    CHECK(c->internal.held == NULL && c->internal.head == NULL);
    if (reason == 0) s->r_zero++;
    else if (reason == -ETIMEDOUT) s->r_timeout++;
    else s->r_other++;
    s->last_reason = reason;
    s->conns[sc->id] = NULL;
    s->closed++;
    free(sc->keep);
    memset(sc, 0xa5, sizeof(*sc));
    free(sc);
}

static void keep_bytes(sconn *sc, const void *data, size_t len) {
    if (sc->rx + len > sc->keep_cap) {
        sc->keep_cap = (sc->rx + len) * 2;
        sc->keep = realloc(sc->keep, sc->keep_cap);
        CHECK(sc->keep != NULL);
    }
    memcpy(sc->keep + sc->rx, data, len);
}

static void echo_data(iomux_conn *c, const void *data, size_t len) {
    sconn *sc = sc_of(c);
    CHECK(len > 0);
    sc->data_calls++;
    sc->rx += len;
    CHECK(iomux_conn_write(c, data, len) >= 0);
    if (iomux_conn_queued(c) > sc->max_queued) sc->max_queued = iomux_conn_queued(c);
}

static void count_drain(iomux_conn *c) {
    sc_of(c)->drains++;
}

static const iomux_conn_callbacks echo_cbs = {
    .on_data = echo_data, .on_drain = count_drain, .on_close = srv_close};

static void srv_start_cfg(srv *s, const iomux_config *cfg, const iomux_conn_callbacks *cbs,
                          const iomux_conn_opts *opts) {
    memset(s, 0, sizeof(*s));
    CHECK_OK(iomux_loop_new(&s->loop, cfg));
    s->cbs = cbs;
    if (opts) s->opts = *opts;
    s->lfd = iomux_listen("127.0.0.1", 0, NULL);
    CHECK(s->lfd >= 0);
    s->port = iomux_listen_port(s->lfd);
    s->acc.data = s;
    CHECK_OK(iomux_acceptor_start(s->loop, &s->acc, s->lfd, srv_accept));
}

static void srv_start(srv *s, const iomux_conn_callbacks *cbs, const iomux_conn_opts *opts) {
    srv_start_cfg(s, NULL, cbs, opts);
}

static void srv_stopped(iomux_acceptor *a) {
    ((srv *)a->data)->stops++;
}

/* Every connection must be closed by now: then the loop has nothing left. */
static void srv_stop(srv *s) {
    CHECK_EQ(s->closed, s->accepted);
    CHECK_OK(iomux_acceptor_stop(&s->acc, srv_stopped));
    run_until_calls(s->loop, &s->stops, 1, DEADLINE_MS);
    spin(s->loop, 3);
    CHECK_EQ(iomux_loop_alive(s->loop), 0);
    close(s->lfd);
    test_loop_free(s->loop);
}

/* ---- clients: plain sockets, driven between loop iterations --------------------------- */

static int client(const srv *s) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_SYS(fd);
    CHECK_SYS(connect(fd, (struct sockaddr *)&a, sizeof(a)));
    set_nonblock(fd);
    return fd;
}

static void run_ms(iomux_loop *loop, unsigned ms) {
    uint64_t end = test_ms() + ms;
    while (test_ms() < end) {
        struct timespec ts = {0, 200000};
        CHECK_OK(iomux_run(loop, IOMUX_RUN_NOWAIT));
        nanosleep(&ts, NULL);
    }
}

/* Reads exactly len bytes (running the loop meanwhile). */
static void read_exact(iomux_loop *loop, int fd, void *buf, size_t len) {
    size_t got = 0;
    uint64_t end = test_ms() + DEADLINE_MS;
    while (got < len) {
        ssize_t n = read(fd, (char *)buf + got, len - got);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n == 0) FAIL("EOF after %zu of %zu bytes", got, len);
        if (errno != EAGAIN) FAIL("read: %s after %zu of %zu bytes", strerror(errno), got, len);
        if (test_ms() > end) FAIL("read_exact: %zu of %zu bytes", got, len);
        CHECK_OK(iomux_run(loop, IOMUX_RUN_NOWAIT));
    }
}

/* Reads until EOF (0) or an error (-errno); counts and discards bytes. */
static int read_end(iomux_loop *loop, int fd, size_t *bytes) {
    char buf[65536];
    uint64_t end = test_ms() + DEADLINE_MS;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n > 0) {
            if (bytes) *bytes += (size_t)n;
            continue;
        }
        if (n == 0) return 0;
        if (errno != EAGAIN) return -errno;
        if (test_ms() > end) FAIL("read_end: no end");
        CHECK_OK(iomux_run(loop, IOMUX_RUN_NOWAIT));
    }
}

static void wait_accepted(srv *s, int n) {
    run_until_calls(s->loop, &s->accepted, n, DEADLINE_MS);
}

static void wait_closed(srv *s, int n) {
    run_until_calls(s->loop, &s->closed, n, DEADLINE_MS);
}

/* ---- echo: 200 clients in a poll() thread ------------------------------------------- */

#define NECHO 200

typedef struct eclient {
    int fd;
    size_t len, sent, got;
    unsigned char *rx;
    int done, shut;
} eclient;

typedef struct echo_run {
    int port;
    eclient c[NECHO];
    int failed;
    char why[200];
} echo_run;

/* After a write attempt: shut once all is sent; read what came back. */
static void eclient_step(echo_run *r, eclient *e, short revents) {
    if (e->sent == e->len && !e->shut) {
        shutdown(e->fd, SHUT_WR);
        e->shut = 1;
    }
    if (revents & (POLLIN | POLLHUP | POLLERR)) {
        ssize_t n = read(e->fd, e->rx + e->got, e->len + 1 - e->got);
        if (n > 0) e->got += (size_t)n;
        else if (n == 0 || errno != EAGAIN) e->done = 1;
        if (n < 0 && errno != EAGAIN) snprintf(r->why, sizeof(r->why), "read: %s", strerror(errno));
    }
}

static void *echo_clients(void *arg) {
    static const size_t sizes[] = {1, 7, 100, 1000, 4096, 65536, 300000, 1u << 20};
    static unsigned char tx[1u << 20];
    echo_run *r = arg;
    struct pollfd pfd[NECHO];
    int i, left = NECHO;
    uint64_t end = test_ms() + DEADLINE_MS;
    fill(tx, sizeof(tx), 7);
    for (i = 0; i < NECHO; i++) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)r->port)};
        eclient *e = &r->c[i];
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        e->len = sizes[i % 8];
        e->rx = malloc(e->len + 1);
        e->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (!e->rx || e->fd < 0 || connect(e->fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
            r->failed = 1;
            return NULL;
        }
        fcntl(e->fd, F_SETFL, O_NONBLOCK);
    }
    while (left > 0 && test_ms() < end) {
        for (i = 0; i < NECHO; i++) {
            pfd[i].fd = r->c[i].done ? -1 : r->c[i].fd;
            pfd[i].events = (short)(POLLIN | (r->c[i].sent < r->c[i].len ? POLLOUT : 0));
        }
        if (poll(pfd, NECHO, 100) < 0) continue;
        for (i = 0; i < NECHO; i++) {
            eclient *e = &r->c[i];
            if (e->done || !pfd[i].revents) continue;
            /* the tx pattern is the same for all: send from it */
            if ((pfd[i].revents & POLLOUT) && e->sent < e->len) {
                ssize_t n = write(e->fd, tx + e->sent, e->len - e->sent);
                if (n > 0) e->sent += (size_t)n;
            }
            eclient_step(r, e, (short)(pfd[i].revents & ~POLLOUT));
            if (e->done) left--;
        }
    }
    for (i = 0; i < NECHO; i++) {
        eclient *e = &r->c[i];
        if (!e->done || e->got != e->len || memcmp(e->rx, tx, e->len) != 0) {
            if (!r->failed) snprintf(r->why + strlen(r->why), 80, " client %d: got %zu of %zu", i, e->got, e->len);
            r->failed = 1;
        }
        close(e->fd);
        free(e->rx);
    }
    return NULL;
}

static void test_echo_200(void) {
    srv s;
    pthread_t th;
    static echo_run r;
    size_t total = 0;
    int i;
    srv_start(&s, &echo_cbs, NULL);
    memset(&r, 0, sizeof(r));
    r.port = s.port;
    CHECK(pthread_create(&th, NULL, echo_clients, &r) == 0);
    run_until_calls(s.loop, &s.closed, NECHO, DEADLINE_MS);
    CHECK(pthread_join(th, NULL) == 0);
    if (r.failed) FAIL("echo: %s", r.why);
    for (i = 0; i < NECHO; i++) total += r.c[i].len;
    fprintf(stderr, "   %d clients, %zu bytes echoed\n", NECHO, total);
    CHECK_EQ(s.accepted, NECHO);
    CHECK_EQ(s.r_zero, NECHO);
    srv_stop(&s);
}

/* ---- backpressure -------------------------------------------------------------------- */

static void small_rcvbuf(sconn *sc) {
    int sz = 65536;
    CHECK_SYS(setsockopt(sc->c.fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz)));
}

/* The client sends 8 MiB and reads nothing (socket buffers made small, so
 * the kernel cannot absorb it all): the server's queue stays within
 * high + one pool buffer, its reading stops (the client's writes block),
 * and once the client reads, everything comes back in order. */
static void test_backpressure(void) {
    enum { TOTAL = 8u << 20, HIGH = 65536, LOW = 16384 };
    iomux_conn_opts o = {.high_water = HIGH, .low_water = LOW};
    unsigned char *tx = malloc(TOTAL), *rx = malloc(TOTAL);
    size_t sent = 0, got = 0, rx_before;
    srv s;
    sconn *sc;
    int fd;
    uint64_t end;
    CHECK(tx && rx);
    fill(tx, TOTAL, 3);
    srv_start(&s, &echo_cbs, &o);
    s.on_conn = small_rcvbuf;
    fd = client(&s);
    {
        int sz = 65536;
        CHECK_SYS(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)));
        CHECK_SYS(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz)));
    }
    wait_accepted(&s, 1);
    sc = s.conns[0];
    /* phase 1: write until the server stops taking data for 300 ms */
    end = test_ms() + 300;
    while (test_ms() < end) {
        ssize_t n = write(fd, tx + sent, TOTAL - sent);
        if (n > 0) {
            sent += (size_t)n;
            end = test_ms() + 300;
        }
        CHECK_OK(iomux_run(s.loop, IOMUX_RUN_NOWAIT));
    }
    CHECK(sent < TOTAL);
    rx_before = sc->rx;
    run_ms(s.loop, 100);
    fprintf(stderr, "   client sent %zu; server received %zu, queued %zu (max %zu)\n", sent, sc->rx,
            iomux_conn_queued(&sc->c), sc->max_queued);
    CHECK_EQ(sc->rx, rx_before);            /* reading stopped */
    CHECK(sc->rx < sent);                   /* the rest waits in the kernel */
    CHECK(sc->max_queued > HIGH);           /* the watermark was reached... */
    CHECK(sc->max_queued <= HIGH + 4096);   /* ...and held: high + one read */
    CHECK(iomux_conn_queued(&sc->c) <= HIGH + 4096);
    /* phase 2: the client reads; everything comes back, in order */
    while (got < TOTAL) {
        ssize_t n = read(fd, rx + got, TOTAL - got);
        if (n > 0) got += (size_t)n;
        else if (n == 0) FAIL("EOF after %zu", got);
        if (sent < TOTAL) {
            n = write(fd, tx + sent, TOTAL - sent);
            if (n > 0) sent += (size_t)n;
        }
        CHECK_OK(iomux_run(s.loop, IOMUX_RUN_NOWAIT));
        CHECK(sc->max_queued <= HIGH + 4096);
    }
    CHECK(memcmp(rx, tx, TOTAL) == 0);
    CHECK(sc->drains > 0);
    CHECK_SYS(shutdown(fd, SHUT_WR));
    CHECK_EQ(read_end(s.loop, fd, NULL), 0);
    close(fd);
    wait_closed(&s, 1);
    free(tx);
    free(rx);
    srv_stop(&s);
}

/* ---- read_stop / read_start ----------------------------------------------------------- */

static void stopping_data(iomux_conn *c, const void *data, size_t len) {
    sconn *sc = sc_of(c);
    keep_bytes(sc, data, len);
    sc->rx += len;
    sc->data_calls++;
    iomux_conn_read_stop(c); /* after each arrival */
}

static const iomux_conn_callbacks stopping_cbs = {.on_data = stopping_data, .on_close = srv_close};

static void test_read_stop_start(void) {
    enum { TOTAL = 300000 };
    unsigned char *tx = malloc(TOTAL);
    size_t sent = 0;
    srv s;
    sconn *sc;
    int fd, calls;
    CHECK(tx != NULL);
    fill(tx, TOTAL, 5);
    srv_start(&s, &stopping_cbs, NULL);
    fd = client(&s);
    wait_accepted(&s, 1);
    sc = s.conns[0];
    write_all(fd, tx, 1000);
    sent = 1000;
    run_until_calls(s.loop, &sc->data_calls, 1, DEADLINE_MS);
    while (sent < TOTAL) { /* more arrives while stopped */
        ssize_t n = write(fd, tx + sent, TOTAL - sent);
        if (n <= 0) break;
        sent += (size_t)n;
    }
    calls = sc->data_calls;
    run_ms(s.loop, 100);
    CHECK_EQ(sc->data_calls, calls); /* nothing while stopped */
    while (sc->rx < TOTAL) {
        iomux_conn_read_start(&sc->c);
        CHECK_EQ(sc->data_calls, calls); /* never inside the call */
        run_until_calls(s.loop, &sc->data_calls, calls + 1, DEADLINE_MS);
        calls = sc->data_calls;
        if (sent < TOTAL) {
            ssize_t n = write(fd, tx + sent, TOTAL - sent);
            if (n > 0) sent += (size_t)n;
        }
    }
    CHECK_EQ(sc->rx, TOTAL);
    CHECK(memcmp(sc->keep, tx, TOTAL) == 0);
    close(fd);
    iomux_conn_read_start(&sc->c); /* the reset / EOF must be read to be seen */
    wait_closed(&s, 1);
    free(tx);
    srv_stop(&s);
}

/* ---- timers ------------------------------------------------------------------------------ */

/* 1 once the peer's FIN arrived (what was before it is read and dropped),
 * 0 while open, -1 on an error. */
static int peer_state(int fd) {
    char buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n > 0) continue;
        if (n == 0) return 1;
        return errno == EAGAIN ? 0 : -1;
    }
}

/* idle_ms 200: the idle client is closed (-ETIMEDOUT; gracefully: the
 * queue is empty, so it sees a FIN), the active one (a byte every 30 ms)
 * is not, until it stops talking. */
static void test_idle_timeout(void) {
    iomux_conn_opts o = {.idle_ms = 200};
    srv s;
    int idle, active, i;
    uint64_t t0, t_idle = 0;
    srv_start(&s, &echo_cbs, &o);
    idle = client(&s);
    active = client(&s);
    wait_accepted(&s, 2);
    t0 = test_ms();
    for (i = 0; i < 20; i++) { /* 600 ms of activity */
        CHECK_SYS(write(active, "x", 1));
        run_ms(s.loop, 30);
        CHECK_EQ(peer_state(active), 0);
        if (!t_idle && peer_state(idle) == 1) t_idle = test_ms() - t0;
    }
    fprintf(stderr, "   idle connection closed after %llu ms\n", (unsigned long long)t_idle);
    CHECK(t_idle >= 190 && t_idle < 500);
    close(idle);
    wait_closed(&s, 1);
    CHECK_EQ(s.r_timeout, 1);
    t0 = test_ms();
    while (peer_state(active) == 0) {
        if (test_ms() - t0 > 2000) FAIL("the active connection never timed out");
        run_ms(s.loop, 5);
    }
    CHECK(test_ms() - t0 >= 150);
    close(active);
    wait_closed(&s, 2);
    CHECK_EQ(s.r_timeout, 2);
    srv_stop(&s);
}

static void note_timeout(iomux_conn *c, int which) {
    sconn *sc = sc_of(c);
    sc->timeouts++;
    sc->s->timeouts++;
    sc->s->last_which = which;
    sc->s->timeout_at = iomux_now(c->loop);
    iomux_conn_close(c, IOMUX_CONN_GRACEFUL);
}

static const iomux_conn_callbacks timeout_cbs = {
    .on_data = echo_data, .on_timeout = note_timeout, .on_close = srv_close};

/* The deadline fires once, at its absolute time, before a longer idle
 * timeout, whatever the activity; a cleared one never fires; then an idle
 * timeout fires with IOMUX_CONN_IDLE. */
static void test_deadline(void) {
    iomux_conn_opts o = {.idle_ms = 1000};
    srv s;
    int a, b, i;
    uint64_t due;
    sconn *sb;
    srv_start(&s, &timeout_cbs, &o);
    a = client(&s);
    b = client(&s);
    wait_accepted(&s, 2);
    sb = s.conns[1];
    due = iomux_now(s.loop) + 150;
    CHECK_OK(iomux_conn_set_deadline(&s.conns[0]->c, due));
    CHECK_OK(iomux_conn_set_deadline(&sb->c, due));
    CHECK_OK(iomux_conn_set_deadline(&sb->c, 0));
    for (i = 0; i < 10 && s.timeouts == 0; i++) { /* activity does not move a deadline */
        CHECK_SYS(write(a, "y", 1));
        run_ms(s.loop, 30);
    }
    run_until_calls(s.loop, &s.timeouts, 1, DEADLINE_MS);
    CHECK_EQ(s.last_which, IOMUX_CONN_DEADLINE);
    fprintf(stderr, "   deadline %llu, fired at %llu\n", (unsigned long long)due,
            (unsigned long long)s.timeout_at);
    CHECK(s.timeout_at >= due && s.timeout_at < due + 200); /* late only by scheduling */
    CHECK_EQ(peer_state(a), 1); /* echoes read (unread, they would make close reset), FIN seen */
    close(a); /* ends the close's linger */
    wait_closed(&s, 1);
    CHECK_EQ(s.last_reason, 0); /* closed by on_timeout, not by default */
    run_ms(s.loop, 200);
    CHECK_EQ(s.timeouts, 1); /* the cleared deadline did not fire */
    CHECK_OK(iomux_conn_set_idle_timeout(&sb->c, 50));
    run_until_calls(s.loop, &s.timeouts, 2, DEADLINE_MS);
    CHECK_EQ(s.last_which, IOMUX_CONN_IDLE);
    while (peer_state(b) == 0) run_ms(s.loop, 1);
    close(b);
    wait_closed(&s, 2);
    CHECK_EQ(s.r_zero, 2);
    srv_stop(&s);
}

/* 1,000 connections with idle timeouts: the 500 active ones survive while
 * they talk (every 50 ms, against a 400 ms timeout: margin for a loaded
 * machine), the 500 idle ones are closed; then all are. */
static void test_many_timers(void) {
    enum { N = 1000 };
    iomux_conn_opts o = {.idle_ms = 400};
    static int fds[N];
    srv s;
    int i, round, ended = 0;
    srv_start(&s, &echo_cbs, &o);
    for (i = 0; i < N; i++) {
        fds[i] = client(&s);
        if (i % 100 == 99) run_ms(s.loop, 1);
    }
    wait_accepted(&s, N);
    for (round = 0; round < 14; round++) { /* 700 ms: the odd ones talk every 50 ms */
        for (i = 1; i < N; i += 2) CHECK_SYS(write(fds[i], "z", 1));
        run_ms(s.loop, 50);
    }
    for (i = 0; i < N; i++) {
        int st = peer_state(fds[i]);
        CHECK_EQ(st, i % 2 == 0);
        ended += st;
        if (st) close(fds[i]);
    }
    fprintf(stderr, "   after 700 ms: %d of %d timed out\n", ended, N);
    while (ended < N) {
        run_ms(s.loop, 10);
        for (i = 1; i < N; i += 2)
            if (fds[i] >= 0 && peer_state(fds[i]) == 1) {
                close(fds[i]);
                fds[i] = -1;
                ended++;
            }
    }
    wait_closed(&s, N);
    CHECK_EQ(s.r_timeout, N);
    srv_stop(&s);
}

/* ---- half-close and closing ------------------------------------------------------------ */

static void reply_on_eof(iomux_conn *c) {
    static unsigned char big[100000];
    sconn *sc = sc_of(c);
    sc->eofs++;
    fill(big, sizeof(big), 9);
    CHECK_EQ(iomux_conn_write(c, big, sizeof(big)), 1); /* above the default high mark */
    CHECK_OK(iomux_conn_shutdown(c));
    CHECK_EQ(iomux_conn_write(c, "x", 1), -EPIPE);
    CHECK_EQ(iomux_conn_shutdown(c), -EPIPE);
}

static void keep_data(iomux_conn *c, const void *data, size_t len) {
    sconn *sc = sc_of(c);
    keep_bytes(sc, data, len);
    sc->rx += len;
    sc->data_calls++;
}

static const iomux_conn_callbacks keep_cbs = {.on_data = keep_data, .on_close = srv_close};
static const iomux_conn_callbacks eof_cbs = {.on_data = keep_data, .on_eof = reply_on_eof, .on_close = srv_close};

/* The peer shuts its side: on_eof, where we reply and shut ours; the peer
 * reads everything, then EOF; the connection lives until we close it. */
static void test_peer_half_close(void) {
    static unsigned char want[100000], got[100000];
    srv s;
    sconn *sc;
    int fd;
    srv_start(&s, &eof_cbs, NULL);
    fd = client(&s);
    wait_accepted(&s, 1);
    sc = s.conns[0];
    write_all(fd, "request", 7);
    CHECK_SYS(shutdown(fd, SHUT_WR));
    read_exact(s.loop, fd, got, sizeof(got));
    fill(want, sizeof(want), 9);
    CHECK(memcmp(got, want, sizeof(got)) == 0);
    CHECK_EQ(read_end(s.loop, fd, NULL), 0);
    CHECK_EQ(sc->eofs, 1);
    CHECK_EQ(sc->rx, 7);
    CHECK(memcmp(sc->keep, "request", 7) == 0);
    run_ms(s.loop, 50);
    CHECK_EQ(s.closed, 0); /* half-open both ways: still ours to close */
    CHECK_OK(iomux_conn_close(&sc->c, IOMUX_CONN_GRACEFUL));
    CHECK_OK(iomux_conn_close(&sc->c, IOMUX_CONN_GRACEFUL)); /* a second call: no-op */
    CHECK_EQ(s.closed, 0); /* never inside the call */
    wait_closed(&s, 1);
    CHECK_EQ(s.r_zero, 1);
    close(fd);
    srv_stop(&s);
}

static unsigned char mib[1u << 20];

static void write_mib_shutdown(sconn *sc) {
    CHECK_EQ(iomux_conn_write(&sc->c, mib, sizeof(mib)), 1);
    CHECK_OK(iomux_conn_shutdown(&sc->c));
}

/* We shut down after 1 MiB: the peer reads it all, then EOF; we still read
 * what the peer sends after that, until its EOF (default: close). */
static void test_our_shutdown(void) {
    static unsigned char got[1u << 20];
    srv s;
    int fd;
    fill(mib, sizeof(mib), 11);
    srv_start(&s, &keep_cbs, NULL);
    s.on_conn = write_mib_shutdown;
    fd = client(&s);
    wait_accepted(&s, 1);
    read_exact(s.loop, fd, got, sizeof(got));
    CHECK(memcmp(got, mib, sizeof(got)) == 0);
    CHECK_EQ(read_end(s.loop, fd, NULL), 0);
    CHECK_EQ(s.conns[0]->rx, 0);
    write_all(fd, "after", 5); /* the server still reads after its shutdown */
    run_until_calls(s.loop, (volatile int *)&s.conns[0]->data_calls, 1, DEADLINE_MS);
    CHECK_EQ(s.conns[0]->rx, 5);
    CHECK_SYS(shutdown(fd, SHUT_WR));
    wait_closed(&s, 1);
    close(fd);
    srv_stop(&s);
}

static void write_mib_close(sconn *sc) {
    CHECK_EQ(iomux_conn_write(&sc->c, mib, sizeof(mib)), 1);
    CHECK_OK(iomux_conn_close(&sc->c, IOMUX_CONN_GRACEFUL));
    CHECK_EQ(iomux_conn_write(&sc->c, "x", 1), -EPIPE);
}

/* A graceful close flushes 1 MiB before its FIN, and discards what the
 * peer sends meanwhile without resetting; on_close when the peer closes. */
static void test_graceful_close(void) {
    static unsigned char got[1u << 20];
    srv s;
    int fd;
    fill(mib, sizeof(mib), 13);
    srv_start(&s, &echo_cbs, NULL);
    s.on_conn = write_mib_close;
    fd = client(&s);
    wait_accepted(&s, 1);
    run_ms(s.loop, 50);
    write_all(fd, mib, 10000); /* unread by the server: discarded */
    read_exact(s.loop, fd, got, sizeof(got));
    CHECK(memcmp(got, mib, sizeof(got)) == 0);
    CHECK_EQ(read_end(s.loop, fd, NULL), 0); /* a FIN, not a reset */
    run_ms(s.loop, 20);
    CHECK_EQ(s.closed, 0); /* lingering for our FIN... */
    close(fd);
    wait_closed(&s, 1); /* ...which ends it */
    CHECK_EQ(s.r_zero, 1);
    srv_stop(&s);
}

/* The linger is bounded: a peer that never closes is closed after
 * IOMUX_CONN_LINGER_MS. */
static void close_at_once(sconn *sc) {
    CHECK_OK(iomux_conn_write(&sc->c, "bye", 3));
    CHECK_OK(iomux_conn_close(&sc->c, IOMUX_CONN_GRACEFUL));
}

static void test_graceful_linger_bounded(void) {
    srv s;
    char buf[8];
    int fd;
    uint64_t t0;
    srv_start(&s, &echo_cbs, NULL);
    s.on_conn = close_at_once;
    fd = client(&s);
    t0 = test_ms();
    wait_accepted(&s, 1);
    read_exact(s.loop, fd, buf, 3);
    CHECK_EQ(read_end(s.loop, fd, NULL), 0);
    wait_closed(&s, 1);
    fprintf(stderr, "   closed after %llu ms\n", (unsigned long long)(test_ms() - t0));
    CHECK(test_ms() - t0 >= IOMUX_CONN_LINGER_MS - 10);
    close(fd);
    srv_stop(&s);
}

/* 1 MiB into a small socket buffer: most of it stays queued. */
static void write_mib(sconn *sc) {
    int sz = 65536;
    CHECK_SYS(setsockopt(sc->c.fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)));
    CHECK_EQ(iomux_conn_write(&sc->c, mib, sizeof(mib)), 1);
}

/* An abortive close drops the queue and resets: the peer sees ECONNRESET. */
static void test_abort(void) {
    srv s;
    int fd;
    size_t bytes = 0;
    srv_start(&s, &echo_cbs, NULL);
    s.on_conn = write_mib;
    fd = client(&s);
    wait_accepted(&s, 1);
    run_ms(s.loop, 50);
    CHECK(iomux_conn_queued(&s.conns[0]->c) > 0); /* the peer reads nothing yet */
    CHECK_OK(iomux_conn_close(&s.conns[0]->c, IOMUX_CONN_ABORT));
    CHECK_OK(iomux_conn_close(&s.conns[0]->c, IOMUX_CONN_GRACEFUL)); /* no-op now */
    wait_closed(&s, 1);
    CHECK_EQ(read_end(s.loop, fd, &bytes), -ECONNRESET);
    CHECK(bytes < sizeof(mib));
    CHECK_EQ(s.r_zero, 1);
    close(fd);
    srv_stop(&s);
}

/* A peer that reads nothing: with data queued, the idle timeout resets
 * the connection (-ETIMEDOUT), and it also ends a graceful close whose
 * flush stalls. */
static void write_mib_then_close(sconn *sc) {
    write_mib(sc);
    CHECK_OK(iomux_conn_close(&sc->c, IOMUX_CONN_GRACEFUL));
}

static void test_stalled_flush(void) {
    iomux_conn_opts o = {.idle_ms = 100};
    srv s;
    int fd[2], i;
    srv_start(&s, &echo_cbs, &o);
    s.on_conn = write_mib;
    fd[0] = client(&s);
    wait_accepted(&s, 1);
    s.on_conn = write_mib_then_close;
    fd[1] = client(&s);
    wait_accepted(&s, 2);
    wait_closed(&s, 2);
    CHECK_EQ(s.r_timeout, 2);
    for (i = 0; i < 2; i++) {
        CHECK_EQ(read_end(s.loop, fd[i], NULL), -ECONNRESET);
        close(fd[i]);
    }
    srv_stop(&s);
}

/* Abort with a send in flight (below the high mark: the recv still runs):
 * both ops are cancelled, the fd closed with the first to end. */
static void write_stuck(sconn *sc) {
    static unsigned char buf[60000];
    int sz = 4096;
    CHECK_SYS(setsockopt(sc->c.fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)));
    CHECK_EQ(iomux_conn_write(&sc->c, buf, sizeof(buf)), 0);
}

static void test_abort_both_busy(void) {
    srv s;
    int fd, sz = 4096;
    struct sockaddr_in a = {.sin_family = AF_INET};
    srv_start(&s, &echo_cbs, NULL);
    s.on_conn = write_stuck;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_SYS(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz))); /* before connect: small window */
    a.sin_port = htons((uint16_t)s.port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_SYS(connect(fd, (struct sockaddr *)&a, sizeof(a)));
    set_nonblock(fd);
    wait_accepted(&s, 1);
    run_ms(s.loop, 30);
    CHECK(iomux_conn_queued(&s.conns[0]->c) > 0);
    CHECK(iomux_op_active(&s.conns[0]->c.internal.tx));
    CHECK(iomux_op_active(&s.conns[0]->c.internal.rx));
    CHECK_OK(iomux_conn_close(&s.conns[0]->c, IOMUX_CONN_ABORT));
    wait_closed(&s, 1);
    CHECK_EQ(s.r_zero, 1);
    CHECK_EQ(read_end(s.loop, fd, NULL), -ECONNRESET);
    close(fd);
    srv_stop(&s);
}

/* ---- on_close exactly once, whatever the way ------------------------------------------ */

static void abort_in_data(iomux_conn *c, const void *data, size_t len) {
    sconn *sc = sc_of(c);
    sc->data_calls++;
    sc->rx += len;
    if (len && ((const char *)data)[0] == 'A') {
        CHECK_OK(iomux_conn_write(c, data, len));
        CHECK_OK(iomux_conn_close(c, IOMUX_CONN_ABORT));
    } else if (len && ((const char *)data)[0] == 'G') {
        CHECK_OK(iomux_conn_close(c, IOMUX_CONN_GRACEFUL));
        CHECK_OK(iomux_conn_close(c, IOMUX_CONN_ABORT)); /* escalates */
    } else {
        CHECK(iomux_conn_write(c, data, len) >= 0);
    }
}

static const iomux_conn_callbacks abort_cbs = {.on_data = abort_in_data, .on_close = srv_close};

static void test_close_once(void) {
    srv s;
    struct linger lg = {1, 0};
    int fd[4], i;
    srv_start(&s, &abort_cbs, NULL);
    for (i = 0; i < 4; i++) fd[i] = client(&s);
    wait_accepted(&s, 4);
    write_all(fd[0], "A: abort from on_data", 21);
    write_all(fd[1], "G: graceful, then abort", 23);
    CHECK_SYS(setsockopt(fd[2], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)));
    write_all(fd[2], "x", 1);
    run_until_calls(s.loop, (volatile int *)&s.conns[2]->data_calls, 1, DEADLINE_MS);
    close(fd[2]); /* the peer resets */
    fd[2] = -1;
    wait_closed(&s, 3);
    CHECK_EQ(s.r_zero, 2);
    CHECK_EQ(s.r_other, 1);
    CHECK(s.conns[3] != NULL);
    /* abort with a send in flight and the recv running */
    CHECK_EQ(iomux_conn_write(&s.conns[3]->c, mib, sizeof(mib)), 1);
    CHECK_OK(iomux_conn_close(&s.conns[3]->c, IOMUX_CONN_ABORT));
    wait_closed(&s, 4);
    for (i = 0; i < 4; i++)
        if (fd[i] >= 0) close(fd[i]);
    srv_stop(&s);
}

/* A peer reset shows as on_close(-ECONNRESET). */
static void test_peer_reset_reason(void) {
    srv s;
    struct linger lg = {1, 0};
    int fd;
    srv_start(&s, &echo_cbs, NULL);
    fd = client(&s);
    wait_accepted(&s, 1);
    CHECK_SYS(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)));
    close(fd);
    wait_closed(&s, 1);
    CHECK_EQ(s.last_reason, -ECONNRESET);
    srv_stop(&s);
}

/* ---- batching, cork, sendfile ------------------------------------------------------------ */

/* Segments the socket sent (TCP_INFO's tcpi_segs_out, Linux 4.2+, which
 * glibc's struct tcp_info stops short of: its layout continues so).
 * Windows has no such counter: there the batching is checked by its bytes
 * and on_data calls only. */
#ifndef _WIN32
#define HAVE_SEGS_OUT 1
static uint32_t segs_out(int fd) {
    struct {
        struct tcp_info base;
        uint64_t pacing_rate, max_pacing_rate, bytes_acked, bytes_received;
        uint32_t segs_out, segs_in;
    } ti;
    socklen_t len = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    CHECK_SYS(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len));
    CHECK(len >= sizeof(ti));
    return ti.segs_out;
}
#else
#define HAVE_SEGS_OUT 0
static uint32_t segs_out(int fd) {
    (void)fd;
    return 0;
}
#endif

/* Pipelining: one response per request byte, 100 requests in one read. */
static void respond_each(iomux_conn *c, const void *data, size_t len) {
    const char *p = data;
    char resp[16];
    size_t i;
    sc_of(c)->data_calls++;
    for (i = 0; i < len; i++) {
        snprintf(resp, sizeof(resp), "resp-%c-ok;", p[i]);
        CHECK_OK(iomux_conn_write(c, resp, strlen(resp)));
    }
}

static const iomux_conn_callbacks batch_cbs = {.on_data = respond_each, .on_close = srv_close};

static void test_batching(void) {
    char req[100], got[1100], want[1100];
    srv s;
    int fd, i;
    uint32_t before;
    size_t wl = 0;
    srv_start(&s, &batch_cbs, NULL);
    fd = client(&s);
    wait_accepted(&s, 1);
    for (i = 0; i < 100; i++) {
        req[i] = (char)('a' + i % 26);
        wl += (size_t)snprintf(want + wl, sizeof(want) - wl, "resp-%c-ok;", req[i]);
    }
    run_ms(s.loop, 20);
    before = segs_out(s.conns[0]->c.fd);
    write_all(fd, req, sizeof(req));
    read_exact(s.loop, fd, got, wl);
    CHECK(memcmp(got, want, wl) == 0);
    if (HAVE_SEGS_OUT) {
        fprintf(stderr, "   %d on_data call(s), %u segment(s) out for 100 responses\n", s.conns[0]->data_calls,
                segs_out(s.conns[0]->c.fd) - before);
        CHECK(segs_out(s.conns[0]->c.fd) - before <= (uint32_t)s.conns[0]->data_calls + 2);
    }
    /* cork across calls: nothing leaves until uncork, then all at once */
    iomux_conn_cork(&s.conns[0]->c);
    for (i = 0; i < 3; i++) CHECK_OK(iomux_conn_write(&s.conns[0]->c, "abc", 3));
    run_ms(s.loop, 50);
    CHECK_EQ(bytes_pending(fd), 0);
    CHECK_EQ(iomux_conn_queued(&s.conns[0]->c), 9);
    iomux_conn_uncork(&s.conns[0]->c);
    read_exact(s.loop, fd, got, 9);
    CHECK(memcmp(got, "abcabcabc", 9) == 0);
    CHECK_SYS(shutdown(fd, SHUT_WR));
    CHECK_EQ(read_end(s.loop, fd, NULL), 0);
    close(fd);
    wait_closed(&s, 1);
    srv_stop(&s);
}

/* Writes of mixed sizes while nothing can leave (corked): the queue's last
 * chunk grows in place, and a write bigger than twice what it holds must
 * still fit (it once overflowed the grown chunk by the room it had). */
static void test_growing_writes(void) {
    static const size_t sizes[] = {10, 300, 5000, 100, 70000, 3, 40000, 1};
    static unsigned char want[120000], got[120000];
    size_t total = 0, i;
    srv s;
    int fd;
    srv_start(&s, &batch_cbs, NULL);
    fd = client(&s);
    wait_accepted(&s, 1);
    fill(want, sizeof(want), 7);
    iomux_conn_cork(&s.conns[0]->c);
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        CHECK(iomux_conn_write(&s.conns[0]->c, want + total, sizes[i]) >= 0);
        total += sizes[i];
    }
    CHECK_EQ(iomux_conn_queued(&s.conns[0]->c), total);
    iomux_conn_uncork(&s.conns[0]->c);
    read_exact(s.loop, fd, (char *)got, total);
    CHECK(memcmp(got, want, total) == 0);
    /* and again while a send is in flight: the new bytes go behind it */
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) CHECK(iomux_conn_write(&s.conns[0]->c, want, sizes[i]) >= 0);
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        read_exact(s.loop, fd, (char *)got, sizes[i]);
        CHECK(memcmp(got, want, sizes[i]) == 0);
    }
    CHECK_SYS(shutdown(fd, SHUT_WR));
    CHECK_EQ(read_end(s.loop, fd, NULL), 0);
    close(fd);
    wait_closed(&s, 1);
    srv_stop(&s);
}

static int tmpfile_of(size_t len, unsigned id) {
    char path[] = "/tmp/iomux-conn-XXXXXX";
    unsigned char *p = malloc(len);
    int fd = mkstemp(path);
    CHECK_SYS(fd);
    CHECK(p != NULL);
    unlink(path);
    fill(p, len, id);
    write_all(fd, p, len);
    free(p);
    return fd;
}

static int g_file;

static void send_file_close(sconn *sc) {
    CHECK_OK(iomux_conn_write(&sc->c, "HEAD", 4));
    CHECK(iomux_conn_sendfile(&sc->c, g_file, 1000, 150000, IOMUX_CONN_FILE_CLOSE) >= 0);
    CHECK(iomux_conn_write(&sc->c, "TAIL", 4) >= 0);
    CHECK_OK(iomux_conn_close(&sc->c, IOMUX_CONN_GRACEFUL));
}

static void send_short_file(sconn *sc) {
    CHECK_OK(iomux_conn_sendfile(&sc->c, g_file, 0, 5000, 0)); /* the file has 1000 */
}

/* write, sendfile, write leave in that order; the file is closed after;
 * a file shorter than promised fails the connection (-ENODATA). */
static void test_sendfile(void) {
    static unsigned char got[150008];
    srv s;
    int fd;
    g_file = tmpfile_of(200000, 17);
    srv_start(&s, &echo_cbs, NULL);
    s.on_conn = send_file_close;
    fd = client(&s);
    wait_accepted(&s, 1);
    read_exact(s.loop, fd, got, sizeof(got));
    CHECK(memcmp(got, "HEAD", 4) == 0);
    CHECK(check_pattern(got + 4, 150000, 17, 1000));
    CHECK(memcmp(got + 150004, "TAIL", 4) == 0);
    CHECK_EQ(read_end(s.loop, fd, NULL), 0);
    close(fd);
    wait_closed(&s, 1);
    CHECK(fcntl(g_file, F_GETFD) < 0); /* the connection closed it */
    g_file = tmpfile_of(1000, 19);
    s.on_conn = send_short_file;
    fd = client(&s);
    wait_closed(&s, 2);
    CHECK_EQ(s.last_reason, -ENODATA);
    CHECK(fcntl(g_file, F_GETFD) >= 0); /* not handed over: still ours */
    close(g_file);
    close(fd);
    srv_stop(&s);
}

/* ---- an idle connection holds no pool buffer ------------------------------------------- */

/* With 4 pool buffers, 100 idle connections are all served when they later
 * send: none of them sat on a buffer while idle. */
static void test_idle_holds_no_buffer(void) {
    enum { N = 100 };
    iomux_config cfg;
    srv s;
    int fd[N], i;
    char buf[32], want[32];
    iomux_config_init(&cfg);
    cfg.pool_buffers = 4;
    srv_start_cfg(&s, &cfg, &echo_cbs, NULL);
    for (i = 0; i < N; i++) fd[i] = client(&s);
    wait_accepted(&s, N);
    run_ms(s.loop, 50);
    for (i = 0; i < N; i++) {
        snprintf(buf, sizeof(buf), "message %03d", i);
        write_all(fd[i], buf, 11);
    }
    for (i = 0; i < N; i++) {
        snprintf(want, sizeof(want), "message %03d", i);
        read_exact(s.loop, fd[i], buf, 11);
        CHECK(memcmp(buf, want, 11) == 0);
        CHECK_SYS(shutdown(fd[i], SHUT_WR));
    }
    for (i = 0; i < N; i++) {
        CHECK_EQ(read_end(s.loop, fd[i], NULL), 0);
        close(fd[i]);
    }
    wait_closed(&s, N);
    srv_stop(&s);
}

/* ---- API errors --------------------------------------------------------------------------- */

static void test_api_errors(void) {
    iomux_loop *loop = test_loop();
    iomux_conn c;
    iomux_conn_opts o = {.high_water = 1000, .low_water = 1000};
    iomux_conn_callbacks no_close = {.on_data = echo_data};
    int p[2];
    unix_pair(p);
    CHECK_EQ(iomux_conn_start(loop, &c, p[0], NULL, NULL), -EINVAL);
    CHECK_EQ(iomux_conn_start(loop, &c, p[0], &no_close, NULL), -EINVAL);
    CHECK_EQ(iomux_conn_start(loop, &c, -1, &echo_cbs, NULL), -EINVAL);
    CHECK_EQ(iomux_conn_start(loop, &c, p[0], &echo_cbs, &o), -EINVAL);
    o.high_water = (size_t)1 << 33;
    o.low_water = 0;
    if (sizeof(size_t) > 4) CHECK_EQ(iomux_conn_start(loop, &c, p[0], &echo_cbs, &o), -EINVAL);
    CHECK_EQ(iomux_loop_alive(loop), 0);
    close_pair(p);
    fprintf(stderr, "   sizeof(iomux_conn) = %zu, sizeof(iomux_acceptor) = %zu, sizeof(iomux_op) = %zu\n",
            sizeof(iomux_conn), sizeof(iomux_acceptor), sizeof(iomux_op));
    test_loop_free(loop);
}

int main(int argc, char **argv) {
    TEST_ARGS(argc, argv);
    fprintf(stderr, "backend %s\n", test_backend());
    alarm(120);
    RUN(test_api_errors);
    RUN(test_echo_200);
    RUN(test_backpressure);
    RUN(test_read_stop_start);
    RUN(test_idle_timeout);
    RUN(test_deadline);
    /* Under Wine, 1,000 connects take longer than the 400 ms idle timeout
     * this test is built around: the first connections time out before
     * the last are made (seen: ETIMEDOUT on connection 1). */
    if (!test_wine()) RUN(test_many_timers);
    RUN(test_peer_half_close);
    RUN(test_our_shutdown);
    RUN(test_graceful_close);
    RUN(test_graceful_linger_bounded);
    if (!test_wine()) RUN(test_abort); /* Wine 8: a SO_LINGER 0 close sends a FIN, not a reset */
    if (!test_wine()) RUN(test_stalled_flush); /* Wine 8: a SO_LINGER 0 close sends a FIN, not a reset */
    if (!test_wine()) RUN(test_abort_both_busy); /* Wine 8: a SO_LINGER 0 close sends a FIN, not a reset */
    if (!test_wine()) RUN(test_close_once); /* Wine 8: a SO_LINGER 0 close sends a FIN, not a reset */
    if (!test_wine()) RUN(test_peer_reset_reason); /* Wine 8: a SO_LINGER 0 close sends a FIN, not a reset */
    RUN(test_batching);
    RUN(test_growing_writes);
    RUN(test_sendfile);
    RUN(test_idle_holds_no_buffer);
    return 0;
}

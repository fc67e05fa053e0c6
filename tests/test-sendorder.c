/* Sends on one fd complete in the order they were started, each only when
 * every byte is sent: 10,000 numbered messages queued before the loop runs
 * (plus more started from send callbacks), with a roomy and a tiny send
 * buffer; 10,000 queued behind a 1 MiB send that is stuck half way; big and
 * small sends mixed, read back by recv ops on the same loop. The peer must
 * see the byte stream exactly as started, and the callbacks must come in
 * start order, each with its full length. */
#include <pthread.h>

#include "harness.h"

#define NMSG 10000
#define NEXTRA 10 /* started from the callbacks of messages 999, 1999, ... */
#define SMALL_SNDBUF 4096
#define DEADLINE_MS 10000

static void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static void heartbeat_cb(iomux_timer *t) {
    (void)t;
}

/* ---- a stream of sends ----------------------------------------------------------- */

typedef struct sendset {
    iomux_loop *loop;
    int fd;
    size_t n, cap;        /* ops started / room */
    iomux_op *ops;
    const char **bufs;
    size_t *lens;
    size_t *order;        /* completion order: op index */
    size_t ndone;
    int bad_result, bad_flags, still_active;
    /* the expected stream: every op's bytes, in start order */
    char *stream;
    size_t slen, scap;
    int extras;           /* start one more message every 1000th callback */
    size_t next_extra;
} sendset;

static void send_cb(iomux_op *op);

static void sendset_init(sendset *s, iomux_loop *loop, int fd, size_t cap) {
    memset(s, 0, sizeof(*s));
    s->loop = loop;
    s->fd = fd;
    s->cap = cap;
    s->ops = calloc(cap, sizeof(iomux_op));
    s->bufs = calloc(cap, sizeof(char *));
    s->lens = calloc(cap, sizeof(size_t));
    s->order = calloc(cap, sizeof(size_t));
    s->scap = 1u << 16;
    s->stream = malloc(s->scap);
    CHECK(s->ops && s->bufs && s->lens && s->order && s->stream);
}

static void sendset_free(sendset *s) {
    size_t i;
    for (i = 0; i < s->n; i++) free((void *)s->bufs[i]);
    free(s->ops);
    free(s->bufs);
    free(s->lens);
    free(s->order);
    free(s->stream);
}

/* Starts a send of a copy of buf (which the op owns until its callback). */
static void sendset_start(sendset *s, const void *buf, size_t len) {
    size_t i = s->n++;
    char *copy = malloc(len ? len : 1);
    CHECK(i < s->cap);
    CHECK(copy != NULL);
    memcpy(copy, buf, len);
    s->bufs[i] = copy;
    s->lens[i] = len;
    while (s->slen + len > s->scap) {
        s->scap *= 2;
        s->stream = realloc(s->stream, s->scap);
        CHECK(s->stream != NULL);
    }
    memcpy(s->stream + s->slen, buf, len);
    s->slen += len;
    s->ops[i].data = s;
    CHECK_OK(iomux_send(s->loop, &s->ops[i], s->fd, copy, len, send_cb));
}

/* A distinct numbered message of 8..60 bytes. */
static size_t make_msg(char *out, size_t i) {
    size_t len = (size_t)sprintf(out, "[%05zu:", i), pad = (i * 7) % 53, k;
    for (k = 0; k < pad; k++) out[len++] = (char)('a' + (i + k) % 26);
    out[len++] = ']';
    return len;
}

static void start_msg(sendset *s, size_t i) {
    char m[80];
    size_t len = make_msg(m, i);
    sendset_start(s, m, len);
}

static void send_cb(iomux_op *op) {
    sendset *s = op->data;
    size_t i = (size_t)(op - s->ops);
    CHECK(i < s->n);
    if (op->result != (int64_t)s->lens[i]) {
        if (!s->bad_result)
            fprintf(stderr, "send %zu: result %lld, want %zu\n", i, (long long)op->result, s->lens[i]);
        s->bad_result++;
    }
    if (op->flags != 0) s->bad_flags++;
    if (iomux_op_active(op)) s->still_active++;
    s->order[s->ndone++] = i;
    if (s->extras && s->ndone % 1000 == 0 && s->next_extra < NEXTRA)
        start_msg(s, 90000 + s->next_extra++); /* goes after everything started before */
}

/* Runs the loop until n sends completed (RUN_ONCE; the heartbeat bounds
 * each wait so that the deadline is seen). */
static void run_sends(sendset *s, size_t n) {
    iomux_timer hb;
    uint64_t end = test_ms() + DEADLINE_MS;
    iomux_timer_init(s->loop, &hb, heartbeat_cb);
    CHECK_OK(iomux_timer_start(&hb, 50, 50));
    while (s->ndone < n) {
        if (test_ms() > end) FAIL("sends stalled: %zu of %zu completed", s->ndone, n);
        CHECK_OK(iomux_run(s->loop, IOMUX_RUN_ONCE));
    }
    CHECK_OK(iomux_timer_stop(&hb));
}

static void check_order(const sendset *s) {
    size_t i;
    CHECK_EQ(s->ndone, s->n);
    CHECK_EQ(s->bad_result, 0);
    CHECK_EQ(s->bad_flags, 0);
    CHECK_EQ(s->still_active, 0);
    for (i = 0; i < s->n; i++)
        if (s->order[i] != i) FAIL("completion %zu was send %zu", i, s->order[i]);
}

/* ---- a blocking reader thread ------------------------------------------------------ */

typedef struct reader {
    pthread_t th;
    int fd;
    char *buf;
    size_t cap, got;
    int err, eof;
} reader;

/* Reads until EOF (or cap + 1 bytes: more than expected). */
static void *reader_main(void *arg) {
    reader *r = arg;
    for (;;) {
        ssize_t n = read(r->fd, r->buf + r->got, r->cap + 1 - r->got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            r->err = errno;
            break;
        }
        if (n == 0) {
            r->eof = 1;
            break;
        }
        r->got += (size_t)n;
        if (r->got > r->cap) break;
    }
    return NULL;
}

static void reader_start(reader *r, int fd, size_t cap) {
    struct timeval tv = {10, 0};
    int fl = fcntl(fd, F_GETFL);
    memset(r, 0, sizeof(*r));
    r->fd = fd;
    r->cap = cap;
    r->buf = malloc(cap + 1);
    CHECK(r->buf != NULL);
    CHECK_SYS(fl);
    CHECK_SYS(fcntl(fd, F_SETFL, fl & ~O_NONBLOCK));
    CHECK_SYS(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)));
    CHECK(pthread_create(&r->th, NULL, reader_main, r) == 0);
}

static void check_stream(const char *got, size_t got_len, const char *want, size_t want_len) {
    size_t i, n = got_len < want_len ? got_len : want_len;
    for (i = 0; i < n && got[i] == want[i]; i++) {
    }
    if (i < n || got_len != want_len) {
        size_t from = i > 20 ? i - 20 : 0;
        FAIL("stream differs at byte %zu of %zu (got %zu): want \"%.40s\" got \"%.40s\"", i, want_len,
             got_len,
             want + from, got + from);
    }
}

/* ---- 10,000 queued before the loop runs -------------------------------------------- */

static void run_queued(int small_sndbuf) {
    iomux_loop *loop = test_loop();
    sendset s;
    reader r;
    int p[2];
    size_t i;
    tcp_pair(p);
    if (small_sndbuf) {
        int sz = SMALL_SNDBUF;
        CHECK_SYS(setsockopt(p[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)));
    }
    sendset_init(&s, loop, p[0], NMSG + NEXTRA);
    s.extras = 1;
    for (i = 0; i < NMSG; i++) start_msg(&s, i);
    CHECK_EQ(s.ndone, 0); /* never inside the start call */
    reader_start(&r, p[1], s.slen + 64 * NEXTRA);
    run_sends(&s, NMSG + NEXTRA);
    spin(loop, 3);
    check_order(&s);
    CHECK_EQ(s.n, NMSG + NEXTRA);
    test_op_close(loop, p[0]);
    CHECK(pthread_join(r.th, NULL) == 0);
    CHECK_EQ(r.err, 0);
    CHECK_EQ(r.eof, 1);
    check_stream(r.buf, r.got, s.stream, s.slen);
    close(p[1]);
    free(r.buf);
    sendset_free(&s);
    CHECK_EQ(iomux_loop_alive(loop), 0);
    test_loop_free(loop);
}

static void test_queued_10000(void) {
    run_queued(0);
}

static void test_queued_10000_small_sndbuf(void) {
    run_queued(1);
}

/* ---- queued behind a 1 MiB send that is stuck half way ------------------------------ */

static void test_queued_behind_partial(void) {
    iomux_loop *loop = test_loop();
    sendset s;
    reader r;
    int p[2], sz = SMALL_SNDBUF, i;
    char *big = malloc(1u << 20);
    size_t k;
    CHECK(big != NULL);
    for (k = 0; k < (1u << 20); k++) big[k] = (char)('A' + (k * 31 + (k >> 10)) % 26);
    tcp_pair(p);
    CHECK_SYS(setsockopt(p[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)));
    sendset_init(&s, loop, p[0], NMSG + 1);
    sendset_start(&s, big, 1u << 20);
    /* nobody reads: the big send goes as far as the buffers let it and
     * must not complete */
    for (i = 0; i < 30; i++) {
        CHECK_OK(iomux_run(loop, IOMUX_RUN_NOWAIT));
        sleep_us(1000);
    }
    CHECK(bytes_pending(p[1]) > 0); /* it has started */
    CHECK_EQ(s.ndone, 0);
    CHECK_EQ(iomux_op_active(&s.ops[0]), 1);
    for (k = 0; k < NMSG; k++) start_msg(&s, k);
    spin(loop, 10);
    CHECK_EQ(s.ndone, 0); /* nothing overtakes it */
    reader_start(&r, p[1], s.slen);
    run_sends(&s, NMSG + 1);
    spin(loop, 3);
    check_order(&s);
    test_op_close(loop, p[0]);
    CHECK(pthread_join(r.th, NULL) == 0);
    CHECK_EQ(r.err, 0);
    CHECK_EQ(r.eof, 1);
    check_stream(r.buf, r.got, s.stream, s.slen);
    close(p[1]);
    free(r.buf);
    free(big);
    sendset_free(&s);
    test_loop_free(loop);
}

/* ---- big and small mixed, read by recv ops on the same loop ------------------------- */

typedef struct rstate {
    iomux_loop *loop;
    int fd;
    iomux_op op;
    char *buf;
    size_t cap, got;
    int eof;
} rstate;

static void rs_cb(iomux_op *op) {
    rstate *r = op->data;
    CHECK_EQ(op->flags, 0);
    if (op->result < 0) FAIL("recv: %s", iomux_strerror((int)op->result));
    if (op->result == 0) {
        r->eof = 1;
        return;
    }
    r->got += (size_t)op->result;
    CHECK(r->got <= r->cap);
    CHECK_OK(iomux_recv(r->loop, &r->op, r->fd, r->buf + r->got,
                        r->cap - r->got < 32768 ? r->cap - r->got + 1 : 32768, 0, rs_cb));
}

static void run_mixed(unsigned zc_threshold) {
    static const size_t bigs[] = {1u << 20, 256u << 10, 65536, 1u << 20};
    iomux_config cfg;
    iomux_loop *loop;
    sendset s;
    rstate r;
    int p[2], sz = SMALL_SNDBUF;
    size_t b, k, msg = 0;
    uint64_t end;
    iomux_timer hb;
    char *big = malloc(1u << 20);
    CHECK(big != NULL);
    iomux_config_init(&cfg);
    cfg.send_zc_threshold = zc_threshold; /* uring only; 0: never */
    CHECK_OK(iomux_loop_new(&loop, &cfg));
    tcp_pair(p);
    CHECK_SYS(setsockopt(p[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)));
    sendset_init(&s, loop, p[0], 256);
    for (b = 0; b < sizeof(bigs) / sizeof(bigs[0]); b++) {
        for (k = 0; k < bigs[b]; k++) big[k] = (char)('a' + (k * 7 + b * 3 + (k >> 12)) % 26);
        sendset_start(&s, big, bigs[b]);
        for (k = 0; k < 20; k++) start_msg(&s, msg++);
        sendset_start(&s, "", 1); /* a single NUL byte */
        sendset_start(&s, "", 0); /* nothing at all: completes with 0, in turn */
    }
    memset(&r, 0, sizeof(r));
    r.loop = loop;
    r.fd = p[1];
    r.cap = s.slen;
    r.buf = malloc(r.cap + 1);
    CHECK(r.buf != NULL);
    r.op.data = &r;
    CHECK_OK(iomux_recv(loop, &r.op, r.fd, r.buf, 32768, 0, rs_cb));
    run_sends(&s, s.n);
    check_order(&s);
    /* the sender's close reaches the reader as EOF after the last byte */
    test_op_close(loop, p[0]);
    iomux_timer_init(loop, &hb, heartbeat_cb);
    CHECK_OK(iomux_timer_start(&hb, 50, 50));
    end = test_ms() + DEADLINE_MS;
    while (!r.eof) {
        if (test_ms() > end) FAIL("reader stalled at %zu of %zu", r.got, r.cap);
        CHECK_OK(iomux_run(loop, IOMUX_RUN_ONCE));
    }
    CHECK_OK(iomux_timer_stop(&hb));
    check_stream(r.buf, r.got, s.stream, s.slen);
    test_op_close(loop, p[1]);
    free(r.buf);
    free(big);
    sendset_free(&s);
    spin(loop, 2);
    CHECK_EQ(iomux_loop_alive(loop), 0);
    test_loop_free(loop);
}

static void test_mixed_sizes_recv_ops(void) {
    run_mixed(0);
}

/* The big sends (and the 8..60-byte ones at threshold 1) zero-copy on uring:
 * each completes after its notification, still in start order. */
static void test_mixed_sizes_send_zc(void) {
    run_mixed(65536);
    run_mixed(1);
}

int main(void) {
    fprintf(stderr, "backend %s\n", test_backend());
    alarm(60); /* a backstop: every wait above is bounded already */
    RUN(test_queued_10000);
    RUN(test_queued_10000_small_sndbuf);
    RUN(test_queued_behind_partial);
    RUN(test_mixed_sizes_recv_ops);
    RUN(test_mixed_sizes_send_zc);
    return 0;
}

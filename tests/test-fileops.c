/* File ops and sendfile: iomux_write / iomux_read at offsets on a temp file
 * (holes, short counts, EOF, bad fds), 100 concurrent reads and writes each
 * completing once with the right data, sendfile of 1 MiB to a TCP peer with
 * a small send buffer (a reader thread on the other end), sendfile past the
 * end of the file (-ENODATA after the file's bytes), sends and sendfiles
 * interleaved on one socket (in order, each result == len), and send/recv on
 * a pipe. File ops run on the work pool on readiness backends: the test runs
 * under TSan too. */
#include <pthread.h>

#include "harness.h"

#define WAIT_MS 5000
#define BLOCK 4096

static unsigned char pattern(size_t i) {
    return (unsigned char)((i * 2654435761u) >> 13);
}

/* An empty temp file in /tmp, already unlinked. */
static int temp_file(void) {
    return test_temp_fd("iomux-fileops");
}

/* A temp file of n pattern bytes. */
static int pattern_file(size_t n) {
    unsigned char buf[BLOCK];
    size_t off = 0, i;
    int fd = temp_file();
    while (off < n) {
        size_t k = n - off < sizeof(buf) ? n - off : sizeof(buf);
        for (i = 0; i < k; i++) buf[i] = pattern(off + i);
        write_all(fd, buf, k);
        off += k;
    }
    return fd;
}

static void check_pattern(const unsigned char *p, size_t off, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (p[i] != pattern(off + i)) FAIL("byte at file offset %zu differs", off + i);
}

/* ---- one op at a time ---------------------------------------------------------------- */

static int g_calls;
static int64_t g_res;

static void one_cb(iomux_op *op) {
    CHECK_EQ(iomux_op_active(op), 0);
    CHECK_EQ(op->flags, 0);
    g_calls++;
    g_res = op->result;
}

static int64_t finish_one(iomux_loop *loop, iomux_op *op) {
    CHECK(iomux_op_active(op));
    CHECK_EQ(g_calls, 0); /* never inside the start call */
    run_until_calls(loop, &g_calls, 1, WAIT_MS);
    spin(loop, 2);
    CHECK_EQ(g_calls, 1);
    return g_res;
}

static int64_t do_read(iomux_loop *loop, int fd, void *buf, size_t len, int64_t off) {
    iomux_op op;
    g_calls = 0;
    CHECK_OK(iomux_read(loop, &op, fd, buf, len, off, one_cb));
    return finish_one(loop, &op);
}

static int64_t do_write(iomux_loop *loop, int fd, const void *buf, size_t len, int64_t off) {
    iomux_op op;
    g_calls = 0;
    CHECK_OK(iomux_write(loop, &op, fd, buf, len, off, one_cb));
    return finish_one(loop, &op);
}

static void test_write_read_offsets(void) {
    iomux_loop *loop = test_loop();
    int fd = temp_file();
    char buf[256];
    struct stat st;
    size_t i;
    CHECK_EQ(do_write(loop, fd, "hello, iomux", 12, 0), 12);
    CHECK_EQ(do_write(loop, fd, "tail", 4, 8192), 4);
    CHECK_EQ(do_write(loop, fd, "HELLO", 5, 0), 5); /* overwrite in place */
    CHECK_SYS(fstat(fd, &st));
    CHECK_EQ(st.st_size, 8196);

    memset(buf, 'x', sizeof(buf));
    CHECK_EQ(do_read(loop, fd, buf, 12, 0), 12);
    CHECK(memcmp(buf, "HELLO, iomux", 12) == 0);
    CHECK_EQ(do_read(loop, fd, buf, 5, 7), 5);
    CHECK(memcmp(buf, "iomux", 5) == 0);
    memset(buf, 'x', sizeof(buf));
    CHECK_EQ(do_read(loop, fd, buf, 100, 100), 100); /* the hole reads as zeros */
    for (i = 0; i < 100; i++) CHECK_EQ(buf[i], 0);
    CHECK_EQ(do_read(loop, fd, buf, sizeof(buf), 8190), 6); /* a short count at EOF */
    CHECK(memcmp(buf, "\0\0tail", 6) == 0);
    CHECK_EQ(do_read(loop, fd, buf, sizeof(buf), 8196), 0); /* at EOF */
    CHECK_EQ(do_read(loop, fd, buf, sizeof(buf), (int64_t)1 << 40), 0); /* far past it */
    CHECK_EQ(do_read(loop, fd, buf, 0, 0), 0);
    /* The file offset is not used (pread/pwrite). */
    CHECK_EQ(lseek(fd, 0, SEEK_CUR), 0);
    close(fd);
    test_loop_free(loop);
}

static void test_bad_fds(void) {
    iomux_loop *loop = test_loop();
    char path[] = "/tmp/iomux-fileops-XXXXXX", buf[16];
    int fd = mkstemp(path), wfd, rfd, dfd, gone;
    iomux_op op;
    CHECK_SYS(fd);
    write_all(fd, "0123456789", 10);
#ifdef _WIN32 /* mkstemp's file is open share-none: reopen it shared */
    close(fd);
    fd = open(path, O_RDWR | O_BINARY);
    CHECK_SYS(fd);
#endif
    wfd = open(path, O_WRONLY | O_CLOEXEC);
    rfd = open(path, O_RDONLY | O_CLOEXEC);
#ifndef _WIN32 /* the C runtime's open() takes no directory */
    dfd = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK_SYS(dfd);
#else
    dfd = -1;
#endif
    CHECK_SYS(wfd);
    CHECK_SYS(rfd);
    unlink(path); /* (Windows: refused while open; done again below) */
    CHECK_EQ(do_read(loop, wfd, buf, sizeof(buf), 0), -EBADF);
    CHECK_EQ(do_write(loop, rfd, "x", 1, 0), -EBADF);
    if (dfd >= 0) CHECK_EQ(do_read(loop, dfd, buf, sizeof(buf), 0), -EISDIR);
    gone = dup(fd);
    CHECK_SYS(gone);
    close(gone); /* a number that is open nowhere now */
    CHECK_EQ(do_read(loop, gone, buf, sizeof(buf), 0), -EBADF);
    CHECK_EQ(do_read(loop, rfd, buf, sizeof(buf), 0), 10); /* the good one still works */

    /* Refused at the start: no callback. */
    memset(&op, 0, sizeof(op));
    g_calls = 0;
    CHECK_EQ(iomux_read(loop, &op, -1, buf, sizeof(buf), 0, one_cb), -EBADF);
    CHECK_EQ(iomux_read(loop, &op, rfd, buf, sizeof(buf), -1, one_cb), -EINVAL);
    CHECK_EQ(iomux_read(loop, &op, rfd, NULL, 10, 0, one_cb), -EINVAL);
    CHECK_EQ(iomux_write(loop, &op, -1, "x", 1, 0, one_cb), -EBADF);
    CHECK_EQ(iomux_op_active(&op), 0);
    spin(loop, 3);
    CHECK_EQ(g_calls, 0);
    CHECK_EQ(iomux_loop_alive(loop), 0);
    close(fd);
    close(wfd);
    close(rfd);
    if (dfd >= 0) close(dfd);
    unlink(path);
    test_loop_free(loop);
}

/* ---- many at once -------------------------------------------------------------------------- */

#define NCONC 100

typedef struct fop {
    iomux_op op; /* first: the callback casts back */
    int id;
    unsigned char *buf;
} fop;

static int C_calls[NCONC], c_total;

static void conc_read_cb(iomux_op *op) {
    fop *f = (fop *)(void *)op;
    CHECK_EQ(C_calls[f->id], 0);
    C_calls[f->id]++;
    c_total++;
    CHECK_EQ(op->result, BLOCK);
    check_pattern(f->buf, (size_t)f->id * BLOCK, BLOCK);
    free(f->buf);
    free(f);
}

static void conc_write_cb(iomux_op *op) {
    fop *f = (fop *)(void *)op;
    CHECK_EQ(C_calls[f->id], 0);
    C_calls[f->id]++;
    c_total++;
    CHECK_EQ(op->result, BLOCK);
    free(f->buf);
    free(f);
}

static fop *fop_new(int id) {
    fop *f = calloc(1, sizeof(*f));
    CHECK(f != NULL);
    f->id = id;
    f->buf = malloc(BLOCK);
    CHECK(f->buf != NULL);
    return f;
}

static void test_many_concurrent(void) {
    iomux_loop *loop = test_loop();
    int fd = pattern_file((size_t)NCONC * BLOCK), wfd = temp_file(), i;
    unsigned char *back = malloc((size_t)NCONC * BLOCK);
    CHECK(back != NULL);

    memset(C_calls, 0, sizeof(C_calls));
    c_total = 0;
    for (i = NCONC - 1; i >= 0; i--) { /* out of file order */
        fop *f = fop_new(i);
        memset(f->buf, 0, BLOCK);
        CHECK_OK(iomux_read(loop, &f->op, fd, f->buf, BLOCK, (int64_t)i * BLOCK, conc_read_cb));
    }
    CHECK_EQ(c_total, 0);
    CHECK_EQ(iomux_loop_free(loop), -EBUSY);
    run_until_calls(loop, &c_total, NCONC, WAIT_MS);
    spin(loop, 3);
    CHECK_EQ(c_total, NCONC);
    for (i = 0; i < NCONC; i++) CHECK_EQ(C_calls[i], 1);

    /* Writes of distinct blocks, then the file is read back directly. */
    memset(C_calls, 0, sizeof(C_calls));
    c_total = 0;
    for (i = 0; i < NCONC; i++) {
        fop *f = fop_new(i);
        size_t k;
        for (k = 0; k < BLOCK; k++) f->buf[k] = pattern((size_t)i * BLOCK + k);
        CHECK_OK(iomux_write(loop, &f->op, wfd, f->buf, BLOCK, (int64_t)i * BLOCK, conc_write_cb));
    }
    run_until_calls(loop, &c_total, NCONC, WAIT_MS);
    spin(loop, 3);
    CHECK_EQ(c_total, NCONC);
    for (i = 0; i < NCONC; i++) CHECK_EQ(C_calls[i], 1);
    CHECK_EQ(pread(wfd, back, (size_t)NCONC * BLOCK, 0), (ssize_t)NCONC * BLOCK);
    check_pattern(back, 0, (size_t)NCONC * BLOCK);
    free(back);
    close(fd);
    close(wfd);
    test_loop_free(loop);
}

/* ---- sendfile ------------------------------------------------------------------------------- */

/* Reads `want` bytes from a blocking fd on its own thread. */
typedef struct reader {
    pthread_t th;
    int fd;
    size_t want, got;
    unsigned char *buf;
    int err;
} reader;

static void *reader_main(void *arg) {
    reader *r = arg;
    while (r->got < r->want) {
        ssize_t n = read(r->fd, r->buf + r->got, r->want - r->got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            r->err = n < 0 ? errno : -1;
            break;
        }
        r->got += (size_t)n;
    }
    return NULL;
}

static void reader_start(reader *r, int fd, size_t want) {
    struct timeval tv = {WAIT_MS / 1000, 0};
    int fl = fcntl(fd, F_GETFL);
    memset(r, 0, sizeof(*r));
    r->fd = fd;
    r->want = want;
    r->buf = malloc(want ? want : 1);
    CHECK(r->buf != NULL);
    CHECK_SYS(fl);
    CHECK_SYS(fcntl(fd, F_SETFL, fl & ~O_NONBLOCK));
    CHECK_SYS(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)));
    CHECK_EQ(pthread_create(&r->th, NULL, reader_main, r), 0);
}

static void reader_join(reader *r) {
    CHECK_EQ(pthread_join(r->th, NULL), 0);
    if (r->got != r->want) FAIL("the reader got %zu of %zu bytes (error %d)", r->got, r->want, r->err);
}

static void test_sendfile_1mib(void) {
    enum { LEN = 1 << 20, OFF2 = 12345, LEN2 = 100000 };
    iomux_loop *loop = test_loop();
    int fd = pattern_file(LEN), p[2], sz = 4096;
    iomux_op a, b;
    reader r;
    tcp_pair(p);
    CHECK_SYS(setsockopt(p[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)));
    reader_start(&r, p[1], (size_t)LEN + LEN2);
    g_calls = 0;
    CHECK_OK(iomux_sendfile(loop, &a, p[0], fd, 0, LEN, one_cb));
    CHECK_OK(iomux_sendfile(loop, &b, p[0], fd, OFF2, LEN2, one_cb));
    run_until_calls(loop, &g_calls, 2, WAIT_MS);
    CHECK_EQ(a.result, LEN);
    CHECK_EQ(b.result, LEN2);
    reader_join(&r);
    check_pattern(r.buf, 0, LEN);
    check_pattern(r.buf + LEN, OFF2, LEN2);
    CHECK_EQ(lseek(fd, 0, SEEK_CUR), LEN); /* sendfile used its own offset */
    free(r.buf);
    close(fd);
    close_pair(p);
    test_loop_free(loop);
}

/* Reads exactly n bytes from non-blocking fd (bounded), then checks that
 * no more arrive. */
static void read_exactly(int fd, unsigned char *buf, size_t n) {
    size_t got = 0;
    uint64_t end = test_ms() + WAIT_MS;
    while (got < n) {
        struct pollfd pf = {fd, POLLIN, 0};
        ssize_t k;
        if (test_ms() > end) FAIL("got %zu of %zu bytes", got, n);
        poll(&pf, 1, 50);
        k = read(fd, buf + got, n - got);
        if (k > 0) got += (size_t)k;
        else if (k == 0) FAIL("EOF after %zu of %zu bytes", got, n);
    }
    {
        struct pollfd pf = {fd, POLLIN, 0};
        CHECK_EQ(poll(&pf, 1, 20), 0);
    }
}

static void test_sendfile_past_eof(void) {
    enum { FLEN = 10000 };
    iomux_loop *loop = test_loop();
    int fd = pattern_file(FLEN), p[2];
    unsigned char buf[FLEN];
    iomux_op op;
    tcp_pair(p);
    g_calls = 0;
    CHECK_OK(iomux_sendfile(loop, &op, p[0], fd, 0, 2 * FLEN, one_cb));
    CHECK_EQ(finish_one(loop, &op), -ENODATA);
    read_exactly(p[1], buf, FLEN); /* the file's bytes went out */
    check_pattern(buf, 0, FLEN);

    g_calls = 0;
    CHECK_OK(iomux_sendfile(loop, &op, p[0], fd, 2 * FLEN, 10, one_cb)); /* starts past the end */
    CHECK_EQ(finish_one(loop, &op), -ENODATA);
    g_calls = 0;
    CHECK_OK(iomux_sendfile(loop, &op, p[0], fd, 500, 0, one_cb));
    CHECK_EQ(finish_one(loop, &op), 0);
    g_calls = 0;
    CHECK_OK(iomux_sendfile(loop, &op, p[0], fd, FLEN - 100, 100, one_cb)); /* ends right at EOF */
    CHECK_EQ(finish_one(loop, &op), 100);
    read_exactly(p[1], buf, 100);
    check_pattern(buf, FLEN - 100, 100);
    CHECK_EQ(iomux_sendfile(loop, &op, p[0], -1, 0, 10, one_cb), -EINVAL);
    CHECK_EQ(iomux_sendfile(loop, &op, p[0], fd, -1, 10, one_cb), -EINVAL);
    close(fd);
    close_pair(p);
    test_loop_free(loop);
}

/* ---- sends and sendfiles interleaved on one socket ----------------------------------------- */

#define NSEG 12
#define FILE_LEN (1u << 20)

typedef struct seg {
    iomux_op op; /* first */
    int id;
    unsigned char *mem; /* a send's buffer, NULL for a sendfile */
} seg;

static int S_calls[NSEG], S_order[NSEG], s_total;
static int64_t S_result[NSEG];

static void seg_cb(iomux_op *op) {
    seg *s = (seg *)(void *)op;
    S_calls[s->id]++;
    S_result[s->id] = op->result;
    S_order[s_total++] = s->id;
    free(s->mem);
    free(s);
}

/* The peer side: a chain of recv ops into one big buffer. */
typedef struct sink {
    iomux_op op;
    int fd;
    unsigned char *buf;
    size_t got, want;
    int done, err;
} sink;

static void sink_cb(iomux_op *op) {
    sink *k = (sink *)(void *)op;
    if (op->result <= 0) {
        k->err = (int)op->result;
        k->done = 1;
        return;
    }
    CHECK(op->buf == k->buf + k->got); /* recv: op->buf is the buffer given */
    k->got += (size_t)op->result;
    CHECK(k->got <= k->want);
    if (k->got == k->want) {
        k->done = 1;
        return;
    }
    CHECK_OK(iomux_recv(op->loop, op, k->fd, k->buf + k->got, k->want - k->got, 0, sink_cb));
}

static void interleave(iomux_loop *loop, int p[2], const char *what) {
    /* len > 0: a send of len pattern bytes (salted by id); a sendfile of
     * file[off, off+len) otherwise. 0-byte ones included. */
    static const struct {
        int is_send;
        size_t off, len;
    } plan[NSEG] = {
        {1, 0, 1},      {0, 0, 5000},     {1, 0, 70000}, {0, 5000, 300000}, {1, 0, 0},   {0, 9, 0},
        {1, 0, 200000}, {0, 777, 1},      {1, 0, 3000},  {0, 0, FILE_LEN},  {1, 0, 17},  {0, 123, 65536},
    };
    int fd = pattern_file(FILE_LEN), i;
    size_t total = 0, pos = 0;
    unsigned char *expect;
    sink k;
    for (i = 0; i < NSEG; i++) total += plan[i].len;
    expect = malloc(total);
    CHECK(expect != NULL);
    memset(S_calls, 0, sizeof(S_calls));
    s_total = 0;
    for (i = 0; i < NSEG; i++) {
        seg *s = calloc(1, sizeof(*s));
        size_t j;
        CHECK(s != NULL);
        s->id = i;
        if (plan[i].is_send) {
            s->mem = malloc(plan[i].len ? plan[i].len : 1);
            CHECK(s->mem != NULL);
            for (j = 0; j < plan[i].len; j++) s->mem[j] = (unsigned char)(pattern(j) ^ (unsigned)(i * 37));
            memcpy(expect + pos, s->mem, plan[i].len);
            CHECK_OK(iomux_send(loop, &s->op, p[0], s->mem, plan[i].len, seg_cb));
        } else {
            for (j = 0; j < plan[i].len; j++) expect[pos + j] = pattern(plan[i].off + j);
            CHECK_OK(iomux_sendfile(loop, &s->op, p[0], fd, (int64_t)plan[i].off, plan[i].len, seg_cb));
        }
        pos += plan[i].len;
    }
    memset(&k, 0, sizeof(k));
    k.fd = p[1];
    k.want = total;
    k.buf = malloc(total);
    CHECK(k.buf != NULL);
    CHECK_OK(iomux_recv(loop, &k.op, p[1], k.buf, total, 0, sink_cb));
    /* The sends complete as the peer reads (same loop); then the peer
     * gets the rest. */
    run_until_calls(loop, &s_total, NSEG, WAIT_MS);
    for (i = 0; i < NSEG; i++) {
        if (S_calls[i] != 1) FAIL("%s: op %d: %d callbacks", what, i, S_calls[i]);
        if (S_result[i] != (int64_t)plan[i].len)
            FAIL("%s: op %d (%s of %zu bytes): result %lld (%s)", what, i, plan[i].is_send ? "send" : "sendfile",
                 plan[i].len, (long long)S_result[i], S_result[i] < 0 ? iomux_strerror((int)S_result[i]) : "");
        if (S_order[i] != i) FAIL("%s: completion %d was op %d", what, i, S_order[i]);
    }
    run_until(loop, &k.done, WAIT_MS);
    spin(loop, 3);
    CHECK_EQ(s_total, NSEG);
    for (i = 0; i < NSEG; i++) CHECK_EQ(S_calls[i], 1);
    if (k.err) FAIL("%s: the peer's recv failed: %d after %zu bytes", what, k.err, k.got);
    if (memcmp(k.buf, expect, total) != 0) {
        size_t at = 0;
        while (k.buf[at] == expect[at]) at++;
        FAIL("%s: the stream differs from the ops' bytes at %zu of %zu", what, at, total);
    }
    free(k.buf);
    free(expect);
    close(fd);
}

static iomux_loop *loop_with_zc(unsigned threshold) {
    iomux_config cfg;
    iomux_loop *loop = NULL;
    iomux_config_init(&cfg);
    cfg.send_zc_threshold = threshold;
    CHECK_OK(iomux_loop_new(&loop, &cfg));
    return loop;
}

static void test_interleaved_tcp(void) {
    iomux_loop *loop = test_loop();
    int p[2], sz = 4096;
    tcp_pair(p);
    interleave(loop, p, "TCP");
    close_pair(p);
    tcp_pair(p);
    CHECK_SYS(setsockopt(p[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)));
    interleave(loop, p, "TCP, small send buffer");
    close_pair(p);
    test_loop_free(loop);
    /* Zero-copy sends for the large ones (uring). */
    loop = loop_with_zc(64 * 1024);
    tcp_pair(p);
    interleave(loop, p, "TCP, send_zc_threshold 64 KiB");
    close_pair(p);
    test_loop_free(loop);
}

static void test_interleaved_unix(void) {
    iomux_loop *loop = test_loop();
    int p[2];
    unix_pair(p);
    interleave(loop, p, "AF_UNIX");
    close_pair(p);
    test_loop_free(loop);
}

/* With cfg.send_zc_threshold set, uring sends large buffers as SEND_ZC
 * (uring.c prep_send), which the kernel refuses on AF_UNIX sockets with
 * -EOPNOTSUPP. A regression test: the op used to fail; uring.c now falls
 * back to a plain send, as the same program works on every backend. */
static void test_interleaved_unix_zc(void) {
    iomux_loop *loop = loop_with_zc(64 * 1024);
    int p[2];
    unix_pair(p);
    interleave(loop, p, "AF_UNIX, send_zc_threshold 64 KiB");
    close_pair(p);
    test_loop_free(loop);
}

/* ---- a pipe ---------------------------------------------------------------------------------- */

/* send and recv on a pipe: the emulation falls back to write()/read() on
 * ENOTSOCK (emul.c send_once, read_once). A regression test: uring hands
 * IORING_OP_SEND/RECV to the kernel, which answers -ENOTSOCK; the op now
 * switches to the emulation (op.c), as iomux.h promises that a program runs
 * unchanged on every backend. */
#ifndef _WIN32 /* Windows pipes are not sockets: neither WSAPoll nor iocp's ops take them */
static void test_pipe(void) {
    iomux_loop *loop = test_loop();
    iomux_op op;
    char buf[16];
    int q[2];
    CHECK_SYS(pipe2(q, O_NONBLOCK | O_CLOEXEC));
    g_calls = 0;
    CHECK_OK(iomux_send(loop, &op, q[1], "hello", 5, one_cb));
    if (finish_one(loop, &op) != 5)
        FAIL("send on a pipe: result %lld (%s), want 5", (long long)g_res, iomux_strerror((int)g_res));
    g_calls = 0;
    CHECK_OK(iomux_recv(loop, &op, q[0], buf, sizeof(buf), 0, one_cb));
    if (finish_one(loop, &op) != 5)
        FAIL("recv on a pipe: result %lld (%s), want 5", (long long)g_res, iomux_strerror((int)g_res));
    CHECK(memcmp(buf, "hello", 5) == 0);
    close_pair(q);
    test_loop_free(loop);
}
#endif

int main(int argc, char **argv) {
    TEST_ARGS(argc, argv);
    fprintf(stderr, "backend %s\n", test_backend());
    RUN(test_write_read_offsets);
    RUN(test_bad_fds);
    RUN(test_many_concurrent);
    RUN(test_sendfile_1mib);
    RUN(test_sendfile_past_eof);
    RUN(test_interleaved_tcp);
    RUN(test_interleaved_unix);
    /* Regressions for bugs found on uring (see their comments). */
    RUN(test_interleaved_unix_zc);
#ifndef _WIN32
    RUN(test_pipe);
#endif
    return 0;
}

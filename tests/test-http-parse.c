/* The HTTP core without any I/O: a table of requests, each with the
 * statuses its responses must carry and whether the connection must close.
 * Each input is fed all at once, one byte at a time, and in random splits,
 * and every way must give the same output byte for byte. Every piece fed
 * ends exactly at a PROT_NONE guard page, so a parser that reads one byte
 * past what it was given faults. */
#include <ctype.h>
#include <sys/mman.h>

#include "harness.h"
#include "iomux/http.h"

#define NOW 784111777 /* Sun, 06 Nov 1994 08:49:37 GMT */
#define RANDOM_SPLITS 24

/* ---- the guard page ----------------------------------------------------------------- */

static char *guard_base;
static size_t guard_size; /* writable bytes before the guard page */

static void guard_init(size_t max) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    guard_size = (max + page - 1) / page * page;
    guard_base = mmap(NULL, guard_size + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(guard_base != MAP_FAILED);
    CHECK_SYS(mprotect(guard_base + guard_size, page, PROT_NONE));
}

/* A copy of p[0, n) that ends where the guard page begins. */
static const char *guarded(const char *p, size_t n) {
    char *dst = guard_base + guard_size - n;
    CHECK(n <= guard_size);
    memmove(dst, p, n);
    return dst;
}

/* ---- feeding --------------------------------------------------------------------------- */

typedef test_buf buf;

/* Moves the session's output into out, as a driver writing it would. */
static void take_output(iomux_http_session *s, buf *out) {
    iomux_http_chunk v[8];
    size_t n;
    while ((n = iomux_http_out_peek(s, 0, v, 8)) > 0) {
        size_t total = 0;
        for (size_t i = 0; i < n; i++) {
            CHECK(v[i].data != NULL); /* no files in this test */
            test_buf_add(out, v[i].data, v[i].len);
            total += v[i].len;
        }
        iomux_http_out_consume(s, total);
    }
    CHECK_EQ(iomux_http_out_pending(s), 0);
}

/* Feeds input in pieces whose lengths come from next_len; stops feeding
 * once the session says to close, as a driver would. */
typedef size_t (*len_fn)(size_t left, unsigned *state);

static size_t all_at_once(size_t left, unsigned *state) {
    (void)state;
    return left;
}

static size_t one_byte(size_t left, unsigned *state) {
    (void)left;
    (void)state;
    return 1;
}

static size_t random_len(size_t left, unsigned *state) {
    size_t n;
    *state = *state * 1103515245u + 12345u;
    n = (*state >> 16) % 64 + 1;
    if ((*state >> 8) % 16 == 0) n = (*state >> 4) % 4096 + 1;
    return n < left ? n : left;
}

static long feeds;
static iomux_http_next run_feed(iomux_http_ctx *ctx, const char *in, size_t len, len_fn fn, unsigned seed,
                                buf *out) {
    iomux_http_session s;
    iomux_http_next nx = IOMUX_HTTP_CONTINUE;
    size_t off = 0;
    iomux_http_session_init(&s, ctx);
    while (off < len && nx == IOMUX_HTTP_CONTINUE) {
        size_t n = fn(len - off, &seed);
        nx = iomux_http_feed(&s, guarded(in + off, n), n);
        feeds++;
        take_output(&s, out);
        off += n;
    }
    iomux_http_session_close(&s);
    return nx;
}

/* ---- checking the responses --------------------------------------------------------------- */

static const char *find(const char *hay, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0) return hay + i;
    return NULL;
}

/* Checks out against "200 404h 100 200 ..." (h: no body, as for HEAD);
 * the last response must say "Connection: close" iff want_close. */
static void check_statuses(const char *name, const buf *out, const char *want, int want_close) {
    const char *p = out->p ? out->p : "", *end = p + out->len, *w = want, *last = NULL;
    while (*w) {
        int status = atoi(w), head = 0;
        const char *hend, *cl;
        char line[32];
        while (isdigit((unsigned char)*w)) w++;
        if (*w == 'h') head = 1, w++;
        while (*w == ' ') w++;
        snprintf(line, sizeof(line), "HTTP/1.1 %d ", status);
        if ((size_t)(end - p) < strlen(line) || memcmp(p, line, strlen(line)) != 0)
            FAIL("%s: want status %d at offset %zu, output:\n%s", name, status, (size_t)(p - out->p), out->p);
        hend = find(p, (size_t)(end - p), "\r\n\r\n");
        CHECK(hend != NULL);
        hend += 4;
        cl = find(p, (size_t)(hend - p), "Content-Length: ");
        last = p;
        p = hend;
        if (cl && !head) p += atoi(cl + 16);
        if (status >= 200 && !find(last, (size_t)(hend - last), "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"))
            FAIL("%s: no Date in response %d", name, status);
    }
    if (p != end) FAIL("%s: %zu bytes after the expected responses:\n%s", name, (size_t)(end - p), p);
    if (last && want_close != (find(last, (size_t)(end - last), "Connection: close\r\n") != NULL))
        FAIL("%s: last response should%s say Connection: close", name, want_close ? "" : " not");
}

/* ---- the table ---------------------------------------------------------------------------- */

/* A handler for POST /echo: the body back, to see bodies arrive whole. */
static int echo_handler(void *data, const iomux_http_request *req, iomux_http_response *res) {
    (void)data;
    if (req->path_len != 5 || memcmp(req->path, "/echo", 5) != 0) return IOMUX_HTTP_DECLINED;
    /* Errors come only from the out-of-memory test, which sees them as an abort. */
    if (iomux_http_response_header(res, "X-Echo", "yes") == 0)
        iomux_http_respond(res, 200, "application/octet-stream", req->body, req->body_len);
    return IOMUX_HTTP_HANDLED;
}

typedef struct tcase {
    const char *name;
    const char *input; /* NULL: built by a function below */
    const char *want;
    int close;
    int small; /* use the context with max_body = 16 */
} tcase;

#define GET(path) "GET " path " HTTP/1.1\r\nHost: x\r\n\r\n"

static const tcase cases[] = {
    {"get", GET("/plaintext"), "200", 0, 0},
    {"head", "HEAD /plaintext HTTP/1.1\r\nHost: x\r\n\r\n", "200h", 0, 0},
    {"json", GET("/json"), "200", 0, 0},
    {"query", GET("/json?a=b#frag"), "200", 0, 0},
    {"absolute form", GET("http://example.com/plaintext"), "200", 0, 0},
    {"404", GET("/nope"), "404", 0, 0},
    {"405 then more", "POST /plaintext HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" GET("/json"), "405 200",
     0, 0},
    {"post body", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world", "200", 0, 0},
    {"post chunked", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\n\r\n", "200", 0, 0},
    {"chunked trailers", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n" GET("/json"), "200 200", 0, 0},
    {"expect 100", "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
     "100 200", 0, 0},
    {"leading CRLF", "\r\n\r\n" GET("/plaintext"), "200", 0, 0},
    {"upgrade ignored", "GET /plaintext HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
                        GET("/json"), "200 200", 0, 0},
    {"http/1.0", "GET /plaintext HTTP/1.0\r\n\r\n" GET("/json"), "200", 1, 0},
    {"http/1.0 keep-alive", "GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                            "GET /json HTTP/1.0\r\n\r\n" GET("/json"), "200 200", 1, 0},
    {"connection close", "GET /plaintext HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" GET("/json"), "200",
     1, 0},
    {"garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "400", 1, 0},
    {"lower-case method", "get / HTTP/1.1\r\nHost: x\r\n\r\n", "400", 1, 0},
    {"no Host", "GET /plaintext HTTP/1.1\r\n\r\n", "400", 1, 0},
    {"two Hosts", "GET /plaintext HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400", 1, 0},
    {"obs-fold", "GET /plaintext HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", "400", 1, 0},
    {"obs-fold empty", "GET /plaintext HTTP/1.1\r\nHost: x\r\nX-A:\r\n\tb\r\n\r\n", "400", 1, 0},
    {"empty header name", "GET /plaintext HTTP/1.1\r\nHost: x\r\n: a\r\n\r\n", "400", 1, 0},
    {"space in header name", "GET /plaintext HTTP/1.1\r\nHost: x\r\nX-A : a\r\n\r\n", "400", 1, 0},
    {"bare LF", "GET /plaintext HTTP/1.1\nHost: x\n\n", "400", 1, 0},
    {"CL too large", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\nabc", "413", 1, 0},
    {"CL over small limit", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n", "413", 1, 1},
    {"CL at small limit", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\n\r\n0123456789abcdef",
     "200", 0, 1},
    {"chunked over limit", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "10\r\n0123456789abcdef\r\n1\r\nX\r\n0\r\n\r\n", "413", 1, 1},
    {"chunked over limit, no handler", "POST /plaintext HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                       "11\r\n0123456789abcdefX\r\n0\r\n\r\n", "413", 1, 1},
    {"TE gzip", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", "400", 1, 0}, /* RFC 9112 6.3 (4) */
    {"TE gzip, chunked", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
     "501", 1, 0},
    {"TE chunked, gzip", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
     "400", 1, 0},
    {"TE twice", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
                 "\r\n0\r\n\r\n", "400", 1, 0}, /* chunked applied twice: invalid */
    {"CL and TE", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "3\r\nabc\r\n0\r\n\r\n", "400", 1, 0},
    {"TE and CL", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
                  "3\r\nabc\r\n0\r\n\r\n", "400", 1, 0},
    {"two CL, different", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
     "400", 1, 0},
    {"two CL, equal", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
     "400", 1, 0},
    {"CL list", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc", "400", 1, 0},
    {"CL negative", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", "400", 1, 0},
    {"bad chunk size", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
     "400", 1, 0},
    {"chunk size overflow", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "fffffffffffffffff\r\n", "400", 1, 0},
    {"chunk without CRLF", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX0\r\n\r\n",
     "400", 1, 0},
    {"HTTP/2.0", "GET /plaintext HTTP/2.0\r\n\r\n", "505", 1, 0},
    {"HTTP/1.2", "GET /plaintext HTTP/1.2\r\nHost: x\r\n\r\n", "505", 1, 0},
    {"HTTP/0.9", "GET /plaintext\r\n\r\n", "400", 1, 0}, /* no version: a malformed request line */
    {"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", "501", 1, 0},
    {"HEAD error", "HEAD /plaintext HTTP/1.1\r\n\r\n", "400h", 1, 0},
    {"after a rejected one", GET("/plaintext") "GET /a b c\r\n\r\n" GET("/json"), "200 400", 1, 0},
    {"after a 413", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n" GET("/json"), "413", 1,
     0},
    {"pipelined 16", GET("/plaintext") GET("/json") GET("/nope") "HEAD /json HTTP/1.1\r\nHost: x\r\n\r\n"
                     GET("/plaintext") GET("/json") GET("/nope") "HEAD /json HTTP/1.1\r\nHost: x\r\n\r\n"
                     GET("/plaintext") GET("/json") GET("/nope") "HEAD /json HTTP/1.1\r\nHost: x\r\n\r\n"
                     "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody"
                     "DELETE /json HTTP/1.1\r\nHost: x\r\n\r\n" GET("/json")
                     "GET /plaintext HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" GET("/json"),
     "200 200 404 200h 200 200 404 200h 200 200 404 200h 200 405 200 200", 1, 0},
};

/* ---- generated inputs: the size limits ----------------------------------------------------- */

static buf gen_uri(size_t len) {
    buf b = {0};
    test_buf_add(&b, "GET /", 5);
    for (size_t i = 1; i < len; i++) test_buf_add(&b, "a", 1);
    test_buf_add(&b, " HTTP/1.1\r\nHost: x\r\n\r\n", 22);
    return b;
}

static buf gen_headers(size_t count, size_t value_len) {
    buf b = {0};
    char name[32];
    test_buf_add(&b, "GET /plaintext HTTP/1.1\r\nHost: x\r\n", strlen("GET /plaintext HTTP/1.1\r\nHost: x\r\n"));
    for (size_t i = 0; i < count; i++) {
        int n = snprintf(name, sizeof(name), "X-H%zu: ", i);
        test_buf_add(&b, name, (size_t)n);
        for (size_t k = 0; k < value_len; k++) test_buf_add(&b, "v", 1);
        test_buf_add(&b, "\r\n", 2);
    }
    test_buf_add(&b, "\r\n", 2);
    return b;
}

/* "X-H0: " is 6 bytes, so a value of 8186 makes a line of exactly 8192. */
static buf gen_line(size_t line_len) {
    return gen_headers(1, line_len - 6);
}

/* ---- running ----------------------------------------------------------------------------- */

static iomux_http_ctx *ctx_plain, *ctx_small;

static void check_case(const char *name, const char *in, size_t len, const char *want, int want_close,
                       iomux_http_ctx *ctx) {
    buf ref = {0};
    iomux_http_next nx = run_feed(ctx, in, len, all_at_once, 0, &ref);
    check_statuses(name, &ref, want, want_close);
    CHECK_EQ(nx, want_close ? IOMUX_HTTP_CLOSE : IOMUX_HTTP_CONTINUE);
    for (unsigned mode = 0; mode <= RANDOM_SPLITS; mode++) {
        buf out = {0};
        iomux_http_next nx2 = run_feed(ctx, in, len, mode ? random_len : one_byte, mode * 7919u, &out);
        if (out.len != ref.len || memcmp(out.p, ref.p, ref.len) != 0)
            FAIL("%s: %s feed differs from all-at-once:\n%s\n---- vs ----\n%s", name,
                 mode ? "random" : "byte-at-a-time", out.p ? out.p : "", ref.p);
        CHECK_EQ(nx2, nx);
        free(out.p);
    }
    free(ref.p);
}

static void test_table(void) {
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const tcase *c = &cases[i];
        check_case(c->name, c->input, strlen(c->input), c->want, c->close, c->small ? ctx_small : ctx_plain);
    }
}

static void check_gen(const char *name, buf b, const char *want, int want_close) {
    check_case(name, b.p, b.len, want, want_close, ctx_plain);
    free(b.p);
}

static void test_limits(void) {
    check_gen("uri 8192", gen_uri(8192), "404", 0);
    check_gen("uri 8193", gen_uri(8193), "414", 1);
    check_gen("line 8192", gen_line(8192), "200", 0);
    check_gen("line 8193", gen_line(8193), "431", 1);
    check_gen("100 headers", gen_headers(99, 8), "200", 0); /* with Host: 100 */
    check_gen("101 headers", gen_headers(100, 8), "431", 1);
    check_gen("64 KiB of headers", gen_headers(9, 7000), "200", 0);
    check_gen("over 64 KiB of headers", gen_headers(10, 7000), "431", 1);
}

/* The echoed body must be the one sent, however it was split. */
static void test_echo_body(void) {
    static const char in[] = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n";
    buf out = {0};
    run_feed(ctx_plain, in, sizeof(in) - 1, one_byte, 0, &out);
    CHECK(find(out.p, out.len, "\r\nX-Echo: yes\r\n") != NULL);
    CHECK(find(out.p, out.len, "Content-Length: 11\r\n") != NULL);
    CHECK(out.len > 11 && memcmp(out.p + out.len - 11, "hello world", 11) == 0);
    free(out.p);
}

/* The exact bytes of the two built-in answers. */
static void test_exact(void) {
    static const char want[] = "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
                               "Content-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
    static const char want10[] = "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
                                 "Content-Type: application/json\r\nContent-Length: 27\r\n"
                                 "Connection: keep-alive\r\n\r\n{\"message\":\"Hello, World!\"}";
    static const char in10[] = "GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    buf out = {0}, out10 = {0};
    run_feed(ctx_plain, GET("/plaintext"), strlen(GET("/plaintext")), all_at_once, 0, &out);
    CHECK_EQ(out.len, strlen(want));
    CHECK(memcmp(out.p, want, out.len) == 0);
    run_feed(ctx_plain, in10, strlen(in10), all_at_once, 0, &out10);
    CHECK(out10.len == strlen(want10) && memcmp(out10.p, want10, out10.len) == 0);
    free(out.p);
    free(out10.p);
}

static iomux_http_next feed_str(iomux_http_session *s, const char *str) {
    return iomux_http_feed(s, guarded(str, strlen(str)), strlen(str));
}

/* Session states, EOF, the 408 of an expired request, shutdown. */
static void test_session(void) {
    static const char part[] = "GET /plaintext HTTP/1.1\r\nHo";
    iomux_http_session s;
    buf out = {0};
    iomux_http_session_init(&s, ctx_plain);
    CHECK_EQ(iomux_http_session_phase(&s), IOMUX_HTTP_IDLE);
    CHECK_EQ(feed_str(&s, part), IOMUX_HTTP_CONTINUE);
    CHECK_EQ(iomux_http_session_phase(&s), IOMUX_HTTP_HEADERS);
    CHECK_EQ(iomux_http_feed_eof(&s), IOMUX_HTTP_CLOSE);
    CHECK_EQ(iomux_http_out_pending(&s), 0); /* cut short: no answer */
    iomux_http_session_close(&s);

    iomux_http_session_init(&s, ctx_plain);
    CHECK_EQ(feed_str(&s, part), IOMUX_HTTP_CONTINUE);
    CHECK_EQ(iomux_http_expire(&s), IOMUX_HTTP_CLOSE);
    take_output(&s, &out);
    check_statuses("expired", &out, "408", 1);
    CHECK_EQ(iomux_http_session_phase(&s), IOMUX_HTTP_DONE);
    iomux_http_session_close(&s);
    free(out.p);

    iomux_http_session_init(&s, ctx_plain);
    CHECK_EQ(feed_str(&s, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab"),
             IOMUX_HTTP_CONTINUE);
    CHECK_EQ(iomux_http_session_phase(&s), IOMUX_HTTP_BODY);
    CHECK_EQ(iomux_http_session_shutdown(&s), IOMUX_HTTP_CONTINUE); /* a request is in progress */
    CHECK_EQ(feed_str(&s, "cde"), IOMUX_HTTP_CLOSE);
    out = (buf){0};
    take_output(&s, &out);
    check_statuses("shutdown", &out, "200", 1);
    iomux_http_session_close(&s);
    free(out.p);

    iomux_http_session_init(&s, ctx_plain);
    CHECK_EQ(iomux_http_session_shutdown(&s), IOMUX_HTTP_CLOSE); /* idle: close now */
    iomux_http_session_close(&s);
}

/* The output list: peeking past bytes in flight, partial consumption. */
static void test_output(void) {
    iomux_http_session s;
    iomux_http_chunk v[4];
    size_t total, n;
    iomux_http_session_init(&s, ctx_plain);
    CHECK_EQ(feed_str(&s, GET("/plaintext")), IOMUX_HTTP_CONTINUE);
    total = iomux_http_out_pending(&s);
    CHECK(total > 13);
    n = iomux_http_out_peek(&s, 10, v, 4);
    CHECK_EQ(n, 1);
    CHECK_EQ(v[0].len, total - 10);
    CHECK_EQ(v[0].fd, -1);
    CHECK_EQ(iomux_http_out_peek(&s, total, v, 4), 0);
    CHECK_EQ(feed_str(&s, GET("/json")), IOMUX_HTTP_CONTINUE);
    n = iomux_http_out_peek(&s, total, v, 4); /* only the new response */
    CHECK_EQ(n, 1);
    CHECK(memcmp(v[0].data, "HTTP/1.1 200 OK\r\n", 17) == 0);
    iomux_http_out_consume(&s, 5);
    CHECK_EQ(iomux_http_out_pending(&s), total + v[0].len - 5);
    iomux_http_out_consume(&s, (size_t)-1);
    CHECK_EQ(iomux_http_out_pending(&s), 0);
    iomux_http_session_close(&s);
}

/* An allocator that fails from the nth call on: the session aborts. */
static int alloc_left = -1;

static void *fail_malloc(void *ud, size_t n) {
    (void)ud;
    if (alloc_left == 0) return NULL;
    if (alloc_left > 0) alloc_left--;
    return malloc(n);
}

static void *fail_realloc(void *ud, void *p, size_t n) {
    (void)ud;
    if (alloc_left == 0) return NULL;
    if (alloc_left > 0) alloc_left--;
    return realloc(p, n);
}

static void fail_free(void *ud, void *p) {
    (void)ud;
    free(p);
}

static void test_out_of_memory(void) {
    static const iomux_allocator a = {fail_malloc, fail_realloc, fail_free, NULL};
    static const char in[] = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab";
    iomux_http_config cfg = {.handler = echo_handler, .allocator = &a};
    for (int k = 0; k < 16; k++) {
        iomux_http_ctx *ctx;
        iomux_http_session s;
        iomux_http_next nx;
        alloc_left = -1;
        CHECK_OK(iomux_http_ctx_new(&ctx, &cfg));
        iomux_http_session_init(&s, ctx);
        alloc_left = k;
        nx = iomux_http_feed(&s, guarded(in, sizeof(in) - 1), sizeof(in) - 1);
        if (nx == IOMUX_HTTP_CONTINUE) nx = iomux_http_feed(&s, guarded("cd", 2), 2);
        CHECK(nx == IOMUX_HTTP_ABORT || nx == IOMUX_HTTP_CONTINUE || nx == IOMUX_HTTP_CLOSE);
        alloc_left = -1;
        iomux_http_session_close(&s);
        iomux_http_ctx_free(ctx);
    }
}

int main(int argc, char **argv) {
    iomux_http_config cfg = {.handler = echo_handler};
    iomux_http_config small = {.handler = echo_handler, .max_body = 16};
    TEST_ARGS(argc, argv);
    guard_init(256 * 1024);
    CHECK_OK(iomux_http_ctx_new(&ctx_plain, &cfg));
    CHECK_OK(iomux_http_ctx_new(&ctx_small, &small));
    iomux_http_ctx_set_time(ctx_plain, NOW);
    iomux_http_ctx_set_time(ctx_small, NOW);
    RUN(test_table);
    RUN(test_limits);
    RUN(test_echo_body);
    RUN(test_exact);
    RUN(test_session);
    RUN(test_output);
    RUN(test_out_of_memory);
    iomux_http_ctx_free(ctx_plain);
    iomux_http_ctx_free(ctx_small);
    fprintf(stderr, "sizeof(iomux_http_session) = %zu, %ld feeds\n", sizeof(iomux_http_session), feeds);
    return 0;
}

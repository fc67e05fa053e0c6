/* Static files from the HTTP core, without I/O on a connection: a temporary
 * root with files, a subdirectory with an index, an empty directory,
 * symlinks inside and outside the root, a FIFO. Content, Content-Type,
 * Content-Length, Last-Modified, HEAD, 304, 301, 404, 405, and every way
 * out of the root we know of refused. Each request is fed all at once and
 * one byte at a time, with the same answer. */
#include <sys/stat.h>

#include "harness.h"
#include "iomux/http.h"

#define NOW 784111777   /* Sun, 06 Nov 1994 08:49:37 GMT */
#define MTIME 784000000 /* Sat, 05 Nov 1994 01:46:40 GMT */
#define MTIME_STR "Sat, 05 Nov 1994 01:46:40 GMT"

static char top[256], root[300];
static iomux_http_ctx *ctx;
static unsigned char big[100000];

/* ---- the tree ----------------------------------------------------------------------------- */

static void put_abs(const char *path, const void *data, size_t len) {
    struct timespec times[2] = {{MTIME, 0}, {MTIME, 0}};
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CHECK_SYS(fd);
    write_all(fd, data, len);
    CHECK_SYS(futimens(fd, times));
    close(fd);
}

static void put_file(const char *rel, const void *data, size_t len) {
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    put_abs(path, data, len);
}

static void at_root(char *out, size_t n, const char *rel) {
    snprintf(out, n, "%s/%s", root, rel);
}

static void make_tree(void) {
    char p[512];
    snprintf(top, sizeof(top), "/tmp/iomux-http-static-XXXXXX");
    CHECK(mkdtemp(top) != NULL);
    snprintf(root, sizeof(root), "%s/root", top);
    CHECK_SYS(mkdir(root, 0755));
    snprintf(p, sizeof(p), "%s/secret.txt", top);
    put_abs(p, "secret\n", 7);
    put_file("hello.txt", "Hello static\n", 13);
    put_file("page.HTML", "<p>hi</p>\n", 10);
    put_file("plaintext", "a file called plaintext\n", 24);
    put_file("empty.css", "", 0);
    for (size_t i = 0; i < sizeof(big); i++) big[i] = (unsigned char)(i * 2654435761u >> 13);
    put_file("data.bin", big, sizeof(big));
    at_root(p, sizeof(p), "sub");
    CHECK_SYS(mkdir(p, 0755));
    put_file("sub/index.html", "<h1>sub</h1>\n", 13);
    at_root(p, sizeof(p), "empty");
    CHECK_SYS(mkdir(p, 0755));
    at_root(p, sizeof(p), "link-in");
    CHECK_SYS(symlink("hello.txt", p));
    at_root(p, sizeof(p), "sub/link-dotdot");
    CHECK_SYS(symlink("../hello.txt", p));
    at_root(p, sizeof(p), "link-out");
    CHECK_SYS(symlink("/etc/passwd", p));
    at_root(p, sizeof(p), "link-up");
    CHECK_SYS(symlink("../secret.txt", p));
    at_root(p, sizeof(p), "link-dir-up");
    CHECK_SYS(symlink("..", p));
    at_root(p, sizeof(p), "link-proc");
    CHECK_SYS(symlink("/proc/self/root/etc/passwd", p));
    at_root(p, sizeof(p), "fifo");
    CHECK_SYS(mkfifo(p, 0644));
}

static void remove_tree(void) {
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
    CHECK_EQ(system(cmd), 0);
}

/* ---- requests ------------------------------------------------------------------------------ */

typedef struct reply {
    int status;
    char head[2048]; /* the header block, NUL-terminated */
    unsigned char *body;
    size_t body_len;
    int files;       /* file chunks seen */
} reply;

static void add_body(reply *r, const void *p, size_t n) {
    r->body = realloc(r->body, r->body_len + n + 1);
    CHECK(r->body != NULL);
    memcpy(r->body + r->body_len, p, n);
    r->body_len += n;
}

/* Everything in the output, file ranges read with pread, as one byte string. */
static void collect(iomux_http_session *s, reply *r) {
    iomux_http_chunk v[4];
    size_t n;
    while ((n = iomux_http_out_peek(s, 0, v, 4)) > 0) {
        for (size_t i = 0; i < n; i++) {
            if (v[i].data) {
                add_body(r, v[i].data, v[i].len);
                continue;
            }
            unsigned char *tmp = malloc(v[i].len);
            CHECK(tmp != NULL);
            CHECK_EQ(pread(v[i].fd, tmp, v[i].len, v[i].offset), (long long)v[i].len);
            add_body(r, tmp, v[i].len);
            free(tmp);
            r->files++;
        }
        iomux_http_out_consume(s, iomux_http_out_pending(s));
    }
}

/* Splits the raw bytes into status, header block and body. */
static void split(reply *r) {
    char *end;
    size_t hl;
    CHECK(r->body_len > 12 && memcmp(r->body, "HTTP/1.1 ", 9) == 0);
    r->status = atoi((char *)r->body + 9);
    add_body(r, "", 1); /* a NUL for strstr */
    r->body_len--;
    end = strstr((char *)r->body, "\r\n\r\n");
    CHECK(end != NULL);
    hl = (size_t)(end + 4 - (char *)r->body);
    CHECK(hl < sizeof(r->head));
    memcpy(r->head, r->body, hl);
    r->head[hl] = '\0';
    memmove(r->body, r->body + hl, r->body_len - hl);
    r->body_len -= hl;
}

static void feed(const char *req, size_t step, reply *r) {
    iomux_http_session s;
    size_t len = strlen(req);
    memset(r, 0, sizeof(*r));
    iomux_http_session_init(&s, ctx);
    for (size_t off = 0; off < len; off += step) {
        size_t n = len - off < step ? len - off : step;
        if (iomux_http_feed(&s, req + off, n) != IOMUX_HTTP_CONTINUE) break;
    }
    collect(&s, r);
    iomux_http_session_close(&s);
    split(r);
}

static reply *request(const char *req) {
    static reply r;
    reply one;
    free(r.body);
    feed(req, strlen(req), &r);
    feed(req, 1, &one);
    CHECK(strcmp(one.head, r.head) == 0);
    CHECK(one.body_len == r.body_len && memcmp(one.body, r.body, r.body_len) == 0);
    free(one.body);
    return &r;
}

static reply *get(const char *path) {
    char req[1024];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    return request(req);
}

static int has(const reply *r, const char *header_line) {
    char line[512];
    snprintf(line, sizeof(line), "\r\n%s\r\n", header_line);
    return strstr(r->head, line) != NULL;
}

static void expect(const char *path, int status) {
    reply *r = get(path);
    if (r->status != status) FAIL("GET %s: status %d, want %d\n%s", path, r->status, status, r->head);
}

/* ---- the tests ------------------------------------------------------------------------------ */

static void test_file(void) {
    reply *r = get("/hello.txt");
    CHECK_EQ(r->status, 200);
    CHECK(r->body_len == 13 && memcmp(r->body, "Hello static\n", 13) == 0);
    CHECK(has(r, "Content-Type: text/plain; charset=utf-8"));
    CHECK(has(r, "Content-Length: 13"));
    CHECK(has(r, "Last-Modified: " MTIME_STR));
    CHECK(has(r, "Date: Sun, 06 Nov 1994 08:49:37 GMT"));
    CHECK_EQ(r->files, 1); /* the body is a file range, for sendfile */
    r = get("/page.HTML");
    CHECK(has(r, "Content-Type: text/html; charset=utf-8"));
    r = get("/hell%6F.txt");
    CHECK(r->status == 200 && r->body_len == 13);
    r = get("/empty.css");
    CHECK(r->status == 200 && r->body_len == 0 && r->files == 0);
    CHECK(has(r, "Content-Length: 0"));
    CHECK(has(r, "Content-Type: text/css; charset=utf-8"));
    expect("//hello.txt", 200);
    expect("/./hello.txt", 200);
    expect("/hello.txt?x=1", 200);
    expect("http://example.com/hello.txt", 200);
}

static void test_big_file(void) {
    reply *r = get("/data.bin");
    CHECK_EQ(r->status, 200);
    CHECK(has(r, "Content-Type: application/octet-stream"));
    CHECK(has(r, "Content-Length: 100000"));
    CHECK(r->body_len == sizeof(big) && memcmp(r->body, big, sizeof(big)) == 0);
}

static void test_head(void) {
    reply *r = request("HEAD /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_EQ(r->status, 200);
    CHECK(has(r, "Content-Length: 13"));
    CHECK(has(r, "Last-Modified: " MTIME_STR));
    CHECK_EQ(r->body_len, 0);
    CHECK_EQ(r->files, 0);
}

static reply *get_ims(const char *ims, const char *extra) {
    char req[512];
    snprintf(req, sizeof(req), "GET /hello.txt HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: %s\r\n%s\r\n", ims, extra);
    return request(req);
}

static void test_not_modified(void) {
    reply *r = get_ims(MTIME_STR, "");
    CHECK_EQ(r->status, 304);
    CHECK_EQ(r->body_len, 0);
    CHECK(strstr(r->head, "Content-Length") == NULL);
    CHECK(has(r, "Last-Modified: " MTIME_STR));
    CHECK_EQ(get_ims("Sun, 06 Nov 1994 08:49:37 GMT", "")->status, 304); /* newer */
    CHECK_EQ(get_ims("Sat, 05 Nov 1994 01:46:39 GMT", "")->status, 200); /* a second older */
    CHECK_EQ(get_ims("Saturday, 05-Nov-94 01:46:40 GMT", "")->status, 200); /* not IMF-fixdate: ignored */
    CHECK_EQ(get_ims("garbage", "")->status, 200);
    CHECK_EQ(get_ims(MTIME_STR, "If-None-Match: \"x\"\r\n")->status, 200);
    r = request("HEAD /hello.txt HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: " MTIME_STR "\r\n\r\n");
    CHECK_EQ(r->status, 304);
}

static void test_missing(void) {
    expect("/missing.txt", 404);
    expect("/sub/missing", 404);
    expect("/hello.txt/", 404);
    expect("/hello.txt/x", 404);
    expect("/fifo", 404); /* not a regular file; and opening it did not block */
    expect("/", 404);     /* the root has no index.html */
    expect("/empty/", 404);
}

static void test_methods(void) {
    reply *r = request("POST /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    CHECK_EQ(r->status, 405);
    CHECK(has(r, "Allow: GET, HEAD"));
    r = request("DELETE /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_EQ(r->status, 405);
}

static void test_directories(void) {
    reply *r = get("/sub");
    CHECK_EQ(r->status, 301);
    CHECK(has(r, "Location: /sub/"));
    r = get("/sub/");
    CHECK_EQ(r->status, 200);
    CHECK(r->body_len == 13 && memcmp(r->body, "<h1>sub</h1>\n", 13) == 0);
    CHECK(has(r, "Content-Type: text/html; charset=utf-8"));
    expect("/sub/index.html", 200);
    expect("/empty", 301);
}

/* Ways out of the root: each refused, never the file outside. */
static void test_escapes(void) {
    static const char *const bad[] = {
        "/../etc/passwd", "/..", "/sub/../hello.txt", "/%2e%2e/etc/passwd", "/%2E%2e/", "/.%2e/secret.txt",
        "/a%2fb", "/sub%2Findex.html", "/hello.txt%00.html", "/%00", "/a%5cb", "/a\\b", "/%zz", "/%",
        "/%2", "/..%2fsecret.txt", "/sub/%2e%2e/%2e%2e/secret.txt",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) expect(bad[i], 400);
    expect("/link-out", 404);    /* absolute symlink: not beneath the root */
    expect("/link-up", 404);     /* relative symlink to ../secret.txt */
    expect("/link-dir-up/secret.txt", 404);
    expect("/link-proc", 404);
    expect("*", 400);
}

static void test_symlinks_inside(void) {
    reply *r = get("/link-in");
    CHECK(r->status == 200 && r->body_len == 13 && memcmp(r->body, "Hello static\n", 13) == 0);
    expect("/sub/link-dotdot", 200);
}

static void test_permissions(void) {
    char p[512];
    if (geteuid() == 0) return; /* root reads anything: no 403 to see */
    put_file("noperm.txt", "x", 1);
    at_root(p, sizeof(p), "noperm.txt");
    CHECK_SYS(chmod(p, 0));
    expect("/noperm.txt", 403);
}

static void test_builtins_first(void) {
    iomux_http_ctx *keep = ctx;
    iomux_http_config cfg = {.root = root, .flags = IOMUX_HTTP_NO_BUILTINS};
    reply *r = get("/plaintext");
    CHECK(r->body_len == 13 && memcmp(r->body, "Hello, World!", 13) == 0);
    CHECK_OK(iomux_http_ctx_new(&ctx, &cfg));
    r = get("/plaintext");
    CHECK(r->body_len == 24 && memcmp(r->body, "a file called plaintext\n", 24) == 0);
    iomux_http_ctx_free(ctx);
    ctx = keep;
}

/* A handler answering with part of a file (the session owns the fd). */
static int file_handler(void *data, const iomux_http_request *req, iomux_http_response *res) {
    char path[512];
    int fd;
    (void)data;
    if (req->path_len != 7 || memcmp(req->path, "/custom", 7) != 0) return IOMUX_HTTP_DECLINED;
    at_root(path, sizeof(path), "hello.txt");
    fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK_SYS(fd);
    CHECK_OK(iomux_http_respond_file(res, 200, "text/plain", fd, 6, 6));
    return IOMUX_HTTP_HANDLED;
}

static void test_handler_file(void) {
    iomux_http_ctx *keep = ctx;
    iomux_http_config cfg = {.root = root, .handler = file_handler};
    reply *r;
    CHECK_OK(iomux_http_ctx_new(&ctx, &cfg));
    r = get("/custom");
    CHECK(r->status == 200 && r->body_len == 6 && memcmp(r->body, "static", 6) == 0);
    CHECK(has(r, "Content-Length: 6"));
    r = request("HEAD /custom HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(r->status == 200 && r->body_len == 0 && has(r, "Content-Length: 6"));
    expect("/hello.txt", 200); /* declined: static files still served */
    iomux_http_ctx_free(ctx);
    ctx = keep;
}

static void test_bad_root(void) {
    iomux_http_config cfg = {.root = "/nonexistent/iomux"};
    iomux_http_ctx *c = NULL;
    char p[512];
    CHECK_EQ(iomux_http_ctx_new(&c, &cfg), -ENOENT);
    at_root(p, sizeof(p), "hello.txt");
    cfg.root = p;
    CHECK_EQ(iomux_http_ctx_new(&c, &cfg), -ENOTDIR);
}

/* Pipelined requests in one feed are answered only until the output holds
 * IOMUX_HTTP_OUT_PAUSE_FILES open files (or IOMUX_HTTP_OUT_PAUSE bytes):
 * the rest of the input is held, and each resume after the output was
 * written answers the next batch, in order. Without this limit a client
 * that pipelines file requests and never reads made one read open a file
 * per request (tests/test-hostile.c, slowfile: 1,250 fds per client). */
static void collect_all(iomux_http_session *s, reply *r) {
    iomux_http_chunk v[4];
    size_t n;
    memset(r, 0, sizeof(*r));
    while ((n = iomux_http_out_peek(s, 0, v, 4)) > 0) {
        size_t used = 0;
        for (size_t i = 0; i < n; i++) {
            unsigned char *tmp = malloc(v[i].len + 1);
            CHECK(tmp != NULL);
            if (v[i].data) memcpy(tmp, v[i].data, v[i].len);
            else CHECK_EQ(pread(v[i].fd, tmp, v[i].len, v[i].offset), (long long)v[i].len);
            r->files += !v[i].data;
            add_body(r, tmp, v[i].len);
            used += v[i].len;
            free(tmp);
        }
        iomux_http_out_consume(s, used);
    }
}

static unsigned count_replies(const reply *r, const char *needle) {
    unsigned n = 0;
    const unsigned char *p = r->body, *end = r->body + r->body_len;
    size_t k = strlen(needle);
    while (p && (p = memmem(p, (size_t)(end - p), needle, k)) != NULL) {
        n++;
        p += k;
    }
    return n;
}

static void test_flow_control(void) {
    enum { FILES = 40, PLAIN = 1000 };
    static char in[PLAIN * 64];
    const char *get_file = "GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n";
    const char *get_plain = "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";
    size_t len = 0, total = 0, step;
    unsigned rounds = 0, got = 0;
    iomux_http_session s;
    reply r;
    for (int i = 0; i < FILES; i++) len += (size_t)sprintf(in + len, "%s", get_file);
    iomux_http_session_init(&s, ctx);
    CHECK_EQ(iomux_http_feed(&s, in, len), IOMUX_HTTP_CONTINUE);
    for (;;) {
        collect_all(&s, &r);
        step = count_replies(&r, "Hello static\n");
        CHECK_EQ(r.files, (int)step);
        CHECK(step <= IOMUX_HTTP_OUT_PAUSE_FILES);
        got += (unsigned)step;
        free(r.body);
        rounds++;
        if (!iomux_http_input_held(&s)) break;
        CHECK_EQ(step, IOMUX_HTTP_OUT_PAUSE_FILES);
        CHECK_EQ(iomux_http_feed(&s, get_file, strlen(get_file)), IOMUX_HTTP_CONTINUE); /* appended */
        CHECK_EQ(iomux_http_resume(&s), IOMUX_HTTP_CONTINUE);
    }
    CHECK_EQ(got, FILES + rounds - 1); /* every request, the appended ones too */
    CHECK_EQ(rounds, (FILES + rounds - 1 + IOMUX_HTTP_OUT_PAUSE_FILES - 1) / IOMUX_HTTP_OUT_PAUSE_FILES);
    iomux_http_session_close(&s);

    /* by bytes: /plaintext answers are small; the pause comes at 64 KiB */
    len = 0;
    for (int i = 0; i < PLAIN; i++) len += (size_t)sprintf(in + len, "%s", get_plain);
    iomux_http_session_init(&s, ctx);
    CHECK_EQ(iomux_http_feed(&s, in, len), IOMUX_HTTP_CONTINUE);
    CHECK(iomux_http_input_held(&s));
    got = 0;
    rounds = 0;
    do {
        rounds++;
        CHECK(iomux_http_out_pending(&s) < IOMUX_HTTP_OUT_PAUSE + 512);
        collect_all(&s, &r);
        got += count_replies(&r, "HTTP/1.1 200");
        total += r.body_len;
        free(r.body);
    } while (iomux_http_input_held(&s) && iomux_http_resume(&s) == IOMUX_HTTP_CONTINUE);
    CHECK_EQ(got, PLAIN);
    CHECK_EQ(rounds, (unsigned)((total + IOMUX_HTTP_OUT_PAUSE - 1) / IOMUX_HTTP_OUT_PAUSE)); /* ~64 KiB each */
    /* a held session that closes drops what it held */
    CHECK_EQ(iomux_http_feed(&s, in, len), IOMUX_HTTP_CONTINUE);
    CHECK(iomux_http_input_held(&s));
    iomux_http_session_close(&s);
    CHECK(!iomux_http_input_held(&s));
}

int main(int argc, char **argv) {
    iomux_http_config cfg = {0};
    TEST_ARGS(argc, argv);
    make_tree();
    cfg.root = root;
    CHECK_OK(iomux_http_ctx_new(&ctx, &cfg));
    iomux_http_ctx_set_time(ctx, NOW);
    RUN(test_file);
    RUN(test_big_file);
    RUN(test_head);
    RUN(test_not_modified);
    RUN(test_missing);
    RUN(test_methods);
    RUN(test_directories);
    RUN(test_escapes);
    RUN(test_symlinks_inside);
    RUN(test_permissions);
    RUN(test_builtins_first);
    RUN(test_handler_file);
    RUN(test_bad_root);
    RUN(test_flow_control);
    iomux_http_ctx_free(ctx);
    remove_tree();
    return 0;
}

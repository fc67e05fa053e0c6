/* What the two HTTP fuzzers share: a growable buffer, the split patterns
 * that cut an input into pieces, a handler that exercises the handler API,
 * a small static root with traps in it (symlinks out of the root, a FIFO, a
 * loop), and a checker that walks a response stream and refuses anything
 * malformed. A failed check prints why and aborts, which libFuzzer reports
 * as a crash and the corpus replay as a failed test. Header-only: each
 * fuzzer is one translation unit. */
#ifndef IOMUX_HTTP_FUZZ_COMMON_H
#define IOMUX_HTTP_FUZZ_COMMON_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "iomux/http.h"

#define HF_NOW 784111777 /* Sun, 06 Nov 1994 08:49:37 GMT: a fixed Date */
/* The content of a file outside the root. Its control bytes cannot come
 * back in a response any other way: no handler echoes raw bytes (the dump
 * escapes them) and llhttp refuses them in a target. */
#define HF_SECRET "\x01\x02SECRET-OUTSIDE-ROOT\x03"

/* ---- failing ------------------------------------------------------------------ */

static inline void hf_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

static inline void hf_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

#define HF_FAIL(...) hf_fail(__FILE__, __LINE__, __VA_ARGS__)
#define HF_CHECK(cond)                                      \
    do {                                                    \
        if (!(cond)) HF_FAIL("check failed: %s", #cond);    \
    } while (0)

/* ---- a growable buffer ---------------------------------------------------------- */

typedef struct hf_buf {
    char *p;
    size_t len, cap;
} hf_buf;

static inline void hf_add(hf_buf *b, const void *p, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        b->p = realloc(b->p, cap);
        HF_CHECK(b->p != NULL);
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0'; /* so that a failure can print it */
}

static inline void hf_adds(hf_buf *b, const char *s) {
    hf_add(b, s, strlen(s));
}

static inline void hf_addf(hf_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void hf_addf(hf_buf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    HF_CHECK(n >= 0 && (size_t)n < sizeof(tmp));
    hf_add(b, tmp, (size_t)n);
}

/* Bytes as printable text: the dump handler's output must never look like
 * a status line, and a failure report must be readable. */
static inline void hf_add_escaped(hf_buf *b, const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') hf_add(b, &p[i], 1);
        else hf_addf(b, "\\x%02x", c);
    }
}

static inline int hf_same(const hf_buf *a, const hf_buf *b) {
    return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

static inline void hf_reset(hf_buf *b) {
    b->len = 0;
    if (b->p) b->p[0] = '\0';
}

static inline const char *hf_find(const char *hay, size_t n, const char *needle) {
    return hay ? memmem(hay, n, needle, strlen(needle)) : NULL;
}

/* Dates in the output are the only bytes that may differ between two runs
 * of the driver (its context reads the real clock): blank them. */
static inline void hf_mask_dates(hf_buf *b) {
    static const char key[] = "\r\nDate: ";
    char *p = b->p, *end = p ? p + b->len : NULL;
    while (p && (p = memmem(p, (size_t)(end - p), key, sizeof(key) - 1)) != NULL) {
        p += sizeof(key) - 1;
        for (int i = 0; i < 29 && p < end && *p != '\r'; i++) *p++ = '#';
    }
}

/* ---- split patterns ---------------------------------------------------------------- */

/* How an input is cut into the pieces that are fed (or sent) one by one. */
enum { HF_ALL = 0, HF_BYTES, HF_RANDOM, HF_TOKENS, HF_NMODES };

static inline const char *hf_mode_name(int mode) {
    static const char *names[] = {"all-at-once", "byte-at-a-time", "random", "at-delimiters"};
    return names[mode];
}

typedef struct hf_splitter {
    int mode;
    uint32_t state;
} hf_splitter;

/* The seed comes from the input (its control byte and length), so a
 * crash reproduces from the file alone. */
static inline void hf_split_init(hf_splitter *sp, int mode, uint32_t seed) {
    sp->mode = mode;
    sp->state = seed * 2654435761u + 0x9e3779b9u;
}

/* The length of the next piece of p[0, left). HF_TOKENS ends a piece right
 * after every delimiter the parser glue cares about (':', SP, CR, LF,
 * ';'), so pieces end between a colon and its value, between CR and LF. */
static inline size_t hf_split_next(hf_splitter *sp, const char *p, size_t left) {
    size_t n;
    switch (sp->mode) {
    case HF_ALL: return left;
    case HF_BYTES: return 1;
    case HF_TOKENS:
        for (n = 0; n < left; n++)
            if (strchr(":; \r\n", p[n]) && p[n]) return n + 1;
        return left;
    default:
        sp->state = sp->state * 1103515245u + 12345u;
        n = (sp->state >> 16) % 17 + 1;
        if ((sp->state >> 8) % 8 == 0) n = (sp->state >> 12) % 600 + 1;
        return n < left ? n : left;
    }
}

/* ---- fds ----------------------------------------------------------------------------- */

/* After each input no fd of ours may be left open: none under the static
 * root's base directory (files served, the root itself counted once at
 * start), no socket, no /dev/null. libFuzzer opens fds of its own between
 * inputs (pipes to its symbolizer, merge control files), so the cheap test
 * (the lowest free fd moved) only triggers the count of ours. */
static inline int hf_lowest_free_fd(void) {
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    HF_CHECK(fd >= 0);
    close(fd);
    return fd;
}

typedef struct hf_fds {
    int floor;      /* the lowest free fd after the last check */
    int ours;       /* fds of ours open at start */
    const char *base;
} hf_fds;

static inline int hf_is_ours(const hf_fds *f, const char *target) {
    return strncmp(target, f->base, strlen(f->base)) == 0 || strncmp(target, "socket:", 7) == 0 ||
           strcmp(target, "/dev/null") == 0;
}

/* Counts our fds; with `show`, prints them. */
static inline int hf_count_ours(const hf_fds *f, int show) {
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;
    HF_CHECK(d != NULL);
    while ((e = readdir(d)) != NULL) {
        char link[300], target[256];
        ssize_t k;
        if (e->d_name[0] == '.') continue;
        snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
        k = readlink(link, target, sizeof(target) - 1);
        if (k <= 0) continue;
        target[k] = '\0';
        if (!hf_is_ours(f, target)) continue;
        n++;
        if (show) fprintf(stderr, "  fd %s: %s\n", e->d_name, target);
    }
    closedir(d);
    return n;
}

static inline void hf_fds_init(hf_fds *f, const char *base) {
    f->base = base;
    f->floor = hf_lowest_free_fd();
    f->ours = hf_count_ours(f, 0);
}

static inline void hf_check_fds(hf_fds *f) {
    int fd = hf_lowest_free_fd();
    if (fd == f->floor) return;
    if (hf_count_ours(f, 0) > f->ours) {
        hf_count_ours(f, 1);
        HF_FAIL("an fd leaked: %d of ours open, %d at start", hf_count_ours(f, 0), f->ours);
    }
    f->floor = fd;
}

/* ---- the static root --------------------------------------------------------------- */

/* base/secret.txt sits outside base/root: no response may ever show it. */
typedef struct hf_root {
    char base[64];
    char root[96];
} hf_root;

static inline void hf_write_file(const char *dir, const char *name, const char *text) {
    char path[256];
    int fd;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    HF_CHECK(fd >= 0);
    HF_CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
}

static inline void hf_symlink(const char *target, const char *dir, const char *name) {
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    HF_CHECK(symlink(target, path) == 0);
}

static inline void hf_mkdir(const char *dir, const char *name) {
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    HF_CHECK(mkdir(path, 0755) == 0);
}

/* Every file starts with a lower-case word, so that no body can be taken
 * for a status line by the checker. */
static inline void hf_root_create(hf_root *r) {
    char abs_secret[160];
    strcpy(r->base, "/tmp/iomux-fuzz-http-XXXXXX");
    HF_CHECK(mkdtemp(r->base) != NULL);
    snprintf(r->root, sizeof(r->root), "%s/root", r->base);
    HF_CHECK(mkdir(r->root, 0755) == 0);
    hf_write_file(r->base, "secret.txt", HF_SECRET "\n");
    hf_write_file(r->root, "index.html", "<!doctype html><p>index</p>\n");
    hf_write_file(r->root, "a.txt", "alpha: the first file, twenty-nine+ bytes\n");
    hf_write_file(r->root, "b.css", "body { color: red }\n");
    hf_write_file(r->root, "c.json", "{\"c\":1}\n");
    hf_write_file(r->root, "zero", "");
    hf_write_file(r->root, "sp ace.txt", "space in the name\n");
    hf_mkdir(r->root, "sub");
    hf_mkdir(r->root, "empty");
    hf_write_file(r->root, "sub/index.html", "<p>sub index</p>\n");
    hf_write_file(r->root, "sub/x.js", "var x = 1;\n");
    hf_symlink("a.txt", r->root, "in");            /* inside: followed */
    hf_symlink("../secret.txt", r->root, "out");   /* leaves the root: 404 */
    snprintf(abs_secret, sizeof(abs_secret), "%s/secret.txt", r->base);
    hf_symlink(abs_secret, r->root, "abs");        /* absolute: 404 */
    hf_symlink("..", r->root, "sub/up");           /* the root itself: inside */
    hf_symlink("../..", r->root, "sub/upup");      /* the base: outside */
    hf_symlink("loop", r->root, "loop");           /* ELOOP */
    hf_symlink("/proc/self/root", r->root, "magic");
    {
        char fifo[160];
        snprintf(fifo, sizeof(fifo), "%s/fifo", r->root);
        HF_CHECK(mkfifo(fifo, 0644) == 0); /* must be refused without blocking */
    }
}

static inline int hf_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) < 0 ? 0 : 0; /* best effort */
}

static inline void hf_root_remove(hf_root *r) {
    if (r->base[0]) nftw(r->base, hf_rm_one, 16, FTW_DEPTH | FTW_PHYS);
    r->base[0] = '\0';
}

/* ---- the handler ------------------------------------------------------------------- */

/* What the handler needs: where the root is, and the body limit. */
typedef struct hf_handler_env {
    const char *root;
    size_t max_body;
} hf_handler_env;

static inline uint64_t hf_digits(const char *p, size_t n, size_t *used) {
    uint64_t v = 0;
    size_t i = 0;
    for (; i < n && i < 18 && p[i] >= '0' && p[i] <= '9'; i++) v = v * 10 + (uint64_t)(p[i] - '0');
    if (used) *used = i;
    return v;
}

/* The request as a handler sees it must be self-consistent. */
static inline void hf_check_request(const hf_handler_env *env, const iomux_http_request *req) {
    const char *t = req->target, *t_end = req->target + req->target_len;
    size_t n;
    const char *cl, *te;
    HF_CHECK(req->method && req->method[0]);
    HF_CHECK(req->version == 10 || req->version == 11);
    HF_CHECK(req->target_len > 0);
    HF_CHECK((req->path_len == 1 && req->path[0] == '/') || (req->path >= t && req->path + req->path_len <= t_end));
    HF_CHECK(!req->query || (req->query >= t && req->query + req->query_len <= t_end));
    HF_CHECK(req->body_len <= env->max_body);
    HF_CHECK(iomux_http_header_at(req, req->header_count, &t, &n, &t, &n) == -EINVAL);
    cl = iomux_http_header(req, "Content-Length", &n);
    te = iomux_http_header(req, "Transfer-Encoding", NULL);
    if (cl && !te) {
        size_t used;
        uint64_t v = hf_digits(cl, n, &used);
        if (used == n && n > 0 && n < 18 && v != req->body_len)
            HF_FAIL("Content-Length %llu but a body of %zu", (unsigned long long)v, req->body_len);
    }
    if (!cl && !te && req->body_len != 0) HF_FAIL("a body of %zu without a length", req->body_len);
}

/* The handler's routes start with "/_" (the rest go on to the built-in
 * routes and static files). */

/* /_d...: the request described in the body (so any difference in how the
 * headers or body were parsed shows in the output). */
static inline int hf_dump(const iomux_http_request *req, iomux_http_response *res) {
    hf_buf b = {0};
    char count[32];
    int rc;
    hf_addf(&b, "dump %s %d %u\ntarget=", req->method, req->method_id, req->version);
    hf_add_escaped(&b, req->target, req->target_len);
    hf_adds(&b, "\npath=");
    hf_add_escaped(&b, req->path, req->path_len);
    if (req->query) {
        hf_adds(&b, "\nquery=");
        hf_add_escaped(&b, req->query, req->query_len);
    }
    for (size_t i = 0; i < req->header_count; i++) {
        const char *name, *value, *first;
        size_t nl, vl, fl;
        char key[64];
        HF_CHECK(iomux_http_header_at(req, i, &name, &nl, &value, &vl) == 0);
        hf_adds(&b, "\nh=");
        hf_add_escaped(&b, name, nl);
        hf_adds(&b, ": ");
        hf_add_escaped(&b, value, vl);
        /* Looking a header up by name finds its first occurrence. */
        if (nl < sizeof(key) && !memchr(name, 0, nl)) {
            memcpy(key, name, nl);
            key[nl] = '\0';
            first = iomux_http_header(req, key, &fl);
            HF_CHECK(first != NULL);
            if (first == value) HF_CHECK(fl == vl);
        }
    }
    hf_addf(&b, "\nbody[%zu]=", req->body_len);
    hf_add_escaped(&b, req->body, req->body_len);
    hf_adds(&b, "\n");
    snprintf(count, sizeof(count), "%zu", req->header_count);
    HF_CHECK(iomux_http_response_header(res, "X-Headers", count) == 0);
    rc = iomux_http_respond(res, 200, "text/plain", b.p, b.len);
    free(b.p);
    HF_CHECK(rc == 0);
    return IOMUX_HTTP_HANDLED;
}

/* /_s<NNN>: answer with that status (invalid ones are refused, then 200). */
static inline int hf_status(const iomux_http_request *req, iomux_http_response *res) {
    int status = (int)hf_digits(req->path + 3, req->path_len - 3, NULL);
    int rc = iomux_http_respond(res, status, "text/plain", "status\n", 7);
    if (status < 200 || status > 599) {
        HF_CHECK(rc == -EINVAL);
        HF_CHECK(iomux_http_respond(res, 200, NULL, "status refused\n", 15) == 0);
    } else {
        HF_CHECK(rc == 0);
    }
    return IOMUX_HTTP_HANDLED;
}

/* /_f?OFF,LEN: a range of a.txt as a file body (clamped to the file). */
static inline int hf_file(const hf_handler_env *env, const iomux_http_request *req, iomux_http_response *res) {
    char path[160];
    struct stat st;
    uint64_t off = 0, len = 0;
    size_t used = 0;
    int fd;
    snprintf(path, sizeof(path), "%s/a.txt", env->root);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    HF_CHECK(fd >= 0 && fstat(fd, &st) == 0);
    if (req->query) {
        off = hf_digits(req->query, req->query_len, &used);
        if (used < req->query_len) len = hf_digits(req->query + used + 1, req->query_len - used - 1, NULL);
    }
    if (off > (uint64_t)st.st_size) off = (uint64_t)st.st_size;
    if (len > (uint64_t)st.st_size - off) len = (uint64_t)st.st_size - off;
    HF_CHECK(iomux_http_respond_file(res, 200, "text/plain", fd, (int64_t)off, (size_t)len) == 0);
    return IOMUX_HTTP_HANDLED;
}

/* /_h: the refusals of the response API, then an answer, then more refusals. */
static inline int hf_refusals(iomux_http_response *res) {
    HF_CHECK(iomux_http_response_header(res, "X-Bad", "a\r\nInjected: 1") == -EINVAL);
    HF_CHECK(iomux_http_response_header(res, "X-Bad\n", "a") == -EINVAL);
    HF_CHECK(iomux_http_response_header(res, "X:Bad", "a") == -EINVAL);
    HF_CHECK(iomux_http_response_header(res, "", "a") == -EINVAL);
    HF_CHECK(iomux_http_response_header(res, "X-Good", "yes") == 0);
    HF_CHECK(iomux_http_respond(res, 99, NULL, NULL, 0) == -EINVAL);
    HF_CHECK(iomux_http_respond(res, 201, "text/plain", "created\n", 8) == 0);
    HF_CHECK(iomux_http_respond(res, 200, NULL, NULL, 0) == -EINVAL);
    HF_CHECK(iomux_http_response_header(res, "X-Late", "no") == -EINVAL);
    HF_CHECK(iomux_http_respond_file(res, 200, NULL, open("/dev/null", O_RDONLY | O_CLOEXEC), 0, 0) == -EINVAL);
    return IOMUX_HTTP_HANDLED;
}

static inline int hf_handler(void *data, const iomux_http_request *req, iomux_http_response *res) {
    const hf_handler_env *env = data;
    hf_check_request(env, req);
    if (req->path_len < 3 || memcmp(req->path, "/_", 2) != 0) return IOMUX_HTTP_DECLINED;
    switch (req->path[2]) {
    case 'd': return hf_dump(req, res);
    case 's': return hf_status(req, res);
    case 'f': return hf_file(env, req, res);
    case 'h': return hf_refusals(res);
    case 'n': return IOMUX_HTTP_HANDLED; /* answered nothing: 500 */
    case 'x': /* answered, then declined: the answer stands */
        HF_CHECK(iomux_http_respond(res, 202, NULL, "x\n", 2) == 0);
        return IOMUX_HTTP_DECLINED;
    case 'b': /* headers added, then declined: they must not leak into the next answer */
        for (int i = 0; i < 40; i++) HF_CHECK(iomux_http_response_header(res, "X-Declined", "1") == 0);
        return IOMUX_HTTP_DECLINED;
    default: return IOMUX_HTTP_DECLINED;
    }
}

/* ---- checking a response stream ------------------------------------------------------ */

static inline int hf_tchar(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Statuses after which the connection must close (see iomux/http.h). */
static inline int hf_closing_status(int st) {
    return st == 400 || st == 408 || st == 413 || st == 414 || st == 431 || st == 500 || st == 501 || st == 505;
}

typedef struct hf_summary {
    unsigned responses;    /* final responses */
    unsigned interim;      /* 100 Continue */
    int last_closes;       /* the last response says "Connection: close" */
    int last_status;
} hf_summary;

typedef struct hf_head {
    int status;
    int have_date, have_clen, conn_close, conn_keep;
    uint64_t clen;
} hf_head;

/* Checks one header line [p, e) and notes what it says. */
static inline void hf_header_line(const char *p, const char *e, hf_head *h) {
    const char *colon = memchr(p, ':', (size_t)(e - p));
    size_t nl, vl;
    const char *v;
    if (!colon || colon == p) HF_FAIL("header line without a name: %.*s", (int)(e - p), p);
    nl = (size_t)(colon - p);
    for (size_t i = 0; i < nl; i++)
        if (!hf_tchar((unsigned char)p[i])) HF_FAIL("bad header name: %.*s", (int)(e - p), p);
    if (colon + 1 >= e || colon[1] != ' ') HF_FAIL("no space after the colon: %.*s", (int)(e - p), p);
    v = colon + 2;
    vl = (size_t)(e - v);
    for (size_t i = 0; i < vl; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) HF_FAIL("control byte in a header value");
    if (nl == 4 && strncasecmp(p, "Date", 4) == 0) {
        if (h->have_date++ || vl != 29) HF_FAIL("bad or repeated Date");
    } else if (nl == 14 && strncasecmp(p, "Content-Length", 14) == 0) {
        size_t used;
        if (h->have_clen++) HF_FAIL("two Content-Length headers");
        h->clen = hf_digits(v, vl, &used);
        if (used != vl || vl == 0) HF_FAIL("bad Content-Length: %.*s", (int)vl, v);
    } else if (nl == 10 && strncasecmp(p, "Connection", 10) == 0) {
        if (h->conn_close || h->conn_keep) HF_FAIL("two Connection headers");
        if (vl == 5 && memcmp(v, "close", 5) == 0) h->conn_close = 1;
        else if (vl == 10 && memcmp(v, "keep-alive", 10) == 0) h->conn_keep = 1;
        else HF_FAIL("odd Connection: %.*s", (int)vl, v);
    } else if (nl == 10 && strncasecmp(p, "X-Declined", 10) == 0) {
        HF_FAIL("a declining handler's header reached a response");
    }
}

/* Parses the head at p (status line and headers) into h; returns the
 * offset just past its blank line. */
static inline size_t hf_parse_head(const char *p, size_t n, hf_head *h) {
    const char *end = hf_find(p, n, "\r\n\r\n"), *line, *eol;
    memset(h, 0, sizeof(*h));
    if (n < 13 || memcmp(p, "HTTP/1.1 ", 9) != 0) HF_FAIL("no status line at: %.40s", p);
    if (!end) HF_FAIL("a response head without its end");
    for (int i = 9; i < 12; i++)
        if (p[i] < '0' || p[i] > '9') HF_FAIL("bad status code");
    h->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (p[12] != ' ') HF_FAIL("no space after the status");
    eol = hf_find(p, (size_t)(end + 2 - p), "\r\n");
    if (eol == p + 13) HF_FAIL("an empty reason phrase");
    for (const char *q = p + 13; q < eol; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f) HF_FAIL("control byte in the reason phrase");
    for (line = eol + 2; line < end + 2; line = eol + 2) {
        eol = hf_find(line, (size_t)(end + 2 - line), "\r\n");
        hf_header_line(line, eol, h);
    }
    for (const char *q = p; q < end; q++) /* every LF is part of a CRLF */
        if (*q == '\n' && (q == p || q[-1] != '\r')) HF_FAIL("bare LF in a response head");
    return (size_t)(end + 4 - p);
}

/* What a head must hold, given its status. */
static inline void hf_check_head(const hf_head *h) {
    if (h->status == 100) {
        if (h->have_date || h->have_clen || h->conn_close || h->conn_keep) HF_FAIL("100 with headers");
        return;
    }
    if (h->status < 200 || h->status > 599) HF_FAIL("status %d", h->status);
    if (!h->have_date) HF_FAIL("%d without Date", h->status);
    if ((h->status == 204 || h->status == 304) == (h->have_clen != 0))
        HF_FAIL("%d %s Content-Length", h->status, h->have_clen ? "with" : "without");
    if (hf_closing_status(h->status) && !h->conn_close) HF_FAIL("%d does not close", h->status);
}

/* Walks the whole stream: every response well-formed, Content-Length
 * matching the body, nothing after a response that closes, and the secret
 * outside the root nowhere. A response may lack its body only when it
 * answered a HEAD: then the next bytes are a status line or the end (no
 * body our handler or files produce starts with "HTTP/1.1 "). */
static inline void hf_check_stream(const char *p, size_t n, hf_summary *sum) {
    size_t off = 0;
    memset(sum, 0, sizeof(*sum));
    if (hf_find(p, n, HF_SECRET)) HF_FAIL("a file outside the root was served");
    while (off < n) {
        hf_head h;
        if (sum->last_closes) HF_FAIL("%zu bytes after a response that closes", n - off);
        off += hf_parse_head(p + off, n - off, &h);
        hf_check_head(&h);
        if (h.status == 100) {
            sum->interim++;
            continue;
        }
        sum->responses++;
        sum->last_closes = h.conn_close;
        sum->last_status = h.status;
        if (h.clen == 0 || off == n || (n - off >= 9 && memcmp(p + off, "HTTP/1.1 ", 9) == 0)) continue;
        if (n - off < h.clen) HF_FAIL("a body of %llu bytes has only %zu", (unsigned long long)h.clen, n - off);
        off += h.clen;
    }
}

#endif

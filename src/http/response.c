/* Writing responses into the output list: the status line and headers in
 * one reserved block, then the body (copied) or a file range. Also the
 * response API handlers use. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

const char *iomux__http_reason(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* Statuses after which the connection closes, as nginx does: the request
 * was not understood or not read to its end, so the stream is not to be
 * trusted for another one. */
static int closes(int status) {
    switch (status) {
    case 400: case 408: case 413: case 414: case 431: case 500: case 501: case 505:
        return 1;
    default:
        return 0;
    }
}

typedef struct cursor {
    char *p;
} cursor;

static void put(cursor *c, const char *s, size_t n) {
    if (n == 0) return; /* s may be NULL (no extra headers) */
    memcpy(c->p, s, n);
    c->p += n;
}

static void puts_(cursor *c, const char *s) {
    put(c, s, strlen(s));
}

static void put_header(cursor *c, const char *name, const char *value, size_t len) {
    puts_(c, name);
    put(c, ": ", 2);
    put(c, value, len);
    put(c, "\r\n", 2);
}

static void put_status(cursor *c, int status) {
    char line[64];
    int n = snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", status, iomux__http_reason(status));
    put(c, line, (size_t)n);
}

static void put_length(cursor *c, uint64_t len) {
    char line[48];
    int n = snprintf(line, sizeof(line), "Content-Length: %llu\r\n", (unsigned long long)len);
    put(c, line, (size_t)n);
}

static void put_connection(cursor *c, const iomux_http_response *r) {
    if (!r->keep_alive) puts_(c, "Connection: close\r\n");
    else if (r->version == 10) puts_(c, "Connection: keep-alive\r\n");
}

/* Upper bound of the header block, so that it is written in one piece. */
static size_t head_size(const iomux_http_ctx *ctx, const iomux__http_meta *m) {
    size_t n = 256 + ctx->date_len + ctx->extra_len;
    if (ctx->cfg.server_name) n += strlen(ctx->cfg.server_name);
    if (m->ctype) n += strlen(m->ctype);
    if (m->location) n += m->location_len;
    if (m->allow) n += strlen(m->allow);
    return n;
}

static int write_head(iomux_http_response *r, const iomux__http_meta *m) {
    iomux_http_ctx *ctx = r->s->ctx;
    char *start = iomux__http_out_reserve(r->s, head_size(ctx, m));
    cursor c = {start};
    if (!start) return -ENOMEM;
    put_status(&c, m->status);
    if (ctx->cfg.server_name) put_header(&c, "Server", ctx->cfg.server_name, strlen(ctx->cfg.server_name));
    put(&c, ctx->date, ctx->date_len);
    if (m->ctype) put_header(&c, "Content-Type", m->ctype, strlen(m->ctype));
    if (!m->no_clen) put_length(&c, m->clen);
    if (m->mtime != (time_t)-1) {
        char d[30];
        iomux__http_date_format(m->mtime, d);
        put_header(&c, "Last-Modified", d, 29);
    }
    if (m->location) put_header(&c, "Location", m->location, m->location_len);
    if (m->allow) put_header(&c, "Allow", m->allow, strlen(m->allow));
    put(&c, ctx->extra, ctx->extra_len);
    put_connection(&c, r);
    put(&c, "\r\n", 2);
    iomux__http_out_commit(r->s, (size_t)(c.p - start));
    return 0;
}

static int begin(iomux_http_response *r, const iomux__http_meta *m) {
    if (closes(m->status)) r->keep_alive = 0;
    return write_head(r, m);
}

static void finish(iomux_http_response *r, const iomux__http_meta *m, int rc) {
    r->sent = 1;
    if (rc < 0) r->failed = 1;
    iomux__http_log(r, m->status, m->clen);
}

int iomux__http_emit(iomux_http_response *r, const iomux__http_meta *m, const void *body, size_t len) {
    int rc = begin(r, m);
    if (rc == 0 && !r->head && len > 0) rc = iomux__http_out_write(r->s, body, len);
    finish(r, m, rc);
    return rc;
}

/* Takes fd, even on error. */
int iomux__http_emit_file(iomux_http_response *r, const iomux__http_meta *m, int fd, int64_t off) {
    int rc = begin(r, m);
    if (rc == 0 && !r->head && m->clen > 0) rc = iomux__http_out_file(r->s, fd, off, (size_t)m->clen);
    else close(fd);
    finish(r, m, rc);
    return rc;
}

/* A short text body naming the status. */
int iomux__http_error(iomux_http_response *r, int status) {
    char body[64];
    iomux__http_meta m = {.status = status, .ctype = "text/plain; charset=utf-8", .mtime = (time_t)-1};
    int n = snprintf(body, sizeof(body), "%d %s\n", status, iomux__http_reason(status));
    m.clen = (uint64_t)n;
    if (status == 405) m.allow = "GET, HEAD";
    r->s->ctx->extra_len = 0; /* a handler's headers do not belong on the error */
    return iomux__http_emit(r, &m, body, (size_t)n);
}

/* ---- the handler API ------------------------------------------------------------ */

static int has_crlf(const char *s) {
    return strpbrk(s, "\r\n") != NULL;
}

int iomux_http_response_header(iomux_http_response *r, const char *name, const char *value) {
    iomux_http_ctx *ctx = r->s->ctx;
    size_t nl = strlen(name), vl = strlen(value), need;
    if (r->sent || nl == 0 || has_crlf(name) || has_crlf(value) || strchr(name, ':')) return -EINVAL;
    need = ctx->extra_len + nl + vl + 4;
    if (need > ctx->extra_cap) {
        size_t cap = ctx->extra_cap ? ctx->extra_cap * 2 : 256;
        char *p;
        while (cap < need) cap *= 2;
        p = iomux__http_realloc(ctx, ctx->extra, cap);
        if (!p) return -ENOMEM;
        ctx->extra = p;
        ctx->extra_cap = cap;
    }
    cursor c = {ctx->extra + ctx->extra_len};
    put_header(&c, name, value, vl);
    ctx->extra_len = (size_t)(c.p - ctx->extra);
    return 0;
}

static int check_status(const iomux_http_response *r, int status) {
    return r->sent || status < 200 || status > 599 ? -EINVAL : 0;
}

/* 204 and 304 never carry a body or its length (RFC 7230 3.3.2). */
static void meta_init(iomux__http_meta *m, int status, const char *ctype, uint64_t len) {
    memset(m, 0, sizeof(*m));
    m->status = status;
    m->ctype = ctype;
    m->clen = len;
    m->mtime = (time_t)-1;
    m->no_clen = status == 204 || status == 304;
}

int iomux_http_respond(iomux_http_response *r, int status, const char *ctype, const void *body, size_t len) {
    iomux__http_meta m;
    if (check_status(r, status) < 0) return -EINVAL;
    meta_init(&m, status, ctype, len);
    if (m.no_clen) len = 0;
    return iomux__http_emit(r, &m, body, len);
}

int iomux_http_respond_file(iomux_http_response *r, int status, const char *ctype, iomux_fd fd,
                            int64_t offset, size_t len) {
    iomux__http_meta m;
    if (check_status(r, status) < 0 || offset < 0) {
        close(fd);
        return -EINVAL;
    }
    meta_init(&m, status, ctype, len);
    if (m.no_clen) m.clen = 0;
    return iomux__http_emit_file(r, &m, fd, offset);
}

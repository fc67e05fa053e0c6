/* A request's copy of its target, headers and body, and what a handler
 * sees of it. */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

/* Forgets the message, keeping the buffers for the next one. */
void iomux__http_req_reset(iomux__http_req *req) {
    req->len = 0;
    req->nhdrs = 0;
    req->url_len = 0;
    req->hdr_bytes = 0;
    req->body_off = 0;
    req->body_seen = 0;
    req->status = 0;
    req->state = REQ_IDLE;
    req->piece = PIECE_NONE;
    req->piece_ended = 0;
    req->in_trailers = 0;
    req->have_method = 0;
    req->version_len = 0;
    req->version_done = 0;
    req->pause = PAUSE_NONE;
    req->ext_bytes = 0;
}

void iomux__http_req_release(iomux_http_ctx *ctx, iomux__http_req *req) {
    iomux__http_free(ctx, req->buf);
    iomux__http_free(ctx, req->hdrs);
    req->buf = NULL;
    req->hdrs = NULL;
    req->cap = req->hdrs_cap = 0;
}

/* The limits keep len far below 4 GiB (max_body is capped at 1 GiB). */
int iomux__http_req_append(iomux_http_ctx *ctx, iomux__http_req *req, const char *at, size_t n) {
    size_t need = (size_t)req->len + n;
    if (need > req->cap) {
        size_t cap = req->cap ? req->cap : 1024;
        char *p;
        while (cap < need) cap *= 2;
        p = iomux__http_realloc(ctx, req->buf, cap);
        if (!p) return -ENOMEM;
        req->buf = p;
        req->cap = (uint32_t)cap;
    }
    memcpy(req->buf + req->len, at, n);
    req->len += (uint32_t)n;
    return 0;
}

/* The first header called name at index >= from, or NULL. */
const iomux__http_hdr *iomux__http_req_find(const iomux__http_req *req, const char *name, size_t from) {
    size_t n = strlen(name);
    for (size_t i = from; i < req->nhdrs; i++) {
        const iomux__http_hdr *h = &req->hdrs[i];
        if (h->name_len == n && strncasecmp(req->buf + h->name, name, n) == 0) return h;
    }
    return NULL;
}

static int method_id(uint8_t m) {
    switch (m) {
    case HTTP_GET: return IOMUX_HTTP_GET;
    case HTTP_HEAD: return IOMUX_HTTP_HEAD;
    case HTTP_POST: return IOMUX_HTTP_POST;
    case HTTP_PUT: return IOMUX_HTTP_PUT;
    case HTTP_DELETE: return IOMUX_HTTP_DELETE;
    case HTTP_OPTIONS: return IOMUX_HTTP_OPTIONS;
    case HTTP_PATCH: return IOMUX_HTTP_PATCH;
    default: return IOMUX_HTTP_OTHER;
    }
}

/* In an absolute-form target ("http://host/p?q", RFC 7230 5.3.2) the
 * path starts after the authority; an empty one is "/". */
static const char *path_start(const char *t, size_t n) {
    size_t skip;
    const char *slash;
    if (n >= 7 && strncasecmp(t, "http://", 7) == 0) skip = 7;
    else if (n >= 8 && strncasecmp(t, "https://", 8) == 0) skip = 8;
    else return t;
    slash = memchr(t + skip, '/', n - skip);
    return slash ? slash : NULL;
}

/* Splits the target into path and query, dropping a fragment. */
static void split_target(iomux_http_request *v) {
    const char *t = v->target, *end = t + v->target_len, *q, *f, *path;
    f = t ? memchr(t, '#', v->target_len) : NULL;
    if (f) end = f;
    q = t ? memchr(t, '?', (size_t)(end - t)) : NULL;
    path = t ? path_start(t, (size_t)((q ? q : end) - t)) : t;
    if (t && !path) { /* "http://host" or "http://host?q" */
        v->path = "/";
        v->path_len = 1;
    } else {
        v->path = path;
        v->path_len = (size_t)((q ? q : end) - path);
    }
    v->query = q ? q + 1 : NULL;
    v->query_len = q ? (size_t)(end - q - 1) : 0;
}

void iomux__http_req_view(const iomux__http_req *req, iomux_http_request *v) {
    const llhttp_t *p = &req->parser;
    memset(v, 0, sizeof(*v));
    v->method = llhttp_method_name((llhttp_method_t)p->method);
    v->method_id = method_id(p->method);
    v->version = (unsigned)(p->http_major * 10 + p->http_minor);
    v->target = req->buf;
    v->target_len = req->url_len;
    split_target(v);
    if (req->keep_body) {
        v->body = req->buf + req->body_off;
        v->body_len = req->len - req->body_off;
    }
    v->header_count = req->nhdrs;
    v->internal = req;
}

const char *iomux_http_header(const iomux_http_request *v, const char *name, size_t *len) {
    const iomux__http_req *req = v->internal;
    const iomux__http_hdr *h = iomux__http_req_find(req, name, 0);
    if (!h) return NULL;
    if (len) *len = h->value_len;
    return req->buf + h->value;
}

int iomux_http_header_at(const iomux_http_request *v, size_t i, const char **name, size_t *name_len,
                         const char **value, size_t *value_len) {
    const iomux__http_req *req = v->internal;
    const iomux__http_hdr *h;
    if (i >= req->nhdrs) return -EINVAL;
    h = &req->hdrs[i];
    *name = req->buf + h->name;
    *name_len = h->name_len;
    *value = req->buf + h->value;
    *value_len = h->value_len;
    return 0;
}

/* llhttp's callbacks: copy the target and headers out of the bytes being
 * fed (they are gone after the feed), enforce the limits as the bytes
 * arrive, add the checks llhttp leaves to us (obs-fold, header names, Host,
 * transfer codings, versions), and answer each complete message.
 *
 * A callback that refuses the request sets req->status and returns
 * HPE_USER; llhttp then stops, and the session answers that status. */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

static iomux__http_req *req_of(llhttp_t *p) {
    return (iomux__http_req *)p; /* the parser is the request's first member */
}

static iomux_http_session *sess_of(llhttp_t *p) {
    return p->data;
}

static int fail(iomux__http_req *req, int status) {
    req->status = (uint16_t)status;
    return HPE_USER;
}

static int oom(llhttp_t *p) {
    sess_of(p)->internal.flags |= SESS_ABORT;
    return HPE_USER;
}

static int append(llhttp_t *p, const char *at, size_t n) {
    return iomux__http_req_append(sess_of(p)->ctx, req_of(p), at, n) < 0 ? oom(p) : 0;
}

static int on_message_begin(llhttp_t *p) {
    req_of(p)->state = REQ_HEADERS;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
    iomux__http_req *req = req_of(p);
    req->have_method = 1;
    if (req->url_len + n > sess_of(p)->ctx->cfg.max_uri) return fail(req, 414);
    req->url_len += (uint32_t)n;
    return append(p, at, n);
}

/* Trailers (after a chunked body) are counted against the header limit
 * and otherwise ignored. */
static int trailer(llhttp_t *p, size_t n) {
    iomux__http_req *req = req_of(p);
    if (n > sess_of(p)->ctx->cfg.max_header_bytes - req->hdr_bytes) return fail(req, 431);
    req->hdr_bytes += (uint32_t)n;
    return 0;
}

/* Counts n more bytes of the current header line, whose length is
 * name + ": " + value. */
static int count(llhttp_t *p, const iomux__http_hdr *h, size_t n) {
    iomux__http_req *req = req_of(p);
    const iomux_http_config *cfg = &sess_of(p)->ctx->cfg;
    if (h->name_len + h->value_len + n + 2 > cfg->max_header_line) return fail(req, 431);
    if (n > cfg->max_header_bytes - req->hdr_bytes) return fail(req, 431);
    req->hdr_bytes += (uint32_t)n;
    return 0;
}

static int new_header(llhttp_t *p) {
    iomux__http_req *req = req_of(p);
    iomux_http_ctx *ctx = sess_of(p)->ctx;
    iomux__http_hdr *h;
    if (req->nhdrs >= ctx->cfg.max_headers) return fail(req, 431);
    if (req->nhdrs == req->hdrs_cap) {
        uint32_t cap = req->hdrs_cap ? req->hdrs_cap * 2 : 16;
        h = iomux__http_realloc(ctx, req->hdrs, cap * sizeof(*h));
        if (!h) return oom(p);
        req->hdrs = h;
        req->hdrs_cap = cap;
    }
    /* ": " and CRLF count towards the total; llhttp hands over neither. */
    if (4 > ctx->cfg.max_header_bytes - req->hdr_bytes) return fail(req, 431);
    req->hdr_bytes += 4;
    h = &req->hdrs[req->nhdrs++];
    memset(h, 0, sizeof(*h));
    h->name = req->len;
    req->piece = PIECE_FIELD;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
    iomux__http_req *req = req_of(p);
    iomux__http_hdr *h;
    int rc;
    if (req->in_trailers) return trailer(p, n);
    if (req->piece != PIECE_FIELD && (rc = new_header(p)) != 0) return rc;
    h = &req->hdrs[req->nhdrs - 1];
    if ((rc = count(p, h, n)) != 0) return rc;
    h->name_len += (uint32_t)n;
    return append(p, at, n);
}

/* RFC 7230 3.2.6: a field name is a token. llhttp lets a few odd names
 * through ("Host :" in its loose build, an empty name). */
static int is_tchar(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int on_header_field_complete(llhttp_t *p) {
    iomux__http_req *req = req_of(p);
    const iomux__http_hdr *h;
    if (req->in_trailers) return 0;
    h = &req->hdrs[req->nhdrs - 1];
    req->piece = PIECE_NONE;
    if (h->name_len == 0) return fail(req, 400);
    for (uint32_t i = 0; i < h->name_len; i++)
        if (!is_tchar((unsigned char)req->buf[h->name + i])) return fail(req, 400);
    return 0;
}

/* Before a value's first piece, past the whitespace llhttp skipped, comes
 * its colon; unless the value is empty and continues on the next line
 * (obs-fold), as in "X:\r\n b", where llhttp hands over only the "b". */
static int after_colon(const iomux__http_req *req, const char *at) {
    const char *q = at;
    while (q > req->batch_start && (q[-1] == ' ' || q[-1] == '\t')) q--;
    return q > req->batch_start ? q[-1] == ':' : req->last_byte == ':';
}

/* A value comes in pieces: one per batch it spans, and one more per
 * obs-fold (a line break followed by whitespace). A piece that ends before
 * the batch does ended where the value's line did; another piece of the
 * same value after it is a fold. We refuse folds (RFC 7230 3.2.4 allows
 * that) because llhttp does not join folded values consistently: it reads
 * only the first line of a folded Connection header. */
static int on_header_value(llhttp_t *p, const char *at, size_t n) {
    iomux__http_req *req = req_of(p);
    iomux__http_hdr *h;
    int rc;
    if (req->in_trailers) return trailer(p, n);
    h = &req->hdrs[req->nhdrs - 1];
    if (req->piece != PIECE_VALUE) {
        if (!after_colon(req, at)) return fail(req, 400);
        req->piece = PIECE_VALUE;
        h->value = req->len;
    } else if (req->piece_ended) {
        return fail(req, 400);
    }
    req->piece_ended = at + n < req->batch_end;
    if ((rc = count(p, h, n)) != 0) return rc;
    h->value_len += (uint32_t)n;
    return append(p, at, n);
}

/* llhttp skips the whitespace before a value but keeps the one after it. */
static int on_header_value_complete(llhttp_t *p) {
    iomux__http_req *req = req_of(p);
    iomux__http_hdr *h;
    if (req->in_trailers) return 0;
    h = &req->hdrs[req->nhdrs - 1];
    if (req->piece != PIECE_VALUE) h->value = req->len; /* no value piece came */
    while (h->value_len > 0 && (req->buf[h->value + h->value_len - 1] == ' ' ||
                                req->buf[h->value + h->value_len - 1] == '\t'))
        h->value_len--;
    req->piece = PIECE_NONE;
    return 0;
}

static int value_is(const iomux__http_req *req, const iomux__http_hdr *h, const char *v) {
    size_t n = strlen(v);
    return h->value_len == n && strncasecmp(req->buf + h->value, v, n) == 0;
}

/* RFC 7230 5.4: an HTTP/1.1 request has exactly one Host; none has two. */
static int host_ok(const iomux__http_req *req) {
    const iomux__http_hdr *h = iomux__http_req_find(req, "Host", 0);
    if (!h) return req->parser.http_minor == 0;
    return iomux__http_req_find(req, "Host", (size_t)(h - req->hdrs) + 1) == NULL;
}

/* We implement one transfer coding, chunked, applied once: anything else
 * in Transfer-Encoding is 501 (RFC 7230 3.3.1). llhttp accepts
 * "gzip, chunked" as chunked, hence this check. */
static int te_ok(const iomux__http_req *req) {
    const iomux__http_hdr *h = iomux__http_req_find(req, "Transfer-Encoding", 0);
    if (!h) return 1;
    return value_is(req, h, "chunked") &&
           !iomux__http_req_find(req, "Transfer-Encoding", (size_t)(h - req->hdrs) + 1);
}

static int expects_continue(const iomux__http_req *req) {
    const iomux__http_hdr *h = iomux__http_req_find(req, "Expect", 0);
    const llhttp_t *p = &req->parser;
    return h && value_is(req, h, "100-continue") && p->http_minor == 1 &&
           ((p->flags & F_CHUNKED) || p->content_length > 0);
}

static int on_headers_complete(llhttp_t *p) {
    iomux__http_req *req = req_of(p);
    iomux_http_session *s = sess_of(p);
    req->state = REQ_BODY;
    req->in_trailers = 1;
    if (p->http_major != 1 || p->http_minor > 1) return fail(req, 505);
    if (p->method == HTTP_CONNECT) return fail(req, 501);
    if (!host_ok(req)) return fail(req, 400);
    if ((p->flags & F_TRANSFER_ENCODING) && !te_ok(req)) return fail(req, 501);
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > s->ctx->cfg.max_body) return fail(req, 413);
    p->upgrade = 0; /* we never switch protocols: answer as HTTP/1.1 (RFC 7230 6.7) */
    req->keep_body = s->ctx->cfg.handler != NULL;
    req->body_off = req->len;
    if (expects_continue(req) && iomux__http_interim_continue(s) < 0) return oom(p);
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
    iomux__http_req *req = req_of(p);
    req->body_seen += n;
    if (req->body_seen > sess_of(p)->ctx->cfg.max_body) return fail(req, 413);
    return req->keep_body ? append(p, at, n) : 0;
}

/* Answers the request. After an answer that closes the connection, stop:
 * whatever was pipelined behind it is not answered. */
static int on_message_complete(llhttp_t *p) {
    iomux_http_session *s = sess_of(p);
    int rc = iomux__http_answer(s, req_of(p));
    iomux__http_req_reset(req_of(p));
    if (rc < 0) return oom(p);
    return s->internal.flags & SESS_CLOSING ? HPE_PAUSED : 0;
}

void iomux__http_settings(llhttp_settings_t *st) {
    llhttp_settings_init(st);
    st->on_message_begin = on_message_begin;
    st->on_url = on_url;
    st->on_header_field = on_header_field;
    st->on_header_field_complete = on_header_field_complete;
    st->on_header_value = on_header_value;
    st->on_header_value_complete = on_header_value_complete;
    st->on_headers_complete = on_headers_complete;
    st->on_body = on_body;
    st->on_message_complete = on_message_complete;
}

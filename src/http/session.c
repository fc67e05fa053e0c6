/* A session: bytes in, responses out. Every feed parses with the
 * context's scratch request; only a request still incomplete when the
 * feed ends is copied into an allocation of the session's own, freed when
 * that request is answered. So an idle keep-alive session holds nothing
 * but its struct and its unwritten output. */
#include <errno.h>
#include <string.h>

#include "internal.h"

void iomux_http_session_init(iomux_http_session *s, iomux_http_ctx *ctx) {
    s->ctx = ctx;
    memset(&s->internal, 0, sizeof(s->internal));
}

static void drop_req(iomux_http_session *s) {
    iomux__http_req *req = s->internal.req;
    s->internal.req = NULL;
    if (!req || req == &s->ctx->scratch) return;
    iomux__http_req_release(s->ctx, req);
    iomux__http_free(s->ctx, req);
}

static void drop_held(iomux_http_session *s) {
    iomux__http_free(s->ctx, s->internal.held);
    s->internal.held = NULL;
}

void iomux_http_session_close(iomux_http_session *s) {
    drop_req(s);
    drop_held(s);
    iomux__http_out_clear(s);
    s->internal.flags |= SESS_CLOSING;
}

static iomux_http_next next(const iomux_http_session *s) {
    if (s->internal.flags & SESS_ABORT) return IOMUX_HTTP_ABORT;
    return s->internal.flags & SESS_CLOSING ? IOMUX_HTTP_CLOSE : IOMUX_HTTP_CONTINUE;
}

static iomux__http_req *acquire(iomux_http_session *s) {
    iomux__http_req *req = &s->ctx->scratch;
    if (s->internal.req) return s->internal.req;
    iomux__http_req_reset(req);
    llhttp_init(&req->parser, HTTP_REQUEST, &s->ctx->settings);
    req->parser.data = s;
    s->internal.req = req;
    return req;
}

static void *copy_of(iomux_http_ctx *ctx, const void *src, size_t n) {
    void *d = iomux__http_malloc(ctx, n ? n : 1);
    if (d && n) memcpy(d, src, n);
    return d;
}

/* The scratch request is not done: give the session a copy, sized to what
 * arrived so far (it grows as more does). */
static int detach(iomux_http_session *s) {
    iomux_http_ctx *ctx = s->ctx;
    const iomux__http_req *src = &ctx->scratch;
    iomux__http_req *d = iomux__http_malloc(ctx, sizeof(*d));
    if (!d) return -ENOMEM;
    *d = *src;
    d->buf = copy_of(ctx, src->buf, src->len);
    d->hdrs = copy_of(ctx, src->hdrs, src->nhdrs * sizeof(*src->hdrs));
    d->cap = src->len;
    d->hdrs_cap = src->nhdrs;
    s->internal.req = d;
    if (!d->buf || !d->hdrs) {
        drop_req(s);
        return -ENOMEM;
    }
    return 0;
}

/* After a feed: keep parser state only for a request still in progress. */
static void settle(iomux_http_session *s) {
    iomux__http_req *req = s->internal.req;
    if ((s->internal.flags & (SESS_CLOSING | SESS_ABORT)) || req->state == REQ_IDLE) {
        drop_req(s);
        return;
    }
    if (req == &s->ctx->scratch && detach(s) < 0) {
        s->internal.req = NULL;
        s->internal.flags |= SESS_ABORT;
    }
}

static void resp_init(iomux_http_response *r, iomux_http_session *s, const iomux__http_req *req) {
    const llhttp_t *p = &req->parser;
    memset(r, 0, sizeof(*r));
    r->s = s;
    s->ctx->extra_len = 0;
    if (p->http_major) r->version = (unsigned)(p->http_major * 10 + p->http_minor);
    if (!req->have_method) return;
    r->method = llhttp_method_name((llhttp_method_t)p->method);
    r->target = req->buf;
    r->target_len = req->url_len;
    r->head = p->method == HTTP_HEAD;
}

int iomux__http_answer(iomux_http_session *s, iomux__http_req *req) {
    iomux_http_request v;
    iomux_http_response r;
    int rc;
    iomux__http_req_view(req, &v);
    resp_init(&r, s, req);
    /* RFC 9112 9.3, 9.6: "close" among the connection options closes, in
     * HTTP/1.0 too; llhttp_should_keep_alive() lets "keep-alive, close"
     * keep an HTTP/1.0 connection open. */
    r.keep_alive = llhttp_should_keep_alive(&req->parser) && !(req->parser.flags & F_CONNECTION_CLOSE) &&
                   !(s->internal.flags & SESS_SHUTDOWN);
    rc = iomux__http_route(s, &v, &r);
    if (rc < 0 || r.failed) return -ENOMEM;
    if (!r.keep_alive) s->internal.flags |= SESS_CLOSING;
    return 0;
}

int iomux__http_interim_continue(iomux_http_session *s) {
    static const char line[] = "HTTP/1.1 100 Continue\r\n\r\n";
    return iomux__http_out_write(s, line, sizeof(line) - 1);
}

static int status_of(const iomux__http_req *req, llhttp_errno_t err) {
    switch (err) {
    /* llhttp's verdict on a request whose last transfer coding is not
     * chunked ("chunked, gzip"): its length is unknown, 400 (RFC 9112 6.3
     * (4), MUST; it was 501). */
    case HPE_INVALID_TRANSFER_ENCODING: return 400;
    case HPE_INVALID_VERSION: return iomux__http_version_status(req);
    default: return 400;
    }
}

/* A request llhttp or a callback refused: answer it, then close. */
static void reject(iomux_http_session *s, const iomux__http_req *req, int status) {
    iomux_http_response r;
    resp_init(&r, s, req);
    if (iomux__http_error(&r, status) < 0) s->internal.flags |= SESS_ABORT;
    s->internal.flags |= SESS_CLOSING;
}

/* Remembers the batch's last byte that is not OWS, for after_colon() in
 * parse.c to look back past the start of the next batch, and its last 4
 * bytes (with those before it), for the line-end check there. */
static void note_tail(iomux__http_req *req, const char *data, size_t len) {
    size_t keep = len < 4 ? 4 - len : 0, i;
    memmove(req->tail, req->tail + 4 - keep, keep);
    for (i = keep; i < 4; i++) req->tail[i] = data[len - (4 - i)];
    while (len > 0 && (data[len - 1] == ' ' || data[len - 1] == '\t')) len--;
    if (len > 0) req->last_byte = data[len - 1];
}

/* llhttp hands a span (the target, a header name or value) to its callback
 * when the span ends or the feed does, but not when it finds an error
 * inside the span. A feed that ended inside the span handed its first part
 * over, and the limits and the method check saw it; so hand the part before
 * the error over now, and the answer (414 or 431 for a limit crossed before
 * the error, a HEAD's missing body) is the same however the bytes were
 * split. Only up to a control byte: llhttp may have taken one into the span
 * that a split feed never hands over (on_url refuses them anyway). */
typedef int (*span_cb)(llhttp_t *p, const char *start, const char *end);

static void flush_span(iomux__http_req *req) {
    llhttp_t *p = &req->parser;
    const char *start = p->_span_pos0, *pos = llhttp_get_error_pos(p), *q = start;
    if (!start || !p->_span_cb0 || !pos || pos < start) return;
    while (q < pos && ((unsigned char)*q >= 0x20 || *q == '\t') && *q != 0x7f) q++;
    p->_span_pos0 = NULL;
    if (q > start) ((span_cb)p->_span_cb0)(p, start, q);
}

/* Runs llhttp over the batch; a callback that pauses it has the step
 * finished by iomux__http_paused(), then parsing resumes where it
 * stopped. Returns llhttp's last word (HPE_PAUSED: stop, closing), or
 * HPE_OK with *rest set where a request ended and the output was full
 * (SESS_FULL, set by message_done in parse.c). */
static llhttp_errno_t execute(iomux_http_session *s, iomux__http_req *req, const char *data, size_t len,
                              const char **rest) {
    const char *p = data, *end = data + len;
    for (;;) {
        llhttp_errno_t err = llhttp_execute(&req->parser, p, (size_t)(end - p));
        const char *pos;
        int rc;
        if (err != HPE_PAUSED) return err;
        pos = llhttp_get_error_pos(&req->parser);
        /* SESS_FULL: set by message_done, from the callback itself (then
         * req->pause is PAUSE_NONE and this returns HPE_PAUSED at once) or
         * from here (a chunked body's end). */
        rc = iomux__http_paused(s, req, data, pos);
        if (rc == HPE_PAUSED && (s->internal.flags & SESS_FULL)) {
            s->internal.flags &= ~(unsigned)SESS_FULL;
            if (pos < end) *rest = pos;
            return HPE_OK;
        }
        if (rc != 0) return (llhttp_errno_t)rc;
        llhttp_resume(&req->parser);
        p = pos;
    }
}

static void fail_oom(iomux_http_session *s) {
    drop_req(s);
    drop_held(s);
    s->internal.flags |= SESS_ABORT;
}

/* Parses and answers; returns where parsing stopped because the output
 * was full, or NULL when every byte was parsed. */
static const char *parse(iomux_http_session *s, const char *data, size_t len) {
    iomux__http_req *req = acquire(s);
    const char *rest = NULL;
    llhttp_errno_t err;
    req->batch_start = data;
    req->batch_end = data + len;
    err = execute(s, req, data, len, &rest);
    if (err != HPE_OK && err != HPE_USER && err != HPE_PAUSED) flush_span(req);
    note_tail(req, data, rest ? (size_t)(rest - data) : len);
    if (err != HPE_OK && !(s->internal.flags & (SESS_CLOSING | SESS_ABORT)))
        reject(s, req, req->status ? req->status : status_of(req, err));
    settle(s);
    return rest;
}

/* Appends n bytes to the held input (a new block: holding is rare, and
 * keeping the rest where parsing stopped copies nothing per resume). */
static void hold(iomux_http_session *s, const char *p, size_t n) {
    iomux__http_held *h = s->internal.held, *nh;
    size_t have = h ? h->len - h->off : 0;
    nh = iomux__http_malloc(s->ctx, sizeof(*nh) + have + n);
    if (!nh) {
        fail_oom(s);
        return;
    }
    nh->off = 0;
    nh->len = have + n;
    if (have) memcpy(nh->data, h->data + h->off, have);
    memcpy(nh->data + have, p, n);
    iomux__http_free(s->ctx, h);
    s->internal.held = nh;
}

iomux_http_next iomux_http_feed(iomux_http_session *s, const void *data, size_t len) {
    const char *rest;
    if ((s->internal.flags & (SESS_CLOSING | SESS_ABORT)) || len == 0) return next(s);
    if (s->internal.held) {
        hold(s, data, len); /* behind what is held: order is kept */
        return next(s);
    }
    rest = parse(s, data, len);
    if (rest && !(s->internal.flags & (SESS_CLOSING | SESS_ABORT)))
        hold(s, rest, (size_t)((const char *)data + len - rest));
    return next(s);
}

int iomux_http_input_held(const iomux_http_session *s) {
    return s->internal.held != NULL && !(s->internal.flags & (SESS_CLOSING | SESS_ABORT));
}

iomux_http_next iomux_http_resume(iomux_http_session *s) {
    iomux__http_held *h = s->internal.held;
    const char *rest;
    if (!h) return next(s);
    if (!(s->internal.flags & (SESS_CLOSING | SESS_ABORT))) {
        rest = parse(s, h->data + h->off, h->len - h->off);
        if (rest && !(s->internal.flags & (SESS_CLOSING | SESS_ABORT))) {
            h->off = (size_t)(rest - h->data);
            return next(s);
        }
    }
    drop_held(s);
    return next(s);
}

iomux_http_next iomux_http_feed_eof(iomux_http_session *s) {
    drop_req(s);
    s->internal.flags |= SESS_CLOSING;
    return next(s);
}

iomux_http_next iomux_http_expire(iomux_http_session *s) {
    const iomux__http_req *req = s->internal.req;
    if (s->internal.flags & (SESS_CLOSING | SESS_ABORT)) return next(s);
    if (req && req->state != REQ_IDLE) reject(s, req, 408);
    drop_req(s);
    s->internal.flags |= SESS_CLOSING;
    return next(s);
}

iomux_http_next iomux_http_session_shutdown(iomux_http_session *s) {
    s->internal.flags |= SESS_SHUTDOWN;
    if (!s->internal.req) s->internal.flags |= SESS_CLOSING;
    return next(s);
}

iomux_http_phase iomux_http_session_phase(const iomux_http_session *s) {
    const iomux__http_req *req = s->internal.req;
    if (s->internal.flags & (SESS_CLOSING | SESS_ABORT)) return IOMUX_HTTP_DONE;
    if (!req || req->state == REQ_IDLE) return IOMUX_HTTP_IDLE;
    return req->state == REQ_BODY ? IOMUX_HTTP_BODY : IOMUX_HTTP_HEADERS;
}

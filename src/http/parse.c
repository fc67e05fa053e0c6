/* llhttp's callbacks: copy the target and headers out of the bytes being
 * fed (they are gone after the feed), enforce the limits as the bytes
 * arrive, add the checks llhttp leaves to us (obs-fold, header names, Host,
 * transfer codings, versions), and answer each complete message.
 *
 * A callback that refuses the request sets req->status and returns
 * HPE_USER; llhttp then stops, and the session answers that status. */
#include <errno.h>
#include <stddef.h>
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
    /* llhttp keeps the version of the message before: a request refused
     * before its own version must not show that one's. */
    p->http_major = p->http_minor = 0;
    return 0;
}

/* RFC 9112 3.2: a request-target holds no whitespace or control byte;
 * llhttp lets HTAB and FF through (they reached handlers and the log). */
static size_t visible_prefix(const char *at, size_t n) {
    size_t i = 0;
    while (i < n && (unsigned char)at[i] > 0x20 && at[i] != 0x7f) i++;
    return i;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
    iomux__http_req *req = req_of(p);
    uint32_t max = sess_of(p)->ctx->cfg.max_uri;
    size_t keep = visible_prefix(at, n);
    int status = keep < n ? 400 : 0;
    req->have_method = 1;
    if (req->url_len + keep > max) {
        keep = max - req->url_len;
        status = 414;
    }
    /* Keep what is valid and fits, so that the log shows the same prefix
     * however the target was split. */
    req->url_len += (uint32_t)keep;
    if (append(p, at, keep)) return HPE_USER;
    return status ? fail(req, status) : 0;
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
    /* An empty value (RFC 9110 5.5 allows it) comes as a first piece of
     * length 0 placed after the line end, where after_colon() cannot find
     * the colon (it was refused with 400): nothing to copy,
     * on_header_value_complete() handles it. Later empty pieces still
     * mark where a line ended (folds). */
    if (n == 0 && req->piece != PIECE_VALUE) return 0;
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

/* RFC 3986 3.2.2: a reg-name's bytes (pct-encoded loosely: '%'). */
static int is_regname(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("-._~%!$&'()*+,;=", c));
}

/* Host = uri-host [ ":" port ] (RFC 9110 7.2): a reg-name or IPv4
 * address, or an IP-literal in brackets; an empty value is valid. */
static int host_value_ok(const char *v, size_t n) {
    size_t i = 0;
    if (n > 0 && v[0] == '[') {
        for (i = 1; i < n && v[i] != ']'; i++)
            if (!is_regname((unsigned char)v[i]) && v[i] != ':') return 0;
        if (i++ == n) return 0; /* no ']' */
    } else {
        while (i < n && v[i] != ':' && is_regname((unsigned char)v[i])) i++;
    }
    if (i == n) return 1;
    if (v[i++] != ':') return 0;
    for (; i < n; i++)
        if (v[i] < '0' || v[i] > '9') return 0;
    return 1;
}

/* RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request without
 * Host, to any request with two, and to a Host with an invalid value
 * (before this check, "Host: a b" and "Host: a/b" were served). */
static int host_ok(const iomux__http_req *req) {
    const iomux__http_hdr *h = iomux__http_req_find(req, "Host", 0);
    if (!h) return req->parser.http_minor == 0;
    if (!host_value_ok(req->buf + h->value, h->value_len)) return 0;
    return iomux__http_req_find(req, "Host", (size_t)(h - req->hdrs) + 1) == NULL;
}

/* The transfer codings of every Transfer-Encoding line, in order (RFC
 * 9110 5.6.1 lists: empty elements ignored): how many, and whether the
 * last is chunked. */
static void te_codings(const iomux__http_req *req, unsigned *count, int *last_chunked) {
    const iomux__http_hdr *h = NULL;
    *count = 0;
    *last_chunked = 0;
    while ((h = iomux__http_req_find(req, "Transfer-Encoding", h ? (size_t)(h - req->hdrs) + 1 : 0))) {
        const char *v = req->buf + h->value, *end = v + h->value_len;
        while (v < end) {
            const char *comma = memchr(v, ',', (size_t)(end - v)), *e = comma ? comma : end;
            const char *b = v;
            while (b < e && (*b == ' ' || *b == '\t')) b++;
            while (e > b && (e[-1] == ' ' || e[-1] == '\t')) e--;
            if (e > b) {
                (*count)++;
                *last_chunked = e - b == 7 && strncasecmp(b, "chunked", 7) == 0;
            }
            v = comma ? comma + 1 : end;
        }
    }
}

/* RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 means faulty framing, and
 * the connection MUST close: 400 (it used to be served as chunked, and
 * kept alive on "Connection: keep-alive"). 6.3 (4): chunked not last
 * means the body length is unknown: 400, MUST (it used to be 501). We
 * implement chunked applied once: any other list is 501 (6.1, SHOULD;
 * llhttp takes "gzip, chunked" as chunked, hence this check). */
static int te_status(const iomux__http_req *req) {
    unsigned count;
    int last_chunked;
    if (req->parser.http_minor == 0) return 400;
    te_codings(req, &count, &last_chunked);
    if (!last_chunked) return 400;
    return count > 1 ? 501 : 0;
}

static int expects_continue(const iomux__http_req *req) {
    const iomux__http_hdr *h = iomux__http_req_find(req, "Expect", 0);
    const llhttp_t *p = &req->parser;
    return h && value_is(req, h, "100-continue") && p->http_minor == 1 &&
           ((p->flags & F_CHUNKED) || p->content_length > 0);
}

/* The header section is in. Pause, so that the feed loop can check the
 * empty line that ended it (iomux__http_paused), then go on in
 * headers_done(). */
static int on_headers_complete(llhttp_t *p) {
    iomux__http_req *req = req_of(p);
    req->state = REQ_BODY;
    req->in_trailers = 1;
    req->pause = PAUSE_HEADERS;
    return HPE_PAUSED;
}

static int headers_done(iomux_http_session *s, iomux__http_req *req) {
    llhttp_t *p = &req->parser;
    int te;
    /* No version at all ("GET /", HTTP/0.9's form) is a malformed
     * request line for us: 400 (RFC 9112 3), not 505. */
    if (req->version_len == 0) return fail(req, 400);
    if (p->http_major != 1 || p->http_minor > 1) return fail(req, 505);
    if (p->method == HTTP_CONNECT) return fail(req, 501);
    if (!host_ok(req)) return fail(req, 400);
    /* By name, not llhttp's flag: an empty Transfer-Encoding sets no flag,
     * and would leave the body to be parsed as the next request. */
    if (iomux__http_req_find(req, "Transfer-Encoding", 0) && (te = te_status(req)) != 0) return fail(req, te);
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

/* The output one feed may build up (IOMUX_HTTP_OUT_PAUSE in http.h): the
 * list is short below these limits, so counting its files costs little. */
static int output_full(const iomux_http_session *s) {
    const iomux__http_seg *g;
    unsigned files = 0;
    if (s->internal.out_bytes >= IOMUX_HTTP_OUT_PAUSE) return 1;
    for (g = s->internal.head; g; g = g->next)
        if (g->fd >= 0 && ++files >= IOMUX_HTTP_OUT_PAUSE_FILES) return 1;
    return 0;
}

/* Answers the request. After an answer that closes the connection, stop:
 * whatever was pipelined behind it is not answered. */
static int message_done(iomux_http_session *s, iomux__http_req *req) {
    int rc = iomux__http_answer(s, req);
    iomux__http_req_reset(req);
    if (rc < 0) return oom(&req->parser);
    if (s->internal.flags & SESS_CLOSING) return HPE_PAUSED;
    if (output_full(s)) { /* the rest waits: iomux_http_resume() */
        s->internal.flags |= SESS_FULL;
        return HPE_PAUSED;
    }
    return 0;
}

/* A chunked body ends with an empty line that needs the same check as
 * the header section's: pause for it. */
static int on_message_complete(llhttp_t *p) {
    iomux__http_req *req = req_of(p);
    if (p->flags & F_CHUNKED) {
        req->pause = PAUSE_MESSAGE;
        return HPE_PAUSED;
    }
    return message_done(sess_of(p), req);
}

/* The version's digits as they come ("1.1"): a well-formed version we do
 * not serve is 505, a malformed one 400 (RFC 9112 3; llhttp reports both
 * as HPE_INVALID_VERSION). */
static int on_version(llhttp_t *p, const char *at, size_t n) {
    iomux__http_req *req = req_of(p);
    while (n-- > 0 && req->version_len < sizeof(req->version)) req->version[req->version_len++] = *at++;
    return 0;
}

static int on_version_complete(llhttp_t *p) {
    req_of(p)->version_done = 1;
    return 0;
}

int iomux__http_version_status(const iomux__http_req *req) {
    const char *v = req->version;
    int well_formed = req->version_len == 3 && v[0] >= '0' && v[0] <= '9' && v[1] == '.' && v[2] >= '0' &&
                      v[2] <= '9';
    return well_formed && !req->version_done ? 505 : 400;
}

/* RFC 9112 7.1.1: a server ought to limit chunk extensions, which it
 * otherwise ignores, and answer a 4xx beyond the limit. Those of one
 * chunk line count like a header line (max_header_line), those of the
 * whole body with the header section (max_header_bytes). Before this
 * limit a client could stream an endless extension into a connection. */
static int on_chunk_extension(llhttp_t *p, const char *at, size_t n) {
    iomux__http_req *req = req_of(p);
    const iomux_http_config *cfg = &sess_of(p)->ctx->cfg;
    (void)at;
    if (n > cfg->max_header_line - req->ext_bytes) return fail(req, 400);
    if (n > cfg->max_header_bytes - req->hdr_bytes) return fail(req, 400);
    req->ext_bytes += (uint32_t)n;
    req->hdr_bytes += (uint32_t)n;
    return 0;
}

static int on_chunk_header(llhttp_t *p) {
    req_of(p)->ext_bytes = 0;
    return 0;
}

/* llhttp 8.1.0 takes any two bytes after a chunk's data for its CRLF
 * ("5\r\nhelloXX0\r\n\r\n" was a valid body): pause, so that the feed loop
 * checks them (RFC 9112 7.1: chunk-data CRLF). */
static int on_chunk_complete(llhttp_t *p) {
    req_of(p)->pause = PAUSE_CHUNK;
    return HPE_PAUSED;
}

/* The 4 bytes before pos, which is inside [data, ...) or just past the
 * bytes of earlier batches (req->tail). */
static void bytes_before(const iomux__http_req *req, const char *data, const char *pos, char out[4]) {
    size_t have = (size_t)(pos - data), k;
    for (k = 0; k < 4; k++) out[3 - k] = k < have ? pos[-1 - (ptrdiff_t)k] : req->tail[3 - (k - have)];
}

/* llhttp paused in on_headers_complete, on_chunk_complete or
 * on_message_complete, after the byte at pos - 1. llhttp 8.1.0 ends a
 * header section (and a chunked body's trailer section) on "\r\n\n" and
 * even on "\r\n\r" followed by any byte, which it swallows: a request
 * boundary other parsers do not see (RFC 9112 2.2: bare CR is invalid; a
 * bare LF MAY end a line, but llhttp refuses it inside the header section,
 * so this one would be the only place). So the section must end with
 * "\r\n\r\n", and a chunk's data with "\r\n".
 * Returns 0 to resume parsing, HPE_PAUSED to stop (the connection
 * closes), or HPE_USER (req->status set, or out of memory). */
int iomux__http_paused(iomux_http_session *s, iomux__http_req *req, const char *data, const char *pos) {
    char last[4];
    int why = req->pause;
    req->pause = PAUSE_NONE;
    if (why == PAUSE_NONE) return HPE_PAUSED;
    bytes_before(req, data, pos, last);
    if (why == PAUSE_CHUNK) return memcmp(last + 2, "\r\n", 2) != 0 ? fail(req, 400) : 0;
    if (memcmp(last, "\r\n\r\n", 4) != 0) return fail(req, 400);
    return why == PAUSE_HEADERS ? headers_done(s, req) : message_done(s, req);
}

void iomux__http_settings(llhttp_settings_t *st) {
    llhttp_settings_init(st);
    st->on_message_begin = on_message_begin;
    st->on_url = on_url;
    st->on_version = on_version;
    st->on_version_complete = on_version_complete;
    st->on_header_field = on_header_field;
    st->on_header_field_complete = on_header_field_complete;
    st->on_header_value = on_header_value;
    st->on_header_value_complete = on_header_value_complete;
    st->on_headers_complete = on_headers_complete;
    st->on_body = on_body;
    st->on_chunk_header = on_chunk_header;
    st->on_chunk_complete = on_chunk_complete;
    st->on_chunk_extension_name = on_chunk_extension;
    st->on_chunk_extension_value = on_chunk_extension;
    st->on_message_complete = on_message_complete;
}

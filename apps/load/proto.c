/* Requests and response parsing for echo and HTTP/1.1 (see proto.h).
 *
 * Echo: every received byte is compared with the message that was sent
 * (memcmp per message segment: it costs next to nothing at these sizes,
 * and a reordered, truncated or corrupted echo is caught, not just a
 * short one).
 *
 * HTTP: a line-based state machine. Lines are found with memchr; a line
 * that lies whole in one buffer is read in place, one split across
 * buffers is assembled in rp->line (its first RESP_LINE_KEEP bytes: the
 * headers we read, Content-Length and Connection, fit). The body is
 * skipped by counting Content-Length bytes, never scanned. */
#include "proto.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { HS_STATUS, HS_HEADERS, HS_BODY, HS_BODY_EOF };

static const char pattern[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

char proto_pattern(size_t i) {
    return pattern[i % (sizeof(pattern) - 1)];
}

const char *resp_strerror(int err) {
    switch (-err) {
    case RESP_EMISMATCH: return "the echo differs from what was sent";
    case RESP_ESTATUS: return "not an HTTP/1.x status line";
    case RESP_ENOLENGTH: return "a response without Content-Length";
    case RESP_ECLOSE: return "a response with Connection: close";
    case RESP_EPARTIAL: return "end of stream inside a response";
    case RESP_ELENGTH: return "a bad Content-Length";
    default: return "unknown response error";
    }
}

/* ---- echo ---- */

static int echo_feed(resp_parser *rp, const resp_cfg *cfg, const char *p, size_t n, resp_out *out) {
    while (n > 0) {
        size_t seg = cfg->size - (size_t)rp->off;
        if (seg > n) seg = n;
        if (memcmp(p, cfg->ref + rp->off, seg) != 0) return -RESP_EMISMATCH;
        rp->off += seg;
        p += seg;
        n -= seg;
        if (rp->off == cfg->size) {
            rp->off = 0;
            out->done++;
        }
    }
    return 0;
}

/* ---- HTTP ---- */

static void http_done(resp_parser *rp, resp_out *out) {
    out->done++;
    if (rp->status < 200 || rp->status > 299) out->bad_status++;
    rp->state = HS_STATUS;
}

static int status_line(resp_parser *rp, const char *s, size_t len) {
    if (len < 12 || memcmp(s, "HTTP/1.", 7) != 0 || s[8] != ' ') return -RESP_ESTATUS;
    if (s[9] < '0' || s[9] > '9' || s[10] < '0' || s[10] > '9' || s[11] < '0' || s[11] > '9')
        return -RESP_ESTATUS;
    rp->status = (uint16_t)((s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0'));
    rp->clen = -1;
    rp->conn_close = 0;
    rp->state = HS_HEADERS;
    return 0;
}

/* Does the value s[0..len) hold the token tok (case-insensitive)? */
static int has_token(const char *s, size_t len, const char *tok) {
    size_t t = strlen(tok), i;
    for (i = 0; i + t <= len; i++)
        if (strncasecmp(s + i, tok, t) == 0) return 1;
    return 0;
}

static int header_line(resp_parser *rp, const char *s, size_t len) {
    if (len > 15 && strncasecmp(s, "content-length:", 15) == 0) {
        size_t i = 15;
        int64_t v = 0;
        while (i < len && (s[i] == ' ' || s[i] == '\t')) i++;
        if (i == len) return -RESP_ELENGTH;
        for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) v = v * 10 + (s[i] - '0');
        while (i < len && (s[i] == ' ' || s[i] == '\t')) i++;
        if (i != len || v > ((int64_t)1 << 50)) return -RESP_ELENGTH;
        rp->clen = v;
    } else if (len > 11 && strncasecmp(s, "connection:", 11) == 0) {
        if (has_token(s + 11, len - 11, "close")) rp->conn_close = 1;
    }
    return 0;
}

/* The empty line: the head is complete. */
static int head_done(resp_parser *rp, const resp_cfg *cfg, resp_out *out) {
    if (rp->conn_close && !cfg->allow_close) return -RESP_ECLOSE;
    if (rp->clen < 0) {
        if (!cfg->allow_close) return -RESP_ENOLENGTH;
        rp->state = HS_BODY_EOF;
        return 0;
    }
    rp->off = (uint64_t)rp->clen;
    rp->state = HS_BODY;
    if (rp->off == 0) http_done(rp, out);
    return 0;
}

static int http_line(resp_parser *rp, const resp_cfg *cfg, const char *s, size_t len, resp_out *out) {
    if (len > 0 && s[len - 1] == '\r') len--;
    if (rp->state == HS_STATUS) return status_line(rp, s, len);
    if (len == 0) return head_done(rp, cfg, out);
    return header_line(rp, s, len);
}

/* Consumes head bytes up to and including the next '\n' (or all of them);
 * returns the bytes consumed, or -RESP_E... */
static long head_bytes(resp_parser *rp, const resp_cfg *cfg, const char *p, size_t n, resp_out *out) {
    const char *nl = memchr(p, '\n', n);
    size_t seg = nl ? (size_t)(nl - p) : n, keep;
    int rc = 0;
    if (rp->line_len == 0 && nl) {
        rc = http_line(rp, cfg, p, seg, out); /* the usual case: the line is whole here */
    } else {
        keep = RESP_LINE_KEEP - rp->line_len;
        if (keep > seg) keep = seg;
        memcpy(rp->line + rp->line_len, p, keep);
        rp->line_len = (uint8_t)(rp->line_len + keep);
        if (nl) {
            rc = http_line(rp, cfg, rp->line, rp->line_len, out);
            rp->line_len = 0;
        }
    }
    if (rc < 0) return rc;
    return (long)(seg + (nl ? 1 : 0));
}

static int http_feed(resp_parser *rp, const resp_cfg *cfg, const char *p, size_t n, resp_out *out) {
    while (n > 0) {
        if (rp->state == HS_BODY) {
            size_t take = rp->off < n ? (size_t)rp->off : n;
            p += take;
            n -= take;
            rp->off -= take;
            if (rp->off == 0) http_done(rp, out);
        } else if (rp->state == HS_BODY_EOF) {
            return 0; /* everything up to the end of stream is body */
        } else {
            long used = head_bytes(rp, cfg, p, n, out);
            if (used < 0) return (int)used;
            p += used;
            n -= (size_t)used;
        }
    }
    return 0;
}

int resp_feed(resp_parser *rp, const resp_cfg *cfg, const char *p, size_t n, resp_out *out) {
    return cfg->proto == PROTO_ECHO ? echo_feed(rp, cfg, p, n, out) : http_feed(rp, cfg, p, n, out);
}

int resp_eof(resp_parser *rp, const resp_cfg *cfg, resp_out *out) {
    if (cfg->proto == PROTO_ECHO) return rp->off == 0 ? 0 : -RESP_EPARTIAL;
    if (rp->state == HS_BODY_EOF) {
        http_done(rp, out);
        return 1;
    }
    return rp->state == HS_STATUS && rp->line_len == 0 ? 0 : -RESP_EPARTIAL;
}

/* ---- requests ---- */

char *proto_requests(int proto, size_t size, const char *host, const char *path, int close, unsigned copies,
                     size_t *one_len) {
    size_t len, i;
    char *buf;
    if (proto == PROTO_HTTP) {
        len = strlen("GET  HTTP/1.1\r\nHost: \r\n\r\n") + strlen(path) + strlen(host) +
              (close ? strlen("Connection: close\r\n") : 0);
    } else {
        len = size;
    }
    buf = malloc(len * copies + 1);
    if (!buf) return NULL;
    if (proto == PROTO_HTTP) {
        char *q = buf;
        q = stpcpy(q, "GET ");
        q = stpcpy(q, path);
        q = stpcpy(q, " HTTP/1.1\r\nHost: ");
        q = stpcpy(q, host);
        q = stpcpy(q, close ? "\r\nConnection: close\r\n\r\n" : "\r\n\r\n");
    } else {
        for (i = 0; i < len; i++) buf[i] = proto_pattern(i);
    }
    for (i = 1; i < copies; i++) memcpy(buf + i * len, buf, len);
    buf[len * copies] = '\0';
    *one_len = len;
    return buf;
}

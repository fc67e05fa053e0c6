/* The two protocols iomux-load speaks: what a request is, and an
 * incremental parser that finds the responses in a byte stream cut at any
 * place (a receive buffer ends wherever the kernel had data). */
#ifndef IOMUX_LOAD_PROTO_H
#define IOMUX_LOAD_PROTO_H

#include <stddef.h>
#include <stdint.h>

enum { PROTO_ECHO, PROTO_HTTP };

/* Why a stream is not a valid sequence of responses (negative returns). */
enum {
    RESP_EMISMATCH = 1, /* echo: a byte differs from what was sent */
    RESP_ESTATUS,       /* http: not a status line */
    RESP_ENOLENGTH,     /* http: no Content-Length (chunked, or to EOF) */
    RESP_ECLOSE,        /* http: Connection: close */
    RESP_EPARTIAL,      /* end of stream inside a response */
    RESP_ELENGTH        /* http: a Content-Length that is not a number */
};

/* Fixed for a run. */
typedef struct resp_cfg {
    int proto;
    size_t size;         /* echo: message bytes */
    const char *ref;     /* echo: the message, to compare with */
    int allow_close;     /* http: Connection: close and bodies ending at EOF are fine */
} resp_cfg;

#define RESP_LINE_KEEP 64 /* of a header line split across buffers: enough for the headers we read */

/* One connection's parse state; zero it for a new connection. */
typedef struct resp_parser {
    uint64_t off;        /* echo: bytes of the current message; http: body bytes left */
    int64_t clen;        /* http: Content-Length, -1 none yet */
    uint16_t status;
    uint8_t state;
    uint8_t conn_close;
    uint8_t line_len;    /* bytes of a split line kept in line[] */
    char line[RESP_LINE_KEEP];
} resp_parser;

/* What one feed found: complete responses, how many not 2xx. */
typedef struct resp_out {
    unsigned done;
    unsigned bad_status;
} resp_out;

/* Feeds n bytes. Returns 0, or -RESP_E... (the stream is unusable; out
 * still counts the responses completed before the error). */
int resp_feed(resp_parser *rp, const resp_cfg *cfg, const char *p, size_t n, resp_out *out);

/* At end of stream: 1 if that completed a response (http, a body to EOF,
 * allow_close only), 0 if the stream ended between responses,
 * -RESP_EPARTIAL inside one. */
int resp_eof(resp_parser *rp, const resp_cfg *cfg, resp_out *out);

/* A short text for -RESP_E... */
const char *resp_strerror(int err);

/* The bytes of `copies` requests back to back (malloc'd), the length of
 * one in *one_len; NULL if out of memory. Echo: `size` pattern bytes
 * (proto_pattern); http: a GET of path with a Host header, and
 * Connection: close if `close`. */
char *proto_requests(int proto, size_t size, const char *host, const char *path, int close, unsigned copies,
                     size_t *one_len);

/* Byte i of an echo message. */
char proto_pattern(size_t i);

#endif

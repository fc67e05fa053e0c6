/* What the files of the HTTP module share: the context, a request being
 * parsed, output segments, the response being built. Not installed. */
#ifndef IOMUX_HTTP_INTERNAL_H
#define IOMUX_HTTP_INTERNAL_H

#include <llhttp.h>

#include "iomux/http.h"

/* One header: offsets into the request's buffer. */
typedef struct iomux__http_hdr {
    uint32_t name, value;
    uint32_t name_len, value_len;
} iomux__http_hdr;

/* Where a request is; REQ_IDLE means llhttp is between messages, so its
 * state need not be kept. */
enum { REQ_IDLE = 0, REQ_HEADERS, REQ_BODY };

/* The header piece being received (llhttp hands spans over in pieces). */
enum { PIECE_NONE = 0, PIECE_FIELD, PIECE_VALUE };

/* Why a callback paused llhttp (HPE_PAUSED): the feed loop checks the line
 * end llhttp just accepted, then finishes the step (parse.c). A pause with
 * PAUSE_NONE means: stop, the connection closes. */
enum { PAUSE_NONE = 0, PAUSE_HEADERS, PAUSE_CHUNK, PAUSE_MESSAGE };

/* A request being parsed: llhttp's state and a copy of the request line's
 * target, the headers and (when a handler is set) the body. The context
 * owns one (the scratch) that every feed starts with; only a request still
 * incomplete at the end of a feed moves into an allocation of its own. */
typedef struct iomux__http_req {
    llhttp_t parser;
    const char *batch_start;   /* the bytes being fed */
    const char *batch_end;
    char *buf;                 /* target, then header names and values, then body */
    uint32_t len, cap;
    iomux__http_hdr *hdrs;
    uint32_t nhdrs, hdrs_cap;
    uint32_t url_len;          /* the target: buf[0, url_len) */
    uint32_t hdr_bytes;        /* header lines so far, as "name: value\r\n" */
    uint32_t body_off;         /* the body: buf[body_off, len) when kept */
    uint64_t body_seen;
    uint16_t status;           /* the error to answer, set before failing a callback */
    uint8_t state;             /* REQ_* */
    uint8_t piece;             /* PIECE_* */
    uint8_t piece_ended;       /* the current value's last piece ended before the batch did */
    uint8_t keep_body;
    uint8_t in_trailers;
    uint8_t have_method;
    char last_byte;            /* the last byte fed before this batch that was not SP or HTAB */
    char tail[4];              /* the last 4 bytes fed before this batch (line-end checks) */
    char version[4];           /* the request line's version digits ("1.1"), as received */
    uint8_t version_len;       /* bytes of it kept (at most 4: 4 means too long) */
    uint8_t version_done;      /* llhttp accepted the version */
    uint8_t pause;             /* PAUSE_*: why on_*_complete paused */
    uint32_t ext_bytes;        /* chunk extensions of the current chunk line */
} iomux__http_req;

/* Input the session holds back while its output is over the limit: bytes
 * [off, len) of data are still to be parsed (session.c). */
typedef struct iomux__http_held {
    size_t off, len;
    char data[];
} iomux__http_held;

/* An output segment: memory (fd < 0) with bytes [off, len) still to go,
 * or bytes [off, len) of a file range starting at foff. */
typedef struct iomux__http_seg {
    struct iomux__http_seg *next;
    int fd;
    uint32_t cap;              /* memory: bytes at data */
    size_t off, len;
    int64_t foff;
    char data[];
} iomux__http_seg;

#define IOMUX__HTTP_SEG_ALLOC 4096 /* a standard memory segment, header included */
#define IOMUX__HTTP_FREE_SEGS 64   /* standard segments the context keeps for reuse */

struct iomux_http_ctx {
    iomux_http_config cfg;     /* defaults filled in; strings point at our copies */
    iomux_allocator alloc;
    int root_fd;               /* O_PATH directory, or -1 */
    llhttp_settings_t settings;
    iomux__http_req scratch;
    iomux__http_seg *free_segs;
    unsigned nfree;
    time_t now;                /* wall clock shown in Date and the log */
    uint64_t tick_ms;          /* the monotonic time of the last refresh */
    int ticked;
    char date[40];             /* "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" */
    size_t date_len;
    char log_time[32];         /* "06/Nov/1994:08:49:37 +0000" */
    char *extra;               /* the handler's extra header lines */
    size_t extra_len, extra_cap;
    char *path;                /* a decoded static path */
    size_t path_cap;
    /* The driver's: the peer's address for the access log. */
    void (*peer_name)(const iomux_http_session *s, char *buf, size_t size);
};

/* Session flags. */
enum {
    SESS_CLOSING = 1u << 0,  /* answer nothing more; close after the output */
    SESS_ABORT = 1u << 1,    /* close now */
    SESS_SHUTDOWN = 1u << 2, /* the next response closes */
    SESS_FULL = 1u << 3      /* parsing stopped: the output is over the limit (session.c) */
};

/* The response being built for one request. */
struct iomux_http_response {
    iomux_http_session *s;
    const char *method;        /* for the log; NULL before the request line */
    const char *target;
    size_t target_len;
    unsigned version;          /* 10, 11 (0: unknown, taken as 11) */
    uint8_t head;              /* HEAD: no body */
    uint8_t keep_alive;
    uint8_t sent;
    uint8_t failed;            /* out of memory while writing it: the stream is broken */
};

/* What a response's header block says. */
typedef struct iomux__http_meta {
    int status;
    const char *ctype;         /* NULL: no Content-Type */
    uint64_t clen;
    int no_clen;               /* 304: no Content-Length */
    time_t mtime;              /* Last-Modified; -1: none */
    const char *location;      /* 301 */
    size_t location_len;
    const char *allow;         /* 405 */
} iomux__http_meta;

/* alloc: the ctx's allocator (cfg.allocator, else the core's malloc one) */
extern const iomux_allocator iomux__default_allocator; /* src/core/alloc.c */
void *iomux__http_malloc(iomux_http_ctx *ctx, size_t size);
void *iomux__http_realloc(iomux_http_ctx *ctx, void *p, size_t size);
void iomux__http_free(iomux_http_ctx *ctx, void *p);

/* out.c */
char *iomux__http_out_reserve(iomux_http_session *s, size_t n);
void iomux__http_out_commit(iomux_http_session *s, size_t n);
int iomux__http_out_write(iomux_http_session *s, const void *data, size_t n);
int iomux__http_out_file(iomux_http_session *s, int fd, int64_t off, size_t len);
void iomux__http_out_clear(iomux_http_session *s);
void iomux__http_segs_free(iomux_http_ctx *ctx);

/* date.c */
void iomux__http_date_format(time_t t, char out[30]);
int iomux__http_date_parse(const char *s, size_t n, time_t *out);
void iomux__http_clf_format(time_t t, char out[32]);

/* mime.c */
const char *iomux__http_mime(const char *path, size_t len);

/* response.c */
const char *iomux__http_reason(int status);
int iomux__http_emit(iomux_http_response *r, const iomux__http_meta *m, const void *body, size_t len);
int iomux__http_emit_file(iomux_http_response *r, const iomux__http_meta *m, int fd, int64_t off);
int iomux__http_error(iomux_http_response *r, int status);

/* req.c */
void iomux__http_req_reset(iomux__http_req *req);
void iomux__http_req_release(iomux_http_ctx *ctx, iomux__http_req *req);
int iomux__http_req_append(iomux_http_ctx *ctx, iomux__http_req *req, const char *at, size_t n);
const iomux__http_hdr *iomux__http_req_find(const iomux__http_req *req, const char *name, size_t from);
void iomux__http_req_view(const iomux__http_req *req, iomux_http_request *view);

/* route.c */
int iomux__http_route(iomux_http_session *s, const iomux_http_request *req, iomux_http_response *r);

/* static.c */
int iomux__http_static(iomux_http_session *s, const iomux_http_request *req, iomux_http_response *r);

/* log.c */
void iomux__http_log(iomux_http_response *r, int status, uint64_t bytes);

/* parse.c */
void iomux__http_settings(llhttp_settings_t *st);
int iomux__http_paused(iomux_http_session *s, iomux__http_req *req, const char *data, const char *pos);
int iomux__http_version_status(const iomux__http_req *req);

/* session.c */
int iomux__http_answer(iomux_http_session *s, iomux__http_req *req);
int iomux__http_interim_continue(iomux_http_session *s);

#endif

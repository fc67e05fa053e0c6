/*
 * iomux/http.h — the embeddable HTTP/1.1 server module.
 *
 * Two layers, usable separately:
 *
 * The core (sans-I/O). An iomux_http_ctx holds what all connections of one
 * thread share: the configuration, the open root directory, the cached Date
 * header, scratch space for parsing. An iomux_http_session is one
 * connection's protocol state; it is small (see the struct) and holds no
 * parser state between requests. Feed it the bytes you read
 * (iomux_http_feed); it parses them (llhttp, lenient flags off) and, for
 * every complete request among them, appends the response to the session's
 * output list: memory chunks and file segments (static files, for
 * sendfile). All responses to one read batch are there together, so they
 * can leave in one write (pipelining). The return value says what to do
 * next: keep reading, close after writing the output, or close at once.
 * You write the output (iomux_http_out_peek) and tell the session what left
 * (iomux_http_out_consume). The core never does I/O on the connection and
 * reads the clock only in iomux_http_ctx_new() and iomux_http_ctx_tick().
 * A context and its sessions belong to one thread; do not feed a session
 * from inside a handler.
 *
 * The driver (iomux_http_server) serves a listening socket on a loop with
 * the core and the connection layer (iomux/net.h): accept, read, write,
 * timeouts, graceful drain.
 *
 * What a request gets
 * -------------------
 * Routing: the user handler (cfg.handler) first; if it declines, the
 * built-in routes (GET/HEAD /plaintext: "Hello, World!" as text/plain;
 * GET/HEAD /json: {"message":"Hello, World!"}; other methods: 405) unless
 * IOMUX_HTTP_NO_BUILTINS; then static files under cfg.root; then 404.
 *
 * Every response has Date and Content-Length (none on 304), Server when
 * cfg.server_name is set, "Connection: close" when the connection closes
 * after it and "Connection: keep-alive" to an HTTP/1.0 client that asked
 * for it. HEAD gets the headers GET would get, with no body. Responses
 * always say HTTP/1.1.
 *
 * Keep-alive: HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with
 * "Connection: keep-alive". Once a response closes the connection, nothing
 * pipelined behind its request is answered.
 *
 * Rejected requests (the connection closes after the response, and nothing
 * pipelined behind is answered):
 *   400  malformed request line or header (llhttp's verdict), a control
 *        byte, HTAB or FF in the request target (RFC 9112 3.2: llhttp lets
 *        HTAB and FF through), a malformed
 *        or missing HTTP version ("GET /" included: no HTTP/0.9), obs-fold
 *        (a header continued on the next line), an empty or non-token
 *        header name, no Host in HTTP/1.1, two Host headers, a Host value
 *        that is not uri-host[:port] (RFC 9112 3.2), both Content-Length
 *        and Transfer-Encoding, a repeated Content-Length (even with the
 *        same value, or as a list "5, 5": llhttp refuses it, and so do we),
 *        Transfer-Encoding whose last coding is not chunked ("gzip",
 *        "chunked, gzip", an empty value; RFC 9112 6.3) or chunked twice,
 *        Transfer-Encoding in HTTP/1.0 (RFC 9112 6.1), a bad chunk size,
 *        chunk data not followed by CRLF, chunk extensions over
 *        cfg.max_header_line bytes on one chunk line (or, with the header
 *        section, over cfg.max_header_bytes), and a header or trailer
 *        section not ended by CRLF CRLF (bare CR or LF there);
 *   413  a body over cfg.max_body (declared by Content-Length: answered
 *        before the body is read; chunked: as soon as it goes over);
 *   414  a request target over cfg.max_uri bytes;
 *   431  a header line (name + ": " + value) over cfg.max_header_line, more
 *        than cfg.max_headers headers, or more than cfg.max_header_bytes
 *        of header lines ("name: value\r\n") in all;
 *   501  Transfer-Encoding with chunked last but another coding before it
 *        ("gzip, chunked": we implement chunked only); CONNECT;
 *   505  a well-formed HTTP version other than 1.0 and 1.1: HTTP/2.0, and
 *        also HTTP/1.2 (a decision: RFC 9110 2.5 would let us serve it as
 *        1.1, llhttp refuses it).
 * Also closing: 408 (a timeout, see the driver) and 500 (a handler that
 * answered nothing). Answered without closing: 404, 405 (with Allow), 304,
 * 301, and whatever a handler sends.
 * The answer does not depend on how the bytes were split between feeds
 * (fuzz-http-parse checks it): a limit crossed before an invalid byte is
 * 414 or 431 either way.
 * Known deviations, inherited from llhttp 8.1 and failing closed (400):
 * whitespace before ';' in a chunk line ("5 ;ext", BWS in RFC 9112
 * 7.1.1) and a ';' after a chunk extension's value ("5;a=b;c=d"). A bare
 * LF ends the request line (RFC 9112 2.2 allows it) but no other line.
 * Bytes over 0x7f in the target are passed on (a path nothing matches).
 * Empty header values are valid (an empty Host too, RFC 9110 7.2).
 * "Connection: close" closes after the response in HTTP/1.0 too, even
 * listed with keep-alive. tests/reliability/conformance/vectors.txt holds
 * the corpus that checks all this.
 * "Expect: 100-continue" on an HTTP/1.1 request with a body gets an
 * interim "100 Continue" first. Upgrade requests are answered as plain
 * HTTP/1.1 (the Upgrade header is ignored, RFC 7230 6.7).
 *
 * Static files: GET and HEAD only (else 405). The path (before '?') is
 * percent-decoded and must not leave the root: a ".." segment, an encoded
 * slash (%2f) or backslash (%5c), a literal backslash, NUL (%00) or bad
 * percent-encoding is refused with 400. Files are opened with openat2()
 * beneath the root (RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS): a symlink
 * that stays inside the root is followed, one that points outside (or is
 * absolute) gives 404, as does anything missing. Only regular files are
 * served (404 otherwise; 403 when the open is refused by permissions). A
 * directory: without a trailing slash, 301 to the same path with one; with
 * it, its index.html if that is a regular file, else 404 (no listings).
 * Last-Modified comes from the mtime; If-Modified-Since (IMF-fixdate, the
 * format of RFC 7231 7.1.1.1; other formats are ignored) no older than it
 * gives 304. Content-Type from a small extension map, else
 * application/octet-stream.
 */
#ifndef IOMUX_HTTP_H
#define IOMUX_HTTP_H

#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "iomux.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct iomux_http_ctx iomux_http_ctx;
typedef struct iomux_http_session iomux_http_session;
typedef struct iomux_http_response iomux_http_response;

/* ---- a request, as a handler sees it ---------------------------------------- */

enum {
    IOMUX_HTTP_OTHER = 0, /* any method without its own constant: see `method` */
    IOMUX_HTTP_GET,
    IOMUX_HTTP_HEAD,
    IOMUX_HTTP_POST,
    IOMUX_HTTP_PUT,
    IOMUX_HTTP_DELETE,
    IOMUX_HTTP_OPTIONS,
    IOMUX_HTTP_PATCH
};

/* Valid only during the handler call. Strings are not NUL-terminated. */
typedef struct iomux_http_request {
    const char *method;      /* "GET", ... (NUL-terminated) */
    int method_id;           /* IOMUX_HTTP_GET, ... */
    unsigned version;        /* 10 or 11 */
    const char *target;      /* as received: "/a%20b?x=1" */
    size_t target_len;
    const char *path;        /* the target up to '?' or '#', not decoded */
    size_t path_len;
    const char *query;       /* after '?', up to '#'; NULL when there is none */
    size_t query_len;
    const char *body;        /* the whole body (a handler is set: bodies are kept) */
    size_t body_len;
    size_t header_count;
    const void *internal;    /* not API */
} iomux_http_request;

/* The value of the first header called `name` (case-insensitive), without
 * surrounding whitespace, its length in *len; NULL if there is none. */
IOMUX_API const char *iomux_http_header(const iomux_http_request *req, const char *name, size_t *len);

/* Header number i (0 <= i < header_count), in the order received. Returns
 * 0, or -EINVAL when i is out of range. */
IOMUX_API int iomux_http_header_at(const iomux_http_request *req, size_t i, const char **name,
                                   size_t *name_len, const char **value, size_t *value_len);

/* ---- answering: handlers ---------------------------------------------------------- */

enum {
    IOMUX_HTTP_HANDLED = 0, /* the handler answered (a handler that answered nothing: 500) */
    IOMUX_HTTP_DECLINED = 1 /* not mine: built-in routes, static files, 404 */
};

/* Called for every complete request, on the thread that feeds the session,
 * before the built-in routes. Answer at once (there is no deferred answer):
 * call iomux_http_response_header() any number of times, then exactly one of
 * iomux_http_respond() or iomux_http_respond_file(). */
typedef int (*iomux_http_handler)(void *data, const iomux_http_request *req, iomux_http_response *res);

/* Adds a header line to the response being built. Do not add Date,
 * Content-Length, Connection or Server: the module writes those. Errors:
 * -EINVAL (CR or LF in name or value, or the response was already sent),
 * -ENOMEM. */
IOMUX_API int iomux_http_response_header(iomux_http_response *res, const char *name, const char *value);

/* Sends the response: status line, headers, then len bytes of body (copied;
 * not sent to HEAD). content_type may be NULL (no Content-Type). Errors:
 * -EINVAL (bad status, or already sent), -ENOMEM. */
IOMUX_API int iomux_http_respond(iomux_http_response *res, int status, const char *content_type,
                                 const void *body, size_t len);

/* The same, with len bytes of an open file from offset as the body (sent
 * with sendfile by the driver). The session owns fd from this call on, even
 * on error, and closes it when the bytes are gone (at once for HEAD). */
IOMUX_API int iomux_http_respond_file(iomux_http_response *res, int status, const char *content_type,
                                      iomux_fd fd, int64_t offset, size_t len);

/* ---- configuration ----------------------------------------------------------------- */

enum {
    IOMUX_HTTP_NO_BUILTINS = 1u << 0 /* no /plaintext and /json routes */
};

/* A zeroed struct means: all defaults. Timeouts are enforced by the driver
 * (iomux_http_server); a program driving sessions itself reads them here. */
typedef struct iomux_http_config {
    const char *root;           /* static files from this directory; NULL: none */
    const char *server_name;    /* the Server header's value; NULL: no Server header */
    iomux_http_handler handler; /* NULL: none */
    void *handler_data;         /* handler's first argument */
    FILE *access_log;           /* one line per response (Common Log Format); NULL: off */
    const iomux_allocator *allocator; /* NULL: malloc; copied */
    unsigned flags;             /* IOMUX_HTTP_NO_BUILTINS */
    size_t max_body;            /* request body bytes; 0: 1 MiB */
    unsigned max_uri;           /* request target bytes; 0: 8192 */
    unsigned max_header_line;   /* bytes of one "name: value"; 0: 8192 */
    unsigned max_headers;       /* header lines; 0: 100 */
    unsigned max_header_bytes;  /* all header lines; 0: 65536 */
    unsigned header_timeout_ms; /* from a request's first byte to its last header; 0: 10000 */
    unsigned idle_timeout_ms;   /* keep-alive wait for the next request, and the
                                   longest pause inside a body; 0: 30000 */
    unsigned send_timeout_ms;   /* longest a write may make no progress; 0: 30000 */
} iomux_http_config;

/* ---- the shared context -------------------------------------------------------------- */

/* Creates a context from cfg (copied, strings too; NULL: defaults). Opens
 * cfg.root. Errors: -ENOMEM, or open()'s error for the root (-ENOENT,
 * -ENOTDIR, ...). One context serves any number of sessions of one thread. */
IOMUX_API int iomux_http_ctx_new(iomux_http_ctx **ctx, const iomux_http_config *cfg);

/* Frees the context; every session using it must be closed first. */
IOMUX_API void iomux_http_ctx_free(iomux_http_ctx *ctx);

/* The configuration in effect, with every default filled in. */
IOMUX_API const iomux_http_config *iomux_http_ctx_config(const iomux_http_ctx *ctx);

/* Sets the wall-clock time (seconds since the epoch) the Date header and
 * the access log show. */
IOMUX_API void iomux_http_ctx_set_time(iomux_http_ctx *ctx, time_t now);

/* Refreshes that time from the system's real-time clock when at least a
 * second has passed since the last refresh. `now_ms` is any monotonic
 * millisecond clock, e.g. iomux_now(loop): call it once per batch, cheaply.
 * Until the first call (or iomux_http_ctx_set_time), Date shows the time
 * the context was created. */
IOMUX_API void iomux_http_ctx_tick(iomux_http_ctx *ctx, uint64_t now_ms);

/* ---- a session: one connection ---------------------------------------------------------- */

/* What to do after a call. */
typedef enum iomux_http_next {
    IOMUX_HTTP_CONTINUE = 0, /* write the output, if any, and keep reading */
    IOMUX_HTTP_CLOSE = 1,    /* write the output, then close (input is ignored from now on) */
    IOMUX_HTTP_ABORT = 2     /* close now, dropping the output (out of memory) */
} iomux_http_next;

/* Where the connection is (for timeouts). */
typedef enum iomux_http_phase {
    IOMUX_HTTP_IDLE = 0,  /* between requests (keep-alive) */
    IOMUX_HTTP_HEADERS,   /* a request has begun; its headers are not all in */
    IOMUX_HTTP_BODY,      /* reading a request's body */
    IOMUX_HTTP_DONE       /* it closes once the output is written */
} iomux_http_phase;

/* Embed it anywhere. Between requests it holds only these bytes and its
 * unwritten output: a request split across reads borrows parser state until
 * its last byte arrives. */
struct iomux_http_session {
    void *data;           /* yours */
    iomux_http_ctx *ctx;  /* set by iomux_http_session_init */
    struct {
        struct iomux__http_req *req;                 /* a request in progress, or NULL */
        struct iomux__http_seg *head, *tail;         /* the output list */
        size_t out_bytes;                            /* bytes in it */
        struct iomux__http_held *held;               /* input not parsed yet, or NULL */
        unsigned flags;
    } internal;
};

/* Prepares a session; cannot fail. */
IOMUX_API void iomux_http_session_init(iomux_http_session *s, iomux_http_ctx *ctx);

/* Frees what the session holds (parser state, output, open files). */
IOMUX_API void iomux_http_session_close(iomux_http_session *s);

/* Parses len bytes and answers every request they complete. Never keeps a
 * pointer into data. */
IOMUX_API iomux_http_next iomux_http_feed(iomux_http_session *s, const void *data, size_t len);

/* Flow control. One feed answers requests only until the session's output
 * holds IOMUX_HTTP_OUT_PAUSE bytes or IOMUX_HTTP_OUT_PAUSE_FILES open files
 * (a client pipelining requests for files and never reading would
 * otherwise make one read open a file per request: thousands). Then
 * parsing stops, and the session copies the rest of the input and holds
 * it: iomux_http_input_held() returns 1. Read nothing more; write the
 * output, and when it is all written call iomux_http_resume(), which parses
 * what was held (and may hold again). Bytes fed while input is held are
 * appended to it. Held input is dropped once the session closes. */
#define IOMUX_HTTP_OUT_PAUSE 65536
#define IOMUX_HTTP_OUT_PAUSE_FILES 16
IOMUX_API int iomux_http_input_held(const iomux_http_session *s);
IOMUX_API iomux_http_next iomux_http_resume(iomux_http_session *s);

/* The peer sent its last byte. A request cut short is dropped unanswered;
 * returns IOMUX_HTTP_CLOSE (ABORT as usual). */
IOMUX_API iomux_http_next iomux_http_feed_eof(iomux_http_session *s);

/* A timeout expired (the driver's header deadline or idle timer): a request
 * that has begun is answered 408; returns IOMUX_HTTP_CLOSE. */
IOMUX_API iomux_http_next iomux_http_expire(iomux_http_session *s);

/* Closes after the next response ("Connection: close"), for a graceful
 * shutdown; a session in IOMUX_HTTP_IDLE with no output may simply be
 * closed. Returns what to do now. */
IOMUX_API iomux_http_next iomux_http_session_shutdown(iomux_http_session *s);

IOMUX_API iomux_http_phase iomux_http_session_phase(const iomux_http_session *s);

/* ---- the output list --------------------------------------------------------------------- */

/* One piece of output: memory (data != NULL) or a file range (fd >= 0). */
typedef struct iomux_http_chunk {
    const void *data;  /* memory: the bytes; NULL for a file */
    iomux_fd fd;       /* file: its fd (the session's: do not close it); else -1 */
    int64_t offset;    /* file: where the range starts */
    size_t len;        /* bytes */
} iomux_http_chunk;

/* Fills up to max chunks with the output after its first `skip` bytes (the
 * bytes a writer already has in flight), in order; returns how many. The
 * memory stays valid, and the fds open, until consumed or the session is
 * closed, even when more output is appended. */
IOMUX_API size_t iomux_http_out_peek(const iomux_http_session *s, size_t skip, iomux_http_chunk *v,
                                     size_t max);

/* n bytes from the front of the output are written: forget them. */
IOMUX_API void iomux_http_out_consume(iomux_http_session *s, size_t n);

/* Bytes in the output list. */
IOMUX_API size_t iomux_http_out_pending(const iomux_http_session *s);

/* For a writer that queues file ranges elsewhere (iomux_conn_sendfile with
 * IOMUX_CONN_FILE_CLOSE): if the output starts with a file chunk, removes
 * it and returns its fd, which is the caller's from now on (to close);
 * else returns -1. */
IOMUX_API iomux_fd iomux_http_out_take_file(iomux_http_session *s);

/* ---- the driver ------------------------------------------------------------------------- */

/*
 * The server serves a listening socket on a loop: an iomux_acceptor (so
 * running out of fds does not spin the loop), and per connection an
 * iomux_conn (pool-buffer reads, one ordered write queue with watermarks:
 * a client that pipelines faster than it reads is stopped being read)
 * around an iomux_http_session. Static files go out with sendfile. All
 * responses to one read leave in one send.
 *
 * Timeouts, on the connection's one timer:
 *   header_timeout_ms  a deadline from the batch that began a request to
 *                      its last header: then 408 and close;
 *   idle_timeout_ms    no byte in or out for this long: between requests,
 *                      close; inside a request, 408 and close;
 *   send_timeout_ms    output waiting and no send completing for this
 *                      long: close at once (reset).
 * A response that closes the connection is followed by a graceful close:
 * the rest of the queue, FIN, then a linger that reads and discards what
 * the client still sends (so an error response is not lost to a reset).
 *
 * Memory per idle keep-alive connection: one allocation of
 * sizeof(iomux_conn) + sizeof(iomux_http_session) + 24 bytes (552 bytes on
 * x86-64, 472 of them the iomux_conn), and no buffer: reads borrow pool
 * buffers, the write queue and parser state exist only while in use.
 */
typedef struct iomux_http_server iomux_http_server;
typedef void (*iomux_http_drain_cb)(iomux_http_server *srv, void *data);

/* Starts serving listening socket lfd (which stays yours: close it after
 * iomux_http_server_free) with a context made from cfg. lfd -1: no
 * acceptor; connections come from iomux_http_server_adopt (e.g. accepted
 * by another thread). Errors: those of iomux_http_ctx_new and
 * iomux_acceptor_start, -ENOMEM. */
IOMUX_API int iomux_http_server_new(iomux_http_server **srv, iomux_loop *loop, iomux_fd lfd,
                                    const iomux_http_config *cfg);

/* Serves connected socket fd (non-blocking) on the server's loop; call on
 * the loop's thread. The server owns fd from this call on, even on error
 * (it is closed). Errors: -ECANCELED (draining), -ENOMEM, those of
 * iomux_conn_start. */
IOMUX_API int iomux_http_server_adopt(iomux_http_server *srv, iomux_fd fd);

/* cb(srv, data) runs after each connection closes (NULL: none), e.g. to
 * count connections handed over with iomux_http_server_adopt. */
IOMUX_API void iomux_http_server_on_close(iomux_http_server *srv, iomux_http_drain_cb cb, void *data);

/* Drains: stops accepting, closes idle keep-alive connections, lets each
 * request in progress get its response (with "Connection: close") and then
 * closes that connection too. After ms milliseconds, whatever is still open
 * is aborted. done(srv, data) runs from the loop once the acceptor has
 * stopped and every connection is closed; the server may be freed from
 * there. Errors: -EALREADY (drained before), -ENOMEM. */
IOMUX_API int iomux_http_server_drain(iomux_http_server *srv, uint64_t ms, iomux_http_drain_cb done,
                                      void *data);

/* Closes every connection at once (reset), e.g. at a second signal. The
 * closes complete from the loop (each runs the on_close callback); a
 * drain's done callback runs after the last one. Does not stop the
 * acceptor: drain for that. */
IOMUX_API void iomux_http_server_abort(iomux_http_server *srv);

/* Frees a server with no connection and no acceptor left (after the drain's
 * done callback, or after the acceptor failed for good and the last
 * connection closed); -EBUSY otherwise. */
IOMUX_API int iomux_http_server_free(iomux_http_server *srv);

/* The context the server's sessions share (e.g. for its configuration). */
IOMUX_API iomux_http_ctx *iomux_http_server_ctx(iomux_http_server *srv);

typedef struct iomux_http_stats {
    uint64_t accepted;  /* connections accepted or adopted */
    uint64_t open;      /* connections open now */
    int accept_error;   /* the -errno that stopped the acceptor for good, or 0 */
} iomux_http_stats;

IOMUX_API void iomux_http_server_stats(const iomux_http_server *srv, iomux_http_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* IOMUX_HTTP_H */

/*
 * iomux/net.h — listening sockets, an acceptor, and a buffered connection,
 * built on the Proactor API of <iomux.h>, so they run unchanged on every
 * backend (select, poll, epoll, uring).
 *
 *   iomux_listen        a non-blocking, close-on-exec listening socket
 *   iomux_acceptor      a multishot accept that survives fd exhaustion
 *   iomux_conn          a connection: pool-buffer reads, an ordered write
 *                       queue with watermarks, idle timeout and deadline,
 *                       half-close, graceful and abortive close
 *
 * The conventions of <iomux.h> hold here too: errors are negative errno
 * values, the library never prints or aborts, the caller allocates every
 * handle (iomux_acceptor, iomux_conn) and embeds it where it likes, and
 * every function taking a handle must be called on its loop's thread.
 * Callbacks never run inside the call that caused them; they run from the
 * loop. The members named `internal` are bookkeeping, not API.
 *
 * A minimal server (error handling left out):
 *
 *     static const iomux_conn_callbacks echo_cbs = {.on_data = echo_data,
 *                                                   .on_close = echo_close};
 *     static void echo_data(iomux_conn *c, const void *p, size_t n) {
 *         iomux_conn_write(c, p, n);          // copied: p is gone after return
 *     }
 *     static void echo_close(iomux_conn *c, int reason) { free(c); }
 *     static void on_accept(iomux_acceptor *a, iomux_fd fd) {
 *         iomux_conn *c = malloc(sizeof *c);
 *         if (fd < 0 || !c || iomux_conn_start(a->loop, c, fd, &echo_cbs, NULL) < 0) ...
 *     }
 *     int lfd = iomux_listen("127.0.0.1", 8080, NULL);
 *     iomux_acceptor acc;
 *     iomux_acceptor_start(loop, &acc, lfd, on_accept);
 */
#ifndef IOMUX_NET_H
#define IOMUX_NET_H

#include <stddef.h>
#include <stdint.h>

#include <iomux.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- listening sockets ------------------------------------------------------ */

typedef struct iomux_listen_opts {
    int backlog;   /* listen(2) backlog; 0: SOMAXCONN */
    int reuseport; /* 1: SO_REUSEPORT, so several sockets (threads, processes)
                      can listen on one port and the kernel spreads connections */
    int v6only;    /* IPv6 hosts: 1: IPv6 only; 0: dual-stack (IPv4 too) */
} iomux_listen_opts;

/* Creates a TCP socket listening on host:port and returns its fd:
 * non-blocking, close-on-exec, SO_REUSEADDR set. host is a numeric address
 * ("127.0.0.1", "0.0.0.0", "::1", "::", "[::1]"); NULL or "" means every
 * IPv4 interface (0.0.0.0). No name lookups: resolve names yourself
 * (getaddrinfo blocks). port 0 picks a free port: see iomux_listen_port().
 * opts NULL (or zeroed): the defaults. The fd is yours: close it when done.
 * Errors: -EINVAL (host not a numeric address, port out of 0..65535,
 * negative backlog), -EADDRINUSE, -EACCES, -EADDRNOTAVAIL, -EAFNOSUPPORT,
 * -EMFILE, ... (the failing call's errno). */
IOMUX_API int iomux_listen(const char *host, int port, const iomux_listen_opts *opts);

/* The local port a socket is bound to (1..65535), or -errno. */
IOMUX_API int iomux_listen_port(iomux_fd fd);

/* ---- the acceptor ------------------------------------------------------------- */

/*
 * An acceptor runs a multishot iomux_accept on a listening socket and calls
 * on_accept(a, fd) once per connection; the fd is non-blocking and
 * close-on-exec, and is yours from then on (give it to iomux_conn_start, or
 * close it).
 *
 * Errors of the accept op:
 * - -ECONNABORTED, -EINTR, -EPROTO, -EPERM (a connection that died or was
 *   refused by a filter before it was accepted): accepting goes on at once.
 * - -EMFILE, -ENFILE (out of fds), -ENOBUFS, -ENOMEM: accepting pauses for
 *   IOMUX_ACCEPT_PAUSE_MS (a timer; the loop does not spin, whatever the
 *   backend) and starts again. If it fails for want of fds again before
 *   any connection got through, the acceptor first tries one accept itself
 *   (the error may be stale: fds may be back; then it goes on at once),
 *   and if that fails too it sheds the backlog with the reserve-fd trick:
 *   it keeps one spare fd open (on /dev/null) for this, closes it, accepts
 *   each pending connection and closes it at once (so its peer sees its
 *   connection closed instead of hanging in the backlog), reopens the
 *   spare, and pauses again. So a short exhaustion (under one pause) loses
 *   no connection, and a long one answers each waiting peer within about
 *   two pauses. `paused` and `shed` count what happened.
 * - anything else (-EBADF, -EINVAL, -ENOTSOCK: the fd is no listening
 *   socket): the acceptor stops and calls on_accept(a, -errno) once; it is
 *   then inactive and its memory is yours.
 *
 * The acceptor owns neither the listening fd (close it after on_stop ran,
 * or after a fatal error) nor the accepted fds (yours from on_accept).
 */
#define IOMUX_ACCEPT_PAUSE_MS 100

typedef struct iomux_acceptor iomux_acceptor;

/* fd >= 0: a new connection. fd < 0: a fatal accept error (see above). */
typedef void (*iomux_accept_cb)(iomux_acceptor *a, iomux_fd fd);
typedef void (*iomux_acceptor_stop_cb)(iomux_acceptor *a);

struct iomux_acceptor {
    void *data;                 /* yours */
    iomux_loop *loop;           /* set by iomux_acceptor_start */
    iomux_fd fd;                /* the listening socket */
    iomux_accept_cb on_accept;  /* yours: may be replaced at any time */
    uint64_t accepted;          /* connections handed to on_accept */
    uint64_t paused;            /* pauses after EMFILE/ENFILE/ENOBUFS/ENOMEM */
    uint64_t shed;              /* connections accepted and closed at once */
    struct {
        iomux_op op;
        iomux_timer pause;
        iomux_acceptor_stop_cb on_stop;
        int spare;              /* the reserve fd, or -1 */
        int state;
        int streak;             /* pauses in a row without an accept */
    } internal;
};

/* Starts accepting on listening socket lfd (made non-blocking if it is
 * not) with an acceptor that is not running (new, or stopped). The
 * acceptor opens its reserve fd here (if that fails, it runs without one
 * and cannot shed; it retries after each pause). `data` is left as it is.
 * Errors: -EINVAL (NULL argument, lfd < 0), -EBUSY (lfd is driven by a
 * watcher), -ENOMEM, or fcntl's error (-EBADF). */
IOMUX_API int iomux_acceptor_start(iomux_loop *loop, iomux_acceptor *a, iomux_fd lfd, iomux_accept_cb on_accept);

/* Stops accepting (to drain a server: connections already accepted go on).
 * on_stop(a) (may be NULL) runs from the loop once the accept op's final
 * callback has run and the pause timer and the reserve fd are gone; from
 * then on the acceptor's memory is yours and lfd may be closed. No
 * on_accept call comes after iomux_acceptor_stop returns.
 * Errors: -EINVAL if the acceptor is not running (never started, stopped
 * already, or ended by a fatal error). */
IOMUX_API int iomux_acceptor_stop(iomux_acceptor *a, iomux_acceptor_stop_cb on_stop);

/* 1 from iomux_acceptor_start until on_stop (or the fatal on_accept) ran. */
IOMUX_API int iomux_acceptor_active(const iomux_acceptor *a);

/* ---- the connection ------------------------------------------------------------ */

/*
 * A buffered connection on a connected, non-blocking stream socket (TCP or
 * AF_UNIX). It takes the fd over: the connection closes it, and on_close
 * tells you when.
 *
 * Reading. A multishot recv into the loop's pool buffers (<iomux.h>): an
 * idle connection holds no read buffer. Each arrival is passed to on_data
 * and the buffer goes back to the pool as soon as on_data returns, so copy
 * what you keep. While reading is stopped (iomux_conn_read_stop, or the
 * high watermark below), on_data is not called. Data the kernel had
 * already received when reading stopped (on uring a multishot recv can post
 * many arrivals before its cancel lands) is copied out of its pool buffers,
 * which go back at once (a stopped connection must not pin the shared
 * pool), and delivered first, in order, when reading resumes (in pieces
 * of at most 4 KiB, each one as if it arrived then).
 *
 * Writing. iomux_conn_write copies the bytes into the connection's write
 * queue (chunks from the loop's allocator, iomux_config.allocator: the
 * first is 256 B and the last grows by doubling up to 64 KiB while no send
 * reads it; small writes are appended to it, so they leave in one send;
 * a failed allocation refuses the write with -ENOMEM, nothing queued). iomux_conn_sendfile queues a file range in the same
 * order. One send op is in flight at a time (at most 64 KiB of queued
 * data, or 1 MiB of a file range, so progress is seen); when it completes
 * the next one gathers everything queued meanwhile. Writes made inside a
 * callback of this connection (on_data, on_drain, on_eof, on_timeout) are
 * not sent before that callback returns: all the responses to one read
 * leave in one send (pipelining). iomux_conn_cork holds sends back across
 * calls too. The queue's memory is freed as it is sent: an idle connection
 * holds no write buffer either.
 *
 * Watermarks. iomux_conn_queued() counts the bytes queued and not yet sent
 * (data and file ranges). When it rises above the high watermark, reading
 * stops (the recv op is cancelled: new data stays in the kernel, and TCP
 * flow control slows the peer). When sends bring it down to the low
 * watermark, reading resumes and on_drain runs. Writes are never refused
 * for being above the mark (iomux_conn_write returns 1 then): stop writing
 * until on_drain if you produce data on your own. Reading in reply to the
 * peer, the queue stays within high watermark + what one on_data call
 * wrote. A side that writes on its own to a peer that echoes (or otherwise
 * answers as it reads) can deadlock on the marks: both queues go high,
 * both stop reading, and neither send can progress. Such a writer should
 * set a high watermark it never reaches and pace itself on
 * iomux_conn_queued() instead (tests/test-netloss.c's conn client does).
 *
 * Timers. One timer per connection (embedded: no allocation, ever) serves
 * both the idle timeout and the deadline. Activity (data received, a send
 * completed) only records the time; the timer is not restarted per event:
 * when it fires early it re-arms for the remaining time. On expiry
 * on_timeout(c, IOMUX_CONN_IDLE or IOMUX_CONN_DEADLINE) runs; without an
 * on_timeout the connection is closed with reason -ETIMEDOUT (gracefully if
 * nothing is queued, abortively otherwise: a peer that stopped reading
 * would hold a flush forever).
 *
 * Closing. iomux_conn_close(c, IOMUX_CONN_GRACEFUL) sends what is queued,
 * then a FIN, then waits (up to IOMUX_CONN_LINGER_MS, reading and
 * discarding) for the peer's FIN before it closes the fd: closing with
 * unread data would send a reset, and the peer could lose the end of the
 * data. iomux_conn_close(c, IOMUX_CONN_ABORT) drops the queue and closes at
 * once with a reset (SO_LINGER 0). Either way the fd is closed with
 * iomux_close (ops in flight end with -ECANCELED), and on_close(c, reason)
 * runs exactly once, after every op of the connection has had its final
 * callback: only from then on may you free the connection's memory (from
 * on_close itself is fine). The idle timeout and the deadline still apply
 * while a graceful close flushes: set one to bound it.
 *
 * Memory: sizeof(iomux_conn) (472 bytes on x86-64) plus, only while data
 * is queued, the queue's chunks, and only while reading is stopped with
 * data that was in flight, a heap copy of that data. An idle connection
 * holds no buffer: no pool buffer, no queue chunk.
 */
#define IOMUX_CONN_HIGH_WATER_DEFAULT 65536
#define IOMUX_CONN_LINGER_MS 2000

enum {
    IOMUX_CONN_GRACEFUL = 0, /* iomux_conn_close: flush, FIN, linger, close */
    IOMUX_CONN_ABORT = 1     /* iomux_conn_close: drop the queue, reset, close */
};

enum {
    IOMUX_CONN_IDLE = 1,    /* on_timeout: nothing received or sent for idle_ms */
    IOMUX_CONN_DEADLINE = 2 /* on_timeout: the deadline passed */
};

enum {
    IOMUX_CONN_FILE_CLOSE = 1u << 0 /* iomux_conn_sendfile: the connection closes
                                       the file once the range is sent or dropped */
};

typedef struct iomux_conn iomux_conn;

typedef struct iomux_conn_callbacks {
    /* Required. len > 0 bytes arrived; data is valid only during the call. */
    void (*on_data)(iomux_conn *c, const void *data, size_t len);
    /* The peer shut its side down (read returned 0): no more on_data. You
     * may still write, then iomux_conn_shutdown or iomux_conn_close. NULL:
     * iomux_conn_close(c, IOMUX_CONN_GRACEFUL). */
    void (*on_eof)(iomux_conn *c);
    /* The queue fell to the low watermark after having exceeded the high
     * one (reading has resumed), or became empty (everything queued was
     * handed to the kernel). Once per such event; NULL: nothing. */
    void (*on_drain)(iomux_conn *c);
    /* The idle timeout (IOMUX_CONN_IDLE; its clock restarts now, so it
     * fires again after another idle period) or the deadline
     * (IOMUX_CONN_DEADLINE; it is cleared) expired. Close, or set a new
     * deadline / idle timeout, or ignore it. NULL: close with -ETIMEDOUT.
     * Not called once iomux_conn_close was called. */
    void (*on_timeout)(iomux_conn *c, int which);
    /* Required. The fd is closed and every op has ended; the connection
     * will never be touched again by the library. reason: 0 after
     * iomux_conn_close or a clean end (peer EOF handled by the default
     * on_eof); -ETIMEDOUT after an unhandled timeout; the -errno of a
     * failed recv or send (-ECONNRESET, -EPIPE, ...) or -ENOMEM. The first
     * of these wins, also when it came during a graceful close (a peer
     * that resets instead of reading to our FIN may have lost data). */
    void (*on_close)(iomux_conn *c, int reason);
} iomux_conn_callbacks;

typedef struct iomux_conn_opts {
    size_t high_water; /* bytes; 0: IOMUX_CONN_HIGH_WATER_DEFAULT */
    size_t low_water;  /* bytes, < high_water; 0: high_water / 4 */
    uint32_t idle_ms;  /* idle timeout; 0: none */
} iomux_conn_opts;

typedef struct iomux__conn_chunk iomux__conn_chunk;
typedef struct iomux__conn_held iomux__conn_held;

struct iomux_conn {
    void *data;                      /* yours */
    const iomux_conn_callbacks *cb;  /* yours: may be replaced at any time; must
                                        stay valid until on_close returns */
    iomux_loop *loop;
    iomux_fd fd;
    struct {
        iomux_op rx, tx;             /* recv; send/sendfile; either may close */
        iomux_timer timer;           /* idle timeout and deadline */
        iomux__conn_chunk *head, *tail; /* the write queue */
        iomux__conn_held *held;      /* data received while stopped (a copy) */
        size_t queued;
        uint64_t last;               /* ms, loop clock: last activity */
        uint64_t deadline;           /* ms, loop clock; 0: none */
        uint32_t high, low, idle_ms;
        uint32_t sending;            /* bytes of the send in flight */
        uint32_t flags;
        uint8_t rxs, txs;            /* what rx / tx are doing */
        uint16_t depth;              /* nesting of this connection's callbacks */
        int reason;
    } internal;
};

/* Starts a connection on connected socket fd (made non-blocking if it is
 * not; TCP_NODELAY is set, since the queue gathers small writes itself) and
 * starts reading. cb must stay valid until on_close returns (a static
 * const struct is typical); on_data and on_close are required. opts NULL:
 * the defaults. On success the fd belongs to the connection. On error
 * nothing was started and the fd is still yours.
 * Errors: -EINVAL (NULL argument or callback, fd < 0, low_water >=
 * high_water, a watermark above 4 GiB), -EBUSY (fd driven by a watcher),
 * -ENOMEM. */
IOMUX_API int iomux_conn_start(iomux_loop *loop, iomux_conn *c, iomux_fd fd, const iomux_conn_callbacks *cb,
                               const iomux_conn_opts *opts);

/* Queues len bytes (copied) after everything queued before. Returns 0, or 1
 * if the queue is now above the high watermark (the bytes were taken; wait
 * for on_drain before producing more), or -EPIPE (after shutdown or close,
 * or a failed connection), -ENOMEM. */
IOMUX_API int iomux_conn_write(iomux_conn *c, const void *data, size_t len);

/* Queues len bytes of file from offset (sendfile; the file is read when its
 * turn comes, not now). With IOMUX_CONN_FILE_CLOSE the connection owns file
 * from a successful call on and closes it (close(2)) once the range is sent
 * or dropped; otherwise keep it open until on_drain reports the queue empty
 * or on_close ran. A file shorter than offset + len fails the connection
 * (-ENODATA). Returns as iomux_conn_write; -EINVAL for file < 0 or a
 * negative offset. */
IOMUX_API int iomux_conn_sendfile(iomux_conn *c, iomux_fd file, int64_t offset, size_t len, unsigned flags);

/* Bytes queued and not yet sent (data and file ranges). */
IOMUX_API size_t iomux_conn_queued(const iomux_conn *c);

/* Holds sends back (writes only queue) until iomux_conn_uncork, which
 * sends everything queued in as few sends as it can. Not nested: one
 * uncork undoes any number of corks. A graceful close uncorks. */
IOMUX_API void iomux_conn_cork(iomux_conn *c);
IOMUX_API void iomux_conn_uncork(iomux_conn *c);

/* Stops / resumes reading (flow control of your own, e.g. while a request
 * is being handled off-loop). After read_stop returns, on_data is not
 * called until read_start (see "Reading" for data already in flight). The
 * watermarks stop and resume reading independently of these. A no-op after
 * the peer's EOF or a close. */
IOMUX_API void iomux_conn_read_stop(iomux_conn *c);
IOMUX_API void iomux_conn_read_start(iomux_conn *c);

/* Sets the idle timeout (0: none), counted from the last activity. Returns
 * 0, or -ENOMEM (timer heap growth). */
IOMUX_API int iomux_conn_set_idle_timeout(iomux_conn *c, uint32_t ms);

/* Sets the deadline: an absolute time in iomux_now()'s clock (ms), e.g.
 * iomux_now(loop) + 10000 for "the request headers must be in within 10
 * s"; 0 clears it. It fires once (then it is cleared). Returns 0, or
 * -ENOMEM (timer heap growth). */
IOMUX_API int iomux_conn_set_deadline(iomux_conn *c, uint64_t at_ms);

/* Half-close: once everything queued has been sent, shuts the write side
 * (FIN; shutdown(SHUT_WR)). Reading goes on; later writes fail (-EPIPE).
 * Returns 0, or -EPIPE if already shut or closing. */
IOMUX_API int iomux_conn_shutdown(iomux_conn *c);

/* Closes the connection: IOMUX_CONN_GRACEFUL or IOMUX_CONN_ABORT (see
 * "Closing"). No on_data, on_eof or on_timeout after this returns; on_drain
 * neither. An abort after a graceful close escalates it; any other second
 * call is a no-op. Returns 0, or -EINVAL for an unknown `how`. Do not call
 * it (or any function here) once on_close has begun. */
IOMUX_API int iomux_conn_close(iomux_conn *c, int how);

/* 1 from iomux_conn_start until on_close begins. */
IOMUX_API int iomux_conn_active(const iomux_conn *c);

#ifdef __cplusplus
}
#endif

#endif /* IOMUX_NET_H */

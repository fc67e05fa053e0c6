/* The connection's internals, shared by conn.c (life cycle, reading,
 * closing), conn_tx.c (the write queue) and conn_timer.c (idle timeout and
 * deadline). Not installed. */
#ifndef IOMUX_NET_CONN_H
#define IOMUX_NET_CONN_H

#include "iomux/net.h"
/* The loop's allocator (iomux__malloc/realloc/free): the write queue and the
 * held data come from iomux_config.allocator like the loop's own tables, so
 * an allocator that fails reaches them too (tests/test-faults.c). */
#include "../core/loop.h"
/* Sockets and their calls on POSIX and Winsock (sys.h). */
#include "../core/sys.h"

#ifdef _WIN32
#ifndef SHUT_WR
#define SHUT_WR SD_SEND
#endif
#endif

/* Makes a socket we were given non-blocking. POSIX: O_NONBLOCK only, so
 * the caller's close-on-exec choice stays theirs. Windows cannot tell
 * whether a socket blocks: set it. 0 or -errno. */
static inline int iomux__net_nonblock(iomux_fd fd) {
#ifdef _WIN32
    return iomux__set_nonblock(fd);
#else
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return -errno;
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -errno;
    return 0;
#endif
}

/* Closes a file of the write queue: a C runtime fd on Windows, where
 * close() would not do for a socket and closesocket not for a file. */
static inline void iomux__net_file_close(int fd) {
#ifdef _WIN32
    _close(fd);
#else
    close(fd);
#endif
}

/* One entry of the write queue: copied bytes (file < 0) or a file range. */
struct iomux__conn_chunk {
    iomux__conn_chunk *next;
    size_t len;      /* bytes held (data) or the range's length (file) */
    size_t off;      /* bytes of it sent */
    size_t cap;      /* data: room in data[] */
    int64_t foff;    /* file: offset of the range */
    int file;        /* -1 for data */
    unsigned fflags; /* file: IOMUX_CONN_FILE_CLOSE */
    char data[];
};

/* Bytes that arrived while reading was stopped, copied out of their pool
 * buffers; delivered first when reading resumes. */
struct iomux__conn_held {
    size_t off, len, cap; /* delivered, held, room */
    char data[];
};

enum { /* c->internal.flags */
    CF_ACTIVE = 1u << 0,     /* started, on_close not yet begun */
    CF_USER_STOP = 1u << 1,  /* iomux_conn_read_stop */
    CF_THROTTLE = 1u << 2,   /* the queue went above the high watermark */
    CF_EOF = 1u << 3,        /* the recv ended with 0 */
    CF_EOF_TOLD = 1u << 4,   /* ... and on_eof (or the default) ran */
    CF_CORK = 1u << 5,
    CF_SHUT_REQ = 1u << 6,   /* shut the write side once flushed */
    CF_SHUT_DONE = 1u << 7,
    CF_CLOSING = 1u << 8,    /* graceful close: flush, FIN, linger */
    CF_LINGER = 1u << 9,     /* flushed and FIN sent: waiting for the peer's */
    CF_CLOSE_FD = 1u << 10,  /* the fd is to be closed now: no more I/O */
    CF_FD_CLOSED = 1u << 11, /* its iomux_close has been started */
    CF_CLOSE_DONE = 1u << 12,/* ... and its callback ran */
    CF_RX_CANCEL = 1u << 13, /* the recv was asked to stop */
    CF_TX_CANCEL = 1u << 14  /* the send was asked to stop */
};

enum { RX_IDLE = 0, RX_RECV, RX_KICK, RX_CLOSE }; /* c->internal.rxs */
enum { TX_IDLE = 0, TX_SEND, TX_CLOSE };          /* c->internal.txs */

/* The user's callbacks run between enter and leave; writes made meanwhile
 * are sent when the outermost callback returns (leave pumps the queue). */
void iomux__conn_enter(iomux_conn *c);
void iomux__conn_leave(iomux_conn *c);

/* conn.c */
void iomux__conn_fail(iomux_conn *c, int err);   /* reset and close, with reason err */
void iomux__conn_close_fd(iomux_conn *c);        /* close the fd now (no reset) */
void iomux__conn_rx_update(iomux_conn *c);       /* start or stop the recv as wanted */
void iomux__conn_maybe_finish(iomux_conn *c);    /* on_close if all is done: last use of c */

/* conn_tx.c */
void iomux__conn_pump(iomux_conn *c);            /* next send, shutdown, linger */
void iomux__conn_queue_free(iomux_conn *c);

/* conn_timer.c */
int iomux__conn_timer_arm(iomux_conn *c);
void iomux__conn_timer_cb(iomux_timer *t);

#endif

/* The connection's write queue: a FIFO of heap chunks (copied bytes) and
 * file ranges, sent in order by one op at a time. Small writes are appended
 * to the last chunk, so whatever was queued while a send was in flight
 * leaves in the next one; a send takes at most SEND_MAX bytes (FILE_MAX of
 * a file) so that progress, which the idle timeout and the watermarks
 * watch, is seen during a long transfer.
 *
 * A chunk starts small (CHUNK_FIRST, or the write's size) and the last one
 * grows by doubling, up to SEND_MAX, while no send reads it; then a new one
 * starts (growing one chunk without end made each write copy it whole). A fixed 16 KiB chunk per write
 * made a 64-byte echo cost a fresh 16 KiB of heap: with a thousand
 * connections glibc kept growing and trimming the top of the heap, and
 * the page faults took a third of the server's CPU. Small chunks come from
 * malloc's per-size caches and touch no new page. Chunks come from the
 * loop's allocator (iomux_config.allocator; malloc by default): a failed
 * allocation refuses the write (-ENOMEM, nothing queued) and a failed
 * growth falls back to a new chunk. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"

#define CHUNK_FIRST 256
#define SEND_MAX 65536
#define FILE_MAX (1u << 20)

static void chunk_free(iomux_conn *c, iomux__conn_chunk *ch) {
    if (ch->file >= 0 && (ch->fflags & IOMUX_CONN_FILE_CLOSE)) iomux__net_file_close(ch->file);
    iomux__free(c->loop, ch);
}

static void push(iomux_conn *c, iomux__conn_chunk *ch) {
    ch->next = NULL;
    if (c->internal.tail) c->internal.tail->next = ch;
    else c->internal.head = ch;
    c->internal.tail = ch;
}

static void pop(iomux_conn *c) {
    iomux__conn_chunk *ch = c->internal.head;
    c->internal.head = ch->next;
    if (!c->internal.head) c->internal.tail = NULL;
    chunk_free(c, ch);
}

void iomux__conn_queue_free(iomux_conn *c) {
    while (c->internal.head) pop(c);
    c->internal.queued = 0;
}

static iomux__conn_chunk *chunk_new(iomux_conn *c, size_t cap, int file) {
    iomux__conn_chunk *ch = iomux__malloc(c->loop, sizeof(*ch) + cap);
    if (!ch) return NULL;
    memset(ch, 0, sizeof(*ch));
    ch->cap = cap;
    ch->file = file;
    return ch;
}

/* ---- sending ---------------------------------------------------------------------- */

/* One send completed in full: advance the queue; 1 if on_drain is due. */
static int progress(iomux_conn *c) {
    iomux__conn_chunk *ch = c->internal.head;
    int drained;
    ch->off += c->internal.sending;
    c->internal.queued -= c->internal.sending;
    c->internal.sending = 0;
    if (ch->off == ch->len) pop(c);
    c->internal.last = iomux_now(c->loop); /* activity: the peer is reading */
    drained = c->internal.queued == 0;
    if ((c->internal.flags & CF_THROTTLE) && c->internal.queued <= c->internal.low) {
        c->internal.flags &= ~(uint32_t)CF_THROTTLE;
        drained = 1;
        iomux__conn_rx_update(c);
    }
    return drained;
}

static void tx_cb(iomux_op *op) {
    iomux_conn *c = op->data;
    int drained = 0;
    c->internal.txs = TX_IDLE;
    c->internal.flags &= ~(uint32_t)CF_TX_CANCEL;
    if (op->result >= 0) drained = progress(c);
    else if (op->result != -ECANCELED) iomux__conn_fail(c, (int)op->result);
    if (c->internal.flags & CF_CLOSE_FD) {
        iomux__conn_close_fd(c); /* this op is free now: it may do the close */
    } else {
        iomux__conn_pump(c);
        if (drained && !(c->internal.flags & (CF_CLOSING | CF_CLOSE_FD)) && c->cb->on_drain) {
            iomux__conn_enter(c);
            c->cb->on_drain(c);
            iomux__conn_leave(c);
        }
    }
    iomux__conn_maybe_finish(c);
}

static void send_next(iomux_conn *c) {
    iomux__conn_chunk *ch = c->internal.head;
    size_t n = ch->len - ch->off;
    int rc;
    c->internal.tx.data = c;
    if (ch->file < 0) {
        if (n > SEND_MAX) n = SEND_MAX;
        rc = iomux_send(c->loop, &c->internal.tx, c->fd, ch->data + ch->off, n, tx_cb);
    } else {
        if (n > FILE_MAX) n = FILE_MAX;
        rc = iomux_sendfile(c->loop, &c->internal.tx, c->fd, ch->file, ch->foff + (int64_t)ch->off, n, tx_cb);
    }
    if (rc < 0) {
        iomux__conn_fail(c, rc);
        return;
    }
    c->internal.txs = TX_SEND;
    c->internal.sending = (uint32_t)n;
}

/* Flushed and FIN sent: wait (bounded) for the peer's FIN before closing,
 * reading and discarding meanwhile, so that close(2) finds no unread data
 * and sends no reset. */
static void linger(iomux_conn *c) {
    uint64_t end = iomux_now(c->loop) + IOMUX_CONN_LINGER_MS;
    c->internal.flags |= CF_LINGER;
    if (c->internal.flags & CF_EOF) {
        iomux__conn_close_fd(c);
        return;
    }
    if (!c->internal.deadline || c->internal.deadline > end) c->internal.deadline = end;
    if (iomux__conn_timer_arm(c) < 0) iomux__conn_close_fd(c);
}

void iomux__conn_pump(iomux_conn *c) {
    uint32_t f = c->internal.flags;
    if (c->internal.depth || c->internal.txs != TX_IDLE || (f & CF_CLOSE_FD)) return;
    if (c->internal.head) {
        if (!(f & CF_CORK)) send_next(c);
        return;
    }
    if ((f & (CF_SHUT_REQ | CF_CLOSING)) && !(f & CF_SHUT_DONE)) {
        c->internal.flags |= CF_SHUT_DONE;
        /* ENOTCONN: the peer is gone; the recv will say so */
        if (shutdown(c->fd, SHUT_WR) < 0 && (f & CF_CLOSING)) {
            iomux__conn_close_fd(c);
            return;
        }
    }
    if ((f & CF_CLOSING) && !(f & CF_LINGER)) linger(c);
}

/* ---- the API ---------------------------------------------------------------------- */

static int writable(const iomux_conn *c) {
    return (c->internal.flags & (CF_ACTIVE | CF_SHUT_REQ | CF_CLOSING | CF_CLOSE_FD)) == CF_ACTIVE;
}

static int queued_grew(iomux_conn *c) {
    if (c->internal.queued > c->internal.high && !(c->internal.flags & CF_THROTTLE)) {
        c->internal.flags |= CF_THROTTLE; /* backpressure: stop reading */
        iomux__conn_rx_update(c);
    }
    iomux__conn_pump(c);
    return c->internal.queued > c->internal.high;
}

/* The last chunk, grown to hold `more` bytes after those it has; NULL if
 * it may not move (a send is reading it, or it is a file range) or memory
 * is short. */
static iomux__conn_chunk *grow_tail(iomux_conn *c, size_t more) {
    iomux__conn_chunk *t = c->internal.tail, *nt, **link = &c->internal.head;
    size_t cap;
    if (!t || t->file >= 0 || t->cap >= SEND_MAX || (t == c->internal.head && c->internal.txs != TX_IDLE))
        return NULL;
    cap = t->cap * 2 < SEND_MAX ? t->cap * 2 : SEND_MAX;
    if (cap < t->len + more) cap = t->len + more;
    while (*link != t) link = &(*link)->next; /* a short walk: chunks double */
    nt = iomux__realloc(c->loop, t, sizeof(*nt) + cap);
    if (!nt) return NULL;
    nt->cap = cap;
    *link = c->internal.tail = nt;
    return nt;
}

int iomux_conn_write(iomux_conn *c, const void *data, size_t len) {
    iomux__conn_chunk *t = c->internal.tail, *ch = NULL;
    size_t take = t && t->file < 0 ? t->cap - t->len : 0;
    if (!writable(c)) return -EPIPE;
    if (!data && len) return -EINVAL;
    if (take < len && (ch = grow_tail(c, len))) {
        t = ch, ch = NULL;
        take = len;
    }
    if (take > len) take = len;
    if (len > take) { /* allocate first: on failure nothing is queued */
        ch = chunk_new(c, len - take > CHUNK_FIRST ? len - take : CHUNK_FIRST, -1);
        if (!ch) return -ENOMEM;
    }
    if (take) {
        memcpy(t->data + t->len, data, take);
        t->len += take;
    }
    if (ch) {
        memcpy(ch->data, (const char *)data + take, len - take);
        ch->len = len - take;
        push(c, ch);
    }
    c->internal.queued += len;
    return queued_grew(c);
}

int iomux_conn_sendfile(iomux_conn *c, iomux_fd file, int64_t offset, size_t len, unsigned flags) {
    iomux__conn_chunk *ch;
    if (file < 0 || offset < 0 || (flags & ~(unsigned)IOMUX_CONN_FILE_CLOSE)) return -EINVAL;
    if (!writable(c)) return -EPIPE;
    if (len == 0) { /* nothing to send: the range is done at once */
        if (flags & IOMUX_CONN_FILE_CLOSE) iomux__net_file_close(file);
        return c->internal.queued > c->internal.high;
    }
    ch = chunk_new(c, 0, file);
    if (!ch) return -ENOMEM;
    ch->len = len;
    ch->foff = offset;
    ch->fflags = flags;
    push(c, ch);
    c->internal.queued += len;
    return queued_grew(c);
}

size_t iomux_conn_queued(const iomux_conn *c) {
    return c->internal.queued;
}

void iomux_conn_cork(iomux_conn *c) {
    c->internal.flags |= CF_CORK;
}

void iomux_conn_uncork(iomux_conn *c) {
    c->internal.flags &= ~(uint32_t)CF_CORK;
    iomux__conn_pump(c);
}

int iomux_conn_shutdown(iomux_conn *c) {
    if (!writable(c)) return -EPIPE;
    c->internal.flags |= CF_SHUT_REQ;
    iomux__conn_pump(c);
    return 0;
}

/* iomux-peer-uring: an echo server on raw liburing, the least a completion
 * loop can do, so it is the ceiling iomux-echo's uring model is measured
 * against.
 *
 * One multishot accept; per connection one multishot recv that picks its
 * buffers from a provided-buffer ring (the kernel chooses the buffer when
 * data arrives, so an idle connection holds none), and a send of each
 * received buffer straight from where it landed: no copy. A buffer goes
 * back to the ring when its send completes. Sends of one connection go
 * one at a time, in order (a queue of buffer ids, linked through an array
 * indexed by id); a short send is resubmitted for the rest. A connection
 * that does not read its echo may hold MAXQ buffers: then its recv is
 * cancelled (paused) until half of them are sent. When the ring runs dry
 * the recv ends with ENOBUFS; the connection waits on a list and is
 * re-armed once buffers come back. A multishot op that ends without
 * IORING_CQE_F_MORE (accept, recv) is re-armed. Memory is bounded by the
 * ring (NBUFS x BUFSZ): some NBUFS / MAXQ clients that never read their
 * echo can hold all of it, and the others then wait until they read or go.
 *
 * Each iteration is one io_uring_submit_and_wait, then every CQE there is
 * (io_uring_for_each_cqe, one io_uring_cq_advance), then the returned
 * buffers are published in one store. SIGINT/SIGTERM: a signalfd polled
 * through the ring (IORING_OP_POLL_ADD) rather than a flag checked after a
 * wait with a timeout, so the loop has no periodic wake-ups to pay for and
 * exits as soon as the signal comes.
 *
 * liburing 2.3 (Debian) has no io_uring_setup_buf_ring: the buffer ring is
 * mmap()ed here and registered with io_uring_register_buf_ring. */
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "peer.h"

#define SQ_ENTRIES 4096
#define CQ_ENTRIES 16384
#define NBUFS 512     /* in the ring: a power of two (as iomux-echo's pool) */
#define BUFSZ 16384   /* bytes per buffer (as iomux-echo's pool) */
#define BGID 1
#define MAXQ 8        /* buffers one connection may hold before its recv pauses */
#define NONE 0xffff   /* no buffer id */

/* What a CQE is for: the low bits of its user_data (conns are 16-aligned). */
enum { T_ACCEPT, T_RECV, T_SEND, T_SIGNAL, T_CANCEL, T_MASK = 7 };

typedef struct conn {
    int fd;
    uint16_t head, tail; /* queued buffers, oldest first (NONE: empty) */
    unsigned queued;     /* how many */
    unsigned off;        /* bytes of head already sent */
    uint8_t recv_armed, sending, paused, eof, closing;
    struct conn *starved_prev, *starved_next; /* waiting for buffers (ENOBUFS) */
    uint8_t starved;
    struct conn *all_prev, *all_next; /* every live connection */
} conn;

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static char *bufs;
static uint16_t next_bid[NBUFS];  /* the per-connection queues' links */
static unsigned buf_len[NBUFS];   /* bytes received into each buffer */
static unsigned returned;         /* buffers added to the ring, not yet published */
static unsigned returned_since;   /* buffers given back since the last re-arm of the starved */
static conn *starved_head;
static conn *all_head; /* only the kernel's user_data would point to a connection else */
static int lfd, sigfd;

static void fail(const char *what, int err) {
    fprintf(stderr, "iomux-peer-uring: %s: %s\n", what, strerror(err));
    exit(1);
}

/* An SQE; when the SQ is full, what is there is submitted first. */
static struct io_uring_sqe *sqe_get(void) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    while (!sqe) {
        io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
    }
    return sqe;
}

static void set_data(struct io_uring_sqe *sqe, conn *c, unsigned tag) {
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | tag);
}

/* ---- the buffer ring ------------------------------------------------------------------ */

static void ring_buffers_init(void) {
    size_t ring_bytes = NBUFS * sizeof(struct io_uring_buf);
    struct io_uring_buf_reg reg;
    int rc, i;
    br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    bufs = mmap(NULL, (size_t)NBUFS * BUFSZ, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (br == MAP_FAILED || bufs == MAP_FAILED) fail("mmap", errno);
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)br;
    reg.ring_entries = NBUFS;
    reg.bgid = BGID;
    if ((rc = io_uring_register_buf_ring(&ring, &reg, 0)) < 0) fail("io_uring_register_buf_ring", -rc);
    io_uring_buf_ring_init(br);
    for (i = 0; i < NBUFS; i++)
        io_uring_buf_ring_add(br, bufs + (size_t)i * BUFSZ, BUFSZ, (unsigned short)i, io_uring_buf_ring_mask(NBUFS), i);
    io_uring_buf_ring_advance(br, NBUFS);
}

/* Gives a buffer back; the kernel sees it at the next buffers_publish(). */
static void buffer_put(uint16_t bid) {
    io_uring_buf_ring_add(br, bufs + (size_t)bid * BUFSZ, BUFSZ, bid, io_uring_buf_ring_mask(NBUFS), (int)returned);
    returned++;
    returned_since++;
}

static void buffers_publish(void) {
    if (returned) io_uring_buf_ring_advance(br, (int)returned);
    returned = 0;
}

/* ---- a connection's queue -------------------------------------------------------------- */

static void queue_push(conn *c, uint16_t bid, unsigned len) {
    buf_len[bid] = len;
    next_bid[bid] = NONE;
    if (c->head == NONE) c->head = bid;
    else next_bid[c->tail] = bid;
    c->tail = bid;
    c->queued++;
}

static void queue_pop(conn *c) {
    uint16_t bid = c->head;
    c->head = next_bid[bid];
    if (c->head == NONE) c->tail = NONE;
    c->queued--;
    c->off = 0;
    buffer_put(bid);
}

/* ---- submissions ----------------------------------------------------------------------- */

static void arm_accept(void) {
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
    set_data(sqe, NULL, T_ACCEPT);
}

static void arm_signal(void) {
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_poll_add(sqe, sigfd, POLLIN);
    set_data(sqe, NULL, T_SIGNAL);
}

static void arm_recv(conn *c) {
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    set_data(sqe, c, T_RECV);
    c->recv_armed = 1;
}

/* Sends the rest of the oldest queued buffer. */
static void send_head(conn *c) {
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_send(sqe, c->fd, bufs + (size_t)c->head * BUFSZ + c->off, buf_len[c->head] - c->off,
                       MSG_NOSIGNAL);
    set_data(sqe, c, T_SEND);
    c->sending = 1;
}

/* Cancels the multishot recv (pausing) or every op on the fd (closing). */
static void cancel(conn *c, int all) {
    struct io_uring_sqe *sqe = sqe_get();
    if (all) io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
    else io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)c | T_RECV, 0);
    set_data(sqe, NULL, T_CANCEL);
}

/* ---- connections ----------------------------------------------------------------------- */

static void starved_remove(conn *c) {
    if (!c->starved) return;
    if (c->starved_prev) c->starved_prev->starved_next = c->starved_next;
    else starved_head = c->starved_next;
    if (c->starved_next) c->starved_next->starved_prev = c->starved_prev;
    c->starved = 0;
}

static void starved_add(conn *c) {
    c->starved_prev = NULL;
    c->starved_next = starved_head;
    if (starved_head) starved_head->starved_prev = c;
    starved_head = c;
    c->starved = 1;
}

/* After each batch: if buffers came back in it, the connections that ran
 * dry receive again (if the ring is empty again they return to the list;
 * no re-arm without a returned buffer, so no spin). */
static void starved_rearm(void) {
    while (returned_since && starved_head) {
        conn *c = starved_head;
        starved_remove(c);
        if (!c->closing && !c->paused && !c->recv_armed) arm_recv(c);
    }
    returned_since = 0;
}

static void all_add(conn *c) {
    c->all_next = all_head;
    if (all_head) all_head->all_prev = c;
    all_head = c;
}

static void all_remove(conn *c) {
    if (c->all_prev) c->all_prev->all_next = c->all_next;
    else all_head = c->all_next;
    if (c->all_next) c->all_next->all_prev = c->all_prev;
}

/* Frees a closing connection once no op of it is in flight. */
static void conn_maybe_free(conn *c) {
    if (!c->closing || c->recv_armed || c->sending) return;
    while (c->head != NONE) queue_pop(c);
    starved_remove(c);
    all_remove(c);
    close(c->fd);
    free(c);
}

static void conn_close(conn *c) {
    if (c->closing) return;
    c->closing = 1;
    if (c->recv_armed || c->sending) cancel(c, 1);
}

static void on_accept(const struct io_uring_cqe *cqe) {
    conn *c;
    if (!(cqe->flags & IORING_CQE_F_MORE)) arm_accept();
    if (cqe->res < 0) {
        if (cqe->res == -EMFILE || cqe->res == -ENFILE) peer_shed(lfd);
        return;
    }
    if (!(c = calloc(1, sizeof(*c)))) {
        close(cqe->res);
        return;
    }
    c->fd = cqe->res;
    c->head = c->tail = NONE;
    all_add(c);
    peer_nodelay(c->fd);
    arm_recv(c);
}

/* The multishot recv is over: re-arm, wait for buffers, or close. */
static void recv_ended(conn *c, int res) {
    c->recv_armed = 0;
    if (c->closing) return;
    if (res == 0) {
        c->eof = 1; /* the client is done sending: close once its echo is out */
        if (!c->sending) conn_close(c);
    } else if (res == -ENOBUFS) {
        if (!c->paused) starved_add(c);
    } else if (res < 0 && res != -ECANCELED) {
        conn_close(c); /* ECONNRESET and the like */
    } else if (!c->paused) {
        arm_recv(c);
    }
}

static void on_recv(conn *c, const struct io_uring_cqe *cqe) {
    if (cqe->res > 0) {
        uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        if (c->closing) {
            buffer_put(bid);
        } else {
            queue_push(c, bid, (unsigned)cqe->res);
            if (!c->sending) send_head(c);
            if (c->queued >= MAXQ && (cqe->flags & IORING_CQE_F_MORE) && !c->paused) {
                c->paused = 1; /* the client does not read its echo: stop taking buffers */
                cancel(c, 0);
            }
        }
    }
    if (!(cqe->flags & IORING_CQE_F_MORE)) recv_ended(c, cqe->res);
    conn_maybe_free(c);
}

static void on_send(conn *c, int res) {
    c->sending = 0;
    if (c->closing) {
        conn_maybe_free(c);
        return;
    }
    if (res <= 0) { /* EPIPE, ECONNRESET and the like (0: cannot progress) */
        conn_close(c);
        conn_maybe_free(c);
        return;
    }
    c->off += (unsigned)res;
    if (c->off < buf_len[c->head]) { /* a short send: the rest, before anything else */
        send_head(c);
        return;
    }
    queue_pop(c);
    if (c->paused && c->queued <= MAXQ / 2) {
        c->paused = 0;
        if (!c->recv_armed) arm_recv(c);
    }
    if (c->head != NONE) send_head(c);
    else if (c->eof) conn_close(c);
    conn_maybe_free(c);
}

/* ---- the loop ------------------------------------------------------------------------- */

/* Returns 1 when a signal says stop. */
static int dispatch(const struct io_uring_cqe *cqe) {
    conn *c = (conn *)(uintptr_t)(cqe->user_data & ~(uint64_t)T_MASK);
    switch (cqe->user_data & T_MASK) {
    case T_ACCEPT: on_accept(cqe); break;
    case T_RECV: on_recv(c, cqe); break;
    case T_SEND: on_send(c, cqe->res); break;
    case T_SIGNAL: return 1;
    default: break; /* T_CANCEL: its target reports for itself */
    }
    return 0;
}

/* The best setup the kernel takes: SINGLE_ISSUER + DEFER_TASKRUN (6.1)
 * run completions only when we wait; COOP_TASKRUN (5.19) otherwise. The
 * same choice iomux's uring backend makes, so the two are comparable. */
static void ring_init(void) {
    static const unsigned tries[] = {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
                                     IORING_SETUP_COOP_TASKRUN, 0};
    struct io_uring_params p;
    size_t i;
    int rc = -EINVAL;
    for (i = 0; i < sizeof(tries) / sizeof(tries[0]) && rc == -EINVAL; i++) {
        memset(&p, 0, sizeof(p));
        p.flags = tries[i] | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE;
        p.cq_entries = CQ_ENTRIES;
        rc = io_uring_queue_init_params(SQ_ENTRIES, &ring, &p);
    }
    if (rc < 0) fail("cannot set up io_uring", -rc);
}

int main(int argc, char **argv) {
    peer_opts o;
    peer_init(&o, "iomux-peer-uring", "raw-uring", argc, argv);
    lfd = peer_listen(&o);
    sigfd = peer_signalfd();
    ring_init();
    ring_buffers_init();
    arm_accept();
    arm_signal();
    peer_ready(&o, lfd);
    for (;;) {
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        int rc = io_uring_submit_and_wait(&ring, 1), stop = 0;
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) fail("io_uring_submit_and_wait", -rc);
        io_uring_for_each_cqe(&ring, head, cqe) {
            n++;
            if (dispatch(cqe)) stop = 1;
        }
        io_uring_cq_advance(&ring, n);
        if (stop) break;
        buffers_publish();
        starved_rearm();
    }
    close(lfd); /* SIGINT or SIGTERM: no drain, just go */
    return 0;
}

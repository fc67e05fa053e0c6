/* The loop contract fuzzer (README "Reliability"): the input is a small
 * program of loop operations, run once on EVERY backend this build and
 * machine have (select, poll, epoll, uring), each time on fresh sockets and a
 * fresh loop; the run checks the promises of include/iomux.h as it goes and
 * abort()s on a broken one, and the backends' observable traces must agree.
 *
 * Input: byte 0 configures (channel count and kinds, pool size); then every
 * 4 bytes are one step (opcode, 3 arguments); at most MAX_STEPS steps.
 * Channels are AF_UNIX socketpairs or TCP loopback pairs; each of the two
 * ends is driven either by ops (Proactor) or by a watcher (Reactor).
 * Steps: send (0, 1, 200, 3000, 40000 or 300000 bytes), recv (own buffer,
 * pool buffer, pool buffer held for a while, multishot, invalid arguments),
 * cancel of a live op, iomux_close, shutdown(SHUT_WR), timers (start/stop,
 * 0-2 ms or 60 s, repeating, a callback that stops itself or posts),
 * iomux_timeout ops, iomux_post from the loop thread and from helper threads,
 * watchers (start/update/stop, IN/OUT, ET, ONESHOT), releasing held pool
 * buffers, and running the loop (NOWAIT, ONCE, until settled). Real waiting
 * is bounded per run (WAIT_BUDGET_MS), so an input takes milliseconds.
 * After the program, a deterministic epilogue lets every timer that is due
 * soon fire, stops the rest, then drains every channel to EOF (each end
 * shuts its write side once its sends are done, and reads until EOF), closes
 * every end with iomux_close and frees the loop.
 *
 * Checked on every backend, as it happens (BUG -> abort()):
 * - every op's final callback runs exactly once, never inside a start call,
 *   with iomux_op_active() 0 and iomux_cancel() -EINVAL in it; MORE
 *   callbacks only for multishot ops, before the final one, with data;
 *   a refused start never calls back (its op is freed at once: ASan);
 * - ops on one fd complete in start order, per direction (recv / send),
 *   cancelled ones too (iomux.h: "This holds for cancelled ops too");
 * - a send on an undisturbed channel (no close or shutdown of either end
 *   before its callback) and not cancelled completes with its full length;
 *   such a recv never fails; iomux_close's result is 0 and the fd is closed;
 *   a timeout op completes with 0, not before its time, unless cancelled;
 * - the bytes each end receives (ops and watcher reads alike) are exactly
 *   the sender's sends in order: every send that completed fully is there
 *   whole, a cancelled or failed send may have sent a prefix, nothing else
 *   (and when no close or error cut the channel, nothing is missing: the
 *   epilogue reads to EOF);
 * - watchers: no callback after stop (nor after a ONESHOT report, until
 *   re-armed), revents only of the interest (or ERR/HUP), ONESHOT inactive
 *   in its callback; starting an op on a watched fd is -EBUSY and a watcher
 *   on an fd with queued ops is -EBUSY or 0 (0 when no op is in flight);
 * - timers: no callback after stop, a one-shot fires once, never earlier
 *   than its timeout after the cached time at start, and in deadline order:
 *   a one-shot timer (or timeout op) started before another with a timeout
 *   no longer fires first; every short one-shot fires in the epilogue;
 * - posts: every post runs exactly once, in order per posting thread;
 * - at the end: no callback in idle iterations, iomux_loop_alive() 0,
 *   iomux_loop_free() 0, no leak (LeakSanitizer).
 *
 * Compared across backends (the trace, built after the run): what the API
 * makes independent of timing — every start call's return code (a watcher
 * start is masked when ops were in flight on its fd: then 0 and -EBUSY are
 * both allowed), each op's number of final callbacks and result class where
 * the contract fixes it (undisturbed, uncancelled sends and recvs: ok;
 * iomux_close: 0; timeout ops that were not cancelled: 0, or cancelled by
 * the epilogue when long), the number of times each one-shot timer fired
 * (when the program did not stop or restart it), the number of posts run, and
 * each direction's whole byte stream (length and hash) when every send on it
 * completed and nothing cut it. NOT compared, because the contract leaves it
 * to timing and the kernel: how received bytes split into recv results and
 * MORE callbacks, whether a recv saw data or EOF, results of cancelled ops
 * or of ops on a channel that was closed or shut down (a send may be partly
 * out; a peer's close may be FIN or RST), cancel's return (0 or -EALREADY),
 * how often a level/edge watcher or a repeating timer ran, and the order of
 * callbacks across fds. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "iomux.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define MAX_STEPS 96
#define MAX_CH 3
#define MAX_ENDS (2 * MAX_CH)
#define MAX_OPS 4096            /* records, epilogue recvs included */
#define MAX_SENDS 96            /* per direction */
#define QLEN 256                /* ring of live ops per end and direction */
#define MAX_TIMERS 6
#define MAX_TSTARTS 128         /* timer start events */
#define MAX_POSTERS 2
#define MAX_POSTS 256
#define MAX_STEP_POSTS 160      /* by steps and their threads */
#define MAX_TIMER_POSTS 64      /* by timer callbacks */
#define MAX_HELD 8              /* pool buffers held by the program */
#define SEND_BUDGET (1u << 20)  /* bytes per run, all directions */
#define WAIT_BUDGET_MS 4        /* blocking waits the program may ask for */
#define EPILOGUE_MS 5000        /* the epilogue must finish within this */
#define SHORT_TIMEOUT_MS 5      /* "short" timers fire in the epilogue */
#define LONG_MS 60000

static const size_t send_sizes[] = {1, 10, 200, 3000, 40000, 300000, 0, 10};
static const uint64_t timer_ms[] = {0, 0, 1, 1, 2, LONG_MS};
static const uint64_t timeout_op_ms[] = {0, 1, 2, LONG_MS, 0, 1};

/* ---- the program ------------------------------------------------------------ */

typedef struct step {
    uint8_t op, a, b, c;
} step;

typedef struct program {
    unsigned nch;
    unsigned tcp_mask;     /* channel i is TCP if bit i */
    unsigned small_pool;   /* 2 pool buffers instead of 16 */
    size_t nsteps;
    step steps[MAX_STEPS];
} program;

/* ---- one run's state ------------------------------------------------------------ */

enum { K_SEND, K_RECV, K_POOL, K_HOLD, K_MULTI, K_CLOSE, K_TIMEOUT, K_DRAIN, K_BAD };

typedef struct fop { /* a live op, heap-allocated: freed in its final callback */
    iomux_op op;         /* first: callbacks cast back */
    int id;
    uint8_t *buf;
} fop;

typedef struct orec { /* what an op did; outlives the op */
    int kind, end, start_rc, finals, mores, cancelled, disturbed, writer;
    int64_t result;
    size_t len;
    int send_idx;        /* K_SEND: its record in the direction */
    uint64_t timeout, start_now, tseq; /* K_TIMEOUT */
    fop *live;
} orec;

typedef struct srec { /* one send of a direction, in start order */
    size_t len;
    uint64_t seed;
    int state;           /* S_PENDING, S_FULL, S_PARTIAL (a prefix may be out) */
    size_t written;      /* reactor sends: bytes written so far */
} srec;

enum { S_PENDING, S_FULL, S_PARTIAL };

typedef struct dir { /* bytes from end e to end e^1 */
    int nsends;
    srec s[MAX_SENDS];
    int out_head;        /* reactor: first send not yet fully written */
    uint8_t *rx;
    size_t rx_len, rx_cap;
    int truncated;       /* a close or an error may have cut the stream */
    int nondet;          /* the program cancelled, dropped or shut a send: timing decides */
} dir;

typedef struct end {
    int fd, closed, shut, rx_done, wmode, wactive, werr, drain_shut;
    unsigned wev;
    iomux_watch w;
    int rq[QLEN], rq_head, rq_len;  /* live readers in start order (op ids), a ring */
    int wq[QLEN], wq_head, wq_len;  /* live writers */
    int readers, writers;                  /* active ops of each kind */
} end;

typedef struct tstart { /* one start of a program timer or a timeout op */
    uint64_t timeout, repeat;
    int fired, ended_early, is_op;
} tstart;

typedef struct ftimer {
    iomux_timer t;
    int active, action, ts;  /* ts: its current tstart */
    uint64_t start_now, tseq;
} ftimer;

typedef struct post {
    int src, seq, ran;
} post;

typedef struct poster {
    pthread_t th;
    iomux_loop *loop;
    int src, first, count, started;
} poster;

typedef struct run {
    iomux_loop *loop;
    const char *backend;
    const program *prog;
    int in_api, draining;
    unsigned long callbacks;
    int wait_left_ms;
    end ends[MAX_ENDS];
    dir dirs[MAX_ENDS];
    int chan_disturbed[MAX_CH];
    orec ops[MAX_OPS];
    int nops;
    ftimer timers[MAX_TIMERS];
    iomux_timer guard;
    tstart ts[MAX_TSTARTS];
    int nts;
    uint64_t tseq;
    post posts[MAX_POSTS];
    int nposts, step_posts, timer_posts, next_seq[MAX_POSTERS + 1];
    poster posters[MAX_POSTERS];
    int nposters;
    void *held[MAX_HELD];
    int nheld;
    size_t sent_budget;
    int listen_fd;
} run;

static run *R; /* the run in progress (one at a time, on this thread) */

static int verbose; /* $FUZZ_LOOP_VERBOSE: log steps and callbacks */

#define VLOG(...)                             \
    do {                                      \
        if (verbose) fprintf(stderr, __VA_ARGS__); \
    } while (0)


__attribute__((format(printf, 1, 2), noreturn)) static void bug(const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "fuzz-loop: contract broken on backend %s: ", R ? R->backend : "?");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

#define BUG_IF(cond, ...)          \
    do {                           \
        if (cond) bug(__VA_ARGS__); \
    } while (0)

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Byte j of a send: a hash of the send's seed and j, so that a stream can
 * be matched against the sends unambiguously (almost always). */
static uint8_t pat(uint64_t seed, size_t j) {
    uint32_t x = (uint32_t)seed ^ (uint32_t)(seed >> 32) ^ ((uint32_t)j * 0x9e3779b1u);
    x ^= x >> 15;
    x *= 0x2c1b3c6du;
    x ^= x >> 12;
    x *= 0x297a2d39u;
    return (uint8_t)(x >> 24);
}

static int chan_of(int e) {
    return e / 2;
}

static void count_cb(void) {
    BUG_IF(R->in_api, "a callback ran inside a start call");
    R->callbacks++;
}

/* ---- the received streams ---------------------------------------------------- */

static void rx_append(int receiver, const uint8_t *p, size_t n) {
    dir *d = &R->dirs[receiver ^ 1];
    if (d->rx_len + n > d->rx_cap) {
        size_t cap = d->rx_cap ? d->rx_cap : 4096;
        while (cap < d->rx_len + n) cap *= 2;
        d->rx = realloc(d->rx, cap);
        if (!d->rx) abort();
        d->rx_cap = cap;
    }
    memcpy(d->rx + d->rx_len, p, n);
    d->rx_len += n;
}

/* Matches a direction's received bytes against its sends (all final now):
 * an automaton whose states are (send i, offset j); a fully sent send must
 * be read whole, a partial one may stop anywhere. Complete unless cut. */
typedef struct pos {
    int i;
    size_t j;
} pos;

#define MAX_POS 4096

/* The set needs no search for duplicates: a position (i, j > 0) comes only
 * from (i, j - 1), which was in the previous set once; (i, 0) is stamped. */
static unsigned zero_stamp[MAX_SENDS + 2], stamp_now;

static int pos_add(pos *set, int *n, int i, size_t j) {
    if (j == 0) {
        if (zero_stamp[i] == stamp_now) return 0;
        zero_stamp[i] = stamp_now;
    }
    if (*n == MAX_POS) return -1;
    set[*n].i = i;
    set[(*n)++].j = j;
    return 0;
}

static void stamp_next(void) {
    if (++stamp_now == 0) {
        memset(zero_stamp, 0, sizeof(zero_stamp));
        stamp_now = 1;
    }
}

/* Adds the positions reachable without reading: past a send read whole, or
 * out of a partial one at any point. */
static void pos_close(const dir *d, pos *set, int *n) {
    int k;
    for (k = 0; k < *n; k++) {
        int i = set[k].i;
        if (i >= d->nsends) continue;
        if (set[k].j == d->s[i].len || d->s[i].state == S_PARTIAL)
            if (pos_add(set, n, i + 1, 0) < 0) bug("stream check: too many positions");
    }
}

static void check_stream(int sender) {
    const dir *d = &R->dirs[sender];
    static pos a[MAX_POS], b[MAX_POS];
    pos *cur = a, *nxt = b, *t;
    int n = 0, m, k, i;
    size_t off;
    for (i = 0; i < d->nsends; i++)
        BUG_IF(d->s[i].state == S_PENDING, "end %d: send %d still pending at the end", sender, i);
    stamp_next();
    pos_add(cur, &n, 0, 0);
    pos_close(d, cur, &n);
    for (off = 0; off < d->rx_len; off++) {
        m = 0;
        stamp_next();
        for (k = 0; k < n; k++) {
            i = cur[k].i;
            if (i < d->nsends && cur[k].j < d->s[i].len && pat(d->s[i].seed, cur[k].j) == d->rx[off])
                pos_add(nxt, &m, i, cur[k].j + 1);
        }
        pos_close(d, nxt, &m);
        if (m == 0)
            bug("end %d -> %d: received byte %zu (of %zu) matches no send in order (%d sends)", sender,
                sender ^ 1, off, d->rx_len, d->nsends);
        t = cur, cur = nxt, nxt = t;
        n = m;
    }
    if (d->truncated) return;
    for (k = 0; k < n; k++)
        if (cur[k].i == d->nsends) return;
    bug("end %d -> %d: only %zu bytes arrived; sends that completed are missing", sender, sender ^ 1,
        d->rx_len);
}

/* 1 if the program fixes the stream: nothing cut, cancelled or dropped;
 * then every send must have gone whole. */
static int stream_determined(int sender) {
    const dir *d = &R->dirs[sender];
    int i;
    if (d->truncated || d->nondet) return 0;
    for (i = 0; i < d->nsends; i++)
        BUG_IF(d->s[i].state != S_FULL, "end %d: send %d of %zu bytes did not go whole, nobody stopped it",
               sender, i, d->s[i].len);
    return 1;
}

/* ---- ops ----------------------------------------------------------------------- */

static void drain_kick(int e);

static orec *new_rec(int kind, int e) {
    orec *o;
    if (R->nops >= MAX_OPS) return NULL;
    o = &R->ops[R->nops];
    memset(o, 0, sizeof(*o));
    o->kind = kind;
    o->end = e;
    o->send_idx = -1;
    R->nops++;
    return o;
}

static int rec_id(const orec *o) {
    return (int)(o - R->ops);
}

/* Ops of one fd and direction complete in start order. */
static void check_order(orec *o) {
    end *en = &R->ends[o->end];
    int *q = o->writer ? en->wq : en->rq;
    int *head = o->writer ? &en->wq_head : &en->rq_head;
    int len = o->writer ? en->wq_len : en->rq_len;
    BUG_IF(*head >= len || q[*head % QLEN] != rec_id(o),
           "op %d (kind %d) on end %d completed before op %d started earlier in the same direction", rec_id(o),
           o->kind, o->end, *head < len ? q[*head % QLEN] : -1);
    (*head)++;
}

static void send_final(orec *o) {
    srec *s = &R->dirs[o->end].s[o->send_idx];
    s->state = o->result == (int64_t)o->len ? S_FULL : S_PARTIAL;
    BUG_IF(o->result > 0 && o->result != (int64_t)o->len, "send of %zu bytes completed with %lld", o->len,
           (long long)o->result);
    BUG_IF(!o->disturbed && !o->cancelled && o->result != (int64_t)o->len,
           "send %d of %zu bytes on an undisturbed channel failed: %lld (%s)", rec_id(o), o->len,
           (long long)o->result, iomux_strerror((int)o->result));
}

static void recv_data(orec *o, const iomux_op *op, const uint8_t *data) {
    size_t cap = o->kind == K_RECV || o->kind == K_DRAIN ? o->len : 1u << 30;
    BUG_IF(op->result > (int64_t)cap, "recv of %zu bytes returned %lld", cap, (long long)op->result);
    BUG_IF(!data, "recv returned %lld bytes but no buffer", (long long)op->result);
    rx_append(o->end, data, (size_t)op->result);
}

static void recv_final(orec *o, iomux_op *op, fop *f) {
    end *en = &R->ends[o->end];
    int pool = o->kind == K_POOL || o->kind == K_HOLD || o->kind == K_MULTI;
    if (op->result > 0) {
        BUG_IF(o->kind == K_MULTI, "the final callback of a multishot recv carries %lld bytes",
               (long long)op->result);
        recv_data(o, op, pool ? op->buf : f->buf);
        if (pool) {
            if (o->kind == K_HOLD && R->nheld < MAX_HELD && !R->draining) R->held[R->nheld++] = op->buf;
            else iomux_buf_release(R->loop, op->buf);
        }
        return;
    }
    BUG_IF(pool && op->buf != NULL, "a pool recv with result %lld left a buffer", (long long)op->result);
    if (op->result == 0) en->rx_done = 1;
    if (op->result < 0 && op->result != -ECANCELED) {
        BUG_IF(!o->disturbed, "recv %d on an undisturbed channel failed: %lld (%s)", rec_id(o),
               (long long)op->result, iomux_strerror((int)op->result));
        en->rx_done = 1;
        R->dirs[o->end ^ 1].truncated = 1;
    }
}

static void timeout_final(orec *o, const iomux_op *op);

static void op_more(orec *o, iomux_op *op) {
    BUG_IF(o->kind != K_MULTI, "a MORE callback on a single-shot op (kind %d)", o->kind);
    BUG_IF(!iomux_op_active(op), "iomux_op_active is 0 during a MORE callback");
    BUG_IF(op->result <= 0, "a MORE callback with result %lld", (long long)op->result);
    o->mores++;
    recv_data(o, op, op->buf);
    iomux_buf_release(R->loop, op->buf);
}

static void op_cb(iomux_op *op) {
    fop *f = (fop *)(void *)op;
    orec *o = &R->ops[f->id];
    end *en = &R->ends[o->end >= 0 ? o->end : 0];
    count_cb();
    VLOG("[%s] op %d kind %d end %d result %lld flags %u buf %p\n", R->backend, f->id, o->kind, o->end,
         (long long)op->result, op->flags, op->buf);
    BUG_IF(o->finals != 0, "op %d (kind %d): a callback after its final one", f->id, o->kind);
    if (op->flags & IOMUX_OP_MORE) {
        op_more(o, op);
        return;
    }
    BUG_IF(op->flags != 0, "final callback with flags %u", op->flags);
    BUG_IF(iomux_op_active(op), "iomux_op_active is 1 in the final callback");
    BUG_IF(iomux_cancel(op) != -EINVAL, "iomux_cancel in the final callback is not -EINVAL");
    o->finals = 1;
    o->result = op->result;
    o->live = NULL;
    if (o->end >= 0 && o->kind != K_CLOSE && R->chan_disturbed[chan_of(o->end)]) o->disturbed = 1;
    switch (o->kind) {
    case K_SEND:
        check_order(o);
        en->writers--;
        send_final(o);
        break;
    case K_RECV:
    case K_POOL:
    case K_HOLD:
    case K_MULTI:
    case K_DRAIN:
        check_order(o);
        en->readers--;
        recv_final(o, op, f);
        break;
    case K_CLOSE:
        BUG_IF(op->result != 0, "iomux_close failed: %lld", (long long)op->result);
        BUG_IF(fcntl(en->fd, F_GETFD) != -1 || errno != EBADF, "fd %d still open after iomux_close", en->fd);
        en->fd = -1;
        break;
    case K_TIMEOUT:
        timeout_final(o, op);
        break;
    default:
        bug("callback of op %d of kind %d", f->id, o->kind);
    }
    free(f->buf);
    free(f);
    if (o->end >= 0 && R->draining && o->kind != K_CLOSE && o->kind != K_TIMEOUT) drain_kick(o->end);
}

static fop *new_fop(int id, size_t buflen) {
    fop *f = calloc(1, sizeof(*f));
    if (!f) abort();
    f->id = id;
    if (buflen) {
        f->buf = malloc(buflen);
        if (!f->buf) abort();
    }
    return f;
}

/* A start call returned: the op is live, or refused (freed at once, and its
 * callback must never come: op_cb would find finals... no: R->ops says
 * start_rc < 0, and the freed fop makes ASan see any late touch). */
static void started(orec *o, fop *f, int rc) {
    end *en = o->end >= 0 ? &R->ends[o->end] : NULL;
    o->start_rc = rc;
    if (rc < 0) {
        o->finals = -1; /* never: a callback would find finals != 0 */
        free(f->buf);
        free(f);
        return;
    }
    BUG_IF(!iomux_op_active(&f->op), "iomux_op_active is 0 right after a start");
    o->live = f;
    if (!en || o->kind == K_CLOSE || o->kind == K_TIMEOUT) return;
    if (o->writer) {
        en->wq[en->wq_len++ % QLEN] = rec_id(o);
        en->writers++;
    } else {
        en->rq[en->rq_len++ % QLEN] = rec_id(o);
        en->readers++;
    }
}

static int queue_room(const end *en) {
    return en->rq_len - en->rq_head < QLEN - 8 && en->wq_len - en->wq_head < QLEN - 8;
}

static void do_send(int e, size_t len) {
    end *en = &R->ends[e];
    dir *d = &R->dirs[e];
    orec *o;
    fop *f;
    srec *s;
    size_t j;
    int rc;
    if (d->nsends >= MAX_SENDS || !queue_room(en)) return;
    if (R->sent_budget + len > SEND_BUDGET) len = 1;
    R->sent_budget += len;
    o = new_rec(K_SEND, e);
    if (!o) return;
    o->writer = 1;
    o->len = len;
    s = &d->s[d->nsends];
    memset(s, 0, sizeof(*s));
    s->len = len;
    s->seed = mix64(((uint64_t)e << 32) | (uint64_t)d->nsends);
    f = new_fop(rec_id(o), len ? len : 1);
    for (j = 0; j < len; j++) f->buf[j] = pat(s->seed, j);
    R->in_api = 1;
    rc = iomux_send(R->loop, &f->op, en->fd, f->buf, len, op_cb);
    R->in_api = 0;
    BUG_IF(en->wactive && rc != -EBUSY, "a send on a watched fd was not refused: %d", rc);
    BUG_IF(!en->wactive && rc != 0, "a send failed to start: %d (%s)", rc, iomux_strerror(rc));
    if (rc == 0) {
        o->send_idx = d->nsends++;
        d->out_head = d->nsends; /* the outbox is empty (else this would be a watcher end) */
    }
    started(o, f, rc);
}

static void do_recv(int e, unsigned kind) {
    end *en = &R->ends[e];
    static const size_t lens[] = {1, 16, 65536};
    orec *o;
    fop *f;
    int rc, k, bad = 0;
    if (!queue_room(en)) return;
    if (kind < 3) {
        k = K_RECV;
    } else if (kind == 3) {
        k = K_POOL;
    } else if (kind == 4) {
        k = K_HOLD;
    } else if (kind == 5) {
        k = K_MULTI;
    } else {
        k = K_BAD;
        bad = 1;
    }
    o = new_rec(k, e);
    if (!o) return;
    o->len = k == K_RECV ? lens[kind] : 0;
    f = new_fop(rec_id(o), k == K_RECV ? o->len : 16);
    R->in_api = 1;
    if (k == K_RECV)
        rc = iomux_recv(R->loop, &f->op, en->fd, f->buf, o->len, 0, op_cb);
    else if (k == K_MULTI)
        rc = iomux_recv(R->loop, &f->op, en->fd, NULL, 0, IOMUX_OP_MULTISHOT, op_cb);
    else if (!bad)
        rc = iomux_recv(R->loop, &f->op, en->fd, NULL, 0, 0, op_cb);
    else if (kind == 6)
        rc = iomux_recv(R->loop, &f->op, en->fd, f->buf, 0, 0, op_cb); /* own buffer, no room */
    else
        rc = iomux_recv(R->loop, &f->op, en->fd, f->buf, 16, IOMUX_OP_MULTISHOT, op_cb);
    R->in_api = 0;
    if (bad) BUG_IF(rc != -EINVAL && rc != -EBUSY, "an invalid recv was not refused: %d", rc);
    else if (en->wactive) BUG_IF(rc != -EBUSY, "a recv on a watched fd was not refused: %d", rc);
    else BUG_IF(rc != 0, "a recv failed to start: %d (%s)", rc, iomux_strerror(rc));
    started(o, f, rc);
}

static void start_drain_recv(int e) {
    end *en = &R->ends[e];
    orec *o = new_rec(K_DRAIN, e);
    fop *f;
    int rc;
    if (!o) bug("out of op records in the epilogue");
    o->len = 65536;
    f = new_fop(rec_id(o), o->len);
    R->in_api = 1;
    rc = iomux_recv(R->loop, &f->op, en->fd, f->buf, o->len, 0, op_cb);
    R->in_api = 0;
    BUG_IF(rc != 0, "the epilogue's recv failed to start: %d", rc);
    started(o, f, rc);
}

/* The program cancels op `id`: what it marks depends on the program only
 * (whether the op is still in flight is timing, so the marks do not ask). */
static void cancel_op(int id) {
    orec *o = &R->ops[id];
    int rc;
    if (o->start_rc < 0 || o->kind == K_CLOSE) return;
    o->cancelled = 1;
    if (o->kind == K_SEND) R->dirs[o->end].nondet = 1;
    if (o->kind == K_TIMEOUT) R->ts[o->send_idx].ended_early = 1;
    if (!o->live) return;
    R->in_api = 1;
    rc = iomux_cancel(&o->live->op);
    R->in_api = 0;
    BUG_IF(rc != 0 && rc != -EALREADY, "iomux_cancel of a live op: %d", rc);
}

static void do_cancel(unsigned sel) {
    if (R->nops > 0) cancel_op((int)(sel % (unsigned)R->nops));
}

/* ---- the Reactor side ------------------------------------------------------------ */

/* Drops what a watcher end never wrote: those sends may be partial now. */
static void drop_outbox(int e) {
    dir *d = &R->dirs[e];
    d->nondet = 1;
    for (; d->out_head < d->nsends; d->out_head++) d->s[d->out_head].state = S_PARTIAL;
}

/* Writes the outbox until EAGAIN; on an error drops the rest. */
static void flush_outbox(int e) {
    end *en = &R->ends[e];
    dir *d = &R->dirs[e];
    uint8_t buf[16384];
    while (d->out_head < d->nsends && !en->werr) {
        srec *s = &d->s[d->out_head];
        size_t n = s->len - s->written, j;
        ssize_t w;
        if (n == 0) {
            s->state = S_FULL;
            d->out_head++;
            continue;
        }
        if (n > sizeof(buf)) n = sizeof(buf);
        for (j = 0; j < n; j++) buf[j] = pat(s->seed, s->written + j);
        w = send(en->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (w < 0) {
            en->werr = 1;
            drop_outbox(e);
            return;
        }
        VLOG("[%s] end %d reactor wrote %zd of send %d\n", R->backend, e, w, d->out_head);
        s->written += (size_t)w;
    }
}

static void read_until_eagain(int e) {
    end *en = &R->ends[e];
    uint8_t buf[16384];
    for (;;) {
        ssize_t n = recv(en->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n <= 0) {
            if (n < 0) R->dirs[e ^ 1].truncated = 1;
            en->rx_done = 1;
            return;
        }
        VLOG("[%s] end %d reactor read %zd\n", R->backend, e, n);
        rx_append(e, buf, (size_t)n);
    }
}

static void watch_epilogue(int e);

static void watch_cb(iomux_watch *w, unsigned revents) {
    int e = (int)(intptr_t)w->data;
    end *en = &R->ends[e];
    unsigned want = en->wev & (IOMUX_IN | IOMUX_OUT);
    count_cb();
    BUG_IF(!en->wactive, "watcher of end %d called back after it was stopped", e);
    BUG_IF(revents == 0 || (revents & ~(unsigned)(IOMUX_IN | IOMUX_OUT | IOMUX_ERR | IOMUX_HUP)),
           "watcher revents %#x", revents);
    BUG_IF((revents & (IOMUX_IN | IOMUX_OUT)) & ~want, "watcher reported %#x for interest %#x", revents,
           en->wev);
    if (en->wev & IOMUX_ONESHOT) {
        BUG_IF(iomux_watch_active(w), "a ONESHOT watcher is still active in its callback");
        en->wactive = 0;
    }
    if (revents & (IOMUX_IN | IOMUX_ERR | IOMUX_HUP)) read_until_eagain(e);
    if (revents & (IOMUX_OUT | IOMUX_ERR | IOMUX_HUP)) flush_outbox(e);
    if (R->draining) watch_epilogue(e);
}

static int watch_set(int e, unsigned ev) {
    end *en = &R->ends[e];
    int rc;
    R->in_api = 1;
    rc = en->wactive ? iomux_watch_update(&en->w, ev) : iomux_watch_start(&en->w, ev);
    R->in_api = 0;
    if (rc == 0) {
        en->wactive = 1;
        en->wev = ev;
    }
    return rc;
}

static void watch_stop(int e) {
    end *en = &R->ends[e];
    BUG_IF(iomux_watch_stop(&en->w) != 0, "iomux_watch_stop failed");
    BUG_IF(iomux_watch_active(&en->w), "a stopped watcher is active");
    en->wactive = 0;
}

static void loop_once(int mode);
static uint64_t wall_ms(void);

/* An ops end becomes a watcher end the way a program would do it: cancel
 * its ops and run the loop until their callbacks came. Before that, a
 * watcher must be refused while ops are queued on the fd (-EBUSY; 0 only
 * when their results are already on their way). The switch itself does not
 * depend on timing, so the rest of the program is the same everywhere. */
static void ops_to_watch(int e) {
    end *en = &R->ends[e];
    uint64_t deadline;
    int i, rc;
    if (en->readers + en->writers > 0) {
        R->in_api = 1;
        rc = iomux_watch_start(&en->w, IOMUX_IN);
        R->in_api = 0;
        BUG_IF(rc != 0 && rc != -EBUSY, "iomux_watch_start with ops in flight: %d", rc);
        if (rc == 0) {
            en->wactive = 1;
            watch_stop(e);
        }
    }
    for (i = 0; i < R->nops; i++)
        if (R->ops[i].end == e && R->ops[i].kind != K_CLOSE) cancel_op(i);
    deadline = wall_ms() + EPILOGUE_MS;
    while (en->readers + en->writers > 0) {
        BUG_IF(wall_ms() > deadline, "cancelled ops of end %d never completed", e);
        loop_once(IOMUX_RUN_NOWAIT);
    }
}

/* WATCH step: start or update (a ONESHOT may have disarmed itself: then a
 * start); either way 0. */
static void do_watch(int e, unsigned bits) {
    static const unsigned flavours[] = {0, 0, IOMUX_ET, IOMUX_ONESHOT};
    end *en = &R->ends[e];
    unsigned ev = (bits & 3) ? (bits & 3) : IOMUX_IN;
    int rc;
    ev |= flavours[(bits >> 2) & 3];
    if (!en->wmode) ops_to_watch(e);
    rc = watch_set(e, ev);
    BUG_IF(rc != 0, "iomux_watch_start on an idle fd: %d (%s)", rc, iomux_strerror(rc));
    en->wmode = 1;
    flush_outbox(e);
}

static void do_unwatch(int e) {
    end *en = &R->ends[e];
    if (!en->wmode) return;
    watch_stop(e);
    drop_outbox(e);
    en->wmode = 0;
}

static void never_cb(iomux_op *op) {
    bug("callback of an op whose start was refused (result %lld)", (long long)op->result);
}

/* While a watcher is armed on the fd, ops must be refused (-EBUSY). */
static void probe_busy(int e) {
    end *en = &R->ends[e];
    iomux_op *op;
    char b[4];
    int rc1, rc2, rc3;
    if (!en->wactive) return;
    op = calloc(1, sizeof(*op));
    if (!op) abort();
    R->in_api = 1;
    rc1 = iomux_send(R->loop, op, en->fd, "x", 1, never_cb);
    rc2 = iomux_recv(R->loop, op, en->fd, b, sizeof(b), 0, never_cb);
    rc3 = iomux_close(R->loop, op, en->fd, never_cb);
    R->in_api = 0;
    BUG_IF(rc1 != -EBUSY || rc2 != -EBUSY || rc3 != -EBUSY, "ops on a watched fd not refused: %d %d %d", rc1,
           rc2, rc3);
    BUG_IF(iomux_op_active(op), "a refused op is active");
    free(op); /* a late touch of it by the loop shows under ASan */
}

/* A send on a Reactor end: into the outbox, written at once if it can be. */
static void outbox_send(int e, size_t len) {
    dir *d = &R->dirs[e];
    srec *s;
    if (d->nsends >= MAX_SENDS) return;
    if (R->sent_budget + len > SEND_BUDGET) len = 1;
    R->sent_budget += len;
    s = &d->s[d->nsends];
    memset(s, 0, sizeof(*s));
    s->len = len;
    s->seed = mix64(((uint64_t)e << 32) | (uint64_t)d->nsends);
    d->nsends++;
    if (R->ends[e].werr || R->ends[e].shut) {
        drop_outbox(e);
        return;
    }
    flush_outbox(e);
}

/* ---- close and shutdown --------------------------------------------------------------- */

static void disturb(int e) {
    R->chan_disturbed[chan_of(e)] = 1;
}

static void do_close(int e) {
    end *en = &R->ends[e];
    orec *o;
    fop *f;
    int rc;
    if (en->wmode) do_unwatch(e);
    o = new_rec(K_CLOSE, e);
    if (!o) return;
    if (!R->draining) {
        disturb(e);
        R->dirs[e].truncated = R->dirs[e ^ 1].truncated = 1;
    }
    f = new_fop(rec_id(o), 0);
    R->in_api = 1;
    rc = iomux_close(R->loop, &f->op, en->fd, op_cb);
    R->in_api = 0;
    BUG_IF(rc != 0, "iomux_close failed to start: %d", rc);
    en->closed = 1;
    en->rx_done = 1;
    started(o, f, rc);
}

static void do_shutdown(int e) {
    end *en = &R->ends[e];
    disturb(e);
    R->dirs[e].nondet = 1;
    /* A peer closed with data unread resets the connection (TCP): then
     * there is nothing to shut down. Anything else is a bug. */
    if (shutdown(en->fd, SHUT_WR) != 0 && !(errno == ENOTCONN && R->ends[e ^ 1].closed))
        bug("shutdown: %s", strerror(errno));
    en->shut = 1;
    if (en->wmode) drop_outbox(e);
}

/* ---- timers and timeout ops ------------------------------------------------------------- */

static int new_tstart(uint64_t timeout, uint64_t repeat, int is_op) {
    tstart *t;
    if (R->nts >= MAX_TSTARTS) return -1;
    t = &R->ts[R->nts];
    memset(t, 0, sizeof(*t));
    t->timeout = timeout;
    t->repeat = repeat;
    t->is_op = is_op;
    return R->nts++;
}

/* Deadline order: a one-shot started earlier with a timeout no longer than
 * the one firing now must have fired already. */
static void check_deadline_order(uint64_t tseq, uint64_t timeout) {
    int i;
    for (i = 0; i < MAX_TIMERS; i++) {
        ftimer *y = &R->timers[i];
        if (y->active && R->ts[y->ts].repeat == 0 && y->tseq < tseq && R->ts[y->ts].timeout <= timeout)
            bug("timer %d (%llu ms) not fired before a later-started one of %llu ms", i,
                (unsigned long long)R->ts[y->ts].timeout, (unsigned long long)timeout);
    }
    for (i = 0; i < R->nops; i++) {
        orec *y = &R->ops[i];
        if (y->kind == K_TIMEOUT && y->live && !y->cancelled && y->tseq < tseq && y->timeout <= timeout)
            bug("timeout op %d (%llu ms) not done before a later-started one of %llu ms", i,
                (unsigned long long)y->timeout, (unsigned long long)timeout);
    }
}

static void check_not_early(uint64_t start_now, uint64_t timeout) {
    uint64_t now = iomux_now(R->loop);
    BUG_IF(now < start_now + timeout, "a %llu ms timer fired after %llu ms", (unsigned long long)timeout,
           (unsigned long long)(now - start_now));
}

static void post_fn(iomux_loop *loop, void *arg);
static void post_from_loop(int n, int by_timer);

static void timer_cb(iomux_timer *t) {
    ftimer *ft = (ftimer *)(void *)t;
    tstart *ts = &R->ts[ft->ts];
    count_cb();
    BUG_IF(!ft->active, "timer called back after it was stopped");
    if (ts->fired == 0) check_not_early(ft->start_now, ts->timeout);
    ts->fired++;
    if (ts->repeat == 0) {
        BUG_IF(ts->fired != 1, "a one-shot timer fired twice");
        BUG_IF(iomux_timer_active(t), "a one-shot timer is active in its callback");
        ft->active = 0; /* before the order check: it is not pending itself */
        check_deadline_order(ft->tseq, ts->timeout);
    }
    if (ft->action == 1 && ts->repeat) {
        iomux_timer_stop(t);
        ft->active = 0;
    } else if (ft->action == 2) {
        post_from_loop(1, 1);
    }
}

static void do_timer_start(unsigned slot, uint64_t timeout, uint64_t repeat, int action) {
    ftimer *ft = &R->timers[slot];
    int ts = new_tstart(timeout, repeat, 0);
    if (ts < 0) return;
    if (ft->tseq) R->ts[ft->ts].ended_early = 1; /* restarted: fired or not, timing says */
    ft->ts = ts;
    ft->action = action;
    ft->start_now = iomux_now(R->loop);
    ft->tseq = ++R->tseq;
    BUG_IF(iomux_timer_start(&ft->t, timeout, repeat) != 0, "iomux_timer_start failed");
    ft->active = 1;
}

static void do_timer_stop(unsigned slot) {
    ftimer *ft = &R->timers[slot];
    if (ft->tseq && !R->draining) R->ts[ft->ts].ended_early = 1; /* fired or not: timing */
    BUG_IF(iomux_timer_stop(&ft->t) != 0, "iomux_timer_stop failed");
    BUG_IF(iomux_timer_active(&ft->t), "a stopped timer is active");
    ft->active = 0;
}

static void timeout_final(orec *o, const iomux_op *op) {
    tstart *ts = &R->ts[o->send_idx];
    if (op->result == 0) {
        check_not_early(o->start_now, o->timeout);
        ts->fired = 1;
        check_deadline_order(o->tseq, o->timeout);
    } else {
        BUG_IF(op->result != -ECANCELED, "a timeout op completed with %lld", (long long)op->result);
        BUG_IF(!o->cancelled, "a timeout op that nobody cancelled completed with -ECANCELED");
    }
}

static void do_timeout_op(uint64_t ms) {
    orec *o = new_rec(K_TIMEOUT, -1);
    fop *f;
    int rc, ts;
    if (!o) return;
    ts = new_tstart(ms, 0, 1);
    if (ts < 0) {
        R->nops--;
        return;
    }
    o->send_idx = ts; /* its tstart */
    o->timeout = ms;
    o->start_now = iomux_now(R->loop);
    o->tseq = ++R->tseq;
    f = new_fop(rec_id(o), 0);
    R->in_api = 1;
    rc = iomux_timeout(R->loop, &f->op, ms, op_cb);
    R->in_api = 0;
    BUG_IF(rc != 0, "iomux_timeout failed to start: %d", rc);
    started(o, f, rc);
}

/* ---- posts ------------------------------------------------------------------------ */

static void post_fn(iomux_loop *loop, void *arg) {
    post *p = arg;
    count_cb();
    BUG_IF(loop != R->loop, "a post ran on the wrong loop");
    BUG_IF(p->ran, "a post ran twice");
    BUG_IF(p->seq != R->next_seq[p->src], "posts of thread %d out of order: %d, expected %d", p->src, p->seq,
           R->next_seq[p->src]);
    R->next_seq[p->src]++;
    p->ran = 1;
}

static int posts_made[MAX_POSTERS + 1];

static void post_from_loop(int n, int by_timer) {
    while (n-- > 0 && R->nposts < MAX_POSTS) {
        if (by_timer ? R->timer_posts >= MAX_TIMER_POSTS : R->step_posts >= MAX_STEP_POSTS) return;
        if (by_timer) R->timer_posts++;
        else R->step_posts++;
        post *p = &R->posts[R->nposts++];
        p->src = 0;
        p->seq = posts_made[0]++;
        p->ran = 0;
        BUG_IF(iomux_post(R->loop, post_fn, p) != 0, "iomux_post failed");
    }
}

static void *poster_main(void *arg) {
    poster *ps = arg;
    int i;
    for (i = 0; i < ps->count; i++) {
        if (iomux_post(ps->loop, post_fn, &R->posts[ps->first + i]) != 0) abort();
        if (i % 4 == 3) sched_yield();
    }
    return NULL;
}

static void do_post_thread(int count) {
    poster *ps;
    int i;
    if (R->nposters >= MAX_POSTERS || R->step_posts + count > MAX_STEP_POSTS) return;
    ps = &R->posters[R->nposters];
    ps->loop = R->loop;
    ps->src = R->nposters + 1;
    ps->first = R->nposts;
    ps->count = count;
    for (i = 0; i < count; i++) {
        post *p = &R->posts[R->nposts++];
        p->src = ps->src;
        p->seq = i;
        p->ran = 0;
    }
    /* R->posts is written before the thread starts and read by the loop
     * thread only after the post queue handed it over. */
    if (pthread_create(&ps->th, NULL, poster_main, ps) != 0) {
        R->nposts -= count; /* no thread: as if the step were not there */
        return;
    }
    R->step_posts += count;
    ps->started = 1;
    R->nposters++;
}

static void join_posters(void) {
    int i;
    for (i = 0; i < R->nposters; i++)
        if (R->posters[i].started) {
            pthread_join(R->posters[i].th, NULL);
            R->posters[i].started = 0;
        }
}

/* ---- running the loop ------------------------------------------------------------------- */

static void guard_cb(iomux_timer *t) {
    (void)t;
    count_cb();
}

static void loop_once(int mode) {
    int rc = iomux_run(R->loop, mode);
    BUG_IF(rc < 0, "iomux_run failed: %d (%s)", rc, iomux_strerror(rc));
}

/* One blocking iteration, bounded by a guard timer of ms (0: none). */
static void run_once_guarded(uint64_t ms) {
    if (!iomux_timer_active(&R->guard)) iomux_timer_start(&R->guard, ms, 0);
    loop_once(IOMUX_RUN_ONCE);
}

static void run_settle(void) {
    int quiet = 0, n = 0;
    while (quiet < 2 && n++ < 64) {
        unsigned long before = R->callbacks;
        loop_once(IOMUX_RUN_NOWAIT);
        quiet = R->callbacks == before ? quiet + 1 : 0;
    }
}

static void do_run(unsigned how, unsigned arg) {
    int i;
    switch (how % 4) {
    case 0:
        for (i = 0; i <= (int)(arg % 4); i++) loop_once(IOMUX_RUN_NOWAIT);
        break;
    case 1:
    case 3:
        if (R->wait_left_ms > 0) {
            uint64_t ms = how % 4 == 1 ? 1 : 2;
            R->wait_left_ms -= (int)ms;
            run_once_guarded(ms);
        } else {
            loop_once(IOMUX_RUN_NOWAIT);
        }
        break;
    default:
        run_settle();
        break;
    }
}

/* ---- the program's steps ------------------------------------------------------------------ */

static void release_held(void) {
    while (R->nheld > 0) iomux_buf_release(R->loop, R->held[--R->nheld]);
}

/* The end a step names, or -1 if it is closed. */
static int end_arg(unsigned a) {
    unsigned n = 2 * R->prog->nch;
    int e = (int)(a % n);
    return R->ends[e].closed ? -1 : e;
}

/* The trace of start codes, for the comparison across backends. */
typedef struct tbuf {
    char *p;
    size_t len, cap;
} tbuf;

__attribute__((format(printf, 2, 3))) static void tprintf(tbuf *t, const char *fmt, ...) {
    va_list ap;
    int n;
    for (;;) {
        size_t room = t->cap - t->len;
        va_start(ap, fmt);
        n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0) abort();
        if (t->p && (size_t)n < room) break;
        t->cap = t->cap ? t->cap * 2 + (size_t)n : 4096 + (size_t)n;
        t->p = realloc(t->p, t->cap);
        if (!t->p) abort();
    }
    t->len += (size_t)n;
}

static void exec_step(const step *s, tbuf *tr) {
    int e;
    VLOG("[%s] step op %u a %u b %u c %u\n", R->backend, s->op % 16, s->a, s->b, s->c);
    switch (s->op % 16) {
    case 0:
    case 1:
        if ((e = end_arg(s->a)) < 0) return;
        if (R->ends[e].wmode) {
            probe_busy(e); /* whether the watcher is still armed is timing: no trace */
            outbox_send(e, send_sizes[s->b % 8]);
        } else {
            do_send(e, send_sizes[s->b % 8]);
        }
        return;
    case 2:
    case 3:
        if ((e = end_arg(s->a)) < 0) return;
        if (R->ends[e].wmode) probe_busy(e); /* the Reactor reads this end */
        else do_recv(e, s->b % 8);
        return;
    case 4:
        do_cancel((unsigned)s->a | (unsigned)s->b << 8);
        return;
    case 5:
        if ((e = end_arg(s->a)) >= 0 && (s->b & 3) == 0) do_close(e);
        return;
    case 6:
        if ((e = end_arg(s->a)) >= 0 && !R->ends[e].shut && (s->b & 3) == 0) do_shutdown(e);
        return;
    case 7:
        do_timer_start(s->a % MAX_TIMERS, timer_ms[s->b % 6], (s->c & 3) == 0 ? 1 : 0, (s->c >> 2) % 3);
        return;
    case 8:
        do_timer_stop(s->a % MAX_TIMERS);
        return;
    case 9:
        do_timeout_op(timeout_op_ms[s->a % 6]);
        return;
    case 10:
        post_from_loop(1 + s->a % 3, 0);
        return;
    case 11:
        do_post_thread(1 + s->a % 16);
        return;
    case 12:
    case 13:
        do_run(s->a, s->b);
        return;
    case 14:
        if ((e = end_arg(s->a)) < 0) return;
        do_watch(e, s->b);
        return;
    default:
        if (s->b & 1) release_held();
        else if ((e = end_arg(s->a)) >= 0) do_unwatch(e);
        return;
    }
}

/* ---- the epilogue ---------------------------------------------------------------------------- */

/* In the epilogue, each ops end reads until EOF and shuts its write side
 * once its sends are done. */
static void drain_kick(int e) {
    end *en = &R->ends[e];
    if (en->closed || en->wmode) return;
    if (!en->rx_done && en->readers == 0) start_drain_recv(e);
    if (!en->shut && en->writers == 0) {
        if (shutdown(en->fd, SHUT_WR) != 0 && errno != ENOTCONN) bug("shutdown: %s", strerror(errno));
        en->shut = 1;
    }
}

/* A Reactor end in the epilogue: level IN|OUT until the outbox is out, then
 * shut the write side, IN until EOF, then stop. */
static void watch_epilogue(int e) {
    end *en = &R->ends[e];
    dir *d = &R->dirs[e];
    unsigned ev = 0;
    if (!en->shut && (d->out_head >= d->nsends || en->werr)) {
        shutdown(en->fd, SHUT_WR);
        en->shut = 1;
    }
    if (!en->shut) ev |= IOMUX_OUT;
    if (!en->rx_done) ev |= IOMUX_IN;
    if (ev == 0) {
        if (en->wactive) watch_stop(e);
        return;
    }
    if (!en->wactive || en->wev != ev) BUG_IF(watch_set(e, ev) != 0, "epilogue watcher start failed");
}

static int ends_done(void) {
    unsigned e;
    for (e = 0; e < 2 * R->prog->nch; e++) {
        end *en = &R->ends[e];
        if (en->closed) continue;
        if (!en->rx_done || !en->shut || en->readers || en->writers || en->wactive) return 0;
    }
    return 1;
}

static int live_ops(void) {
    int i, n = 0;
    for (i = 0; i < R->nops; i++) n += R->ops[i].live != NULL;
    return n;
}

static int posts_pending(void) {
    int i;
    for (i = 0; i < R->nposts; i++)
        if (!R->posts[i].ran) return 1;
    return 0;
}

static int short_timers_pending(void) {
    int i;
    for (i = 0; i < MAX_TIMERS; i++) {
        ftimer *ft = &R->timers[i];
        if (ft->active && R->ts[ft->ts].repeat == 0 && R->ts[ft->ts].timeout <= SHORT_TIMEOUT_MS) return 1;
    }
    for (i = 0; i < R->nops; i++)
        if (R->ops[i].kind == K_TIMEOUT && R->ops[i].live && R->ops[i].timeout <= SHORT_TIMEOUT_MS) return 1;
    return 0;
}

static uint64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void report_hang(const char *what) {
    unsigned e;
    int i;
    for (i = 0; i < R->nops; i++)
        if (R->ops[i].live)
            fprintf(stderr, "live op %d: kind %d end %d len %zu cancelled %d\n", i, R->ops[i].kind, R->ops[i].end,
                    R->ops[i].len, R->ops[i].cancelled);
    for (e = 0; e < 2 * R->prog->nch; e++) {
        end *en = &R->ends[e];
        fprintf(stderr, "end %u: fd %d closed %d shut %d rx_done %d wmode %d wactive %d readers %d writers %d\n", e,
                en->fd, en->closed, en->shut, en->rx_done, en->wmode, en->wactive, en->readers, en->writers);
    }
    bug("the epilogue hangs: %s (%d ops live)", what, live_ops());
}

static void run_until(int (*done)(void), uint64_t deadline, const char *what) {
    while (!done()) {
        if (wall_ms() > deadline) report_hang(what);
        run_once_guarded(1);
    }
}

static int epi_timers_done(void) {
    return !short_timers_pending() && !posts_pending();
}

static int epi_streams_done(void) {
    return ends_done() && !posts_pending();
}

static int epi_all_final(void) {
    return live_ops() == 0;
}

static void epilogue(void) {
    uint64_t deadline = wall_ms() + EPILOGUE_MS;
    unsigned e;
    int i;
    join_posters();
    release_held();
    run_until(epi_timers_done, deadline, "short timers and posts");
    R->draining = 1;
    for (i = 0; i < MAX_TIMERS; i++) do_timer_stop((unsigned)i);
    for (i = 0; i < R->nops; i++)
        if (R->ops[i].kind == K_TIMEOUT && R->ops[i].live && !R->ops[i].cancelled) {
            R->ops[i].cancelled = 1;
            BUG_IF(iomux_cancel(&R->ops[i].live->op) != 0, "cancel of a pending timeout op failed");
        }
    for (e = 0; e < 2 * R->prog->nch; e++) {
        if (R->ends[e].closed) continue;
        if (R->ends[e].wmode) watch_epilogue((int)e);
        else drain_kick((int)e);
    }
    run_until(epi_streams_done, deadline, "draining the channels");
    for (e = 0; e < 2 * R->prog->nch; e++)
        if (!R->ends[e].closed) do_close((int)e);
    run_until(epi_all_final, deadline, "closing");
    iomux_timer_stop(&R->guard);
    for (i = 0; i < 3; i++) {
        unsigned long before = R->callbacks;
        loop_once(IOMUX_RUN_NOWAIT);
        BUG_IF(R->callbacks != before, "a callback ran on an idle loop");
    }
    BUG_IF(iomux_loop_alive(R->loop), "the loop is alive with nothing started");
}

/* ---- setup, checks and the trace ------------------------------------------------------------- */

static int tcp_listener(void) {
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 8) != 0) abort();
    return fd;
}

static void tcp_pair(int lfd, int fds[2]) {
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    int one = 1, i;
    if (getsockname(lfd, (struct sockaddr *)&a, &alen) != 0) abort();
    fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fds[0] < 0 || connect(fds[0], (struct sockaddr *)&a, alen) != 0) abort();
    fds[1] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fds[1] < 0) abort();
    for (i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
        setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
}

static void setup_channels(void) {
    unsigned c;
    R->listen_fd = -1;
    for (c = 0; c < R->prog->nch; c++) {
        int fds[2], i;
        if (R->prog->tcp_mask & (1u << c)) {
            if (R->listen_fd < 0) R->listen_fd = tcp_listener();
            tcp_pair(R->listen_fd, fds);
        } else if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
            abort();
        }
        for (i = 0; i < 2; i++) {
            end *en = &R->ends[2 * c + (unsigned)i];
            en->fd = fds[i];
            iomux_watch_init(R->loop, &en->w, fds[i], watch_cb);
            en->w.data = (void *)(intptr_t)(2 * c + (unsigned)i);
        }
    }
}

static void final_checks(tbuf *tr) {
    unsigned e;
    int i, n = 0;
    for (i = 0; i < R->nops; i++) {
        orec *o = &R->ops[i];
        BUG_IF(o->start_rc == 0 && o->finals != 1, "op %d (kind %d) had %d final callbacks", i, o->kind,
               o->finals);
    }
    for (e = 0; e < 2 * R->prog->nch; e++) check_stream((int)e);
    for (i = 0; i < R->nts; i++) {
        tstart *t = &R->ts[i];
        if (t->ended_early || t->repeat) continue;
        if (t->timeout <= SHORT_TIMEOUT_MS) BUG_IF(t->fired != 1, "a %llu ms timer never fired",
                                                   (unsigned long long)t->timeout);
    }
    /* The trace: what the contract fixes, whatever the timing. */
    for (i = 0; i < R->nops; i++) {
        orec *o = &R->ops[i];
        const char *cls = "*";
        if (o->kind == K_DRAIN) continue; /* the epilogue's: as many as the splits need */
        if (o->start_rc < 0) cls = "refused";
        else if (o->kind == K_CLOSE) cls = "closed";
        else if (o->kind == K_TIMEOUT) cls = o->cancelled && o->timeout <= SHORT_TIMEOUT_MS ? "*"
                                             : o->result == 0 ? "fired" : "cancelled";
        else if (!R->chan_disturbed[chan_of(o->end)] && !o->cancelled) cls = "ok";
        tprintf(tr, "op%d:%d:%d:%d:%s ", n++, o->kind, o->start_rc, o->start_rc < 0 ? 0 : o->finals, cls);
    }
    for (i = 0; i < R->nts; i++) {
        tstart *t = &R->ts[i];
        if (t->is_op) continue;
        if (t->ended_early || t->repeat) tprintf(tr, "t%d:* ", i);
        else tprintf(tr, "t%d:%d ", i, t->fired);
    }
    tprintf(tr, "posts:%d ", R->step_posts);
    for (e = 0; e < 2 * R->prog->nch; e++) {
        if (stream_determined((int)e)) {
            const dir *d = &R->dirs[e];
            uint64_t h = 1469598103934665603ull;
            size_t k;
            for (k = 0; k < d->rx_len; k++) h = (h ^ d->rx[k]) * 1099511628211ull;
            tprintf(tr, "s%u:%zu:%016llx ", e, d->rx_len, (unsigned long long)h);
        } else {
            tprintf(tr, "s%u:* ", e);
        }
    }
}

static void free_run(void) {
    unsigned e;
    for (e = 0; e < MAX_ENDS; e++) free(R->dirs[e].rx);
    if (R->listen_fd >= 0) close(R->listen_fd);
}

/* Runs the program on one backend; returns 0, or -1 if the backend is not
 * usable here (not built, or io_uring refused). */
static int run_program(const program *p, iomux_backend b, const char *name, tbuf *tr) {
    static run r; /* large: not on the stack */
    iomux_config cfg;
    size_t i;
    int rc;
    memset(&r, 0, sizeof(r));
    memset(posts_made, 0, sizeof(posts_made));
    R = &r;
    r.prog = p;
    r.backend = name;
    r.wait_left_ms = WAIT_BUDGET_MS;
    iomux_config_init(&cfg);
    cfg.backend = b;
    cfg.pool_buffers = p->small_pool ? 2 : 16;
    cfg.uring_entries = 64;
    rc = iomux_loop_new(&r.loop, &cfg);
    if (rc < 0) {
        R = NULL;
        return -1;
    }
    setup_channels();
    for (i = 0; i < MAX_TIMERS; i++) iomux_timer_init(r.loop, &r.timers[i].t, timer_cb);
    iomux_timer_init(r.loop, &r.guard, guard_cb);
    for (i = 0; i < p->nsteps; i++) exec_step(&p->steps[i], tr);
    epilogue();
    final_checks(tr);
    rc = iomux_loop_free(r.loop);
    BUG_IF(rc != 0, "iomux_loop_free: %d", rc);
    free_run();
    R = NULL;
    return 0;
}

static void parse(const uint8_t *data, size_t size, program *p) {
    size_t i;
    unsigned c = size ? data[0] : 0;
    memset(p, 0, sizeof(*p));
    p->nch = 1 + c % 3;
    p->tcp_mask = (c >> 2) & 7;
    p->small_pool = (c >> 5) & 1;
    for (i = 1; i + 4 <= size && p->nsteps < MAX_STEPS; i += 4) {
        step *s = &p->steps[p->nsteps++];
        s->op = data[i];
        s->a = data[i + 1];
        s->b = data[i + 2];
        s->c = data[i + 3];
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN); /* a reactor write to a closed peer: EPIPE, not death */
    verbose = getenv("FUZZ_LOOP_VERBOSE") != NULL;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const iomux_backend all[] = {IOMUX_BACKEND_SELECT, IOMUX_BACKEND_POLL, IOMUX_BACKEND_EPOLL,
                                        IOMUX_BACKEND_URING};
    static const char *const names[] = {"select", "poll", "epoll", "uring"};
    static program p;
    tbuf first = {0}, cur = {0};
    const char *first_name = NULL;
    size_t i;
    parse(data, size, &p);
    for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        tbuf *t = first_name ? &cur : &first;
        if (!iomux_backend_available(all[i])) continue;
        t->len = 0;
        if (run_program(&p, all[i], names[i], t) < 0) continue;
        if (!first_name) {
            first_name = names[i];
            continue;
        }
        if (cur.len != first.len || memcmp(cur.p, first.p, cur.len) != 0) {
            fprintf(stderr, "fuzz-loop: backends disagree on the observable trace\n%s:\n%.*s\n%s:\n%.*s\n",
                    first_name, (int)first.len, first.p, names[i], (int)cur.len, cur.p);
            abort();
        }
    }
    free(first.p);
    free(cur.p);
    return 0;
}

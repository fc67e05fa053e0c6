/* Fault injection on every backend (issue 7, item 5), one scenario per run:
 *
 *   test-faults enomem     an allocator (iomux_config.allocator) that fails
 *                          the Nth allocation, every k-th, or all of them for
 *                          a window: loop_new, the Proactor API, and an echo
 *                          server on iomux_conn with client processes
 *   test-faults emfile     a low RLIMIT_NOFILE under a connect storm on an
 *                          iomux_acceptor (pause, shed, recover)
 *   test-faults smallring  an 8-buffer recv pool and (uring) a 16-entry CQ
 *                          under 1,000 connections echoing a known stream
 *
 * What each one asserts: no crash; no hang (every client ends within its
 * stall bound); no spin (loop iterations counted while nothing happens);
 * clear errors (every connection lost to a fault was reported as -ENOMEM
 * to the server's code, and one failed allocation costs at most one
 * connection); no corruption (clients check every echoed byte); recovery
 * (after the faults stop, a fresh round of clients is served in full); no
 * leaks (the counting allocator's live blocks back to 0 after loop_free,
 * fds back to their count before; the ASan build adds LeakSanitizer).
 *
 * Clients run in a forked child process (plain sockets and poll(2), no
 * iomux) so that the server's process, its allocator and its fd limit are
 * its own; the child reports through a pipe the server's loop watches.
 * IOMUX_FAULTS_LONG=1 (or a second argument "long") runs the long
 * version: every N, more k values, longer windows, 5,000 connections. */
#include <execinfo.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "harness.h"
#include "iomux/net.h"

static int g_long, g_verbose;

/* ---- the fault allocator: counts, tracks live blocks, fails on demand -------- */

enum { FA_OFF, FA_NTH, FA_EVERY, FA_ALL };

typedef struct fault_alloc {
    int mode;
    uint64_t n;        /* FA_NTH: fail call n; FA_EVERY: fail each n-th */
    uint64_t calls;    /* allocation calls (malloc, growing realloc) since armed */
    uint64_t failed;   /* failures injected since armed */
    uint64_t total;    /* calls ever */
    long live;         /* blocks allocated and not freed */
} fault_alloc;

static fault_alloc fa;

/* Each block carries its size in front, aligned as malloc aligns. */
typedef union fa_hdr {
    size_t size;
    max_align_t align;
} fa_hdr;

static int fa_should_fail(void) {
    fa.calls++;
    fa.total++;
    if (fa.mode == FA_OFF) return 0;
    if (fa.mode == FA_ALL || (fa.mode == FA_NTH && fa.calls == fa.n) ||
        (fa.mode == FA_EVERY && fa.calls % fa.n == 0)) {
        fa.failed++;
        if (getenv("IOMUX_FAULTS_TRACE")) { /* where each injected failure lands */
            void *bt[12];
            backtrace_symbols_fd(bt, backtrace(bt, 12), 2);
        }
        return 1;
    }
    return 0;
}

static void *fa_malloc(void *ud, size_t size) {
    fa_hdr *h;
    (void)ud;
    if (fa_should_fail()) return NULL;
    h = malloc(sizeof(*h) + size);
    if (!h) return NULL;
    h->size = size;
    fa.live++;
    return h + 1;
}

static void fa_free(void *ud, void *p) {
    (void)ud;
    if (!p) return;
    fa.live--;
    free((fa_hdr *)p - 1);
}

static void *fa_realloc(void *ud, void *p, size_t size) {
    fa_hdr *h;
    if (!p) return fa_malloc(ud, size);
    if (fa_should_fail()) return NULL; /* the old block stays valid */
    h = realloc((fa_hdr *)p - 1, sizeof(*h) + size);
    if (!h) return NULL;
    h->size = size;
    return h + 1;
}

static const iomux_allocator fa_allocator = {fa_malloc, fa_realloc, fa_free, NULL};

static void fa_arm(int mode, uint64_t n) {
    fa.mode = mode;
    fa.n = n;
    fa.calls = 0;
    fa.failed = 0;
}

static void fa_disarm(void) {
    fa.mode = FA_OFF;
}

static iomux_config fa_config(void) {
    iomux_config cfg;
    iomux_config_init(&cfg);
    cfg.allocator = &fa_allocator;
    cfg.pool_buffers = 64; /* small pools: a loop per N stays cheap */
    return cfg;
}

static int count_fds(void) {
    int n = 0, fd;
    for (fd = 0; fd < 4096; fd++)
        if (fcntl(fd, F_GETFD) >= 0) n++;
    return n;
}

/* ---- the stream: byte i of connection id ---------------------------------------- */

static unsigned char pattern(unsigned id, size_t i) {
    uint32_t x = (uint32_t)i * 2654435761u + id * 40503u;
    return (unsigned char)((x >> 13) ^ (x >> 24) ^ (i >> 16));
}

/* ---- the clients (a child process) ---------------------------------------------------- */

typedef struct cspec {
    int port;
    int nconn, conc;   /* connections in all, at most conc at once */
    int msgs;          /* messages per connection */
    size_t msg_len;
    int stream;        /* 1: write all messages at once (reading meanwhile); 0: ping-pong */
    unsigned hold_ms;  /* keep a served connection open this long before its FIN */
    int idle;          /* extra connections that never send, open during the run */
    unsigned quiet_ms; /* after the clients: a mark, then this long with `idle` open */
    unsigned stall_ms; /* a connection without progress this long: a timeout (failure) */
    unsigned id_base;
} cspec;

enum { MSG_RESULT = 1, MSG_MARK = 2 };

typedef struct cres {
    int type, mark;
    int ok;       /* every byte echoed and checked, then a clean EOF */
    int failed;   /* ended cleanly before that: refused, reset, EOF */
    int partial;  /* ... of which some bytes had been echoed */
    int corrupt;  /* a wrong byte, or bytes after the end */
    int timeout;  /* no progress for stall_ms */
    int last_err;
    uint64_t bytes;
} cres;

enum { C_FREE, C_CONNECTING, C_RUN, C_HOLD, C_EOF };

typedef struct ccl {
    int fd, state;
    unsigned id;
    size_t sent, rcvd, total;
    uint64_t last, hold_until;
} ccl;

typedef struct cworld {
    const cspec *sp;
    ccl *cl;
    struct sockaddr_in addr;
    cres r;
    int started, done;
    unsigned char buf[65536];
} cworld;

static void cl_end(cworld *w, ccl *c, int ok, int err) {
    if (ok) {
        w->r.ok++;
    } else if (err == -1) {
        w->r.corrupt++;
    } else if (err == -2) {
        w->r.timeout++;
    } else {
        w->r.failed++;
        if (c->rcvd > 0) w->r.partial++;
        w->r.last_err = err;
    }
    w->r.bytes += c->rcvd;
    close(c->fd);
    c->state = C_FREE;
    w->done++;
}

static void cl_open(cworld *w, ccl *c) {
    int one = 1;
    memset(c, 0, sizeof(*c));
    c->id = w->sp->id_base + (unsigned)w->started++;
    c->total = (size_t)w->sp->msgs * w->sp->msg_len;
    c->last = test_ms();
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) {
        c->state = C_RUN;
        cl_end(w, c, 0, errno);
        return;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->state = C_CONNECTING;
    if (connect(c->fd, (struct sockaddr *)&w->addr, sizeof(w->addr)) == 0) c->state = C_RUN;
    else if (errno != EINPROGRESS) cl_end(w, c, 0, errno);
}

/* How far the client may have sent: ping-pong waits for each echo. */
static size_t cl_allowed(const cworld *w, const ccl *c) {
    size_t m = w->sp->msg_len, upto;
    if (w->sp->stream) return c->total;
    upto = (c->rcvd / m + 1) * m;
    return upto < c->total ? upto : c->total;
}

static int cl_send(cworld *w, ccl *c) {
    size_t want = cl_allowed(w, c), n, i;
    while (c->sent < want) {
        ssize_t k;
        n = want - c->sent < sizeof(w->buf) ? want - c->sent : sizeof(w->buf);
        for (i = 0; i < n; i++) w->buf[i] = pattern(c->id, c->sent + i);
        k = send(c->fd, w->buf, n, MSG_NOSIGNAL);
        if (k < 0) return errno == EAGAIN ? 0 : errno;
        c->sent += (size_t)k;
        c->last = test_ms();
    }
    return 0;
}

/* Reads what is there; 0 (go on), 1 (EOF), -1 (corrupt), or an errno. */
static int cl_recv(cworld *w, ccl *c) {
    for (;;) {
        ssize_t k = recv(c->fd, w->buf, sizeof(w->buf), 0), i;
        if (k == 0) return 1;
        if (k < 0) return errno == EAGAIN ? 0 : errno;
        if (c->rcvd + (size_t)k > c->sent) return -1; /* more than was sent */
        for (i = 0; i < k; i++)
            if (w->buf[i] != pattern(c->id, c->rcvd + (size_t)i)) return -1;
        c->rcvd += (size_t)k;
        c->last = test_ms();
    }
}

static void cl_step(cworld *w, ccl *c, short rev) {
    int rc, err = 0;
    socklen_t len = sizeof(err);
    uint64_t now = test_ms();
    if (now > c->last && now - c->last > w->sp->stall_ms) {
        cl_end(w, c, 0, -2);
        return;
    }
    if (c->state == C_CONNECTING) {
        if (!rev) return;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            cl_end(w, c, 0, err);
            return;
        }
        c->state = C_RUN;
    }
    if (c->state == C_HOLD) {
        if (test_ms() < c->hold_until) return;
        shutdown(c->fd, SHUT_WR);
        c->state = C_EOF;
    }
    rc = cl_recv(w, c);
    if (rc == 1) {
        cl_end(w, c, c->state == C_EOF, c->state == C_EOF ? 0 : ECONNABORTED);
        return;
    }
    if (rc == -1 || (rc == 0 && c->state == C_EOF && c->rcvd > c->total)) {
        cl_end(w, c, 0, -1);
        return;
    }
    if (rc == 0 && c->state == C_RUN) rc = cl_send(w, c);
    if (rc > 0) {
        cl_end(w, c, 0, rc);
        return;
    }
    if (c->state == C_RUN && c->rcvd == c->total) {
        c->state = C_HOLD;
        c->hold_until = test_ms() + w->sp->hold_ms;
        c->last = c->hold_until;
        if (!w->sp->hold_ms) {
            shutdown(c->fd, SHUT_WR);
            c->state = C_EOF;
        }
    }
}

static void report(int fd, const cres *r) {
    if (write(fd, r, sizeof(*r)) != (ssize_t)sizeof(*r)) _exit(3);
}

static void cl_mark(int fd, int mark) {
    cres m;
    memset(&m, 0, sizeof(m));
    m.type = MSG_MARK;
    m.mark = mark;
    report(fd, &m);
}

/* Opens `idle` connections that only wait (so the server holds them). */
static void cl_idle_open(cworld *w, int *fds) {
    int i;
    for (i = 0; i < w->sp->idle; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (fds[i] >= 0 && connect(fds[i], (struct sockaddr *)&w->addr, sizeof(w->addr)) < 0) {
            close(fds[i]);
            fds[i] = -1;
        }
    }
}

static void clients_main(const cspec *sp, int out) {
    cworld *w = calloc(1, sizeof(*w));
    struct pollfd *pfd;
    cres res;
    int i, idle[64];
    if (!w) _exit(2);
    w->sp = sp;
    w->cl = calloc((size_t)sp->conc, sizeof(ccl));
    pfd = calloc((size_t)sp->conc, sizeof(*pfd));
    if (!w->cl || !pfd) _exit(2);
    w->r.type = MSG_RESULT;
    w->addr.sin_family = AF_INET;
    w->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    w->addr.sin_port = htons((uint16_t)sp->port);
    cl_idle_open(w, idle);
    while (w->done < sp->nconn) {
        for (i = 0; i < sp->conc; i++) {
            if (w->cl[i].state == C_FREE && w->started < sp->nconn) cl_open(w, &w->cl[i]);
            pfd[i].fd = w->cl[i].state == C_FREE ? -1 : w->cl[i].fd;
            pfd[i].events = (short)(POLLIN | (w->cl[i].state == C_CONNECTING ? POLLOUT : 0) |
                                    (w->cl[i].state == C_RUN && w->cl[i].sent < cl_allowed(w, &w->cl[i]) ? POLLOUT : 0));
            pfd[i].revents = 0;
        }
        poll(pfd, (nfds_t)sp->conc, 10);
        for (i = 0; i < sp->conc; i++)
            if (w->cl[i].state != C_FREE) cl_step(w, &w->cl[i], pfd[i].revents);
    }
    if (sp->quiet_ms) {
        cl_mark(out, 1);
        usleep(sp->quiet_ms * 1000u);
        cl_mark(out, 2);
    }
    for (i = 0; i < sp->idle; i++)
        if (idle[i] >= 0) close(idle[i]);
    res = w->r; /* a whole object: gcc's -Wstringop-overread misreads &w->r */
    report(out, &res);
}

/* ---- the server: listener, acceptor, echo on iomux_conn ----------------------------------- */

#define MAGIC 0xfa17u

typedef struct server {
    iomux_loop *loop;
    iomux_acceptor acc;
    iomux_watch ctl_watch;
    iomux_timer beat;
    int lfd, port, ctl[2];
    iomux_conn_opts opts;
    pid_t child;
    int live, accepted;
    int start_enomem, write_enomem, close_enomem, watch_enomem, close_zero, close_other, last_other;
    int acc_fatal, acc_stopped;
    uint64_t rx_bytes, beats;
    int nres, marks;
    cres res;
    iomux_stats at_mark[3];
    uint64_t cpu_at_mark[3];
    struct sconn *conns;
    uint64_t round_start;
    int dumped;
} server;

typedef struct sconn {
    iomux_conn c;
    server *s;
    unsigned magic;
    struct sconn *next, *prev; /* the server's live connections */
} sconn;

static pid_t g_child = -1;

static void kill_child(void) {
    if (g_child > 0) {
        kill(g_child, SIGKILL);
        waitpid(g_child, NULL, 0);
        g_child = -1;
    }
}

static uint64_t cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int enomem_seen(const server *s) {
    return s->start_enomem + s->write_enomem + s->close_enomem + s->watch_enomem + (int)s->acc.paused;
}

static void conn_close_cb(iomux_conn *c, int reason) {
    sconn *sc = c->data;
    server *s = sc->s;
    CHECK_EQ(sc->magic, MAGIC);
    CHECK(!iomux_op_active(&c->internal.rx) && !iomux_op_active(&c->internal.tx));
    if (reason == 0) s->close_zero++;
    else if (reason == -ENOMEM) s->close_enomem++;
    else s->close_other++, s->last_other = reason;
    s->live--;
    if (sc->prev) sc->prev->next = sc->next;
    else s->conns = sc->next;
    if (sc->next) sc->next->prev = sc->prev;
    sc->magic = 0;
    free(sc);
}

/* Echo; a refused write (-ENOMEM) closes this connection and no other. */
static void conn_data_cb(iomux_conn *c, const void *data, size_t len) {
    sconn *sc = c->data;
    int rc = iomux_conn_write(c, data, len);
    sc->s->rx_bytes += len;
    if (rc == -ENOMEM) {
        sc->s->write_enomem++;
        iomux_conn_close(c, IOMUX_CONN_ABORT);
        return;
    }
    if (rc < 0) FAIL("iomux_conn_write: %s", iomux_strerror(rc));
}

static const iomux_conn_callbacks echo_cbs = {.on_data = conn_data_cb, .on_close = conn_close_cb};

static void accept_cb(iomux_acceptor *a, iomux_fd fd) {
    server *s = a->data;
    sconn *sc;
    int rc;
    if (fd < 0) { /* fatal: the acceptor stopped */
        s->acc_fatal = fd;
        return;
    }
    s->accepted++;
    sc = calloc(1, sizeof(*sc));
    CHECK(sc != NULL);
    sc->s = s;
    sc->magic = MAGIC;
    sc->c.data = sc;
    rc = iomux_conn_start(s->loop, &sc->c, fd, &echo_cbs, &s->opts);
    if (rc < 0) {
        if (rc != -ENOMEM) FAIL("iomux_conn_start: %s", iomux_strerror(rc));
        s->start_enomem++; /* the fd is still ours: refuse the peer */
        close(fd);
        free(sc);
        return;
    }
    s->live++;
    sc->next = s->conns;
    if (s->conns) s->conns->prev = sc;
    s->conns = sc;
}

static void ctl_cb(iomux_watch *w, unsigned revents) {
    server *s = w->data;
    cres r;
    if (revents & IOMUX_ERR) {
        /* phase 4 could not apply it (the backend's table did not grow):
         * a clear error, the watcher stopped; the heartbeat starts it
         * again (at once would spin while memory stays short) */
        if (iomux_watch_error(w) != -ENOMEM) FAIL("control watcher: %s", iomux_strerror(iomux_watch_error(w)));
        s->watch_enomem++;
        return;
    }
    while (read(s->ctl[0], &r, sizeof(r)) == (ssize_t)sizeof(r)) {
        if (r.type == MSG_MARK && r.mark >= 1 && r.mark <= 2) {
            iomux_loop_stats(s->loop, &s->at_mark[r.mark]);
            s->cpu_at_mark[r.mark] = cpu_ns();
            s->marks++;
        } else {
            s->res = r;
            s->nres++;
        }
    }
}

/* A heartbeat (its heap slot taken before any fault): bounds each
 * IOMUX_RUN_ONCE, and notices a client process that died silently. */
static void dump_conns(const server *s, int max);
static void print_ring_info(int compact);

static void beat_cb(iomux_timer *t) {
    server *s = t->data;
    int st;
    s->beats++;
    if (g_verbose > 1 && s->beats % 10 == 0) print_ring_info(1);
    if (g_verbose && s->round_start && !s->dumped && test_ms() - s->round_start > 12000) {
        s->dumped = 1; /* a round this slow: show what the connections wait for */
        fprintf(stderr, "round running for 12 s; the server's connections:\n");
        dump_conns(s, 12);
    }
    if (!iomux_watch_active(&s->ctl_watch) && s->loop) CHECK_OK(iomux_watch_start(&s->ctl_watch, IOMUX_IN));
    if (s->child > 0 && waitpid(s->child, &st, WNOHANG) == s->child) {
        s->child = g_child = -1;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) FAIL("client process died (status %d)", st);
    }
}

static void stopped_cb(iomux_acceptor *a) {
    ((server *)a->data)->acc_stopped = 1;
}

static void server_run_once(server *s) {
    int rc = iomux_run(s->loop, IOMUX_RUN_ONCE);
    if (rc < 0) FAIL("iomux_run: %s", iomux_strerror(rc));
}

static void serve_until(server *s, const int *flag, int want, unsigned ms, const char *what) {
    uint64_t end = test_ms() + ms;
    while (*flag < want) {
        if (test_ms() > end) FAIL("%s: timed out after %u ms (%d of %d)", what, ms, *flag, want);
        server_run_once(s);
    }
}

static void serve_until_idle(server *s, unsigned ms) {
    uint64_t end = test_ms() + ms;
    while (s->live > 0) {
        if (test_ms() > end) FAIL("%d connections still open after %u ms", s->live, ms);
        server_run_once(s);
    }
}

/* Closes what server_open opened; the loop must free (nothing left alive). */
static void server_close(server *s) {
    int rc;
    if (iomux_acceptor_active(&s->acc)) {
        CHECK_OK(iomux_acceptor_stop(&s->acc, stopped_cb));
        serve_until(s, &s->acc_stopped, 1, 5000, "acceptor stop");
    }
    serve_until_idle(s, 5000);
    iomux_watch_stop(&s->ctl_watch);
    iomux_timer_stop(&s->beat);
    rc = iomux_loop_free(s->loop);
    if (rc < 0) FAIL("iomux_loop_free: %s (an op or handle left behind)", iomux_strerror(rc));
    close(s->lfd);
    close(s->ctl[0]);
    close(s->ctl[1]);
    s->loop = NULL;
}

/* Opens the server; under injected faults any step may fail, and must
 * fail with -ENOMEM, leaving nothing behind. */
static int server_open(server *s, const iomux_config *cfg, const iomux_conn_opts *opts) {
    int rc;
    memset(s, 0, sizeof(*s));
    s->child = -1;
    if (opts) s->opts = *opts;
    rc = iomux_loop_new(&s->loop, cfg);
    if (rc < 0) return rc;
    CHECK_SYS(pipe2(s->ctl, O_NONBLOCK | O_CLOEXEC));
    s->lfd = iomux_listen("127.0.0.1", 0, NULL);
    CHECK_OK(s->lfd);
    s->port = iomux_listen_port(s->lfd);
    iomux_timer_init(s->loop, &s->beat, beat_cb);
    s->beat.data = s;
    iomux_watch_init(s->loop, &s->ctl_watch, s->ctl[0], ctl_cb);
    s->ctl_watch.data = s;
    s->acc.data = s;
    rc = iomux_timer_start(&s->beat, 100, 100);
    if (rc == 0) rc = iomux_watch_start(&s->ctl_watch, IOMUX_IN);
    if (rc == 0) rc = iomux_acceptor_start(s->loop, &s->acc, s->lfd, accept_cb);
    if (rc < 0) server_close(s);
    return rc;
}

/* Forks the clients; they report through ctl[1] (their fd 3). */
static void spawn(server *s, const cspec *sp) {
    pid_t pid;
    fflush(stderr);
    pid = fork();
    CHECK_SYS(pid);
    if (pid == 0) {
        struct rlimit rl;
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        /* the server's fds must not live on in here (a conn the server
         * closes would stay open), nor its lowered fd limit */
        if (dup2(s->ctl[1], 3) != 3) _exit(2);
        close_range(4, ~0u, 0);
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        clients_main(sp, 3);
        _exit(0);
    }
    s->child = g_child = pid;
}

/* The state of the connections still open (a round that hung). */
static void dump_conns(const server *s, int max) {
    const sconn *sc;
    int n = 0;
    for (sc = s->conns; sc && n < max; sc = sc->next, n++) {
        const iomux_conn *c = &sc->c;
        fprintf(stderr, "  conn fd %d: flags 0x%x rxs %d txs %d queued %zu; rx op state %d oflags 0x%x; tx op state %d\n",
                c->fd, c->internal.flags, c->internal.rxs, c->internal.txs, c->internal.queued,
                c->internal.rx.internal.state, c->internal.rx.internal.oflags, c->internal.tx.internal.state);
    }
    fprintf(stderr, "  (%d connections open; %d accepted in all; acceptor active %d, paused %llu, shed %llu, fatal %d)\n",
            s->live, s->accepted, iomux_acceptor_active(&s->acc), (unsigned long long)s->acc.paused,
            (unsigned long long)s->acc.shed, s->acc_fatal);
}

/* One round of clients: spawn, serve until they report, then until every
 * server connection has closed. Returns the clients' result. */
static cres round_run(server *s, cspec sp, unsigned ms) {
    int want = s->nres + 1, st;
    sp.port = s->port;
    s->round_start = test_ms();
    s->dumped = 0;
    spawn(s, &sp);
    serve_until(s, &s->nres, want, ms, "client round");
    if (s->child > 0) {
        CHECK_EQ(waitpid(s->child, &st, 0), s->child);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    s->child = g_child = -1;
    if (s->res.timeout) {
        fprintf(stderr, "%d clients hung; the server's connections:\n", s->res.timeout);
        dump_conns(s, 12);
    }
    serve_until_idle(s, 5000);
    return s->res;
}

static void expect_all_ok(const cres *r, const cspec *sp, const char *what) {
    if (r->ok != sp->nconn || r->corrupt || r->timeout || r->failed)
        FAIL("%s: ok %d of %d, failed %d, corrupt %d, timeout %d (last error %d)", what, r->ok, sp->nconn,
             r->failed, r->corrupt, r->timeout, r->last_err);
}

/* ---- ENOMEM ---------------------------------------------------------------------------------- */

typedef struct nm_totals {
    int cycles, injected, clients_lost, enomem_reports, absorbed, setup_fail;
    int start_enomem, write_enomem, close_enomem, watch_enomem, acc_paused;
} nm_totals;

/* A round under faults: pipelined writes, so that the queue's tail chunk
 * grows (realloc) while a send reads the head, besides the new chunks. */
static cspec nm_round = {.nconn = 10, .conc = 10, .msgs = 4, .msg_len = 3000, .stream = 1, .stall_ms = 4000};
static const cspec nm_round_long = {.nconn = 24, .conc = 24, .msgs = 6, .msg_len = 5000, .stream = 1,
                                    .stall_ms = 4000};

/* The checks after a round run under faults. */
static void nm_check_round(const server *s, const cres *r, uint64_t injected, nm_totals *t, const char *what) {
    int lost = r->failed + r->timeout;
    if (r->corrupt) FAIL("%s: %d clients saw corrupt data", what, r->corrupt);
    if (r->timeout) FAIL("%s: %d clients hung (no progress for %u ms)", what, r->timeout, nm_round.stall_ms);
    if (s->close_other) FAIL("%s: %d connections closed with %s", what, s->close_other, iomux_strerror(s->last_other));
    if ((uint64_t)lost > injected)
        FAIL("%s: %d clients lost to %llu failed allocations", what, lost, (unsigned long long)injected);
    if (lost > 0 && enomem_seen(s) == 0) FAIL("%s: %d clients lost, no -ENOMEM reported", what, lost);
    if (r->ok + r->failed != nm_round.nconn) FAIL("%s: %d + %d clients of %d", what, r->ok, r->failed, nm_round.nconn);
    t->cycles++;
    t->injected += (int)injected;
    t->clients_lost += lost;
    t->enomem_reports += enomem_seen(s);
    t->start_enomem += s->start_enomem;
    t->write_enomem += s->write_enomem;
    t->close_enomem += s->close_enomem;
    t->watch_enomem += s->watch_enomem;
    t->acc_paused += (int)s->acc.paused;
    if (injected && !enomem_seen(s)) t->absorbed++;
}

/* One cycle: open a server (faults armed from its first allocation), a
 * round of clients under the faults, then faults off: a recovery round
 * must be served in full; close; nothing may be left allocated. */
static void nm_cycle(int mode, uint64_t n, int arm_after_open, nm_totals *t) {
    iomux_config cfg = fa_config();
    iomux_conn_opts opts = {.idle_ms = 30000}; /* a timer per connection: heap growth too */
    server s;
    cres r;
    char what[96];
    uint64_t injected;
    int rc;
    snprintf(what, sizeof(what), "%s %llu", mode == FA_NTH ? "nth" : "every", (unsigned long long)n);
    if (g_verbose) fprintf(stderr, "cycle: %s\n", what);
    if (!arm_after_open) fa_arm(mode, n);
    rc = server_open(&s, &cfg, &opts);
    if (rc < 0) {
        fa_disarm();
        if (rc != -ENOMEM) FAIL("%s: setup: %s", what, iomux_strerror(rc));
        if (fa.live != 0) FAIL("%s: setup failed and leaked %ld blocks", what, fa.live);
        t->setup_fail++;
        return;
    }
    if (arm_after_open) fa_arm(mode, n);
    r = round_run(&s, nm_round, 30000);
    injected = fa.failed;
    fa_disarm();
    nm_check_round(&s, &r, injected, t, what);
    s.start_enomem = s.write_enomem = s.close_enomem = s.watch_enomem = 0;
    r = round_run(&s, nm_round, 30000);
    expect_all_ok(&r, &nm_round, "recovery round");
    server_close(&s);
    if (fa.live != 0) FAIL("%s: %ld blocks leaked", what, fa.live);
}

/* iomux_loop_new with its Nth allocation failing: -ENOMEM and no leak. */
static void test_loop_new(void) {
    iomux_config cfg = fa_config();
    iomux_loop *loop = NULL;
    uint64_t n;
    int fds = count_fds(), rc = -ENOMEM;
    for (n = 1; rc < 0; n++) {
        if (n > 64) FAIL("iomux_loop_new still failing at allocation %llu", (unsigned long long)n);
        fa_arm(FA_NTH, n);
        rc = iomux_loop_new(&loop, &cfg);
        fa_disarm();
        if (rc < 0 && rc != -ENOMEM) FAIL("loop_new, allocation %llu failing: %s", (unsigned long long)n, iomux_strerror(rc));
        if (rc < 0) CHECK_EQ(fa.live, 0);
        if (rc < 0) CHECK_EQ(count_fds(), fds);
    }
    CHECK_OK(iomux_loop_free(loop));
    CHECK_EQ(fa.live, 0);
    fprintf(stderr, "loop_new: allocations 1..%llu failed in turn: -ENOMEM each, nothing leaked\n",
            (unsigned long long)(n - 2));
}

/* ---- the Proactor API under ENOMEM ---------------------------------------------------------------- */

typedef struct px {
    iomux_loop *loop;
    iomux_op rx, tx, tm[24];
    iomux_watch w;
    int a, b, p[2]; /* a <-> b (socketpair), p a pipe for the watcher: on high fds */
    int rx_done, rx_bytes, tx_done, tm_done, w_ok, w_err, posts;
    int rc_rx, rc_tx, rc_tm[24], rc_w, rc_post, enomem;
    char msg[1000], got[1000];
} px;

static void px_rx(iomux_op *op) {
    px *x = op->data;
    if (op->result > 0) {
        CHECK(x->rx_bytes + op->result <= (int64_t)sizeof(x->got));
        memcpy(x->got + x->rx_bytes, op->buf, (size_t)op->result);
        x->rx_bytes += (int)op->result;
        iomux_buf_release(op->loop, op->buf);
    }
    if (!(op->flags & IOMUX_OP_MORE)) x->rx_done++;
}

static void px_tx(iomux_op *op) {
    px *x = op->data;
    CHECK_EQ(op->result, (int64_t)sizeof(x->msg));
    x->tx_done++;
}

static void px_tm(iomux_op *op) {
    px *x = op->data;
    CHECK_EQ(op->result, 0);
    x->tm_done++;
}

static void px_w(iomux_watch *w, unsigned ev) {
    px *x = w->data;
    char c;
    if (ev & IOMUX_ERR) { /* phase 4 could not apply it: the watcher stopped */
        CHECK(!iomux_watch_active(w));
        x->w_err = iomux_watch_error(w);
        return;
    }
    CHECK_EQ(read(w->fd, &c, 1), 1);
    x->w_ok++;
    iomux_watch_stop(w);
}

static void px_post(iomux_loop *loop, void *arg) {
    (void)loop;
    ((px *)arg)->posts++;
}

static int px_note(px *x, int rc) {
    if (rc < 0 && rc != -ENOMEM) FAIL("start failed with %s, not -ENOMEM", iomux_strerror(rc));
    if (rc == -ENOMEM) x->enomem++;
    return rc;
}

/* Every start; each either runs or fails with -ENOMEM having started
 * nothing (the op inactive, the loop not kept alive by it). */
static void px_start_all(px *x, int retry) {
    int i;
    if (!retry || x->rc_rx < 0)
        x->rc_rx = px_note(x, iomux_recv(x->loop, &x->rx, x->a, NULL, 0, IOMUX_OP_MULTISHOT, px_rx));
    if (!retry || x->rc_tx < 0)
        x->rc_tx = px_note(x, iomux_send(x->loop, &x->tx, x->b, x->msg, sizeof(x->msg), px_tx));
    for (i = 0; i < 24; i++)
        if (!retry || x->rc_tm[i] < 0) x->rc_tm[i] = px_note(x, iomux_timeout(x->loop, &x->tm[i], 1, px_tm));
    if (!retry || x->rc_w < 0 || x->w_err) {
        x->w_err = 0;
        x->rc_w = px_note(x, iomux_watch_start(&x->w, IOMUX_IN));
    }
    if (!retry || x->rc_post < 0) x->rc_post = px_note(x, iomux_post(x->loop, px_post, x));
    if (x->rc_rx < 0) CHECK(!iomux_op_active(&x->rx));
    if (x->rc_tx < 0) CHECK(!iomux_op_active(&x->tx));
    for (i = 0; i < 24; i++)
        if (x->rc_tm[i] < 0) CHECK(!iomux_op_active(&x->tm[i]));
    if (x->rc_w < 0) CHECK(!iomux_watch_active(&x->w));
}

static int px_settled(const px *x) {
    int i, tm = 0;
    for (i = 0; i < 24; i++) tm += x->rc_tm[i] == 0;
    return (x->rc_rx < 0 || x->rc_tx < 0 || x->rx_bytes == (int)sizeof(x->msg)) && /* no send, no data */
            (x->rc_tx < 0 || x->tx_done == 1) &&
           x->tm_done == tm && (x->rc_w < 0 || x->w_ok || x->w_err) && (x->rc_post < 0 || x->posts == 1);
}

static void px_run(px *x, const char *what) {
    uint64_t end = test_ms() + 5000;
    while (!px_settled(x)) {
        if (test_ms() > end)
            FAIL("%s: hung: recv %d/%d bytes (rc %d), send %d (rc %d), timeouts %d, watcher %d (rc %d), posts %d",
                 what, x->rx_bytes, (int)sizeof(x->msg), x->rc_rx, x->tx_done, x->rc_tx, x->tm_done, x->w_ok,
                 x->rc_w, x->posts);
        CHECK_OK(iomux_run(x->loop, IOMUX_RUN_NOWAIT));
    }
}

static void px_open(px *x) {
    int sp[2], i;
    iomux_config cfg = fa_config();
    memset(x, 0, sizeof(*x));
    CHECK_OK(iomux_loop_new(&x->loop, &cfg));
    unix_pair(sp);
    CHECK_SYS(pipe2(x->p, O_NONBLOCK | O_CLOEXEC));
    /* high fd numbers, so that each start has to grow the loop's tables */
    x->a = dup3(sp[0], 70, O_CLOEXEC);
    x->b = dup3(sp[1], 150, O_CLOEXEC);
    CHECK_SYS(dup3(x->p[0], 300, O_CLOEXEC));
    close(sp[0]);
    close(sp[1]);
    close(x->p[0]);
    x->p[0] = 300;
    CHECK(x->a == 70 && x->b == 150);
    CHECK_EQ(write(x->p[1], "w", 1), 1);
    for (i = 0; i < (int)sizeof(x->msg); i++) x->msg[i] = (char)pattern(7, (size_t)i);
    iomux_watch_init(x->loop, &x->w, x->p[0], px_w);
    x->w.data = x;
    x->rx.data = x->tx.data = x;
    for (i = 0; i < 24; i++) x->tm[i].data = x;
}

static void px_close(px *x) {
    uint64_t end = test_ms() + 5000;
    if (iomux_op_active(&x->rx)) iomux_cancel(&x->rx);
    while (iomux_loop_alive(x->loop)) {
        if (test_ms() > end) FAIL("proactor: the loop stays alive");
        CHECK_OK(iomux_run(x->loop, IOMUX_RUN_NOWAIT));
    }
    CHECK_EQ(x->rx_done, 1);
    CHECK_OK(iomux_loop_free(x->loop));
    close(x->a);
    close(x->b);
    close(x->p[0]);
    close(x->p[1]);
}

/* Allocation n fails (counted from the first start), for every n up to
 * past the last one the starts and their completion make: a clear -ENOMEM
 * from the start that needed it (nothing started), everything else runs,
 * and a retry with memory back completes the lot. */
static void test_proactor(void) {
    px x;
    uint64_t n, injected = 0;
    int enomem = 0, fds = count_fds(), hit;
    for (n = 1; n <= 200; n++) {
        char what[64];
        snprintf(what, sizeof(what), "proactor, allocation %llu failing", (unsigned long long)n);
        px_open(&x);
        fa_arm(FA_NTH, n);
        px_start_all(&x, 0);
        px_run(&x, what);
        hit = fa.failed > 0;
        fa_disarm();
        if (hit && !x.enomem && !x.w_err) FAIL("%s: nothing reported -ENOMEM", what);
        if (x.w_err && x.w_err != -ENOMEM) FAIL("%s: watcher error %s", what, iomux_strerror(x.w_err));
        injected += (uint64_t)hit;
        enomem += x.enomem + (x.w_err != 0);
        px_start_all(&x, 1); /* memory is back: what failed starts now */
        px_run(&x, "proactor, retry");
        CHECK(memcmp(x.got, x.msg, sizeof(x.msg)) == 0);
        CHECK_EQ(x.tm_done, 24);
        CHECK_EQ(x.w_ok, 1);
        CHECK_EQ(x.posts, 1);
        px_close(&x);
        CHECK_EQ(fa.live, 0);
        CHECK_EQ(count_fds(), fds);
        if (!hit) break; /* fewer than n allocations: every one has failed once */
    }
    CHECK(n > 1 && n <= 200);
    fprintf(stderr, "proactor: allocations 1..%llu failed in turn: %d -ENOMEM (starts and watcher), "
            "nothing leaked, all retried fine\n", (unsigned long long)(n - 1), enomem);
    (void)injected;
}

static void nm_print(const char *what, const nm_totals *t) {
    fprintf(stderr,
            "%s: %d cycles (+%d failed at setup, -ENOMEM), %d allocations failed, %d clients lost, "
            "-ENOMEM reported %d times (conn_start %d, conn_write %d, on_close %d, watcher %d, accept %d), "
            "%d failures absorbed\n",
            what, t->cycles, t->setup_fail, t->injected, t->clients_lost, t->enomem_reports, t->start_enomem,
            t->write_enomem, t->close_enomem, t->watch_enomem, t->acc_paused, t->absorbed);
}

/* The Nth allocation of a whole server's life fails, for every N up to
 * past the last allocation of a round (quick: every 3rd N past 40). */
static void test_nth(void) {
    nm_totals t;
    uint64_t n, total;
    server s;
    iomux_config cfg = fa_config();
    iomux_conn_opts opts = {.idle_ms = 30000};
    cres r;
    /* how many allocations a clean cycle makes */
    fa_arm(FA_OFF, 0);
    CHECK_OK(server_open(&s, &cfg, &opts));
    r = round_run(&s, nm_round, 30000);
    expect_all_ok(&r, &nm_round, "clean round");
    total = fa.calls;
    server_close(&s);
    CHECK_EQ(fa.live, 0);
    memset(&t, 0, sizeof(t));
    for (n = 1; n <= total + 2; n += (g_long || n < 40) ? 1 : 3) nm_cycle(FA_NTH, n, 0, &t);
    fprintf(stderr, "nth: a clean cycle makes %llu allocations; ", (unsigned long long)total);
    nm_print("nth", &t);
    CHECK(t.injected > 0);
}

/* Every k-th allocation fails, from the first client on. */
static void test_every(void) {
    static const uint64_t ks[] = {2, 3, 5, 7, 11, 13, 17, 31};
    nm_totals t;
    size_t i, nk = g_long ? 8 : 5;
    int rep, reps = g_long ? 5 : 1;
    memset(&t, 0, sizeof(t));
    for (rep = 0; rep < reps; rep++)
        for (i = 0; i < nk; i++) nm_cycle(FA_EVERY, ks[i], 1, &t);
    nm_print("every-k", &t);
    CHECK(t.injected > 0);
}

/* Every allocation fails for a while: clients are refused cleanly, the
 * loop sleeps while nothing happens (counted: iterations during the
 * quiet part, with idle connections open), and serves in full after. */
static void test_window(void) {
    iomux_config cfg = fa_config();
    iomux_conn_opts opts = {.idle_ms = 30000};
    cspec win = {.nconn = g_long ? 200 : 40, .conc = 10, .msgs = 2, .msg_len = 500, .idle = 4,
                 .quiet_ms = g_long ? 2000 : 400, .stall_ms = 4000};
    server s;
    cres r;
    uint64_t t0, cpu0, quiet_iters, quiet_waits, quiet_cpu, win_iters, win_cpu, quiet_beats;
    iomux_stats st0, st1;
    CHECK_OK(server_open(&s, &cfg, &opts));
    r = round_run(&s, nm_round, 30000); /* warm up: the tables grow to their size */
    expect_all_ok(&r, &nm_round, "warm-up round");
    iomux_loop_stats(s.loop, &st0);
    cpu0 = cpu_ns();
    t0 = test_ms();
    fa_arm(FA_ALL, 0);
    r = round_run(&s, win, 30000);
    fa_disarm();
    iomux_loop_stats(s.loop, &st1);
    win_iters = st1.iterations - st0.iterations;
    win_cpu = cpu_ns() - cpu0;
    CHECK_EQ(s.marks, 2);
    quiet_iters = s.at_mark[2].iterations - s.at_mark[1].iterations;
    quiet_waits = s.at_mark[2].waits - s.at_mark[1].waits;
    quiet_cpu = s.cpu_at_mark[2] - s.cpu_at_mark[1];
    quiet_beats = (win.quiet_ms + 99) / 100 + 2;
    if (r.corrupt || r.timeout) FAIL("window: corrupt %d, timeout %d", r.corrupt, r.timeout);
    if (r.ok != 0) FAIL("window: %d clients served with every allocation failing", r.ok);
    if (r.failed != win.nconn) FAIL("window: %d of %d refused", r.failed, win.nconn);
    if (enomem_seen(&s) < win.nconn) FAIL("window: %d clients refused, %d -ENOMEM reported", win.nconn, enomem_seen(&s));
    /* quiet: nothing but the heartbeat (every 100 ms) may wake the loop */
    if (quiet_iters > 3 * quiet_beats + 10)
        FAIL("window: the loop spun: %llu iterations in %u quiet ms", (unsigned long long)quiet_iters, win.quiet_ms);
    fprintf(stderr,
            "window: %llu allocations failed in %llu ms; %d clients refused (%d -ENOMEM from conn_write, %d from "
            "conn_start, %d on_close); loop: %llu iterations, %.1f ms CPU in the window; quiet %u ms with %d idle "
            "connections: %llu iterations (%llu blocking waits), %.2f ms CPU\n",
            (unsigned long long)fa.failed, (unsigned long long)(test_ms() - t0), r.failed, s.write_enomem,
            s.start_enomem, s.close_enomem, (unsigned long long)win_iters, (double)win_cpu / 1e6, win.quiet_ms,
            win.idle, (unsigned long long)quiet_iters, (unsigned long long)quiet_waits, (double)quiet_cpu / 1e6);
    r = round_run(&s, nm_round, 30000);
    expect_all_ok(&r, &nm_round, "recovery round after the window");
    server_close(&s);
    CHECK_EQ(fa.live, 0);
}

static int scenario_enomem(void) {
    int fds = count_fds();
    if (g_long) nm_round = nm_round_long;
    RUN(test_loop_new);
    RUN(test_proactor);
    RUN(test_nth);
    RUN(test_every);
    RUN(test_window);
    CHECK_EQ(count_fds(), fds);
    return 0;
}

/* ---- EMFILE ----------------------------------------------------------------------------------------- */

/* A connect storm against a server allowed ~`room` more fds: the acceptor
 * pauses and sheds instead of spinning; every client is served or cleanly
 * refused; a second wave after the storm is served in full. */
static int scenario_emfile(void) {
    iomux_config cfg;
    server s;
    cres r;
    struct rlimit old, low;
    int room = 16, fds0, fds_open;
    cspec storm = {.nconn = g_long ? 400 : 120, .msgs = 1, .msg_len = 300, .hold_ms = 600, .stall_ms = 15000};
    cspec wave2 = {.nconn = g_long ? 200 : 60, .conc = 8, .msgs = 4, .msg_len = 1000, .stall_ms = 10000};
    iomux_stats st0, st1;
    uint64_t cpu0, t0, ms;
    storm.conc = storm.nconn;
    iomux_config_init(&cfg);
    fds0 = count_fds();
    /* the server's own fds, on a trial loop (an io_uring ring takes the
     * fd limit in force when it is made: lower it first) */
    CHECK_OK(server_open(&s, &cfg, NULL));
    fds_open = count_fds();
    server_close(&s);
    CHECK_SYS(getrlimit(RLIMIT_NOFILE, &old));
    low = old;
    /* fds are taken lowest-first: this leaves `room` for connections */
    low.rlim_cur = (rlim_t)(fds_open + room);
    CHECK_SYS(setrlimit(RLIMIT_NOFILE, &low));
    CHECK_OK(server_open(&s, &cfg, NULL));
    CHECK_EQ(count_fds(), fds_open);
    r = round_run(&s, wave2, 30000); /* warm up: tables sized, pool made */
    expect_all_ok(&r, &wave2, "warm-up");
    iomux_loop_stats(s.loop, &st0);
    cpu0 = cpu_ns();
    t0 = test_ms();
    r = round_run(&s, storm, 60000);
    ms = test_ms() - t0;
    iomux_loop_stats(s.loop, &st1);
    cpu0 = cpu_ns() - cpu0;
    if (g_verbose)
        fprintf(stderr, "storm: ok %d failed %d corrupt %d timeout %d accepted %d paused %llu shed %llu fatal %d\n", r.ok,
                r.failed, r.corrupt, r.timeout, s.accepted, (unsigned long long)s.acc.paused,
                (unsigned long long)s.acc.shed, s.acc_fatal);
    if (r.corrupt || r.timeout)
        FAIL("storm: corrupt %d, hung %d (of %d clients)", r.corrupt, r.timeout, storm.nconn);
    if (r.ok + r.failed != storm.nconn) FAIL("storm: %d + %d of %d", r.ok, r.failed, storm.nconn);
    if (r.ok < room / 2) FAIL("storm: only %d clients served with room for %d", r.ok, room);
    if (s.acc.paused == 0) FAIL("storm: the acceptor never ran out of fds (limit %d)", (int)low.rlim_cur);
    if (s.acc_fatal) FAIL("storm: the acceptor stopped: %s", iomux_strerror(s.acc_fatal));
    if (s.close_other) FAIL("storm: %d connections closed with %s", s.close_other, iomux_strerror(s.last_other));
    /* not a spin: a handful of iterations per client and per pause */
    if (st1.iterations - st0.iterations > (uint64_t)(40 * storm.nconn) + 30 * (ms / 100 + 1))
        FAIL("storm: the loop spun: %llu iterations in %llu ms", (unsigned long long)(st1.iterations - st0.iterations),
             (unsigned long long)ms);
    fprintf(stderr,
            "emfile: fd limit %d (room for %d connections): %d clients in %llu ms: %d served, %d refused (%d after "
            "part of the echo); acceptor paused %llu times, shed %llu connections; loop %llu iterations, %.1f ms CPU\n",
            (int)low.rlim_cur, room, storm.nconn, (unsigned long long)ms, r.ok, r.failed, r.partial,
            (unsigned long long)s.acc.paused, (unsigned long long)s.acc.shed,
            (unsigned long long)(st1.iterations - st0.iterations), (double)cpu0 / 1e6);
    r = round_run(&s, wave2, 30000);
    expect_all_ok(&r, &wave2, "second wave (recovery)");
    CHECK_SYS(setrlimit(RLIMIT_NOFILE, &old));
    server_close(&s);
    CHECK_EQ(count_fds(), fds0);
    fprintf(stderr, "emfile: second wave of %d clients served in full; fds back to %d\n", wave2.nconn, fds0);
    return 0;
}

/* The io_uring ring's fdinfo, for the report (verbose): its geometry,
 * heads and tails, and how many CQEs wait in the kernel's overflow list. */
static void print_ring_info(int compact) {
    char path[64], link[64], line[256];
    int fd;
    for (fd = 0; fd < 65536; fd++) {
        FILE *f;
        ssize_t n;
        int over = 0, in_over = 0;
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        n = readlink(path, link, sizeof(link) - 1);
        if (n <= 0) continue;
        link[n] = '\0';
        if (!strstr(link, "io_uring")) continue;
        snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
        if (!(f = fopen(path, "r"))) continue;
        while (fgets(line, sizeof(line), f)) {
            if (strncmp(line, "CqOverflowList", 14) == 0) in_over = 1;
            else if (in_over && strstr(line, "user_data")) over++;
            if (!compact && (strncmp(line, "Cq", 2) == 0 || strncmp(line, "Sq", 2) == 0)) fputs(line, stderr);
            if (compact && (strncmp(line, "CqHead", 6) == 0 || strncmp(line, "SqHead", 6) == 0))
                fprintf(stderr, "%.*s ", (int)strcspn(line, "\n"), line);
        }
        fprintf(stderr, "overflowed CQEs waiting: %d\n", over);
        fclose(f);
        return;
    }
}

/* ---- a small pool and a small CQ ------------------------------------------------------------------------ */

static int scenario_smallring(void) {
    iomux_config cfg;
    server s;
    cres r;
    int n = g_long ? 5000 : 1000, fds0 = count_fds();
    cspec sp = {.nconn = n, .conc = n, .msgs = 8, .msg_len = 2048, .stream = 1, .stall_ms = 20000};
    uint64_t t0, total;
    iomux_stats st0, st1;
    struct rlimit rl;
    CHECK_SYS(getrlimit(RLIMIT_NOFILE, &rl));
    if (rl.rlim_max < (rlim_t)(n + 200)) {
        fprintf(stderr, "skip: the fd limit (%llu) is below %d\n", (unsigned long long)rl.rlim_max, n + 200);
        return TEST_SKIP;
    }
    rl.rlim_cur = rl.rlim_max;
    CHECK_SYS(setrlimit(RLIMIT_NOFILE, &rl));
    iomux_config_init(&cfg);
    cfg.pool_buffers = 8;
    cfg.pool_buffer_size = 4096;
    cfg.uring_entries = 16;
    cfg.uring_cq_entries = 16;
    CHECK_OK(server_open(&s, &cfg, NULL));
    iomux_loop_stats(s.loop, &st0);
    t0 = test_ms();
    r = round_run(&s, sp, 40000);
    iomux_loop_stats(s.loop, &st1);
    total = (uint64_t)n * sp.msgs * sp.msg_len;
    expect_all_ok(&r, &sp, "smallring");
    if (r.bytes != total) FAIL("smallring: %llu bytes echoed, want %llu", (unsigned long long)r.bytes, (unsigned long long)total);
    if (s.rx_bytes != total) FAIL("smallring: server got %llu bytes, want %llu", (unsigned long long)s.rx_bytes, (unsigned long long)total);
    CHECK_EQ(s.accepted, n);
    CHECK_EQ(s.close_zero, n);
    CHECK_EQ(s.close_other + s.close_enomem + s.start_enomem + s.write_enomem, 0);
    fprintf(stderr,
            "smallring (%s, 8 pool buffers, CQ 16): %d connections x %zu bytes echoed in %llu ms, every byte checked; "
            "%llu loop iterations\n",
            iomux_backend_name(s.loop), n, (size_t)sp.msgs * sp.msg_len, (unsigned long long)(test_ms() - t0),
            (unsigned long long)(st1.iterations - st0.iterations));
    if (g_verbose) print_ring_info(0);
    server_close(&s); /* loop_free refuses (-EBUSY) if any op was left without its completion */
    CHECK_EQ(count_fds(), fds0);
    return 0;
}

int main(int argc, char **argv) {
    const char *sc = argc > 1 ? argv[1] : "";
    const char *lg = getenv("IOMUX_FAULTS_LONG");
    signal(SIGPIPE, SIG_IGN);
    atexit(kill_child);
    g_long = (argc > 2 && strcmp(argv[2], "long") == 0) || (lg && *lg && strcmp(lg, "0") != 0);
    test_only = argc > 3 ? argv[3] : NULL;
    g_verbose = getenv("IOMUX_FAULTS_VERBOSE") ? atoi(getenv("IOMUX_FAULTS_VERBOSE")) : 0;
    if (strcmp(sc, "enomem") == 0) return scenario_enomem();
    if (strcmp(sc, "emfile") == 0) return scenario_emfile();
    if (strcmp(sc, "smallring") == 0) return scenario_smallring();
    fprintf(stderr, "usage: %s enomem|emfile|smallring [long [test]]\n", argv[0]);
    return 2;
}

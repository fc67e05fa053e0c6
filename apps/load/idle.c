/* --idle N: N live, idle connections held in the server for the whole run.
 *
 * A process may hold at most 20,000 fds here (the hard limit), so the idle
 * connections live in child processes, forked before any loop exists,
 * each holding at most IDLE_PER_CHILD. A child opens its share in batches
 * of IDLE_BATCH non-blocking connects (so the server's accept queue is not
 * overrun), makes each serve one exchange (echo: --size bytes there and
 * back; http: one GET and its whole response) so that it is a connection
 * the server has accepted and served, not one waiting in its backlog,
 * then writes 'r' to its ready pipe and blocks reading the "life" pipe,
 * whose write end only the parent holds: when the parent exits, however
 * it exits, the read returns 0 and the child exits, closing everything
 * (PR_SET_PDEATHSIG is a second guard). Connects refused or reset (a full
 * accept queue) are retried.
 *
 * Past IDLE_PER_SOURCE connections to a 127.x host, connection i binds
 * to source address 127.0.0.(2 + i / IDLE_PER_SOURCE) first: one source
 * address has only ~28,000 ephemeral ports towards one server port. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "load.h"

#define IDLE_PER_CHILD 8000
#define IDLE_BATCH 256
#define IDLE_PER_SOURCE 25000
#define IDLE_TRIES 8

enum { IC_CONNECTING, IC_SENDING, IC_READING, IC_DONE };

typedef struct iconn {
    int fd, st, tries;
    size_t sent;
    resp_parser rp;
} iconn;

/* What a child needs. */
typedef struct ichild {
    const load_opts *o;
    uint64_t deadline_ns;
    const char *req;
    size_t req_len;
    resp_cfg rcfg;
    int many_sources;
} ichild;

static void child_die(long idx, const char *what, int err) __attribute__((noreturn));
static void child_die(long idx, const char *what, int err) {
    fprintf(stderr, LOAD_NAME ": idle connection %ld: %s%s%s\n", idx, what, err ? ": " : "", err ? strerror(err) : "");
    _exit(1);
}

static int retryable(int err) {
    return err == ECONNREFUSED || err == EAGAIN || err == ECONNRESET || err == ETIMEDOUT || err == EPIPE;
}

/* ---- one connection ---- */

static void bind_source(const ichild *k, int fd, long idx) {
    struct sockaddr_in src;
    int one = 1;
    if (!k->many_sources) return;
    memset(&src, 0, sizeof(src));
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl(0x7f000002u + (uint32_t)(idx / IDLE_PER_SOURCE));
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)); /* the port is picked at connect */
    if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) child_die(idx, "bind to a 127.0.0.x source", errno);
}

static void ic_connect(const ichild *k, iconn *c, long idx) {
    int one = 1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (c->fd < 0) child_die(idx, "socket", errno);
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    bind_source(k, c->fd, idx);
    c->tries++;
    c->st = IC_CONNECTING;
    c->sent = 0;
    memset(&c->rp, 0, sizeof(c->rp));
    if (connect(c->fd, (const struct sockaddr *)&k->o->addr, sizeof(k->o->addr)) == 0) c->st = IC_SENDING;
    else if (errno != EINPROGRESS && errno != EAGAIN) child_die(idx, "connect", errno);
}

/* The connection failed with err: start it again after a pause, or die. */
static void ic_retry(const ichild *k, iconn *c, long idx, int err) {
    close(c->fd);
    if (!retryable(err) || c->tries >= IDLE_TRIES) child_die(idx, "connect or exchange failed", err);
    usleep(20000u * (unsigned)c->tries);
    ic_connect(k, c, idx);
}

static void ic_read(const ichild *k, iconn *c, long idx) {
    char buf[16384];
    resp_out out = {0, 0};
    ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
        ic_retry(k, c, idx, n == 0 ? ECONNRESET : errno);
        return;
    }
    if (resp_feed(&c->rp, &k->rcfg, buf, (size_t)n, &out) < 0) child_die(idx, "a bad response", 0);
    if (out.bad_status) child_die(idx, "the response to its request is not 2xx", 0);
    if (out.done) c->st = IC_DONE;
}

/* One step of c after poll said re. */
static void ic_step(const ichild *k, iconn *c, long idx, short re) {
    if (c->st == IC_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (!(re & (POLLOUT | POLLERR | POLLHUP))) return;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        if (err == 0 && (re & (POLLERR | POLLHUP))) err = ECONNRESET;
        if (err) {
            ic_retry(k, c, idx, err);
            return;
        }
        c->st = IC_SENDING;
    }
    if (c->st == IC_SENDING) {
        ssize_t n = send(c->fd, k->req + c->sent, k->req_len - c->sent, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN) ic_retry(k, c, idx, errno);
        if (n > 0 && (c->sent += (size_t)n) == k->req_len) c->st = IC_READING;
        return;
    }
    if (c->st == IC_READING && (re & (POLLIN | POLLERR | POLLHUP))) ic_read(k, c, idx);
}

/* ---- a child ---- */

/* Opens connections [first, first + n) (global numbering), each served
 * once; their fds go to fds[]. */
static void open_batch(const ichild *k, iconn *cs, struct pollfd *pfd, long first, long n, int *fds) {
    long i, pending;
    for (i = 0; i < n; i++) {
        cs[i].tries = 0;
        ic_connect(k, &cs[i], first + i);
    }
    for (;;) {
        for (i = 0, pending = 0; i < n; i++) {
            pfd[i].fd = cs[i].st == IC_DONE ? -1 : cs[i].fd;
            pfd[i].events = cs[i].st == IC_READING ? POLLIN : POLLOUT;
            pfd[i].revents = 0;
            pending += cs[i].st != IC_DONE;
        }
        if (pending == 0) break;
        if (load_now_ns() > k->deadline_ns) child_die(first, "timed out (the batch from here)", 0);
        if (poll(pfd, (nfds_t)n, 100) < 0 && errno != EINTR) child_die(first, "poll", errno);
        for (i = 0; i < n; i++)
            if (pfd[i].revents) ic_step(k, &cs[i], first + i, pfd[i].revents);
    }
    for (i = 0; i < n; i++) fds[i] = cs[i].fd;
}

/* Closes every fd from 3 up but keep[0] and keep[1]. */
static void close_others(int a, int b) {
    int lo = a < b ? a : b, hi = a < b ? b : a, fd;
    for (fd = 3; fd < lo; fd++) close(fd);
    for (fd = lo + 1; fd < hi; fd++) close(fd);
#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned)hi + 1, ~0u, 0u) == 0) return;
#endif
    for (fd = hi + 1; fd < 65536; fd++) close(fd);
}

static void child_main(const ichild *k, pid_t parent, long first, long n, int ready_w, int life_r) {
    long at, b = n < IDLE_BATCH ? n : IDLE_BATCH;
    int *fds = malloc((size_t)n * sizeof(int));
    iconn *cs = malloc((size_t)b * sizeof(*cs));
    struct pollfd *pfd = malloc((size_t)b * sizeof(*pfd));
    char r = 'r';
    ssize_t got;
    close_others(ready_w, life_r);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1); /* the parent is already gone */
    if (!fds || !cs || !pfd) child_die(first, "out of memory", 0);
    for (at = 0; at < n; at += b)
        open_batch(k, cs, pfd, first + at, n - at < b ? n - at : b, fds + at);
    if (write(ready_w, &r, 1) != 1) _exit(1);
    do got = read(life_r, &r, 1); /* until the parent's end closes */
    while (got > 0 || (got < 0 && errno == EINTR));
    _exit(0);
}

/* ---- the parent ---- */

static void kill_all(idle_group *ig) {
    int i;
    for (i = 0; i < ig->nchildren; i++) kill(ig->pids[i], SIGKILL);
}

/* Waits for a byte from each ready pipe; 0 when all said 'r'. */
static int wait_ready(int *ready, int n, uint64_t deadline_ns) {
    int left = n, i;
    struct pollfd *p = calloc((size_t)n, sizeof(*p));
    if (!p) return -1;
    for (i = 0; i < n; i++) p[i] = (struct pollfd){.fd = ready[i], .events = POLLIN};
    while (left > 0) {
        uint64_t now = load_now_ns();
        char c;
        if (now >= deadline_ns) break;
        if (poll(p, (nfds_t)n, (int)((deadline_ns - now) / 1000000u) + 1) < 0 && errno != EINTR) break;
        for (i = 0; i < n; i++) {
            if (p[i].fd < 0 || !p[i].revents) continue;
            if (read(p[i].fd, &c, 1) != 1 || c != 'r') left = -1; /* a child failed */
            p[i].fd = -1;
            if (left > 0) left--;
        }
    }
    free(p);
    return left == 0 ? 0 : -1;
}

static void child_setup(ichild *k, const load_opts *o, uint64_t deadline_ns) {
    k->o = o;
    k->deadline_ns = deadline_ns;
    k->req = proto_requests(o->proto, (size_t)o->size, o->host, o->path, 0, 1, &k->req_len);
    k->rcfg.proto = o->proto;
    k->rcfg.size = (size_t)o->size;
    k->rcfg.ref = k->req;
    k->many_sources = o->idle > IDLE_PER_SOURCE && (ntohl(o->addr.sin_addr.s_addr) >> 24) == 127;
}

int idle_start(const load_opts *o, uint64_t deadline_ns, idle_group *ig) {
    int life[2], i, n = (int)((o->idle + IDLE_PER_CHILD - 1) / IDLE_PER_CHILD), *ready = NULL, rc = 0;
    pid_t parent = getpid();
    ichild k;
    memset(ig, 0, sizeof(*ig));
    ig->life_w = -1;
    if (o->idle == 0) return 0;
    child_setup(&k, o, deadline_ns);
    ig->pids = calloc((size_t)n, sizeof(pid_t));
    ready = calloc((size_t)n, sizeof(int));
    if (!k.req || !ig->pids || !ready || pipe2(life, O_CLOEXEC) < 0) {
        fprintf(stderr, LOAD_NAME ": cannot set up the idle holders: %s\n", strerror(errno ? errno : ENOMEM));
        free(ready);
        free((void *)k.req);
        return -1;
    }
    ig->life_w = life[1];
    fflush(NULL);
    for (i = 0; i < n && rc == 0; i++) {
        long first = (long)i * o->idle / n, last = (long)(i + 1) * o->idle / n;
        int rp[2];
        if (pipe2(rp, O_CLOEXEC) < 0 || (ig->pids[i] = fork()) < 0) {
            rc = -1;
            break;
        }
        if (ig->pids[i] == 0) child_main(&k, parent, first, last - first, rp[1], life[0]);
        close(rp[1]);
        ready[i] = rp[0];
        ig->nchildren++;
    }
    close(life[0]);
    if (rc == 0) rc = wait_ready(ready, ig->nchildren, deadline_ns);
    for (i = 0; i < ig->nchildren; i++) close(ready[i]);
    free(ready);
    free((void *)k.req);
    if (rc < 0) {
        fprintf(stderr, LOAD_NAME ": the %ld idle connections could not be opened%s\n", o->idle,
                load_now_ns() >= deadline_ns ? " in time" : "");
        kill_all(ig);
        idle_stop(ig);
    }
    return rc;
}

/* Closes the life pipe: the children close their connections and exit. */
void idle_stop(idle_group *ig) {
    uint64_t end = load_now_ns() + 3000000000u;
    int i;
    if (ig->life_w >= 0) close(ig->life_w);
    ig->life_w = -1;
    for (i = 0; i < ig->nchildren; i++) {
        while (waitpid(ig->pids[i], NULL, WNOHANG) == 0) {
            if (load_now_ns() > end) {
                kill(ig->pids[i], SIGKILL);
                waitpid(ig->pids[i], NULL, 0);
                break;
            }
            usleep(2000);
        }
    }
    ig->nchildren = 0;
    free(ig->pids);
    ig->pids = NULL;
}

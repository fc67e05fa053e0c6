/* bench/chain: the cost of one event as the number of watched fds grows —
 * the classic libevent bench.c / libev benchmark, on every iomux backend.
 *
 * N fds are watched for IN: N/2 socketpairs with both ends watched (a
 * socketpair is bidirectional; this keeps 15,000 watched fds inside a 20,000
 * fd limit). The fds form A rings of N/A fds, one token (a byte) per ring:
 * the read callback of fd j reads the byte and writes it on to the next fd
 * of its ring, until a round's budget of H hops is spent. Tokens never meet,
 * so every hop is one event, one read and one write, in both modes.
 *
 * One round is timed from the first write to the last read; we print the
 * median over at least R rounds, in microseconds per round, per backend and
 * mode (LT, ET). select and poll pay for every watched fd at every wait;
 * epoll pays for the ready ones, so its column should stay flat as N grows. */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "iomux.h"

typedef struct chain {
    int n;            /* watched fds */
    int ring;         /* fds per ring: n / active */
    int *fd;          /* fd[2k], fd[2k+1]: one socketpair */
    iomux_watch *w;
    long budget;      /* hops left to forward in this round */
    long in_flight;   /* bytes written and not read yet */
    long failures;
} chain;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Writing on fd[k ^ 1] makes fd[k] readable (the other end of its pair). */
static void send_to(chain *c, int k, const char *buf, long len) {
    if (write(c->fd[k ^ 1], buf, (size_t)len) != len) c->failures++;
}

static int next_of(const chain *c, int j) {
    int base = j - j % c->ring;
    return base + (j - base + 1) % c->ring;
}

static void on_read(iomux_watch *w, unsigned revents) {
    chain *c = w->data;
    int j = (int)(w - c->w);
    char buf[64];
    ssize_t n;
    (void)revents;
    /* One read drains the fd when it returns less than asked (a short read
     * from a stream socket means the queue is empty), as ET needs. */
    n = read(w->fd, buf, sizeof(buf));
    if (n <= 0 || n == (ssize_t)sizeof(buf)) {
        c->failures++;
        return;
    }
    c->in_flight -= n;
    if (c->budget > 0) {
        send_to(c, next_of(c, j), buf, n);
        c->budget -= n;
        c->in_flight += n;
    }
}

static int chain_open(chain *c, iomux_loop *loop, int n, unsigned events) {
    int k;
    memset(c, 0, sizeof(*c));
    c->n = n;
    c->fd = calloc((size_t)n, sizeof(int));
    c->w = calloc((size_t)n, sizeof(iomux_watch));
    if (!c->fd || !c->w) return -ENOMEM;
    c->n = 0;
    for (k = 0; k + 1 < n; k += 2) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, &c->fd[k]) < 0)
            return -errno;
        c->n = k + 2;
    }
    for (k = 0; k < c->n; k++) {
        int rc;
        iomux_watch_init(loop, &c->w[k], c->fd[k], on_read);
        c->w[k].data = c;
        rc = iomux_watch_start(&c->w[k], events);
        if (rc < 0) return rc;
    }
    return 0;
}

static void chain_close(chain *c) {
    int k;
    for (k = 0; k < c->n; k++) {
        iomux_watch_stop(&c->w[k]);
        close(c->fd[k]);
    }
    free(c->fd);
    free(c->w);
}

/* One round: one token into each ring, then spend `hops`. */
static double chain_round(chain *c, iomux_loop *loop, long hops) {
    uint64_t t0;
    int i;
    c->budget = hops;
    c->in_flight = 0;
    t0 = now_ns();
    for (i = 0; i + c->ring <= c->n; i += c->ring) {
        send_to(c, i, "e", 1);
        c->in_flight++;
    }
    while (c->in_flight > 0 && c->failures == 0) {
        if (iomux_run(loop, IOMUX_RUN_ONCE) < 0) c->failures++;
    }
    return (double)(now_ns() - t0) / 1000.0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A round slower than this is cut short: the timed rounds then run fewer
 * hops and are scaled back to `hops` (a hop costs the same all round long),
 * which keeps select and poll at 15,000 fds to seconds, not minutes. */
#define SLOW_ROUND_US 300000.0
#define MIN_HOPS 50
#define MAX_ROUNDS 31
#define EXTRA_ROUNDS_US 150000.0

/* Median microseconds per round of `hops` for one configuration; < 0 on
 * failure. */
static double measure(iomux_backend be, int nfds, int active, int et, long hops, int rounds) {
    iomux_config cfg;
    iomux_loop *loop;
    chain c;
    double t[MAX_ROUNDS], warm = 0, scale = 1, spent;
    long run_hops = hops;
    int r, rc;
    iomux_config_init(&cfg);
    cfg.backend = be;
    if (iomux_loop_new(&loop, &cfg) < 0) return -1;
    rc = chain_open(&c, loop, nfds, IOMUX_IN | (et ? IOMUX_ET : 0u));
    c.ring = nfds / active > 0 ? nfds / active : 1;
    if (rc == 0) {
        warm = chain_round(&c, loop, hops); /* warm-up: interest applied, caches hot */
        if (warm > SLOW_ROUND_US) {
            run_hops = (long)(hops * SLOW_ROUND_US / warm);
            if (run_hops < MIN_HOPS) run_hops = MIN_HOPS;
            scale = (double)hops / (double)run_hops;
        }
        /* Cheap configurations run more rounds (a steadier median), while
         * they stay within the time a slow one takes. */
        for (r = 0, spent = 0; c.failures == 0 && r < MAX_ROUNDS &&
                               (r < rounds || spent < EXTRA_ROUNDS_US);
             r++) {
            double us = chain_round(&c, loop, run_hops);
            spent += us;
            t[r] = us * scale;
        }
        rounds = r;
    }
    if (rc < 0) fprintf(stderr, "chain: %d fds: %s\n", nfds, iomux_strerror(rc));
    if (c.failures) fprintf(stderr, "chain: %ld failed writes or runs\n", c.failures);
    rc = (rc < 0 || c.failures) ? -1 : 0;
    chain_close(&c);
    iomux_loop_free(loop);
    if (rc < 0 || rounds == 0) return -1;
    qsort(t, (size_t)rounds, sizeof(double), cmp_double);
    return t[rounds / 2];
}

static int parse_list(const char *s, int *out, int max) {
    int n = 0;
    char *end;
    while (*s && n < max) {
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0) return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: iomux-chain [options]\n"
            "  --fds LIST      watched fds per run (default 100,1000,5000,10000,15000)\n"
            "  --active LIST   tokens in flight (default 1,100)\n"
            "  --hops H        hops per round (default 1000)\n"
            "  --rounds R      at least R timed rounds, median reported (default 5, max 31)\n"
            "  --cpu C         pin to CPU C (default 0; -1: do not pin)\n"
            "  --backends L    comma-separated subset of: %s\n",
            iomux_backend_names());
}

typedef struct opts {
    int fds[16], nfds, active[8], nactive, rounds, cpu;
    long hops;
    iomux_backend be[8];
    int nbe;
} opts;

static int parse_backends(const char *s, opts *o) {
    char buf[128], *tok, *save = NULL;
    snprintf(buf, sizeof(buf), "%s", s);
    o->nbe = 0;
    for (tok = strtok_r(buf, ", ", &save); tok && o->nbe < 8; tok = strtok_r(NULL, ", ", &save)) {
        iomux_backend b;
        if (iomux_backend_parse(tok, &b) < 0 || b == IOMUX_BACKEND_AUTO || !iomux_backend_available(b)) {
            fprintf(stderr, "iomux-chain: unknown backend '%s' (have: %s)\n", tok, iomux_backend_names());
            return -1;
        }
        o->be[o->nbe++] = b;
    }
    return o->nbe > 0 ? 0 : -1;
}

static int parse_opts(int argc, char **argv, opts *o) {
    int i;
    o->nfds = parse_list("100,1000,5000,10000,15000", o->fds, 16);
    o->nactive = parse_list("1,100", o->active, 8);
    o->rounds = 5;
    o->hops = 1000;
    o->cpu = 0;
    if (parse_backends(iomux_backend_names(), o) < 0) return -1;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        }
        if (!v) return -1;
        if (!strcmp(a, "--fds")) o->nfds = parse_list(v, o->fds, 16);
        else if (!strcmp(a, "--active")) o->nactive = parse_list(v, o->active, 8);
        else if (!strcmp(a, "--hops")) o->hops = atol(v);
        else if (!strcmp(a, "--rounds")) o->rounds = atoi(v);
        else if (!strcmp(a, "--cpu")) o->cpu = atoi(v);
        else if (!strcmp(a, "--backends")) {
            if (parse_backends(v, o) < 0) return -1;
        } else return -1;
        i++;
    }
    if (o->nfds <= 0 || o->nactive <= 0 || o->hops <= 0 || o->rounds <= 0 || o->rounds > MAX_ROUNDS) return -1;
    return 0;
}

static void pin(int cpu) {
    cpu_set_t set;
    if (cpu < 0) return;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) < 0) perror("iomux-chain: sched_setaffinity");
}

static const char *be_name(iomux_backend b) {
    static const char *names[] = {"auto", "select", "poll", "epoll", "uring", "iocp"};
    return names[b];
}

static void print_table(const opts *o, int active, double res[16][16]) {
    int i, b, m;
    printf("\nactive tokens: %d  (microseconds per round of %ld hops, median of %d-%d rounds; lower is better)\n",
           active, o->hops, o->rounds, MAX_ROUNDS);
    printf("%8s", "fds");
    for (b = 0; b < o->nbe; b++)
        for (m = 0; m < 2; m++) printf(" %10s-%s", be_name(o->be[b]), m ? "ET" : "LT");
    printf("\n");
    for (i = 0; i < o->nfds; i++) {
        printf("%8d", o->fds[i]);
        for (b = 0; b < 2 * o->nbe; b++) {
            if (res[i][b] < 0) printf(" %13s", "failed");
            else printf(" %13.0f", res[i][b]);
        }
        printf("\n");
    }
    for (b = 0; b < 2 * o->nbe; b++) {
        if (res[0][b] <= 0 || res[o->nfds - 1][b] <= 0) continue;
        printf("  %s-%s: %d fds / %d fds = %.2fx\n", be_name(o->be[b / 2]), b % 2 ? "ET" : "LT",
               o->fds[o->nfds - 1], o->fds[0], res[o->nfds - 1][b] / res[0][b]);
    }
}

int main(int argc, char **argv) {
    opts o;
    struct rlimit rl;
    int a, i, b, m, progress = isatty(2);
    if (parse_opts(argc, argv, &o) < 0) {
        usage(stderr);
        return 2;
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    pin(o.cpu);
    printf("iomux chain benchmark: N watched fds (N/2 socketpairs, both ends watched),\n"
           "each read callback forwards its byte to the next fd.\n");
    for (a = 0; a < o.nactive; a++) {
        double res[16][16];
        for (i = 0; i < o.nfds; i++) {
            for (b = 0; b < o.nbe; b++) {
                for (m = 0; m < 2; m++) {
                    if (progress)
                        fprintf(stderr, "\r  active %d, %d fds, %s-%s ...        ", o.active[a], o.fds[i],
                                be_name(o.be[b]), m ? "ET" : "LT");
                    res[i][2 * b + m] = measure(o.be[b], o.fds[i], o.active[a], m, o.hops, o.rounds);
                }
            }
        }
        if (progress) fprintf(stderr, "\r%60s\r", "");
        print_table(&o, o.active[a], res);
    }
    return 0;
}

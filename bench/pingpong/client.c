/* The ping-pong client: `conns` connections, each with exactly one message
 * of `size` bytes in flight (send it, receive it back whole, send again).
 * Built on iomux's Proactor API, by default on uring, so the client costs
 * as few system calls as possible and the server is what is measured. It
 * connects everything, warms up, then counts round trips over `duration`. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "pingpong.h"

/* Receives with a multishot pool recv (one SQE for the connection's life
 * on uring), so a round trip costs the client one send. */
typedef struct cconn {
    iomux_op connect, tx, rx;
    int fd;
    size_t got;
} cconn;

typedef struct client {
    const pp_client_opts *o;
    iomux_loop *loop;
    struct sockaddr_in addr;
    char *msg;
    cconn *c;
    int connected, failed;
    uint64_t count, count0;
    double t0, cpu0;
    iomux_timer warm, end;
} client;

static client g;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

static void on_rx(iomux_op *op);

static void on_tx(iomux_op *op) {
    if (op->result < 0) g.failed++;
}

static void send_ping(cconn *c) {
    c->got = 0;
    if (iomux_send(g.loop, &c->tx, c->fd, g.msg, (size_t)g.o->size, on_tx) < 0) g.failed++;
}

static void on_rx(iomux_op *op) {
    cconn *c = op->data;
    if (op->result <= 0) {
        if (!g.t0 || iomux_timer_active(&g.end)) g.failed++; /* not our own shutdown */
        return;
    }
    c->got += (size_t)op->result;
    iomux_buf_release(op->loop, op->buf);
    if (c->got < (size_t)g.o->size) return; /* the rest of this echo comes next */
    g.count++;
    send_ping(c);
}

static void on_warm(iomux_timer *t) {
    char one = 1;
    (void)t;
    g.count0 = g.count;
    g.t0 = now_s();
    g.cpu0 = cpu_s();
    if (g.o->ready_fd >= 0 && write(g.o->ready_fd, &one, 1) != 1) g.failed++;
    iomux_timer_start(&g.end, (uint64_t)(g.o->duration * 1000), 0);
}

static void on_end(iomux_timer *t) {
    (void)t;
    double secs = now_s() - g.t0;
    printf("%llu %.6f %.6f\n", (unsigned long long)(g.count - g.count0), secs, cpu_s() - g.cpu0);
    fflush(stdout);
    iomux_stop(g.loop);
}

static void on_connected(iomux_op *op) {
    cconn *c = op->data;
    int one = 1;
    if (op->result < 0) {
        g.failed++;
        return;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (iomux_recv(g.loop, &c->rx, c->fd, NULL, 0, IOMUX_OP_MULTISHOT, on_rx) < 0) g.failed++;
    send_ping(c);
    if (++g.connected == g.o->conns) iomux_timer_start(&g.warm, (uint64_t)(g.o->warmup * 1000), 0);
}

static int start_conns(void) {
    int i;
    for (i = 0; i < g.o->conns; i++) {
        cconn *c = &g.c[i];
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) return -errno;
        c->connect.data = c->tx.data = c->rx.data = c;
        if (iomux_connect(g.loop, &c->connect, c->fd, (struct sockaddr *)&g.addr, sizeof(g.addr),
                          on_connected) < 0)
            return -EIO;
    }
    return 0;
}

int pp_client(const pp_client_opts *o) {
    iomux_config cfg;
    int rc;
    memset(&g, 0, sizeof(g));
    g.o = o;
    pp_pin(o->cpu);
    iomux_config_init(&cfg);
    cfg.backend = o->backend;
    cfg.pool_buffers = 4096;
    cfg.pool_buffer_size = 1024;
    rc = iomux_loop_new(&g.loop, &cfg);
    if (rc < 0) return rc;
    g.msg = malloc((size_t)o->size);
    g.c = calloc((size_t)o->conns, sizeof(cconn));
    if (!g.msg || !g.c) return -ENOMEM;
    memset(g.msg, 'p', (size_t)o->size);
    g.addr.sin_family = AF_INET;
    g.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    g.addr.sin_port = htons((uint16_t)o->port);
    iomux_timer_init(g.loop, &g.warm, on_warm);
    iomux_timer_init(g.loop, &g.end, on_end);
    rc = start_conns();
    while (rc == 0 && !g.failed && !(g.t0 > 0 && !iomux_timer_active(&g.end)))
        rc = iomux_run(g.loop, IOMUX_RUN_ONCE) < 0 ? -EIO : 0;
    if (g.failed) fprintf(stderr, "pingpong client: %d failures\n", g.failed);
    return rc < 0 ? rc : (g.failed ? -EIO : 0);
}

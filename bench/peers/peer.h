/* What the five peer echo servers share (bench/peers/): the command line,
 * the listening socket, the ready line, the raw peers' signal fd, and the
 * small pieces of socket code the hand-written loops (raw epoll, libev)
 * would otherwise each repeat. The libraries' own idioms (accepting,
 * buffering, signals) stay in each peer's file: only what is not the
 * library's business is here, so every peer listens, reports and parses
 * the same way and the benchmark compares the loops, not the set-up. */
#ifndef IOMUX_PEER_H
#define IOMUX_PEER_H

#include <stddef.h>
#include <sys/types.h>

#define PEER_BACKLOG 4096
#define PEER_BUF 65536 /* bytes read per call by the readiness peers */

typedef struct peer_opts {
    const char *name;  /* program name, e.g. "iomux-peer-epoll" */
    const char *model; /* e.g. "raw-epoll": the ready line says it */
    const char *bind;  /* numeric IPv4 address */
    unsigned port;     /* 0: any free port */
} peer_opts;

/* Parses --port, --bind, --help (also "--opt=value"). --help prints the
 * usage and exits 0; a bad command line prints why and exits 2. Ignores
 * SIGPIPE: a peer that went away is an error return, not a death. */
void peer_init(peer_opts *o, const char *name, const char *model, int argc, char **argv);

/* A bound, listening, non-blocking TCP socket (SO_REUSEADDR, backlog
 * PEER_BACKLOG), close-on-exec. Prints why and exits 1 if it cannot. */
int peer_listen(const peer_opts *o);

/* Prints the one ready line ("NAME: listening on ADDR:PORT (model M)")
 * with the port the listener really has, and flushes it. */
void peer_ready(const peer_opts *o, int lfd);

/* Blocks SIGINT and SIGTERM and returns a non-blocking signalfd that
 * becomes readable when one arrives (raw epoll, raw io_uring). */
int peer_signalfd(void);

/* Turns Nagle off: an echo must not wait for the next segment. */
void peer_nodelay(int fd);

/* Out of fds (EMFILE, ENFILE): accepts one pending connection on the
 * spare fd kept for this and closes it, so a level-triggered listener
 * does not report the same connection forever (a spin). */
void peer_shed(int lfd);

/* Accepts one connection (non-blocking, close-on-exec, Nagle off); -1 when
 * none is left to accept now. Sheds one when out of fds. */
int peer_accept(int lfd);

/* Sends what the socket takes now: the bytes sent (0: it is full), or -1
 * on an error (the connection is gone). */
ssize_t peer_send(int fd, const char *p, size_t len);

/* The rest of a short write, kept until the socket takes it. */
typedef struct peer_held {
    size_t off, len;
    char data[];
} peer_held;

/* A copy of p[0, len), or exits 1 when out of memory. */
peer_held *peer_hold(const char *p, size_t len);

/* Sends more of h; 1 when all of it is sent, 0 if some is left, -1 on an
 * error. */
int peer_flush(int fd, peer_held *h);

#endif

/* iomux-load: a load generator built on iomux's Proactor API; the
 * declarations its files share. One file per job:
 *   main.c     start-up and exit codes: options, pinning, idle holders, run, report
 *   options.c  the command line (and --help)
 *   hist.c     the latency histogram (hist.h)
 *   proto.c    requests and incremental response parsers, echo and HTTP (proto.h)
 *   conn.c     one connection's life on the loop: connect, receive, send, close, retry
 *   traffic.c  what is sent when: closed loop, open loop (paced), connect-rate
 *   run.c      the loop: start-up, warm-up, the measured period, the end, teardown
 *   idle.c     the idle connections, held by child processes
 *   report.c   the result as text or one line of JSON
 */
#ifndef IOMUX_LOAD_H
#define IOMUX_LOAD_H

#include <netinet/in.h>
#include <stdint.h>

#include "hist.h"
#include "iomux.h"
#include "proto.h"

#define LOAD_NAME "iomux-load"

/* ---- options (options.c) ---- */

typedef struct load_opts {
    const char *host;
    struct sockaddr_in addr; /* host:port, resolved */
    int port;
    int proto;               /* PROTO_ECHO or PROTO_HTTP */
    long conns;
    double duration, warmup; /* seconds */
    long size;               /* echo message bytes */
    long pipeline;
    double rate;             /* open loop: requests/s in total; 0: closed loop */
    long long requests;      /* stop after exactly this many responses; 0: by time */
    long idle;
    int connect_rate;
    const char *path;
    iomux_backend backend;
    int cpu;                 /* -1: not pinned */
    int json;
    int signal_fd;           /* -1: none */
    double timeout_s;
} load_opts;

/* Parses argv into o; prints a message and exits 2 on a bad command line,
 * prints the usage and exits 0 on --help. */
void load_parse(int argc, char **argv, load_opts *o);

/* ---- the run's state (run.c, conn.c, traffic.c) ---- */

enum { C_DOWN, C_CONNECTING, C_OPEN, C_CLOSING, C_PAUSED };

/* One active connection (or, with --connect-rate, one slot that opens a
 * connection per request). Every op it starts counts in `ops` until its
 * final callback; a connection being closed is reused (reconnected) only
 * when that count is back to 0. */
typedef struct lconn {
    iomux_op connect, tx, rx, close, pause;
    int fd;
    uint8_t state;
    uint8_t dirty;     /* open loop: in the list of connections to send on */
    uint8_t got_resp;  /* connect-rate: the response is in, waiting for EOF */
    uint8_t tx_busy;   /* a send is in flight */
    uint8_t started;   /* counted as open at start-up */
    unsigned ops;
    unsigned retry_ms; /* pause before the reopen, once closed */
    unsigned tries;    /* start-up connects attempted */
    uint32_t idx;
    /* Requests given to this connection (`sent`, the last `queued` of them
     * not yet in a send) and answered. Open loop: request j of connection
     * i is request k = i + j * nconns of the schedule; requests due while
     * it was down count as sent and answered (and lost), so `answered`
     * is always the j of the next response. */
    uint64_t sent, answered, queued;
    uint64_t t_sent;         /* closed loop: when the batch went; connect-rate: the connect */
    resp_parser rp;
} lconn;

enum { PH_CONNECTING, PH_WARMUP, PH_MEASURE, PH_DONE };

typedef struct load_run {
    const load_opts *o;
    iomux_loop *loop;
    lconn *c;
    unsigned nconns;
    const char *req;       /* request bytes, req_copies requests back to back */
    size_t req_len;        /* of one request */
    unsigned req_copies;
    resp_cfg rcfg;         /* how responses are parsed (echo: the message to compare with) */
    lconn **dirty;         /* open loop: connections with requests due */
    unsigned ndirty;
    int phase;
    int ever_connected;    /* a connect succeeded (connect-rate: start-up is over) */
    unsigned connected;    /* start-up: connections open so far */
    unsigned connecting;   /* start-up: connects in flight (a window) */
    unsigned next_connect; /* start-up: the next connection to open */
    unsigned live_ops;     /* ops in flight, all connections */
    uint64_t issued;       /* requests handed out (--requests caps this) */
    uint64_t completed;    /* responses, whole run */
    uint64_t lost;         /* open loop: requests dropped with their connection */
    uint64_t t_traffic, t_begin, t_end; /* ns */
    double cpu_begin, cpu_end;
    /* open loop pacing: request k is due at t_traffic + k * period_ns,
     * on connection k % nconns */
    double period_ns;
    uint64_t next_k, k_limit;
    int tfd;               /* timerfd waking the loop for the next due request */
    uint64_t tfd_armed;
    iomux_watch tfd_watch;
    iomux_timer warm_timer, end_timer, deadline_timer;
    /* the measured period */
    uint64_t m_requests, m_bytes;
    uint64_t err_connect, err_status, err_io;
    hist lat;
    const char *first_error; /* the first io error, explained at the end */
    const char *fatal;     /* why the run could not be done (exit 1) */
    int fatal_errno;
} load_run;

extern load_run g;

uint64_t load_now_ns(void);
double load_cpu_s(void);

/* conn.c */
void conn_open(lconn *c);
/* c failed (err: a positive errno; why: what to report, NULL: err's text):
 * counted (unless still starting up or the run is over), closed, and
 * reopened after a pause. */
void conn_fail(lconn *c, int is_connect, int err, const char *why);
void conn_close(lconn *c);
void conn_kick(lconn *c);

/* traffic.c: policies */
void traffic_startup(void);
void traffic_begin(void);
void traffic_on_open(lconn *c);
void traffic_on_responses(lconn *c, unsigned n, unsigned bad_status, uint64_t now);
void traffic_on_lost(lconn *c);
void traffic_on_settled(lconn *c);
void traffic_pace(uint64_t now);
int traffic_timer_start(void);
void traffic_timer_stop(void);

/* run.c */
void run_begin_measure(void);
void run_end_measure(void);
void run_fatal(const char *why, int err);
/* Runs the whole load (the idle holders already hold theirs) and prints
 * the report; returns the exit code: 0, or 1 after saying why. */
int load_run_all(const load_opts *o, uint64_t deadline_ns);

/* idle.c: holders of the idle connections, in child processes */
typedef struct idle_group {
    int nchildren;
    int life_w;   /* the children exit when this closes */
    int *pids;
} idle_group;

/* Opens o->idle idle connections in child processes and returns when
 * every one of them did its exchange: 0, or -1 after printing why. */
int idle_start(const load_opts *o, uint64_t deadline_ns, idle_group *ig);
void idle_stop(idle_group *ig);

/* report.c */
void report_print(const load_run *r, const char *backend);

#endif

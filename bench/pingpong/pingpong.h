/* bench/pingpong: echo ping-pong between a server on one CPU and a client
 * process on another; shared declarations. */
#ifndef IOMUX_PINGPONG_H
#define IOMUX_PINGPONG_H

#include <stdint.h>

#include "iomux.h"

/* How the server is written. */
typedef enum pp_api {
    PP_REACTOR,    /* watchers, level-triggered: read then write back */
    PP_REACTOR_ET, /* watchers, edge-triggered: read until EAGAIN */
    PP_PROACTOR    /* ops: multishot accept, multishot pool recv, send */
} pp_api;

typedef struct pp_server_opts {
    iomux_backend backend;
    pp_api api;
    int cpu;          /* -1: do not pin */
    int ready_fd;     /* the port is written here once listening */
} pp_server_opts;

typedef struct pp_client_opts {
    iomux_backend backend;
    int port;
    int conns;
    int size;
    double warmup, duration; /* seconds */
    int cpu;
    int ready_fd;     /* one byte when the measured period begins */
} pp_client_opts;

/* Both run until done (the server until SIGTERM); they return 0 or -errno.
 * The client prints "<requests> <seconds> <its CPU seconds>" on stdout. */
int pp_server(const pp_server_opts *o);
int pp_client(const pp_client_opts *o);

int pp_pin(int cpu);

#endif

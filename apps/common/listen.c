/* The listening sockets of every shape, and the ready line. */
#include <string.h>

#include <iomux/net.h>

#include "internal.h"
#include "port.h"

void app__close_all(int *fds, unsigned count) {
    unsigned i;
    for (i = 0; i < count; i++) {
        if (fds[i] >= 0) app_sock_close(fds[i]);
        fds[i] = -1;
    }
}

int app__listen(const app_options *o, unsigned count, int reuseport, int *fds, int *port) {
    iomux_listen_opts lo;
    unsigned i;
    int p = o->port;
    memset(&lo, 0, sizeof(lo));
    lo.reuseport = reuseport;
    for (i = 0; i < count; i++) fds[i] = -1;
    for (i = 0; i < count; i++) {
        fds[i] = iomux_listen(o->bind, p, &lo);
        if (fds[i] < 0) {
            app_log("cannot listen on %s port %d: %s", o->bind, p, iomux_strerror(fds[i]));
            fds[i] = -1;
            app__close_all(fds, count);
            return -1;
        }
        if (i == 0) p = iomux_listen_port(fds[0]);
    }
    *port = p;
    return 0;
}

void app__ready(const app_spec *spec, const app_options *o, int port) {
    const char *h = o->bind && *o->bind ? o->bind : "0.0.0.0";
    int brackets = strchr(h, ':') && h[0] != '[';
    char shape[64];
    if (o->model == APP_MODEL_PREFORK) snprintf(shape, sizeof(shape), "processes %u", o->processes);
    else if (o->model == APP_MODEL_THREADS) snprintf(shape, sizeof(shape), "threads per-connection");
    else if (o->balance == APP_BALANCE_ACCEPTOR) snprintf(shape, sizeof(shape), "threads %u, balance acceptor",
                                                          o->threads);
    else snprintf(shape, sizeof(shape), "threads %u", o->threads);
    printf("%s: listening on %s%s%s:%d (model %s, api %s, %s)\n", spec->name, brackets ? "[" : "", h,
           brackets ? "]" : "", port, app_model_name(o->model), app_api_name(o->api), shape);
    fflush(stdout);
}

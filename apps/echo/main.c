/* iomux-echo: an echo server in every I/O model of iomux (see --help and
 * apps/common/app.h for the models, shapes and drain). */
#include "echo.h"

static void conn_start(app_loop *l, iomux_fd fd) {
    if (l->opt->api == APP_API_PROACTOR) echo_proactor_start(l, fd);
    else echo_reactor_start(l, fd);
}

/* Fewer, larger receives than the default 4 KiB pool buffers. */
static void loop_config(const app_options *o, iomux_config *cfg) {
    (void)o;
    cfg->pool_buffers = 512;
    cfg->pool_buffer_size = ECHO_BUF;
}

static const app_spec spec = {
    .name = "iomux-echo",
    .summary = "Echoes back every byte each TCP connection sends.",
    .default_port = 7000,
    .hooks =
        {
            .loop_start = echo_loop_start,
            .loop_stop = echo_loop_stop,
            .conn_start = conn_start,
            .drain = echo_drain,
            .abort = echo_abort,
#ifndef _WIN32 /* threads and prefork: not on Windows */
            .serve = echo_serve,
#endif
            .loop_config = loop_config,
        },
};

int main(int argc, char **argv) {
    return app_main(&spec, argc, argv);
}

/* The Proactor httpd: the HTTP module's own driver (iomux_http_server, on
 * iomux_conn: pool-buffer reads, one ordered write queue, sendfile). The
 * runner accepts (an iomux_acceptor: EMFILE-safe) and hands each
 * connection over; the server tells us when each one is gone. */
#include "httpd.h"

static void closed(iomux_http_server *srv, void *data) {
    (void)srv;
    app_conn_closed(data);
}

int httpd_proactor_loop_start(app_loop *l, httpd_loop *hl) {
    iomux_http_config cfg;
    int rc;
    httpd_config(l->opt, &cfg);
    if ((rc = iomux_http_server_new(&hl->srv, l->loop, -1, &cfg)) < 0) return rc;
    iomux_http_server_on_close(hl->srv, closed, l);
    return 0;
}

void httpd_proactor_conn(app_loop *l, iomux_fd fd) {
    httpd_loop *hl = l->data;
    if (iomux_http_server_adopt(hl->srv, fd) < 0) app_conn_closed(l); /* fd closed by it */
}

/* Idle connections close now, busy ones after their response; the
 * runner's deadline (abort) comes before the server's own. */
void httpd_proactor_drain(app_loop *l) {
    httpd_loop *hl = l->data;
    iomux_http_server_drain(hl->srv, (uint64_t)l->opt->drain_ms + 1000, NULL, NULL);
}

void httpd_proactor_abort(app_loop *l) {
    httpd_loop *hl = l->data;
    iomux_http_server_abort(hl->srv);
}

void httpd_proactor_loop_stop(app_loop *l) {
    httpd_loop *hl = l->data;
    if (hl->srv && iomux_http_server_free(hl->srv) < 0) app_log("loop %u: HTTP server still busy", l->index);
    hl->srv = NULL;
}

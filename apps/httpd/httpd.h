/* iomux-httpd: what its files share. The HTTP itself is the module's
 * (<iomux/http.h>): a sans-I/O session per connection. Each API here only
 * moves bytes between a socket and a session: proactor.c through the
 * module's own driver (iomux_http_server, on iomux_conn), reactor.c with a
 * watcher per connection, blocking.c with blocking calls. */
#ifndef IOMUX_HTTPD_H
#define IOMUX_HTTPD_H

#include <iomux/http.h>

#include "app.h"

/* The module's configuration from the command line (httpd_config). */
void httpd_config(const app_options *o, iomux_http_config *cfg);

/* Per event loop. */
typedef struct httpd_loop {
    iomux_http_server *srv;    /* proactor */
    struct hr_loop *r;         /* reactor (reactor.c) */
} httpd_loop;

/* proactor.c */
int httpd_proactor_loop_start(app_loop *l, httpd_loop *hl);
void httpd_proactor_conn(app_loop *l, iomux_fd fd);
void httpd_proactor_drain(app_loop *l);
void httpd_proactor_abort(app_loop *l);
void httpd_proactor_loop_stop(app_loop *l);

/* reactor.c */
int httpd_reactor_loop_start(app_loop *l, httpd_loop *hl);
void httpd_reactor_conn(app_loop *l, iomux_fd fd);
void httpd_reactor_drain(app_loop *l);
void httpd_reactor_abort(app_loop *l);
void httpd_reactor_loop_stop(app_loop *l);

/* blocking.c: threads and prefork. */
void httpd_serve(const app_options *o, void *app, iomux_fd fd);

#endif /* IOMUX_HTTPD_H */

/* iomux-httpd: an HTTP/1.1 server in every I/O model of iomux (see --help,
 * apps/common/app.h for the models and the drain, and <iomux/http.h> for
 * what a request gets). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"

#ifdef _WIN32
/* Windows: the Proactor version only (the Reactor one writes with writev
 * and sendfile(2), the blocking one needs threads or prefork); app_parse
 * then refuses --api reactor, so these are never called. */
#define HTTPD_APIS APP_API_BIT(APP_API_PROACTOR)
#define httpd_reactor_loop_start(l, hl) ((void)(hl), -ENOTSUP)
#define httpd_reactor_loop_stop(l) ((void)(l))
#define httpd_reactor_conn(l, fd) ((void)(l), (void)(fd))
#define httpd_reactor_drain(l) ((void)(l))
#define httpd_reactor_abort(l) ((void)(l))
#else
#define HTTPD_APIS 0 /* all three */
#endif

static const char *root;
static const char *access_log;
static unsigned header_ms = 10000, idle_ms = 30000, send_ms = 30000;
static unsigned max_body_kib = 1024;
static FILE *log_file;

static const app_option options[] = {
    {"root", APP_OPT_STRING, &root, 0, 0, "DIR", "serve static files from DIR (default: none)", NULL},
    {"access-log", APP_OPT_STRING, &access_log, 0, 0, "FILE",
     "log one line per response to FILE ('-': stdout; default: off)", NULL},
    {"header-timeout-ms", APP_OPT_UINT, &header_ms, 1, 3600000, "MS",
     "a request's headers must all arrive within MS (default 10000)", NULL},
    {"idle-timeout-ms", APP_OPT_UINT, &idle_ms, 1, 3600000, "MS",
     "close a keep-alive connection quiet for MS (default 30000)", NULL},
    {"send-timeout-ms", APP_OPT_UINT, &send_ms, 1, 3600000, "MS",
     "reset a connection whose output made no progress for MS (default 30000)", NULL},
    {"max-body-kib", APP_OPT_UINT, &max_body_kib, 1, 1048576, "KIB",
     "larger request bodies get 413 (default 1024)", NULL},
    {NULL, APP_OPT_FLAG, NULL, 0, 0, NULL, NULL, NULL}};

/* --work-us: the simulated business logic, before the routes. */
static int work(void *data, const iomux_http_request *req, iomux_http_response *res) {
    const app_options *o = data;
    (void)req;
    (void)res;
    app_spin_us(o->work_us);
    return IOMUX_HTTP_DECLINED;
}

void httpd_config(const app_options *o, iomux_http_config *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->root = root;
    cfg->server_name = "iomux";
    cfg->access_log = log_file;
    cfg->header_timeout_ms = header_ms;
    cfg->idle_timeout_ms = idle_ms;
    cfg->send_timeout_ms = send_ms;
    cfg->max_body = (size_t)max_body_kib * 1024;
    if (o->work_us) {
        cfg->handler = work;
        cfg->handler_data = (void *)o;
    }
}

static int loop_start(app_loop *l) {
    httpd_loop *hl = calloc(1, sizeof(*hl));
    int rc;
    if (!hl) return -ENOMEM;
    l->data = hl;
    rc = l->opt->api == APP_API_PROACTOR ? httpd_proactor_loop_start(l, hl) : httpd_reactor_loop_start(l, hl);
    if (rc < 0) {
        app_log("cannot serve: %s", iomux_strerror(rc));
        free(hl);
        l->data = NULL;
    }
    return rc;
}

static void loop_stop(app_loop *l) {
    if (l->opt->api == APP_API_PROACTOR) httpd_proactor_loop_stop(l);
    else httpd_reactor_loop_stop(l);
    free(l->data);
    l->data = NULL;
}

static void conn_start(app_loop *l, iomux_fd fd) {
    if (l->opt->api == APP_API_PROACTOR) httpd_proactor_conn(l, fd);
    else httpd_reactor_conn(l, fd);
}

static void drain(app_loop *l) {
    if (l->opt->api == APP_API_PROACTOR) httpd_proactor_drain(l);
    else httpd_reactor_drain(l);
}

static void abort_all(app_loop *l) {
    if (l->opt->api == APP_API_PROACTOR) httpd_proactor_abort(l);
    else httpd_reactor_abort(l);
}

static const app_spec spec = {
    .name = "iomux-httpd",
    .summary = "Serves HTTP/1.1: GET /plaintext, GET /json, and static files from --root.",
    .default_port = 8080,
    .apis = HTTPD_APIS,
    .options = options,
    .hooks =
        {
            .loop_start = loop_start,
            .loop_stop = loop_stop,
            .conn_start = conn_start,
            .drain = drain,
            .abort = abort_all,
#ifndef _WIN32
            .serve = httpd_serve,
#endif
        },
};

/* Checks what the frame cannot: the root exists, the log opens, and
 * --offload (handlers answer synchronously; there is nothing to offload to). */
static int check(const app_options *o) {
    iomux_http_ctx *ctx;
    iomux_http_config cfg;
    int rc;
    if (o->offload) {
        app_log("--offload is not supported: iomux-httpd's handlers answer at once (use --work-us alone)");
        return 2;
    }
    if (access_log) {
        log_file = strcmp(access_log, "-") == 0 ? stdout : fopen(access_log, "a");
        if (!log_file) {
            app_log("--access-log %s: %s", access_log, strerror(errno));
            return 2;
        }
        setvbuf(log_file, NULL, _IOLBF, 0);
    }
    httpd_config(o, &cfg);
    if ((rc = iomux_http_ctx_new(&ctx, &cfg)) < 0) {
        app_log("--root %s: %s", root ? root : "", iomux_strerror(rc));
        return 2;
    }
    iomux_http_ctx_free(ctx);
    return 0;
}

int main(int argc, char **argv) {
    app_options o;
    int rc = app_parse(&spec, argc, argv, &o);
    if (rc == 1) return 0;
    if (rc != 0) return 2;
    if ((rc = check(&o)) != 0) return rc;
    rc = app_run(&spec, &o);
    if (log_file && log_file != stdout) fclose(log_file);
    return rc;
}

/* Which code answers a request: the user's handler, then the built-in
 * routes, then static files, then 404. */
#include <string.h>

#include "internal.h"

static const char plaintext[] = "Hello, World!";
static const char json[] = "{\"message\":\"Hello, World!\"}";

static int path_is(const iomux_http_request *req, const char *p) {
    size_t n = strlen(p);
    return req->path_len == n && memcmp(req->path, p, n) == 0;
}

static int builtin(const iomux_http_request *req, iomux_http_response *r, const char *ctype,
                   const char *body, size_t len) {
    iomux__http_meta m = {.status = 200, .ctype = ctype, .clen = len, .mtime = (time_t)-1};
    if (req->method_id != IOMUX_HTTP_GET && req->method_id != IOMUX_HTTP_HEAD)
        return iomux__http_error(r, 405);
    return iomux__http_emit(r, &m, body, len);
}

/* 1 if the request was for a built-in route (answered), else 0. */
static int builtins(const iomux_http_request *req, iomux_http_response *r, int *rc) {
    if (path_is(req, "/plaintext"))
        *rc = builtin(req, r, "text/plain", plaintext, sizeof(plaintext) - 1);
    else if (path_is(req, "/json"))
        *rc = builtin(req, r, "application/json", json, sizeof(json) - 1);
    else
        return 0;
    return 1;
}

int iomux__http_route(iomux_http_session *s, const iomux_http_request *req, iomux_http_response *r) {
    const iomux_http_config *cfg = &s->ctx->cfg;
    int rc;
    if (cfg->handler) {
        rc = cfg->handler(cfg->handler_data, req, r);
        if (rc != IOMUX_HTTP_DECLINED) return r->sent ? 0 : iomux__http_error(r, 500);
        if (r->sent) return 0; /* declined after answering: the answer stands */
        s->ctx->extra_len = 0;
    }
    if (!(cfg->flags & IOMUX_HTTP_NO_BUILTINS) && builtins(req, r, &rc)) return rc;
    if (s->ctx->root_fd >= 0) return iomux__http_static(s, req, r);
    return iomux__http_error(r, 404);
}

/* The access log: one Common Log Format line per response, to the FILE*
 * the configuration names (the one place the module writes text: the user
 * asked for it). The byte count is the body's Content-Length. */
#include <stdio.h>

#include "internal.h"

void iomux__http_log(iomux_http_response *r, int status, uint64_t bytes) {
    iomux_http_ctx *ctx = r->s->ctx;
    char peer[64] = "-";
    FILE *f = ctx->cfg.access_log;
    if (!f) return;
    if (ctx->peer_name) ctx->peer_name(r->s, peer, sizeof(peer));
    if (r->method && r->version)
        fprintf(f, "%s - - [%s] \"%s %.*s HTTP/%u.%u\" %d %llu\n", peer, ctx->log_time, r->method,
                (int)r->target_len, r->target, r->version / 10, r->version % 10, status,
                (unsigned long long)bytes);
    else if (r->method) /* refused inside the request line */
        fprintf(f, "%s - - [%s] \"%s %.*s\" %d %llu\n", peer, ctx->log_time, r->method,
                (int)r->target_len, r->target, status, (unsigned long long)bytes);
    else
        fprintf(f, "%s - - [%s] \"-\" %d %llu\n", peer, ctx->log_time, status, (unsigned long long)bytes);
}

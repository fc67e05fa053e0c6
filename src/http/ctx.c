/* The shared context: configuration with defaults, the root directory, the
 * wall-clock time shown in Date and the log, the allocator. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef _WIN32
#include "../core/sys.h" /* windows.h, io.h, iomux__errno_from_win */
#endif

#include "internal.h"

void *iomux__http_malloc(iomux_http_ctx *ctx, size_t size) {
    return ctx->alloc.malloc(ctx->alloc.ud, size);
}

void *iomux__http_realloc(iomux_http_ctx *ctx, void *p, size_t size) {
    return ctx->alloc.realloc(ctx->alloc.ud, p, size);
}

void iomux__http_free(iomux_http_ctx *ctx, void *p) {
    if (p) ctx->alloc.free(ctx->alloc.ud, p);
}

static char *dup_str(iomux_http_ctx *ctx, const char *s) {
    size_t n = strlen(s) + 1;
    char *d = iomux__http_malloc(ctx, n);
    if (d) memcpy(d, s, n);
    return d;
}

static void fill_defaults(iomux_http_config *c) {
    if (!c->max_body) c->max_body = 1u << 20;
    if (!c->max_uri) c->max_uri = 8192;
    if (!c->max_header_line) c->max_header_line = 8192;
    if (!c->max_headers) c->max_headers = 100;
    if (!c->max_header_bytes) c->max_header_bytes = 65536;
    if (!c->header_timeout_ms) c->header_timeout_ms = 10000;
    if (!c->idle_timeout_ms) c->idle_timeout_ms = 30000;
    if (!c->send_timeout_ms) c->send_timeout_ms = 30000;
    /* Offsets in a request's buffer are 32-bit: keep every limit well inside. */
    if (c->max_body > (1u << 30)) c->max_body = 1u << 30;
}

/* Copies the strings so that the caller's may go away. */
static int own_strings(iomux_http_ctx *ctx) {
    if (ctx->cfg.server_name) {
        ctx->cfg.server_name = dup_str(ctx, ctx->cfg.server_name);
        if (!ctx->cfg.server_name) return -ENOMEM;
    }
    if (ctx->cfg.root) {
        ctx->cfg.root = dup_str(ctx, ctx->cfg.root);
        if (!ctx->cfg.root) return -ENOMEM;
    }
    return 0;
}

#ifdef _WIN32
/* No O_PATH: the directory's handle (BACKUP_SEMANTICS opens one) as a C
 * runtime fd, which static.c resolves beneath. */
static int open_root(iomux_http_ctx *ctx) {
    BY_HANDLE_FILE_INFORMATION bi;
    HANDLE h;
    if (!ctx->cfg.root) return 0;
    h = CreateFileA(ctx->cfg.root, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                    OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS, NULL);
    if (h == INVALID_HANDLE_VALUE) return -iomux__errno_from_win(GetLastError());
    if (!GetFileInformationByHandle(h, &bi) || !(bi.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY)) {
        CloseHandle(h);
        return -ENOTDIR;
    }
    ctx->root_fd = _open_osfhandle((intptr_t)h, _O_RDONLY);
    if (ctx->root_fd < 0) {
        CloseHandle(h);
        return -EMFILE;
    }
    return 0;
}
#else
static int open_root(iomux_http_ctx *ctx) {
    if (!ctx->cfg.root) return 0;
    ctx->root_fd = open(ctx->cfg.root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    return ctx->root_fd < 0 ? -errno : 0;
}
#endif

int iomux_http_ctx_new(iomux_http_ctx **out, const iomux_http_config *cfg) {
    const iomux_allocator *a = cfg && cfg->allocator ? cfg->allocator : &iomux__default_allocator;
    iomux_http_ctx *ctx = a->malloc(a->ud, sizeof(*ctx));
    int rc;
    if (!ctx) return -ENOMEM;
    memset(ctx, 0, sizeof(*ctx));
    ctx->alloc = *a;
    ctx->root_fd = -1;
    if (cfg) ctx->cfg = *cfg;
    ctx->cfg.allocator = &ctx->alloc;
    fill_defaults(&ctx->cfg);
    iomux__http_settings(&ctx->settings);
    iomux_http_ctx_set_time(ctx, time(NULL));
    rc = own_strings(ctx);
    if (rc == 0) rc = open_root(ctx);
    if (rc < 0) {
        iomux_http_ctx_free(ctx);
        return rc;
    }
    *out = ctx;
    return 0;
}

void iomux_http_ctx_free(iomux_http_ctx *ctx) {
    if (!ctx) return;
    if (ctx->root_fd >= 0) close(ctx->root_fd);
    iomux__http_req_release(ctx, &ctx->scratch);
    iomux__http_segs_free(ctx);
    iomux__http_free(ctx, ctx->extra);
    iomux__http_free(ctx, ctx->path);
    iomux__http_free(ctx, (char *)ctx->cfg.server_name);
    iomux__http_free(ctx, (char *)ctx->cfg.root);
    ctx->alloc.free(ctx->alloc.ud, ctx);
}

const iomux_http_config *iomux_http_ctx_config(const iomux_http_ctx *ctx) {
    return &ctx->cfg;
}

void iomux_http_ctx_set_time(iomux_http_ctx *ctx, time_t now) {
    char d[30];
    if (now == ctx->now && ctx->date_len) return;
    ctx->now = now;
    iomux__http_date_format(now, d);
    memcpy(ctx->date, "Date: ", 6);
    memcpy(ctx->date + 6, d, 29);
    memcpy(ctx->date + 35, "\r\n", 2);
    ctx->date_len = 37;
    iomux__http_clf_format(now, ctx->log_time);
}

void iomux_http_ctx_tick(iomux_http_ctx *ctx, uint64_t now_ms) {
    struct timespec ts;
    if (ctx->ticked && now_ms - ctx->tick_ms < 1000) return;
    ctx->ticked = 1;
    ctx->tick_ms = now_ms;
    clock_gettime(CLOCK_REALTIME, &ts);
    iomux_http_ctx_set_time(ctx, ts.tv_sec);
}

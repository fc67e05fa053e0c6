/* A session's output list: memory segments that responses are appended to
 * (so the answers to one batch of pipelined requests share one segment and
 * leave in one write) and file ranges for sendfile. Segments never move
 * once allocated, so a writer may hold pointers into them while more
 * output is appended. Standard-size segments are recycled through the
 * context, so steady traffic allocates nothing. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define SEG_DATA (IOMUX__HTTP_SEG_ALLOC - sizeof(iomux__http_seg))

static iomux__http_seg *seg_new(iomux_http_ctx *ctx, size_t data) {
    iomux__http_seg *g;
    if (data <= SEG_DATA && ctx->free_segs) {
        g = ctx->free_segs;
        ctx->free_segs = g->next;
        ctx->nfree--;
    } else {
        if (data < SEG_DATA) data = SEG_DATA;
        if (data > UINT32_MAX) return NULL;
        g = iomux__http_malloc(ctx, sizeof(*g) + data);
        if (!g) return NULL;
        g->cap = (uint32_t)data;
    }
    g->next = NULL;
    g->fd = -1;
    g->off = g->len = 0;
    g->foff = 0;
    return g;
}

static void seg_free(iomux_http_ctx *ctx, iomux__http_seg *g) {
    if (g->fd >= 0) close(g->fd); /* a file range: cap is 0, so it is freed below */
    if (g->cap == SEG_DATA && ctx->nfree < IOMUX__HTTP_FREE_SEGS) {
        g->next = ctx->free_segs;
        ctx->free_segs = g;
        ctx->nfree++;
        return;
    }
    iomux__http_free(ctx, g);
}

void iomux__http_segs_free(iomux_http_ctx *ctx) {
    while (ctx->free_segs) {
        iomux__http_seg *g = ctx->free_segs;
        ctx->free_segs = g->next;
        iomux__http_free(ctx, g);
    }
    ctx->nfree = 0;
}

static void seg_append(iomux_http_session *s, iomux__http_seg *g) {
    if (s->internal.tail) s->internal.tail->next = g;
    else s->internal.head = g;
    s->internal.tail = g;
}

/* At least n contiguous bytes at the end of the output, to be filled and
 * then committed; NULL when out of memory. */
char *iomux__http_out_reserve(iomux_http_session *s, size_t n) {
    iomux__http_seg *g = s->internal.tail;
    if (!g || g->fd >= 0 || g->cap - g->len < n) {
        g = seg_new(s->ctx, n);
        if (!g) return NULL;
        seg_append(s, g);
    }
    return g->data + g->len;
}

void iomux__http_out_commit(iomux_http_session *s, size_t n) {
    s->internal.tail->len += n;
    s->internal.out_bytes += n;
}

/* Fills what is left of the last segment, then one new segment. */
int iomux__http_out_write(iomux_http_session *s, const void *data, size_t n) {
    iomux__http_seg *g = s->internal.tail;
    const char *p = data;
    char *dst;
    if (g && g->fd < 0 && g->cap > g->len) {
        size_t k = g->cap - g->len < n ? g->cap - g->len : n;
        memcpy(g->data + g->len, p, k);
        iomux__http_out_commit(s, k);
        p += k;
        n -= k;
    }
    if (n == 0) return 0;
    dst = iomux__http_out_reserve(s, n);
    if (!dst) return -ENOMEM;
    memcpy(dst, p, n);
    iomux__http_out_commit(s, n);
    return 0;
}

/* Takes fd: it is closed when the range is consumed (or on failure). */
int iomux__http_out_file(iomux_http_session *s, int fd, int64_t off, size_t len) {
    iomux__http_seg *g = iomux__http_malloc(s->ctx, sizeof(*g));
    if (!g) {
        close(fd);
        return -ENOMEM;
    }
    g->next = NULL;
    g->fd = fd;
    g->cap = 0;
    g->off = 0;
    g->len = len;
    g->foff = off;
    seg_append(s, g);
    s->internal.out_bytes += len;
    return 0;
}

void iomux__http_out_clear(iomux_http_session *s) {
    while (s->internal.head) {
        iomux__http_seg *g = s->internal.head;
        s->internal.head = g->next;
        seg_free(s->ctx, g);
    }
    s->internal.tail = NULL;
    s->internal.out_bytes = 0;
}

static void chunk_of(const iomux__http_seg *g, size_t skip, iomux_http_chunk *c) {
    size_t from = g->off + skip;
    c->len = g->len - from;
    if (g->fd >= 0) {
        c->data = NULL;
        c->fd = g->fd;
        c->offset = g->foff + (int64_t)from;
    } else {
        c->data = g->data + from;
        c->fd = -1;
        c->offset = 0;
    }
}

size_t iomux_http_out_peek(const iomux_http_session *s, size_t skip, iomux_http_chunk *v, size_t max) {
    const iomux__http_seg *g;
    size_t n = 0;
    for (g = s->internal.head; g && n < max; g = g->next) {
        size_t left = g->len - g->off;
        if (skip >= left) {
            skip -= left;
            continue;
        }
        chunk_of(g, skip, &v[n++]);
        skip = 0;
    }
    return n;
}

void iomux_http_out_consume(iomux_http_session *s, size_t n) {
    if (n > s->internal.out_bytes) n = s->internal.out_bytes;
    s->internal.out_bytes -= n;
    while (n > 0 && s->internal.head) {
        iomux__http_seg *g = s->internal.head;
        size_t left = g->len - g->off;
        if (n < left) {
            g->off += n;
            return;
        }
        n -= left;
        s->internal.head = g->next;
        if (!g->next) s->internal.tail = NULL;
        seg_free(s->ctx, g);
    }
}

iomux_fd iomux_http_out_take_file(iomux_http_session *s) {
    iomux__http_seg *g = s->internal.head;
    int fd;
    if (!g || g->fd < 0) return -1;
    fd = g->fd;
    g->fd = -1; /* now the caller's: seg_free must not close it */
    s->internal.out_bytes -= g->len - g->off;
    s->internal.head = g->next;
    if (!g->next) s->internal.tail = NULL;
    seg_free(s->ctx, g);
    return fd;
}

size_t iomux_http_out_pending(const iomux_http_session *s) {
    return s->internal.out_bytes;
}

/* The loop's recv buffer pool, created on the first recv without a buffer:
 * `count` buffers of `size` bytes in one block, so an idle connection holds
 * none. On readiness backends the core lends them from a free stack; on
 * uring the block is registered as a provided-buffer ring and the kernel
 * picks one as data arrives (the backend's pool_init / pool_put). */
#include <errno.h>
#include <string.h>

#include "loop.h"

static unsigned round_pow2(unsigned n) {
    unsigned p = 1;
    while (p < n && p < (1u << 15)) p <<= 1;
    return p;
}

int iomux__bufpool_ensure(iomux_loop *loop) {
    iomux__bufpool *bp = &loop->pool;
    unsigned i;
    int rc = 0;
    if (bp->base) return 0;
    bp->count = round_pow2(loop->pool_count);
    bp->size = loop->pool_size;
    bp->base = iomux__malloc(loop, (size_t)bp->count * bp->size);
    bp->free = iomux__malloc(loop, bp->count * sizeof(unsigned));
    if (!bp->base || !bp->free) rc = -ENOMEM;
    if (rc == 0 && loop->backend->pool_init) {
        rc = loop->backend->pool_init(loop, bp->base, bp->count, bp->size);
        bp->ring = 1;
    }
    if (rc < 0) {
        iomux__bufpool_free(loop);
        return rc;
    }
    for (i = 0; i < bp->count; i++) bp->free[i] = bp->count - 1 - i;
    bp->nfree = bp->count;
    iomux__q_init(&bp->waiters);
    return 0;
}

void iomux__bufpool_free(iomux_loop *loop) {
    iomux__free(loop, loop->pool.base);
    iomux__free(loop, loop->pool.free);
    memset(&loop->pool, 0, sizeof(loop->pool));
}

void *iomux__buf_take(iomux_loop *loop) {
    iomux__bufpool *bp = &loop->pool;
    if (bp->nfree == 0) return NULL;
    return bp->base + (size_t)bp->free[--bp->nfree] * bp->size;
}

void iomux__buf_put(iomux_loop *loop, void *buf) {
    iomux__bufpool *bp = &loop->pool;
    bp->free[bp->nfree++] = (unsigned)(((char *)buf - bp->base) / bp->size);
}

void *iomux__buf_of_id(iomux_loop *loop, unsigned id) {
    iomux__bufpool *bp = &loop->pool;
    bp->nfree--;
    return bp->base + (size_t)id * bp->size;
}

void iomux__buf_wait(iomux_loop *loop, iomux_op *op) {
    if (!iomux__q_linked(&op->internal.pend.node))
        iomux__q_push(&loop->pool.waiters, &op->internal.pend.node);
}

/* A buffer came back: wake waiting recvs, oldest first, while free
 * buffers are not spoken for; waking them all would have all but a few find
 * the pool empty again (on uring: an SQE and an ENOBUFS each). A woken recv
 * speaks for a buffer by taking one (the emulation reads at once), or by
 * going to the kernel (which will pick one when its data lands); one that
 * finds no data gives its buffer back and waits for readiness instead. */
static void wake(iomux_loop *loop) {
    iomux__bufpool *bp = &loop->pool;
    iomux__node *n;
    unsigned spare = bp->nfree;
    while (spare > 0 && (n = iomux__q_pop(&bp->waiters)) != NULL) {
        iomux_op *op = iomux__container_of(n, iomux_op, internal.pend.node);
        unsigned before = bp->nfree;
        iomux__ops_drive(loop, op->internal.fd);
        if (bp->nfree < before) spare = bp->nfree;
        else if (op->internal.state == OP_KERNEL) spare--;
    }
}

void iomux_buf_release(iomux_loop *loop, void *buf) {
    iomux__bufpool *bp = &loop->pool;
    size_t off;
    if (!buf || !bp->base) return;
    off = (size_t)((char *)buf - bp->base);
    if ((char *)buf < bp->base || off >= (size_t)bp->count * bp->size || off % bp->size) return;
    if (bp->ring) {
        loop->backend->pool_put(loop, (unsigned)(off / bp->size));
        bp->nfree++;
    } else {
        iomux__buf_put(loop, buf);
    }
    wake(loop);
}

/* On uring `nfree` counts a buffer as the kernel's until its completion is
 * reaped, so with completions waiting (in the CQ or its overflow list) it
 * is too high, and a recv that met an empty ring (-ENOBUFS) would go
 * straight back to meet it again: with an 8-buffer ring and thousands of
 * connections that fed the overflow it waited behind, and starved
 * connections for seconds (tests/test-faults.c, smallring). Such a recv
 * parks with the waiters instead (op.c) and is woken here, once per
 * iteration after the completions were reaped, or by the next release. */
void iomux__buf_kick(iomux_loop *loop) {
    if (!loop->pool.kick) return;
    loop->pool.kick = 0;
    wake(loop);
}

/* The loop's allocator hook and the small growth helpers built on it. */
#include <errno.h>
#include <stdlib.h>

#include "loop.h"

static void *std_malloc(void *ud, size_t size) {
    (void)ud;
    return malloc(size);
}

static void *std_realloc(void *ud, void *ptr, size_t size) {
    (void)ud;
    return realloc(ptr, size);
}

static void std_free(void *ud, void *ptr) {
    (void)ud;
    free(ptr);
}

const iomux_allocator iomux__default_allocator = {std_malloc, std_realloc, std_free, NULL};

void *iomux__malloc(iomux_loop *loop, size_t size) {
    return loop->alloc.malloc(loop->alloc.ud, size);
}

void *iomux__realloc(iomux_loop *loop, void *ptr, size_t size) {
    return loop->alloc.realloc(loop->alloc.ud, ptr, size);
}

void iomux__free(iomux_loop *loop, void *ptr) {
    if (ptr) loop->alloc.free(loop->alloc.ud, ptr);
}

int iomux__grow(iomux_loop *loop, void **arr, size_t *cap, size_t need, size_t elsize) {
    size_t ncap = *cap ? *cap : 16;
    void *p;
    if (need <= *cap) return 0;
    while (ncap < need) {
        if (ncap > ((size_t)-1) / 2 / elsize) return -ENOMEM;
        ncap *= 2;
    }
    p = iomux__realloc(loop, *arr, ncap * elsize);
    if (!p) return -ENOMEM;
    *arr = p;
    *cap = ncap;
    return 0;
}

int iomux__vec_push(iomux_loop *loop, iomux__vec_int *vec, int value) {
    int rc = iomux__grow(loop, (void **)&vec->v, &vec->cap, vec->len + 1, sizeof(int));
    if (rc < 0) return rc;
    vec->v[vec->len++] = value;
    return 0;
}

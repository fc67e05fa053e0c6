/* The select backend. Its bitmaps are sized to the highest watched fd rather
 * than FD_SETSIZE (the kernel reads nfds bits from whatever we pass, as libev
 * relies on), so select's O(n) cost can be measured at 10,000+ fds. The bits
 * are set by hand: glibc's FD_SET checks fd < FD_SETSIZE when fortified. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/select.h>

#include "backend.h"
#include "../core/loop.h"

typedef unsigned long word_t;
#define WBITS (8 * sizeof(word_t))

typedef struct select_state {
    word_t *rd, *wr;     /* interest */
    word_t *ord, *owr;   /* copies handed to select */
    size_t words;
    int maxfd;           /* highest fd possibly set, -1 if none */
} select_state;

static int sel_init(iomux_loop *loop) {
    select_state *st = iomux__malloc(loop, sizeof(*st));
    if (!st) return -ENOMEM;
    memset(st, 0, sizeof(*st));
    st->maxfd = -1;
    loop->bstate = st;
    return 0;
}

static void sel_free(iomux_loop *loop) {
    select_state *st = loop->bstate;
    iomux__free(loop, st->rd); /* the block of all four bitmaps */
    iomux__free(loop, st);
    loop->bstate = NULL;
}

/* The four bitmaps share one block (rd, wr, ord, owr: `words` words each),
 * so growing them is one allocation that succeeds or fails whole: four
 * reallocs could fail after growing some, and every retry redid those. */
static int sel_reserve(iomux_loop *loop, select_state *st, iomux_fd fd) {
    size_t need = (size_t)fd / WBITS + 1, words = st->words ? st->words : 16, old = st->words;
    word_t *p;
    if (need <= st->words) return 0;
    while (words < need) words *= 2;
    p = iomux__malloc(loop, 4 * words * sizeof(word_t));
    if (!p) return -ENOMEM;
    memset(p, 0, 4 * words * sizeof(word_t));
    if (old) {
        memcpy(p, st->rd, old * sizeof(word_t));
        memcpy(p + words, st->wr, old * sizeof(word_t));
    }
    iomux__free(loop, st->rd);
    st->rd = p;
    st->wr = p + words;
    st->ord = p + 2 * words;
    st->owr = p + 3 * words;
    st->words = words;
    return 0;
}

static void put_bit(word_t *set, iomux_fd fd, int on) {
    word_t bit = (word_t)1 << ((size_t)fd % WBITS);
    if (on) set[(size_t)fd / WBITS] |= bit;
    else set[(size_t)fd / WBITS] &= ~bit;
}

static int sel_update(iomux_loop *loop, iomux_fd fd, unsigned have, unsigned want) {
    select_state *st = loop->bstate;
    int rc;
    (void)have;
    if ((size_t)fd / WBITS >= st->words) {
        if (!(want & (IOMUX_IN | IOMUX_OUT))) return 0;
        rc = sel_reserve(loop, st, fd);
        if (rc < 0) return rc;
    }
    put_bit(st->rd, fd, (want & IOMUX_IN) != 0);
    put_bit(st->wr, fd, (want & IOMUX_OUT) != 0);
    if ((want & (IOMUX_IN | IOMUX_OUT)) && fd > st->maxfd) st->maxfd = fd;
    return (want & (IOMUX_IN | IOMUX_OUT)) ? (int)((want & (IOMUX_IN | IOMUX_OUT)) | IOMUX__ADDED) : 0;
}

/* Lowers maxfd past fds that were removed, so nfds stays tight. */
static void shrink_max(select_state *st) {
    while (st->maxfd >= 0) {
        size_t w = (size_t)st->maxfd / WBITS;
        word_t bit = (word_t)1 << ((size_t)st->maxfd % WBITS);
        if ((st->rd[w] | st->wr[w]) & bit) break;
        st->maxfd--;
    }
}

/* select gave EBADF: an fd was closed while watched. Report each such fd
 * once (IOMUX_ERR) and drop it from the sets. */
static int drop_closed(iomux_loop *loop, select_state *st) {
    int fd, found = 0;
    for (fd = 0; fd <= st->maxfd; fd++) {
        size_t w = (size_t)fd / WBITS;
        word_t bit = (word_t)1 << ((size_t)fd % WBITS);
        if (!((st->rd[w] | st->wr[w]) & bit)) continue;
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
            put_bit(st->rd, fd, 0);
            put_bit(st->wr, fd, 0);
            iomux__io_event(loop, fd, IOMUX_ERR);
            found++;
        }
    }
    return found;
}

static void report(iomux_loop *loop, select_state *st, size_t nwords) {
    size_t i;
    for (i = 0; i < nwords; i++) {
        word_t r = st->ord[i], w = st->owr[i], any = r | w;
        while (any) {
            unsigned b = (unsigned)__builtin_ctzl(any);
            word_t bit = (word_t)1 << b;
            any &= any - 1;
            iomux__io_event(loop, (iomux_fd)(i * WBITS + b),
                            ((r & bit) ? IOMUX_IN : 0u) | ((w & bit) ? IOMUX_OUT : 0u));
        }
    }
}

static int sel_wait(iomux_loop *loop, int timeout_ms) {
    select_state *st = loop->bstate;
    struct timeval tv, *tvp = NULL;
    size_t nwords;
    int n;
    shrink_max(st);
    nwords = (size_t)(st->maxfd + 1 + (int)WBITS - 1) / WBITS;
    if (nwords) {
        memcpy(st->ord, st->rd, nwords * sizeof(word_t));
        memcpy(st->owr, st->wr, nwords * sizeof(word_t));
    }
    if (timeout_ms >= 0) {
        tv.tv_sec = timeout_ms / 1000;
        tv.tv_usec = (timeout_ms % 1000) * 1000;
        tvp = &tv;
    }
    n = select(st->maxfd + 1, nwords ? (fd_set *)(void *)st->ord : NULL,
               nwords ? (fd_set *)(void *)st->owr : NULL, NULL, tvp);
    if (n < 0) {
        if (errno == EBADF) return drop_closed(loop, st);
        return -errno;
    }
    if (n > 0) report(loop, st, nwords);
    return n;
}

const iomux__backend iomux__backend_select = {
    .name = "select",
    .id = IOMUX_BACKEND_SELECT,
    .caps = 0,
    .init = sel_init,
    .free = sel_free,
    .watch_update = sel_update,
    .wait = sel_wait,
};

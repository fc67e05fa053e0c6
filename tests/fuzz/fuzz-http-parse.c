/* The HTTP core without I/O (iomux_http_session): the request parser glue,
 * the limits, the routing, the handler API, static files, the output list.
 *
 * Input: one control byte, then the bytes a client sends.
 *   bits 0-1  the context: 0 small limits + handler + root, 1 small limits
 *             + root, no handler, 2 default limits + handler + root, no
 *             built-in routes, 3 small limits + handler, no root
 *   bit 2     when the bytes run out mid-request, the timeout fires (408)
 *   bit 3     then the peer's EOF
 *   bits 4-7  with the length, the seed of the random split
 *
 * The bytes are fed all at once, one byte at a time, in random pieces and
 * in pieces ending at each delimiter (each piece in an allocation of its
 * own, freed after the feed: a pointer kept into it is a use after free);
 * the output is taken in different ways (all of it, a few bytes at a time,
 * peeked past what was seen without consuming). Every way must give the
 * same output byte for byte, the same access log and the same decision to
 * close. The output must be a well-formed stream of responses (see
 * hf_check_stream), must close exactly when its last response says so,
 * and nothing may be answered once a close is decided. No fd may leak.
 * FUZZ_HTTP_PRINT=1 prints the output of each input (to study one). */
#include <signal.h>

#include "http-fuzz-common.h"

enum { CTX_SMALL_HANDLER, CTX_SMALL_PLAIN, CTX_DEFAULT, CTX_NO_ROOT, NCTX };
enum { F_EXPIRE = 1u << 2, F_EOF = 1u << 3 };

static struct {
    int ready;
    hf_root root;
    iomux_http_ctx *ctx[NCTX];
    hf_handler_env env[NCTX];
    FILE *log;
    char *log_buf;
    size_t log_len;
    hf_fds fds;         /* the fd leak check */
    unsigned long resumes; /* iomux_http_resume calls (output was full) */
    int print;          /* $FUZZ_HTTP_PRINT: show the output (to study an input) */
} G;

static void cleanup(void) {
    if (G.resumes) fprintf(stderr, "fuzz-http-parse: %lu resumes (output was full)\n", G.resumes);
    for (int i = 0; i < NCTX; i++) iomux_http_ctx_free(G.ctx[i]);
    if (G.log) fclose(G.log);
    free(G.log_buf);
    hf_root_remove(&G.root);
}

static iomux_http_ctx *make_ctx(int which) {
    iomux_http_config cfg;
    iomux_http_ctx *ctx;
    memset(&cfg, 0, sizeof(cfg));
    if (which != CTX_DEFAULT) { /* small enough that 413, 414 and 431 are a few bytes away */
        cfg.max_body = 64;
        cfg.max_uri = 64;
        cfg.max_header_line = 96;
        cfg.max_headers = 8;
        cfg.max_header_bytes = 384;
    }
    if (which != CTX_SMALL_PLAIN) {
        cfg.handler = hf_handler;
        cfg.handler_data = &G.env[which];
    }
    if (which != CTX_NO_ROOT) cfg.root = G.root.root;
    if (which == CTX_DEFAULT) cfg.flags = IOMUX_HTTP_NO_BUILTINS;
    if (which == CTX_SMALL_HANDLER) cfg.server_name = "iomux-fuzz";
    cfg.access_log = G.log;
    HF_CHECK(iomux_http_ctx_new(&ctx, &cfg) == 0);
    iomux_http_ctx_set_time(ctx, HF_NOW);
    G.env[which].root = G.root.root;
    G.env[which].max_body = iomux_http_ctx_config(ctx)->max_body;
    return ctx;
}

static void init(void) {
    if (G.ready) return;
    G.ready = 1;
    G.print = getenv("FUZZ_HTTP_PRINT") != NULL;
    signal(SIGPIPE, SIG_IGN);
    hf_root_create(&G.root);
    G.log = open_memstream(&G.log_buf, &G.log_len);
    HF_CHECK(G.log != NULL);
    for (int i = 0; i < NCTX; i++) G.ctx[i] = make_ctx(i);
    atexit(cleanup);
    hf_fds_init(&G.fds, G.root.base);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    init();
    return 0;
}

/* ---- taking the output ------------------------------------------------------------ */

/* How a run takes the output: all of it at once, a few bytes at a time,
 * or by peeking past what it already saw without consuming anything. */
enum { TAKE_ALL, TAKE_DRIBBLE, TAKE_PEEK };

static void add_chunk(hf_buf *out, const iomux_http_chunk *c, size_t len) {
    if (c->data) {
        hf_add(out, c->data, len);
    } else {
        char tmp[4096];
        HF_CHECK(c->fd >= 0 && len <= sizeof(tmp));
        if (pread(c->fd, tmp, len, c->offset) != (ssize_t)len) HF_FAIL("short read of a file chunk");
        hf_add(out, tmp, len);
    }
}

static void take(iomux_http_session *s, int how, hf_buf *out, size_t *peeked, uint32_t *rng) {
    iomux_http_chunk v[8];
    size_t n, total;
    if (how == TAKE_PEEK) {
        while ((n = iomux_http_out_peek(s, *peeked, v, 8)) > 0)
            for (size_t i = 0; i < n; i++) {
                add_chunk(out, &v[i], v[i].len);
                *peeked += v[i].len;
            }
        HF_CHECK(iomux_http_out_pending(s) == *peeked);
        return;
    }
    while ((n = iomux_http_out_peek(s, 0, v, how == TAKE_ALL ? 8 : 2)) > 0) {
        total = 0;
        if (how == TAKE_ALL) {
            for (size_t i = 0; i < n; i++) add_chunk(out, &v[i], v[i].len), total += v[i].len;
        } else { /* a writer that got a short write */
            *rng = *rng * 1103515245u + 12345u;
            total = (*rng >> 16) % 7 + 1;
            if (total > v[0].len) total = v[0].len;
            add_chunk(out, &v[0], total);
        }
        iomux_http_out_consume(s, total);
    }
    HF_CHECK(iomux_http_out_pending(s) == 0);
}

/* ---- the access log ------------------------------------------------------------------ */


/* ---- one run ------------------------------------------------------------------------ */

typedef struct result {
    hf_buf out, log;
    iomux_http_next next;
} result;

/* Feeds a copy that ends where its allocation does. */
static iomux_http_next feed_piece(iomux_http_session *s, const uint8_t *p, size_t n) {
    char *copy = malloc(n);
    iomux_http_next nx;
    HF_CHECK(copy != NULL);
    memcpy(copy, p, n);
    nx = iomux_http_feed(s, copy, n);
    memset(copy, 0xAA, n); /* the session must not depend on the bytes after the call */
    free(copy);
    return nx;
}

static void after_close(iomux_http_session *s, const uint8_t *rest, size_t n) {
    size_t pending = iomux_http_out_pending(s);
    HF_CHECK(iomux_http_session_phase(s) == IOMUX_HTTP_DONE);
    if (n == 0) return;
    /* The driver stops reading; a feed now must be ignored. */
    HF_CHECK(feed_piece(s, rest, n) == IOMUX_HTTP_CLOSE);
    HF_CHECK(iomux_http_out_pending(s) == pending);
}

/* While the session holds input (its output is full), write the output
 * out and resume, as a driver does. */
static iomux_http_next unhold(iomux_http_session *s, iomux_http_next nx, int how, result *res, size_t *peeked,
                              uint32_t *rng) {
    while (nx == IOMUX_HTTP_CONTINUE && iomux_http_input_held(s)) {
        take(s, how, &res->out, peeked, rng);
        if (how == TAKE_PEEK) { /* now it is written */
            iomux_http_out_consume(s, *peeked);
            *peeked = 0;
        }
        HF_CHECK(iomux_http_out_pending(s) == 0);
        nx = iomux_http_resume(s);
        take(s, how, &res->out, peeked, rng);
        G.resumes++;
    }
    return nx;
}

static void run(iomux_http_ctx *ctx, const uint8_t *data, size_t len, int mode, uint32_t seed,
                unsigned flags, result *res) {
    iomux_http_session s;
    hf_splitter sp;
    size_t off = 0, peeked = 0;
    uint32_t rng = seed;
    int how = mode == HF_ALL ? TAKE_ALL : mode == HF_TOKENS ? TAKE_PEEK : TAKE_DRIBBLE;
    iomux_http_next nx = IOMUX_HTTP_CONTINUE;
    fflush(G.log);
    fseek(G.log, 0, SEEK_SET);
    iomux_http_session_init(&s, ctx);
    hf_split_init(&sp, mode, seed);
    while (off < len && nx == IOMUX_HTTP_CONTINUE) {
        size_t n = hf_split_next(&sp, (const char *)data + off, len - off);
        int held = iomux_http_input_held(&s);
        nx = feed_piece(&s, data + off, n);
        /* Input is held only while the output is full. */
        if (!held && iomux_http_input_held(&s)) HF_CHECK(iomux_http_out_pending(&s) > peeked);
        take(&s, how, &res->out, &peeked, &rng);
        off += n;
        /* The random split sometimes feeds on while input is held (appended to it). */
        if (mode != HF_RANDOM || off == len || (rng >> 7) % 2) nx = unhold(&s, nx, how, res, &peeked, &rng);
    }
    nx = unhold(&s, nx, how, res, &peeked, &rng);
    if (nx == IOMUX_HTTP_CONTINUE && (flags & F_EXPIRE)) {
        nx = iomux_http_expire(&s);
        take(&s, how, &res->out, &peeked, &rng);
    }
    if (nx == IOMUX_HTTP_CONTINUE && (flags & F_EOF)) {
        nx = iomux_http_feed_eof(&s);
        HF_CHECK(iomux_http_out_pending(&s) == (how == TAKE_PEEK ? peeked : 0));
    }
    if (nx == IOMUX_HTTP_ABORT) HF_FAIL("abort without an allocation failure");
    if (nx == IOMUX_HTTP_CLOSE) after_close(&s, data + off, len - off);
    else HF_CHECK(iomux_http_session_phase(&s) != IOMUX_HTTP_DONE);
    iomux_http_session_close(&s); /* TAKE_PEEK leaves the output (and its fds) to it */
    fflush(G.log);
    hf_add(&res->log, G.log_buf, G.log_len);
    /* A request must not forge log lines: no CR (and no NUL). llhttp takes
     * HTAB and FF into a target, so those do reach the log (reported). */
    for (size_t i = 0; i < res->log.len; i++)
        if (res->log.p[i] == '\r' || res->log.p[i] == '\0')
            HF_FAIL("%s: control byte 0x%02x in the access log:\n%s", hf_mode_name(mode),
                    (unsigned char)res->log.p[i], res->log.p);
    res->next = nx;
}

/* ---- the checks ----------------------------------------------------------------------- */

static void compare(const result *ref, const result *r, int mode) {
    if (!hf_same(&r->out, &ref->out))
        HF_FAIL("%s output differs from all-at-once:\n%s\n---- all at once ----\n%s", hf_mode_name(mode),
                r->out.p ? r->out.p : "", ref->out.p ? ref->out.p : "");
    else if (!hf_same(&r->log, &ref->log))
        HF_FAIL("%s access log differs:\n%s\n----\n%s", hf_mode_name(mode), r->log.p, ref->log.p);
    if (r->next != ref->next) HF_FAIL("%s: next %d, all at once %d", hf_mode_name(mode), r->next, ref->next);
}

static void check_ref(const result *ref, unsigned flags) {
    hf_summary sum;
    size_t lines = 0;
    hf_check_stream(ref->out.p, ref->out.len, &sum);
    for (size_t i = 0; i < ref->log.len; i++) lines += ref->log.p[i] == '\n';
    if (lines != sum.responses) HF_FAIL("%zu log lines for %u responses", lines, sum.responses);
    if (sum.last_closes && ref->next != IOMUX_HTTP_CLOSE) HF_FAIL("said close, but goes on");
    if (!(flags & (F_EXPIRE | F_EOF)) && ref->next == IOMUX_HTTP_CLOSE && !sum.last_closes)
        HF_FAIL("closes without saying so (last status %d)", sum.last_status);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    result ref = {0};
    unsigned ctl, flags;
    uint32_t seed;
    iomux_http_ctx *ctx;
    if (size < 1) return 0;
    init();
    ctl = data[0];
    flags = ctl & (F_EXPIRE | F_EOF);
    seed = (ctl >> 4) | (uint32_t)size << 4;
    ctx = G.ctx[ctl & 3];
    data++;
    size--;
    run(ctx, data, size, HF_ALL, seed, flags, &ref);
    if (G.print)
        fprintf(stderr, "%s----\n%s---- next %d\n", ref.out.p ? ref.out.p : "", ref.log.p ? ref.log.p : "",
                ref.next);
    check_ref(&ref, flags);
    for (int mode = HF_BYTES; mode < HF_NMODES; mode++) {
        result r = {0};
        run(ctx, data, size, mode, seed, flags, &r);
        compare(&ref, &r, mode);
        free(r.out.p);
        free(r.log.p);
    }
    free(ref.out.p);
    free(ref.log.p);
    hf_check_fds(&G.fds);
    return 0;
}

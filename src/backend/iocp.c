/* The IOCP backend: the Proactor on Windows. One completion port per loop;
 * every socket an op names is associated with it; the kernel does the I/O
 * (overlapped AcceptEx, ConnectEx, WSARecv, WSASend, TransmitFile) and
 * queues one completion packet per operation, which wait() dequeues in
 * batches with GetQueuedCompletionStatusEx and hands to the core
 * (iomux__op_cqe). iomux_post wakes the port with PostQueuedCompletionStatus;
 * timers are the wait's timeout.
 *
 * Memory: an op's OVERLAPPED lives in the op (op->internal.ov), so an op in
 * flight costs no allocation. Accepts are the exception: each pre-posted
 * AcceptEx needs its own OVERLAPPED, socket and address buffer, so an
 * accept op owns a small group of them (op->internal.ov_ext). Cancelling is
 * CancelIoEx; nothing is freed or reused before the packet of the
 * cancelled operation arrives.
 *
 * Receives into pool buffers use the zero-byte read (as libuv does): the
 * kernel is given a read of 0 bytes, which completes when data arrives, and
 * only then is a pool buffer taken and filled with a non-blocking recv, so
 * an idle connection holds no buffer.
 *
 * File reads and writes name a C runtime fd, whose handle was opened for
 * synchronous I/O; each op reopens it for overlapped I/O (ReOpenFile), so
 * the kernel reads at the op's offset and queues a packet like any other;
 * a handle that cannot be reopened sends the op to the work pool.
 *
 * The Reactor API (watchers) is not served here: on Windows it runs on the
 * poll backend (WSAPoll). */
#include <errno.h>
#include <string.h>

#include <winternl.h>

#include "backend.h"
#include "../core/loop.h"
#include "../core/sys.h"

_Static_assert(sizeof(OVERLAPPED) <= sizeof(((iomux_op *)0)->internal.ov), "iomux_op holds an OVERLAPPED");

enum { KEY_IO = 1, KEY_WAKE = 2 };

/* What the word after an OVERLAPPED says: an op's ov_ext (flags or an
 * accept group) or an accept request's tag. An op's ov is never posted
 * when the op is an accept, so the two never meet. */
#define TAG_ACCEPT 0x61636365707421ull /* "accept!" */
#define OVX_ZREAD 1u                   /* a pool recv's zero-byte read */

#define ACCEPT_PREPOST 4 /* AcceptEx calls kept posted by a multishot accept */
#define ADDR_SLOT (sizeof(struct sockaddr_storage) + 16)

typedef struct acc_group acc_group;

typedef struct acc_req {
    OVERLAPPED ov;
    uint64_t tag; /* TAG_ACCEPT, right after the OVERLAPPED */
    acc_group *g;
    SOCKET s;
    int posted;
    char addrs[2 * ADDR_SLOT];
} acc_req;

struct acc_group {
    iomux_op *op;
    int family;
    int err;              /* the final result once every request is back */
    unsigned n, outstanding;
    acc_req reqs[ACCEPT_PREPOST];
    acc_group *next_free; /* in iocp_state.free_groups */
};

/* Ended groups kept for the next accept: a server that accepts one
 * connection per op would otherwise allocate and free one per connection. */
#define FREE_GROUPS_MAX 16

typedef struct iocp_state {
    HANDLE port;
    OVERLAPPED_ENTRY *ents;
    ULONG nents;
    LPFN_ACCEPTEX acceptex;
    LPFN_CONNECTEX connectex;
    LPFN_TRANSMITFILE transmitfile;
    iomux__node closes; /* close ops waiting for their fd's ops (op->internal.link) */
    acc_group *free_groups;
    unsigned nfree_groups;
} iocp_state;

static OVERLAPPED *op_ov(iomux_op *op) {
    return (OVERLAPPED *)(void *)op->internal.ov;
}

static SOCKET op_sock(const iomux_op *op) {
    return (SOCKET)(uintptr_t)op->internal.fd;
}

static void ov_reset(OVERLAPPED *ov, uint64_t offset) {
    memset(ov, 0, sizeof(*ov));
    ov->Offset = (DWORD)(offset & 0xffffffffu);
    ov->OffsetHigh = (DWORD)(offset >> 32);
}

/* An overlapped call's immediate outcome: 0 if a packet will come. */
static int pending_or_err(BOOL ok) {
    int err;
    if (ok) return 0;
    err = WSAGetLastError();
    return err == WSA_IO_PENDING ? 0 : -iomux__errno_from_win((unsigned long)err);
}

/* ---- set-up -------------------------------------------------------------------- */

static int load_ext(SOCKET s, GUID guid, void *fn, size_t fn_size) {
    DWORD got = 0;
    if (WSAIoctl(s, SIO_GET_EXTENSION_FUNCTION_POINTER, &guid, sizeof(guid), fn, (DWORD)fn_size, &got, NULL,
                 NULL) != 0)
        return -iomux__sock_errno();
    return 0;
}

static int load_extensions(iocp_state *st) {
    GUID ax = WSAID_ACCEPTEX, cx = WSAID_CONNECTEX, tf = WSAID_TRANSMITFILE;
    SOCKET s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    int rc;
    if (s == INVALID_SOCKET) return -iomux__sock_errno();
    rc = load_ext(s, ax, &st->acceptex, sizeof(st->acceptex));
    if (rc == 0) rc = load_ext(s, cx, &st->connectex, sizeof(st->connectex));
    if (rc == 0) rc = load_ext(s, tf, &st->transmitfile, sizeof(st->transmitfile));
    closesocket(s);
    return rc;
}

static void ic_free(iomux_loop *loop) {
    iocp_state *st = loop->bstate;
    if (!st) return;
    if (st->port) CloseHandle(st->port);
    while (st->free_groups) {
        acc_group *g = st->free_groups;
        st->free_groups = g->next_free;
        iomux__free(loop, g);
    }
    iomux__free(loop, st->ents);
    iomux__free(loop, st);
    loop->bstate = NULL;
}

static int ic_init(iomux_loop *loop) {
    iocp_state *st = iomux__malloc(loop, sizeof(*st));
    int rc;
    if (!st) return -ENOMEM;
    memset(st, 0, sizeof(*st));
    iomux__q_init(&st->closes);
    loop->bstate = st;
    st->nents = loop->max_events;
    st->ents = iomux__malloc(loop, (size_t)st->nents * sizeof(*st->ents));
    if (!st->ents) {
        ic_free(loop);
        return -ENOMEM;
    }
    /* One thread takes packets from this port: the loop's. */
    st->port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 1);
    if (!st->port) {
        rc = -iomux__errno_from_win(GetLastError());
        ic_free(loop);
        return rc;
    }
    rc = load_extensions(st);
    if (rc < 0) ic_free(loop);
    return rc;
}

/* Associates a socket with the port on its first op. Asking every time
 * costs a system call but is never wrong: a socket number closed outside
 * iomux_close and reused is a new socket with no association, which a
 * per-fd cache could not tell. ERROR_INVALID_PARAMETER: already done. */
static int associate(iocp_state *st, iomux_fd fd) {
    DWORD err;
    if (CreateIoCompletionPort((HANDLE)(uintptr_t)fd, st->port, KEY_IO, 0)) return 0;
    err = GetLastError();
    return err == ERROR_INVALID_PARAMETER ? 0 : -iomux__errno_from_win(err);
}

/* ---- accept ---------------------------------------------------------------------- */

static acc_group *group_new(iomux_loop *loop, iocp_state *st) {
    acc_group *g = st->free_groups;
    if (g) {
        st->free_groups = g->next_free;
        st->nfree_groups--;
    } else if (!(g = iomux__malloc(loop, sizeof(*g)))) {
        return NULL;
    }
    memset(g, 0, sizeof(*g));
    return g;
}

static void group_free(iomux_loop *loop, acc_group *g) {
    iocp_state *st = loop->bstate;
    if (st->nfree_groups >= FREE_GROUPS_MAX) {
        iomux__free(loop, g);
        return;
    }
    g->next_free = st->free_groups;
    st->free_groups = g;
    st->nfree_groups++;
}

static int acc_post(iocp_state *st, acc_req *r) {
    acc_group *g = r->g;
    DWORD got = 0;
    int rc;
    r->s = WSASocketW(g->family, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
    if (r->s == INVALID_SOCKET) return -iomux__sock_errno();
    ov_reset(&r->ov, 0);
    rc = pending_or_err(st->acceptex(op_sock(g->op), r->s, r->addrs, 0, ADDR_SLOT, ADDR_SLOT, &got, &r->ov));
    if (rc < 0) {
        closesocket(r->s);
        r->s = INVALID_SOCKET;
        return rc;
    }
    r->posted = 1;
    g->outstanding++;
    return 0;
}

static void acc_cancel(acc_group *g) {
    unsigned i;
    for (i = 0; i < g->n; i++)
        if (g->reqs[i].posted) CancelIoEx((HANDLE)op_sock(g->op), &g->reqs[i].ov);
}

static int submit_accept(iomux_loop *loop, iocp_state *st, iomux_op *op) {
    struct sockaddr_storage ss;
    int len = sizeof(ss), rc = 0;
    unsigned i;
    acc_group *g;
    if (getsockname(op_sock(op), (struct sockaddr *)&ss, &len) != 0) return -iomux__sock_errno();
    g = group_new(loop, st);
    if (!g) return -ENOMEM;
    g->op = op;
    g->family = ss.ss_family;
    g->n = (op->internal.oflags & OF_MULTISHOT) ? ACCEPT_PREPOST : 1;
    for (i = 0; i < g->n; i++) {
        g->reqs[i].tag = TAG_ACCEPT;
        g->reqs[i].g = g;
        g->reqs[i].s = INVALID_SOCKET;
    }
    for (i = 0; i < g->n && rc == 0; i++) rc = acc_post(st, &g->reqs[i]);
    if (g->outstanding == 0) {
        group_free(loop, g);
        return rc;
    }
    /* Some are posted: the op is in flight; an error now ends it once they
     * are back, like an error reported later. */
    if (rc < 0) {
        g->err = rc;
        acc_cancel(g);
    }
    op->internal.ov_ext = (uint64_t)(uintptr_t)g;
    return 0;
}

/* Every request is back: the accept's final result. */
static void acc_maybe_final(iomux_loop *loop, acc_group *g) {
    iomux_op *op = g->op;
    int res = g->err ? g->err : -ECANCELED;
    if (g->outstanding > 0) return;
    op->internal.ov_ext = 0;
    group_free(loop, g);
    iomux__op_cqe(loop, op, res, 0, NULL);
}

static void acc_done(iomux_loop *loop, iocp_state *st, acc_req *r, int err) {
    acc_group *g = r->g;
    iomux_op *op = g->op;
    SOCKET l = op_sock(op), s = r->s;
    int multi = (op->internal.oflags & OF_MULTISHOT) != 0;
    r->posted = 0;
    r->s = INVALID_SOCKET;
    g->outstanding--;
    if (err) {
        closesocket(s);
        /* A client that reset before it was accepted is not the listener's
         * error: post again. */
        if ((err == ECONNRESET || err == ECONNABORTED) && !(op->internal.oflags & OF_CANCEL) && !g->err) {
            int rc = acc_post(st, r);
            if (rc == 0) return;
            err = -rc;
        }
        if (!g->err) g->err = -err;
        acc_cancel(g);
        acc_maybe_final(loop, g);
        return;
    }
    setsockopt(s, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT, (char *)&l, sizeof(l));
    iomux__set_nonblock((iomux_fd)s);
    if (!multi) {
        op->internal.ov_ext = 0;
        group_free(loop, g);
        iomux__op_cqe(loop, op, (int)s, 0, NULL);
        return;
    }
    if (!(op->internal.oflags & OF_CANCEL) && !g->err) {
        int rc = acc_post(st, r);
        if (rc < 0) {
            g->err = rc;
            acc_cancel(g);
        }
    }
    /* g stays allocated while the callback runs: the group ends only when
     * every request is back, which cannot happen inside the callback. */
    iomux__op_cqe(loop, op, (int)s, 1, NULL);
    acc_maybe_final(loop, g);
}

/* ---- connect, recv, send, sendfile ---------------------------------------------------- */

static int submit_connect(iocp_state *st, iomux_op *op) {
    const struct sockaddr *to = op->internal.u.connect.addr;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    /* ConnectEx wants a bound socket. */
    if (getsockname(op_sock(op), (struct sockaddr *)&ss, &len) != 0) {
        memset(&ss, 0, sizeof(ss));
        ss.ss_family = to->sa_family;
        len = to->sa_family == AF_INET6 ? (int)sizeof(struct sockaddr_in6) : (int)sizeof(struct sockaddr_in);
        if (bind(op_sock(op), (struct sockaddr *)&ss, len) != 0) return -iomux__sock_errno();
    }
    ov_reset(op_ov(op), 0);
    return pending_or_err(st->connectex(op_sock(op), to, (int)op->internal.u.connect.addrlen, NULL, 0, NULL, op_ov(op)));
}

static int post_recv(iomux_op *op, char *buf, size_t len) {
    WSABUF wb;
    DWORD flags = 0;
    wb.buf = buf;
    wb.len = len > 0x7fffffffu ? 0x7fffffffu : (ULONG)len;
    ov_reset(op_ov(op), 0);
    return pending_or_err(WSARecv(op_sock(op), &wb, 1, NULL, &flags, op_ov(op), NULL) == 0);
}

static int submit_recv(iomux_op *op) {
    if (op->internal.oflags & OF_POOLBUF) {
        op->internal.ov_ext = OVX_ZREAD;
        return post_recv(op, NULL, 0);
    }
    op->internal.ov_ext = 0;
    return post_recv(op, op->internal.u.io.buf, op->internal.u.io.len);
}

static int submit_send(iomux_op *op) {
    WSABUF wb;
    size_t left = op->internal.u.io.len - op->internal.u.io.done;
    wb.buf = op->internal.u.io.buf + op->internal.u.io.done;
    wb.len = left > 0x7fffffffu ? 0x7fffffffu : (ULONG)left;
    ov_reset(op_ov(op), 0);
    return pending_or_err(WSASend(op_sock(op), &wb, 1, NULL, 0, op_ov(op), NULL) == 0);
}

/* TransmitFile sends what is left from the file's handle at the offset in
 * the OVERLAPPED. A count of 0 would mean "the whole file", so an empty
 * sendfile completes through a posted packet instead. */
static int submit_sendfile(iocp_state *st, iomux_op *op) {
    size_t left = op->internal.u.sendfile.len - op->internal.u.sendfile.done;
    HANDLE h = (HANDLE)_get_osfhandle(op->internal.u.sendfile.file);
    DWORD chunk = left > 0x7ffffffeu ? 0x7ffffffeu : (DWORD)left;
    ov_reset(op_ov(op), (uint64_t)op->internal.u.sendfile.offset + op->internal.u.sendfile.done);
    if (left == 0) return PostQueuedCompletionStatus(st->port, 0, KEY_IO, op_ov(op)) ? 0 : -EIO;
    if (h == INVALID_HANDLE_VALUE) return -EBADF;
    return pending_or_err(st->transmitfile(op_sock(op), h, chunk, 0, op_ov(op), NULL, 0));
}

/* ov_ext holds the reopened handle until the packet comes. */
static HANDLE file_handle(const iomux_op *op) {
    return (HANDLE)(uintptr_t)op->internal.ov_ext;
}

/* ReOpenFile checks the file's security, not the fd's mode: a read of a
 * write-only fd must still be EBADF, as on POSIX. So ask what the original
 * handle was granted. */
static int handle_allows(HANDLE h, int write) {
    PUBLIC_OBJECT_BASIC_INFORMATION bi;
    ULONG got = 0;
    if (NtQueryObject(h, ObjectBasicInformation, &bi, sizeof(bi), &got) < 0) return 1; /* let the kernel say */
    return (bi.GrantedAccess & (write ? FILE_WRITE_DATA | FILE_APPEND_DATA : FILE_READ_DATA)) != 0;
}

static int submit_file(iocp_state *st, iomux_op *op) {
    HANDLE h = (HANDLE)_get_osfhandle(op->internal.fd), h2;
    int write = op->internal.type == OPT_WRITE, rc = 0;
    DWORD len = op->internal.u.file.len > 0x7fffffffu ? 0x7fffffffu : (DWORD)op->internal.u.file.len;
    BOOL ok;
    if (h == INVALID_HANDLE_VALUE || !handle_allows(h, write)) return -EBADF;
    h2 = ReOpenFile(h, write ? GENERIC_WRITE : GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                    FILE_FLAG_OVERLAPPED);
    if (h2 == INVALID_HANDLE_VALUE) return -ENOTSUP; /* the work pool does it */
    if (!CreateIoCompletionPort(h2, st->port, KEY_IO, 0)) rc = -iomux__errno_from_win(GetLastError());
    if (rc == 0) {
        ov_reset(op_ov(op), (uint64_t)op->internal.u.file.offset);
        ok = write ? WriteFile(h2, op->internal.u.file.buf, len, NULL, op_ov(op))
                   : ReadFile(h2, op->internal.u.file.buf, len, NULL, op_ov(op));
        if (!ok && GetLastError() != ERROR_IO_PENDING) {
            DWORD err = GetLastError();
            /* A read at the end: no packet comes, the result is 0 bytes. */
            if (err == ERROR_HANDLE_EOF) ok = PostQueuedCompletionStatus(st->port, 0, KEY_IO, op_ov(op));
            if (!ok) rc = -iomux__errno_from_win(err);
        }
    }
    if (rc < 0) {
        CloseHandle(h2);
        return rc;
    }
    op->internal.ov_ext = (uint64_t)(uintptr_t)h2;
    return 0;
}

/* A read at the end of the file reports STATUS_END_OF_FILE: 0 bytes. */
static void file_done(iomux_loop *loop, iomux_op *op, DWORD bytes, int err) {
    CloseHandle(file_handle(op));
    op->internal.ov_ext = 0;
    iomux__op_cqe(loop, op, err == ENODATA ? 0 : err ? -err : (int)bytes, 0, NULL);
}

/* ---- close ----------------------------------------------------------------------------- */

/* 1 while an op of fd is in the kernel (its packet has not come). */
static int fd_busy(const iomux_loop *loop, iomux_fd fd) {
    const iomux__fdent *fe = &loop->fds[fd];
    return (fe->rq && fe->rq->internal.state == OP_KERNEL) || (fe->wq && fe->wq->internal.state == OP_KERNEL);
}

/* iomux_close has asked the fd's ops to cancel. The socket is closed only
 * once their packets are back: while it is open a missed cancel is asked
 * again (cancel_again), whereas a closed handle cannot be named any more,
 * and under Wine an overlapped send on a socket closed under it to a peer
 * that stopped reading never completed. An fd with nothing in the kernel
 * is closed by the core at once. */
static int submit_close(iomux_loop *loop, iocp_state *st, iomux_op *op) {
    if (!fd_busy(loop, op->internal.fd)) return -ENOTSUP;
    iomux__q_push(&st->closes, &op->internal.link);
    return 0;
}

static void closes_run(iomux_loop *loop, iocp_state *st) {
    iomux__node *n = st->closes.next, *next;
    for (; n != &st->closes; n = next) {
        iomux_op *op = iomux__container_of(n, iomux_op, internal.link);
        next = n->next;
        if (fd_busy(loop, op->internal.fd)) continue;
        iomux__q_remove(n);
        n->next = n->prev = NULL;
        iomux__op_cqe(loop, op, iomux__fd_close(op->internal.fd), 0, NULL);
    }
}

static int ic_submit(iomux_loop *loop, iomux_op *op) {
    iocp_state *st = loop->bstate;
    int type = op->internal.type, rc;
    if (type == OPT_READ || type == OPT_WRITE) return submit_file(st, op);
    if (type == OPT_CLOSE) return submit_close(loop, st, op);
    if (type != OPT_ACCEPT && type != OPT_CONNECT && type != OPT_RECV && type != OPT_SEND &&
        type != OPT_SENDFILE)
        return -ENOTSUP;
    rc = associate(st, op->internal.fd);
    if (rc < 0) return rc;
    switch (type) {
    case OPT_ACCEPT:
        return submit_accept(loop, st, op);
    case OPT_CONNECT:
        return submit_connect(st, op);
    case OPT_RECV:
        return submit_recv(op);
    case OPT_SEND:
        return submit_send(op);
    default:
        return submit_sendfile(st, op);
    }
}

static int ic_cancel(iomux_loop *loop, iomux_op *op) {
    (void)loop;
    if (op->internal.type == OPT_CLOSE) return 0; /* it ends when the fd's ops have */
    if (op->internal.type == OPT_ACCEPT) {
        acc_cancel((acc_group *)(uintptr_t)op->internal.ov_ext);
        return 0;
    }
    if (op->internal.type == OPT_READ || op->internal.type == OPT_WRITE) {
        CancelIoEx(file_handle(op), op_ov(op));
        return 0;
    }
    /* ERROR_NOT_FOUND: it completed and its packet is queued. */
    CancelIoEx((HANDLE)op_sock(op), op_ov(op));
    return 0;
}

/* ---- completions --------------------------------------------------------------------- */

/* The zero-byte read completed: data (or the end) is there. Take a pool
 * buffer and read without blocking. */
static void zread_done(iomux_loop *loop, iomux_op *op, int err) {
    char *buf;
    int n;
    if (err || (op->internal.oflags & OF_CANCEL)) {
        iomux__op_cqe(loop, op, err ? -err : -ECANCELED, 0, NULL);
        return;
    }
    buf = iomux__buf_take(loop);
    if (!buf) { /* the core parks the recv until a buffer comes back */
        iomux__op_cqe(loop, op, -ENOBUFS, 0, NULL);
        return;
    }
    n = recv(op_sock(op), buf, (int)loop->pool.size, 0);
    if (n > 0) {
        iomux__op_cqe(loop, op, n, 0, buf);
        return;
    }
    err = n < 0 ? iomux__sock_errno() : 0;
    iomux__buf_put(loop, buf);
    if (iomux__would_block(err)) { /* nothing after all: wait again */
        int rc = post_recv(op, NULL, 0);
        if (rc == 0) return;
        err = -rc;
    }
    iomux__op_cqe(loop, op, -err, 0, NULL);
}

static void sendfile_done(iomux_loop *loop, iocp_state *st, iomux_op *op, DWORD bytes, int err) {
    size_t left = op->internal.u.sendfile.len - op->internal.u.sendfile.done;
    int rc;
    if (err) {
        iomux__op_cqe(loop, op, -err, 0, NULL);
        return;
    }
    op->internal.u.sendfile.done += bytes;
    if (left > 0 && bytes == 0) { /* the file is shorter than promised */
        iomux__op_cqe(loop, op, -ENODATA, 0, NULL);
        return;
    }
    if (op->internal.u.sendfile.done == op->internal.u.sendfile.len) {
        iomux__op_cqe(loop, op, (int)op->internal.u.sendfile.len, 0, NULL);
        return;
    }
    rc = (op->internal.oflags & OF_CANCEL) ? -ECANCELED : submit_sendfile(st, op);
    if (rc < 0) iomux__op_cqe(loop, op, rc, 0, NULL);
}

static void op_done(iomux_loop *loop, iocp_state *st, iomux_op *op, DWORD bytes, int err) {
    switch (op->internal.type) {
    case OPT_RECV:
        if (op->internal.ov_ext & OVX_ZREAD) {
            zread_done(loop, op, err);
            return;
        }
        iomux__op_cqe(loop, op, err ? -err : (int)bytes, 0, NULL);
        return;
    case OPT_SEND:
        iomux__op_cqe(loop, op, err ? -err : (int)bytes, 0, NULL);
        return;
    case OPT_CONNECT:
        if (!err) setsockopt(op_sock(op), SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, NULL, 0);
        iomux__op_cqe(loop, op, -err, 0, NULL);
        return;
    default:
        sendfile_done(loop, st, op, bytes, err);
        return;
    }
}

/* The packet's error as an errno. The OVERLAPPED's Internal field is the
 * operation's NTSTATUS; ntdll turns it into a Win32 error. Asking Winsock
 * (WSAGetOverlappedResult) would need the socket, which iomux_close may
 * have closed by the time a cancelled op's packet arrives. */
static int packet_err(const OVERLAPPED *ov) {
    LONG status = (LONG)ov->Internal;
    ULONG err;
    if (status >= 0) return 0;
    err = RtlNtStatusToDosError(status);
    return err == ERROR_HANDLE_EOF ? ENODATA : iomux__errno_from_win(err);
}

/* An op that fails after its cancel was asked for (iomux_close closes the
 * socket under a TransmitFile, which then ends with an invalid handle)
 * failed because of the cancel: -ECANCELED, as the contract promises. */
static int op_err(const iomux_op *op, const OVERLAPPED *ov) {
    int err = packet_err(ov);
    return err && err != ENODATA && (op->internal.oflags & OF_CANCEL) ? ECANCELED : err;
}

static void dispatch(iomux_loop *loop, iocp_state *st, OVERLAPPED *ov, DWORD bytes) {
    uint64_t tag = *(const uint64_t *)(const void *)((const char *)ov + sizeof(OVERLAPPED));
    if (tag == TAG_ACCEPT) {
        acc_req *r = iomux__container_of(ov, acc_req, ov);
        acc_done(loop, st, r, op_err(r->g->op, ov));
    } else {
        iomux_op *op = iomux__container_of((uint64_t *)(void *)ov, iomux_op, internal.ov[0]);
        if (op->internal.type == OPT_READ || op->internal.type == OPT_WRITE) file_done(loop, op, bytes, op_err(op, ov));
        else op_done(loop, st, op, bytes, op_err(op, ov));
    }
}

/* CancelIoEx can miss an operation that the kernel is moving at that
 * moment (seen under Wine with a large WSASend that had sent part of its
 * bytes): while ops wait for their cancel, ask again every few ms. */
#define CANCEL_RETRY_MS 5

static void cancel_again(iomux_loop *loop) {
    iomux__node *n;
    for (n = loop->cancelling.next; n != &loop->cancelling; n = n->next)
        ic_cancel(loop, iomux__container_of(n, iomux_op, internal.pend.node));
}

static int ic_wait(iomux_loop *loop, int timeout_ms) {
    iocp_state *st = loop->bstate;
    ULONG got = 0, i;
    int reported = 0;
    if (!iomux__q_empty(&loop->cancelling)) {
        cancel_again(loop);
        if (timeout_ms < 0 || timeout_ms > CANCEL_RETRY_MS) timeout_ms = CANCEL_RETRY_MS;
    }
    if (!GetQueuedCompletionStatusEx(st->port, st->ents, st->nents, &got,
                                     timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms, FALSE)) {
        DWORD err = GetLastError();
        return err == WAIT_TIMEOUT ? 0 : -iomux__errno_from_win(err);
    }
    for (i = 0; i < got; i++) {
        OVERLAPPED_ENTRY *e = &st->ents[i];
        if (e->lpCompletionKey == KEY_WAKE || !e->lpOverlapped) continue;
        dispatch(loop, st, e->lpOverlapped, e->dwNumberOfBytesTransferred);
        reported++;
    }
    if (!iomux__q_empty(&st->closes)) closes_run(loop, st);
    return reported;
}

static void ic_wake(iomux_loop *loop) {
    iocp_state *st = loop->bstate;
    PostQueuedCompletionStatus(st->port, 0, KEY_WAKE, NULL);
}

/* Readiness is not what a completion port reports: watchers run on the
 * poll (WSAPoll) backend. */
static int ic_watch_update(iomux_loop *loop, iomux_fd fd, unsigned have, unsigned want) {
    (void)loop;
    (void)fd;
    (void)have;
    return (want & (IOMUX_IN | IOMUX_OUT)) ? -ENOTSUP : 0;
}

const iomux__backend iomux__backend_iocp = {
    .name = "iocp",
    .id = IOMUX_BACKEND_IOCP,
    .caps = 0,
    .init = ic_init,
    .free = ic_free,
    .watch_update = ic_watch_update,
    .wait = ic_wait,
    .submit = ic_submit,
    .cancel = ic_cancel,
    .wake = ic_wake,
};

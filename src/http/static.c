/* Static files beneath the root. Two fences: the path is decoded and
 * refused if it could mean anything but a plain descent ("..", encoded
 * slashes, backslashes, NUL); then the kernel resolves it with openat2()
 * and RESOLVE_BENEATH, so that no symlink (or race with one) leads out of
 * the root either. Debian 12's glibc has no openat2 wrapper. On Windows
 * the second fence is a check after the open: the file's final path (links
 * and junctions resolved) must lie beneath the root's. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef _WIN32
#include "../core/sys.h" /* windows.h, io.h, iomux__errno_from_win */
#else
#include <linux/openat2.h>
#include <sys/syscall.h>
#endif

#include "internal.h"

/* What serving needs to know of an open file. */
typedef struct finfo {
    int dir, reg;
    uint64_t size;
    time_t mtime;
} finfo;

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes into out (room for n bytes). 0, or 400 for a byte that
 * must not reach the filesystem: an encoded '/', any '\\', NUL. */
static int decode(const char *p, size_t n, char *out, size_t *len) {
    size_t i, w = 0;
    for (i = 0; i < n; i++) {
        int c = (unsigned char)p[i];
        if (c == '%') {
            int hi = i + 2 < n ? hexval(p[i + 1]) : -1, lo = i + 2 < n ? hexval(p[i + 2]) : -1;
            if (hi < 0 || lo < 0) return 400;
            c = hi * 16 + lo;
            i += 2;
            if (c == '/') return 400;
        }
        if (c == 0 || c == '\\') return 400;
#ifdef _WIN32
        if (c == ':') return 400; /* a drive, or an alternate data stream */
#endif
        out[w++] = (char)c;
    }
    *len = w;
    return 0;
}

/* Rewrites "/a/./b//c/" as "a/b/c" in place (NUL-terminated); a ".."
 * segment is refused (400) rather than resolved. */
static int normalize(char *buf, size_t n, size_t *len) {
    size_t i = 0, w = 0;
    while (i < n) {
        size_t start, seg;
        while (i < n && buf[i] == '/') i++;
        start = i;
        while (i < n && buf[i] != '/') i++;
        seg = i - start;
        if (seg == 0 || (seg == 1 && buf[start] == '.')) continue;
        if (seg == 2 && buf[start] == '.' && buf[start + 1] == '.') return 400;
        if (w > 0) buf[w++] = '/';
        memmove(buf + w, buf + start, seg);
        w += seg;
    }
    buf[w] = '\0';
    *len = w;
    return 0;
}

/* The decoded relative path in ctx->path, with room to append
 * "/index.html". Returns 0 or an HTTP status. */
static int make_path(iomux_http_ctx *ctx, const char *p, size_t n, size_t *len) {
    size_t need = n + 16;
    int st;
    if (n == 0 || p[0] != '/') return 400;
    if (need > ctx->path_cap) {
        char *b = iomux__http_realloc(ctx, ctx->path, need);
        if (!b) return 503;
        ctx->path = b;
        ctx->path_cap = need;
    }
    st = decode(p, n, ctx->path, len);
    return st ? st : normalize(ctx->path, *len, len);
}

#ifdef _WIN32
/* The final path of an open handle ("\\?\C:\..."), into buf: its
 * length, or 0 if it has none (a device such as CON or NUL). */
static DWORD final_path(HANDLE h, char *buf, DWORD n) {
    DWORD len = GetFinalPathNameByHandleA(h, buf, n, FILE_NAME_NORMALIZED | VOLUME_NAME_DOS);
    return len < n ? len : 0;
}

static int open_beneath(int root, const char *path) {
    char rbuf[MAX_PATH + 8], fbuf[MAX_PATH + 8], full[2 * MAX_PATH], *p;
    HANDLE h;
    DWORD rlen, flen;
    int fd;
    rlen = final_path((HANDLE)_get_osfhandle(root), rbuf, sizeof(rbuf));
    if (!rlen || (size_t)snprintf(full, sizeof(full), "%s\\%s", rbuf, path) >= sizeof(full)) return -ENAMETOOLONG;
    /* A "\\?\" path is not normalized: its separators must be backslashes. */
    for (p = full + rlen; *p; p++)
        if (*p == '/') *p = '\\';
    /* BACKUP_SEMANTICS: directories open too (serve_fd redirects them) */
    h = CreateFileA(full, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL, OPEN_EXISTING,
                    FILE_FLAG_BACKUP_SEMANTICS, NULL);
    if (h == INVALID_HANDLE_VALUE) return -iomux__errno_from_win(GetLastError());
    flen = final_path(h, fbuf, sizeof(fbuf));
    if (!flen || flen < rlen || strncmp(fbuf, rbuf, rlen) != 0 || (flen > rlen && fbuf[rlen] != '\\')) {
        CloseHandle(h); /* a device, or a link that leads out of the root */
        return -EXDEV;
    }
    fd = _open_osfhandle((intptr_t)h, _O_RDONLY);
    if (fd < 0) CloseHandle(h);
    return fd < 0 ? -EMFILE : fd;
}

static int file_info(int fd, finfo *fi) {
    BY_HANDLE_FILE_INFORMATION bi;
    uint64_t t;
    if (!GetFileInformationByHandle((HANDLE)_get_osfhandle(fd), &bi)) return -1;
    fi->dir = (bi.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) != 0;
    fi->reg = !fi->dir && !(bi.dwFileAttributes & FILE_ATTRIBUTE_DEVICE);
    fi->size = ((uint64_t)bi.nFileSizeHigh << 32) | bi.nFileSizeLow;
    /* 100 ns ticks since 1601 to seconds since 1970 */
    t = ((uint64_t)bi.ftLastWriteTime.dwHighDateTime << 32) | bi.ftLastWriteTime.dwLowDateTime;
    fi->mtime = (time_t)(t / 10000000u) - (time_t)11644473600;
    return 0;
}
#else
static int file_info(int fd, finfo *fi) {
    struct stat st;
    if (fstat(fd, &st) < 0) return -1;
    fi->dir = S_ISDIR(st.st_mode);
    fi->reg = S_ISREG(st.st_mode);
    fi->size = (uint64_t)st.st_size;
    fi->mtime = st.st_mtime;
    return 0;
}

static int open_beneath(int root, const char *path) {
    struct open_how how;
    long fd;
    memset(&how, 0, sizeof(how));
    /* O_NONBLOCK: opening a FIFO must not block the loop (it is refused below). */
    how.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    fd = syscall(SYS_openat2, root, path[0] ? path : ".", &how, sizeof(how));
    return fd < 0 ? -errno : (int)fd;
}
#endif

/* An open error as a status: a symlink out of the root (EXDEV, ELOOP) is
 * as missing as a missing file. */
static int open_status(int err) {
    switch (err) {
    case -EACCES: case -EPERM: return 403;
    case -EMFILE: case -ENFILE: case -ENOMEM: return 503;
    case -ENOSYS: return 500;
    default: return 404;
    }
}

static int redirect(iomux_http_response *r, const iomux_http_request *req) {
    iomux_http_ctx *ctx = r->s->ctx;
    iomux__http_meta m = {.status = 301, .ctype = "text/plain; charset=utf-8", .mtime = (time_t)-1};
    /* ctx->path is free again: build "<path as sent>/" there. */
    memcpy(ctx->path, req->path, req->path_len);
    ctx->path[req->path_len] = '/';
    m.location = ctx->path;
    m.location_len = req->path_len + 1;
    return iomux__http_emit(r, &m, NULL, 0);
}

/* 304 when If-Modified-Since is no older than the file. If-None-Match
 * wins over it (RFC 7232 3.3), and we give no ETags for it to match. */
static int not_modified(const iomux_http_request *req, const finfo *st) {
    size_t n;
    const char *v = iomux_http_header(req, "If-Modified-Since", &n);
    time_t ims;
    if (!v || iomux_http_header(req, "If-None-Match", NULL)) return 0;
    return iomux__http_date_parse(v, n, &ims) == 0 && st->mtime <= ims;
}

static int send_file(iomux_http_response *r, const iomux_http_request *req, int fd, const finfo *st,
                     const char *path, size_t len) {
    iomux__http_meta m = {.status = 200, .ctype = iomux__http_mime(path, len), .mtime = st->mtime};
    m.clen = st->size;
    if (not_modified(req, st)) {
        m.status = 304;
        m.no_clen = 1;
        m.clen = 0;
        m.ctype = NULL;
    }
    return iomux__http_emit_file(r, &m, fd, 0);
}

/* A directory asked for with its trailing slash: its index.html. Returns
 * the fd, or minus the status to answer. */
static int open_index(iomux_http_ctx *ctx, size_t *len, finfo *st) {
    static const char index[] = "index.html";
    int fd;
    if (*len > 0) ctx->path[(*len)++] = '/';
    memcpy(ctx->path + *len, index, sizeof(index));
    *len += sizeof(index) - 1;
    fd = open_beneath(ctx->root_fd, ctx->path);
    if (fd < 0) return -open_status(fd);
    if (file_info(fd, st) < 0 || !st->reg) {
        close(fd);
        return -404;
    }
    return fd;
}

static int serve_fd(iomux_http_response *r, const iomux_http_request *req, int fd, size_t len) {
    iomux_http_ctx *ctx = r->s->ctx;
    int slash = req->path_len > 0 && req->path[req->path_len - 1] == '/';
    finfo st;
    if (file_info(fd, &st) < 0) st.dir = st.reg = 0;
    if (st.dir) {
        close(fd);
        if (!slash) return redirect(r, req);
        fd = open_index(ctx, &len, &st);
        if (fd < 0) return iomux__http_error(r, -fd);
    } else if (!st.reg || slash) {
        close(fd);
        return iomux__http_error(r, 404);
    }
    return send_file(r, req, fd, &st, ctx->path, len);
}

int iomux__http_static(iomux_http_session *s, const iomux_http_request *req, iomux_http_response *r) {
    iomux_http_ctx *ctx = s->ctx;
    size_t len;
    int st, fd;
    if (req->method_id != IOMUX_HTTP_GET && req->method_id != IOMUX_HTTP_HEAD)
        return iomux__http_error(r, 405);
    st = make_path(ctx, req->path, req->path_len, &len);
    if (st) return iomux__http_error(r, st);
    fd = open_beneath(ctx->root_fd, ctx->path);
    if (fd < 0) return iomux__http_error(r, open_status(fd));
    return serve_fd(r, req, fd, len);
}

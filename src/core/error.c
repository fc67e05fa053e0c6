/* Error text for negative errno values. A fixed table (not strerror) so that
 * the text is static, thread-safe, locale-free and the same on every OS. */
#include <errno.h>

#include "iomux.h"

#define IOMUX_ERRNO_MAP(X)                                      \
    X(EPERM, "operation not permitted")                         \
    X(ENOENT, "no such file or directory")                      \
    X(EINTR, "interrupted system call")                         \
    X(EIO, "i/o error")                                         \
    X(E2BIG, "argument list too long")                          \
    X(EBADF, "bad file descriptor")                             \
    X(EAGAIN, "resource temporarily unavailable")               \
    X(ENOMEM, "not enough memory")                              \
    X(EACCES, "permission denied")                              \
    X(EFAULT, "bad address")                                    \
    X(EBUSY, "resource busy")                                   \
    X(EEXIST, "already exists")                                 \
    X(EINVAL, "invalid argument")                               \
    X(ENFILE, "file table overflow")                            \
    X(EMFILE, "too many open files")                            \
    X(EFBIG, "file too large")                                  \
    X(ENOSPC, "no space left")                                  \
    X(EPIPE, "broken pipe")                                     \
    X(ERANGE, "result out of range")                            \
    X(ENAMETOOLONG, "name too long")                            \
    X(ENOSYS, "function not implemented")                       \
    X(ENOTSOCK, "not a socket")                                 \
    X(EMSGSIZE, "message too long")                             \
    X(EPROTONOSUPPORT, "protocol not supported")                \
    X(ENOTSUP, "operation not supported")                       \
    X(EAFNOSUPPORT, "address family not supported")             \
    X(EADDRINUSE, "address already in use")                     \
    X(EADDRNOTAVAIL, "address not available")                   \
    X(ENETDOWN, "network is down")                              \
    X(ENETUNREACH, "network is unreachable")                    \
    X(ECONNABORTED, "connection aborted")                       \
    X(ECONNRESET, "connection reset by peer")                   \
    X(ENOBUFS, "no buffer space available")                     \
    X(EISCONN, "socket is already connected")                   \
    X(ENOTCONN, "socket is not connected")                      \
    X(ETIMEDOUT, "timed out")                                   \
    X(ECONNREFUSED, "connection refused")                       \
    X(EHOSTUNREACH, "host is unreachable")                      \
    X(EALREADY, "operation already in progress")                \
    X(EINPROGRESS, "operation in progress")                     \
    X(ECANCELED, "operation canceled")                          \
    X(ENODATA, "no data available")                             \
    X(ETIME, "timer expired")                                   \
    X(EOVERFLOW, "value too large")

const char *iomux_strerror(int err) {
    if (err < 0) err = -err;
    switch (err) {
    case 0:
        return "success";
#define IOMUX_ERR_CASE(code, text) \
    case code:                     \
        return text;
        IOMUX_ERRNO_MAP(IOMUX_ERR_CASE)
#undef IOMUX_ERR_CASE
    default:
        return "unknown error";
    }
}

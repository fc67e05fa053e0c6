/* Content-Type from a file name's extension: a small fixed map, the types
 * a static site serves; anything else is application/octet-stream. */
#include <string.h>
#include <strings.h>

#include "internal.h"

static const struct {
    const char *ext, *type;
} types[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"txt", "text/plain; charset=utf-8"},
    {"md", "text/markdown; charset=utf-8"},
    {"csv", "text/csv; charset=utf-8"},
    {"xml", "application/xml"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"avif", "image/avif"},
    {"ico", "image/x-icon"},
    {"pdf", "application/pdf"},
    {"wasm", "application/wasm"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"ttf", "font/ttf"},
    {"mp4", "video/mp4"},
    {"webm", "video/webm"},
    {"mp3", "audio/mpeg"},
    {"ogg", "audio/ogg"},
    {"zip", "application/zip"},
    {"gz", "application/gzip"},
    {"tar", "application/x-tar"},
};

const char *iomux__http_mime(const char *path, size_t len) {
    size_t i = len, n;
    while (i > 0 && path[i - 1] != '.' && path[i - 1] != '/') i--;
    if (i == 0 || path[i - 1] != '.') return "application/octet-stream";
    n = len - i;
    for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++)
        if (strlen(types[k].ext) == n && strncasecmp(path + i, types[k].ext, n) == 0) return types[k].type;
    return "application/octet-stream";
}

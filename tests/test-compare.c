/* iomux-compare --smoke: the whole main job on a tiny matrix, in seconds.
 * It must exit 0 and write a well-formed report: every section, tables
 * whose rows hold numbers where the servers were built (or say why not),
 * a verdict, the commands, and charts that are complete SVG documents.
 *
 *   test-compare IOMUX_COMPARE OUTDIR
 *
 * OUTDIR is relative, as `make run`'s is: nginx once failed to start
 * there (it takes relative paths from its prefix). */
#include <sys/stat.h>

#include "harness.h"
#include "app-server.h"

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (!f) FAIL("cannot open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    buf = malloc((size_t)n + 1);
    CHECK(buf);
    CHECK_EQ(fread(buf, 1, (size_t)n, f), n);
    buf[n] = '\0';
    fclose(f);
    if (len) *len = (size_t)n;
    return buf;
}

static void must_contain(const char *text, const char *what) {
    if (!strstr(text, what)) FAIL("REPORT.md lacks \"%s\"", what);
}

/* The row of `label` in the table after `section` must hold a number in
 * some cell (the server is built in this tree; a tool such as wrk may be
 * missing, and its cells then say so). */
static void row_has_number(const char *md, const char *section, const char *label) {
    const char *p = strstr(md, section), *row, *end;
    char pat[128];
    CHECK(p);
    snprintf(pat, sizeof(pat), "\n| %s | ", label);
    row = strstr(p, pat);
    if (!row) FAIL("no row \"%s\" after \"%s\"", label, section);
    row += strlen(pat) - 2;
    end = strchr(row, '\n');
    for (; row && row < end; row = strstr(row + 1, "| "))
        if (row[2] >= '1' && row[2] <= '9') return;
    FAIL("row \"%s\" after \"%s\" has no number", label, section);
}

static void check_svg(const char *dir, const char *name) {
    char path[512];
    size_t len;
    char *svg;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    svg = slurp(path, &len);
    CHECK(strncmp(svg, "<svg ", 5) == 0);
    CHECK(len > 8 && strcmp(svg + len - 7, "</svg>\n") == 0);
    CHECK(strstr(svg, "<rect x=") || strstr(svg, "<path "));
    free(svg);
}

static void smoke(const char *bin, const char *out) {
    char *argv[] = {(char *)bin, "--smoke", "--out", (char *)out, NULL};
    char path[512];
    server s;
    int status;
    char *md;
    const char *bad;
    spawn(&s, argv);
    g_server = &s;
    status = wait_exit(&s, 150000);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) FAIL("--smoke: status 0x%x; output:\n%s", status, s.text);
    g_server = NULL;
    snprintf(path, sizeof(path), "%s/REPORT.md", out);
    md = slurp(path, NULL);
    must_contain(md, "# iomux-compare:");
    must_contain(md, "- Kernel: ");
    must_contain(md, "iomux-load --cpu");
    must_contain(md, "## 1. Models");
    must_contain(md, "## 2. Idle connections");
    must_contain(md, "## 3. HTTP");
    must_contain(md, "## 4. Memory");
    must_contain(md, "## 5. Business logic");
    must_contain(md, "## 6. Multi-reactor");
    must_contain(md, "## Verdict");
    must_contain(md, "io_uring (Proactor) / epoll LT: ");
    must_contain(md, "| spread |");
    row_has_number(md, "## 1. Models", "epoll LT");
    row_has_number(md, "## 1. Models", "uring (Proactor)");
    row_has_number(md, "## 2. Idle connections", "epoll LT");
    row_has_number(md, "## 3. HTTP", "epoll LT");
    row_has_number(md, "## 4. Memory", "epoll LT");
    row_has_number(md, "## 5. Business logic", "epoll, work inline");
    row_has_number(md, "## 6. Multi-reactor", "epoll, 2 loops, acceptor");
    CHECK(!strstr(md, "nan") && !strstr(md, "inf |"));
    if ((bad = strstr(md, "did not start")))
        FAIL("a server did not start: ...%.300s", bad - md > 200 ? bad - 200 : md);
    check_svg(out, "models.svg");
    check_svg(out, "idle.svg");
    check_svg(out, "http.svg");
    check_svg(out, "memory.svg");
    free(md);
    free(s.text);
}

int main(int argc, char **argv) {
    const char *const bad[] = {"--frobnicate", NULL};
    if (argc < 3) FAIL("usage: test-compare IOMUX_COMPARE OUTDIR");
    expect_exit(argv[1], bad, 2, "unknown option");
    smoke(argv[1], argv[2]);
    return 0;
}

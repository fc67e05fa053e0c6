/* The result of a run: two lines of text, or exactly one line of JSON
 * whose key names other programs parse (iomux-compare): keep them.
 *
 * What is counted where: requests, bytes, status errors and latencies
 * belong to the measured period (responses that arrived in it); connect
 * and io errors count over the whole run after start-up (they are events
 * of connections, not of responses). */
#include <stdio.h>

#include "load.h"

static const char *proto_name(int proto) {
    return proto == PROTO_HTTP ? "http" : "echo";
}

/* A latency in ns as text with a unit that keeps it short. */
static void fmt_lat(char *out, size_t n, uint64_t ns) {
    double us = (double)ns / 1e3;
    if (us < 1000) snprintf(out, n, "%.1f us", us);
    else if (us < 1e6) snprintf(out, n, "%.2f ms", us / 1e3);
    else snprintf(out, n, "%.2f s", us / 1e6);
}

static void print_text(const load_run *r, double secs) {
    const hist *h = &r->lat;
    uint64_t errors = r->err_connect + r->err_status + r->err_io;
    printf("requests %llu in %.2f s: %.1f req/s, %.1f MB/s received, errors %llu (connect %llu, status %llu, io "
           "%llu)\n",
           (unsigned long long)r->m_requests, secs, secs > 0 ? (double)r->m_requests / secs : 0.0,
           secs > 0 ? (double)r->m_bytes / secs / 1e6 : 0.0, (unsigned long long)errors,
           (unsigned long long)r->err_connect, (unsigned long long)r->err_status, (unsigned long long)r->err_io);
    if (hist_count(h) == 0) {
        printf("latency: no responses\n");
    } else {
        char p50[32], p90[32], p99[32], p999[32], max[32];
        fmt_lat(p50, sizeof(p50), hist_percentile(h, 50));
        fmt_lat(p90, sizeof(p90), hist_percentile(h, 90));
        fmt_lat(p99, sizeof(p99), hist_percentile(h, 99));
        fmt_lat(p999, sizeof(p999), hist_percentile(h, 99.9));
        fmt_lat(max, sizeof(max), hist_max(h));
        printf("latency p50 %s, p90 %s, p99 %s, p99.9 %s, max %s\n", p50, p90, p99, p999, max);
    }
}

static void print_json(const load_run *r, const char *backend, double secs) {
    const load_opts *o = r->o;
    const hist *h = &r->lat;
    uint64_t errors = r->err_connect + r->err_status + r->err_io;
    printf("{\"proto\":\"%s\",\"backend\":\"%s\",\"conns\":%ld,\"idle\":%ld,\"pipeline\":%ld,\"rate\":%.3f,"
           "\"size\":%ld,\"duration_s\":%.3f,\"requests\":%llu,\"rps\":%.1f,\"bytes\":%llu,\"bytes_per_s\":%.1f,"
           "\"errors\":%llu,\"connect_errors\":%llu,\"status_errors\":%llu,\"io_errors\":%llu,",
           proto_name(o->proto), backend, o->conns, o->idle, o->pipeline, o->rate, o->size, secs,
           (unsigned long long)r->m_requests, secs > 0 ? (double)r->m_requests / secs : 0.0,
           (unsigned long long)r->m_bytes, secs > 0 ? (double)r->m_bytes / secs : 0.0, (unsigned long long)errors,
           (unsigned long long)r->err_connect, (unsigned long long)r->err_status, (unsigned long long)r->err_io);
    printf("\"latency_us\":{\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f,\"p999\":%.2f,\"max\":%.2f,\"mean\":%.2f},"
           "\"cpu_s\":%.3f}\n",
           (double)hist_percentile(h, 50) / 1e3, (double)hist_percentile(h, 90) / 1e3,
           (double)hist_percentile(h, 99) / 1e3, (double)hist_percentile(h, 99.9) / 1e3, (double)hist_max(h) / 1e3,
           hist_mean(h) / 1e3, r->cpu_end - r->cpu_begin);
}

void report_print(const load_run *r, const char *backend) {
    double secs = (double)(r->t_end - r->t_begin) / 1e9;
    if (r->o->json) print_json(r, backend, secs);
    else print_text(r, secs);
    fflush(stdout);
    if (r->first_error) fprintf(stderr, LOAD_NAME ": first error: %s\n", r->first_error);
}

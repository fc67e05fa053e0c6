/* A scenario's matrix: every server against every load, repeated. Each
 * repeat runs the servers in the other order (forward, reversed, forward,
 * ...) so a drift of the machine (heat, another tenant) does not always
 * favour the same model; each server is started once per repeat and runs
 * all the loads in a row. A server that is missing, or does not start,
 * gives each of its cells the reason. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "compare.h"

void cmp_matrix_add(cmp_matrix *m, const cmp_server *s) {
    if (s && m->nservers < CMP_MAX_SERVERS) m->servers[m->nservers++] = s;
}

static void fail_all(cmp_matrix *m, int i, const char *why) {
    int j;
    for (j = 0; j < m->nloads; j++) cmp_cell_fail(&m->cells[i][j], why);
}

static double settled_rss(const cmp_running *srv) {
    pid_t pids[CMP_MAX_PIDS];
    struct timespec ts = {0, 200 * 1000 * 1000};
    int n;
    nanosleep(&ts, NULL); /* let the server finish starting (prefork's workers) */
    n = cmp_group_pids(srv->child.pid, pids, CMP_MAX_PIDS);
    return cmp_rss_bytes(pids, n, n > 1);
}

static void run_loads(cmp_matrix *m, cmp_report *r, int i, const cmp_running *srv, int rep) {
    double base = m->per_idle_conn ? settled_rss(srv) : 0;
    int j;
    for (j = 0; j < m->nloads; j++) {
        cmp_load l = m->loads[j];
        cmp_sample s;
        char cmd[600];
        const char *why = m->adjust ? m->adjust(m, m->servers[i], &l) : NULL;
        if (why) {
            if (rep == 0) cmp_cell_fail(&m->cells[i][j], why);
            continue;
        }
        cmp_progress("%s · %s · %s · repeat %d/%d", m->name, m->servers[i]->label, m->load_names[j], rep + 1,
                     m->repeats);
        if (rep == 0) {
            cmp_load_cmdline(&l, cmd, sizeof(cmd));
            cmp_command(r, "%s", cmd);
        }
        cmp_measure(srv, &l, m->count_syscalls, &s);
        if (s.ok && m->per_idle_conn && l.idle > 0) s.rss_bytes = (s.rss_bytes - base) / l.idle;
        cmp_cell_add(&m->cells[i][j], &s);
    }
}

static void run_server(cmp_matrix *m, cmp_report *r, int i, int rep) {
    const cmp_server *s = m->servers[i];
    cmp_running srv;
    char why[CMP_WHY], cmd[600];
    int cpu = g_opt.server_cpu;
    if (m->missing[i][0]) return;
    if (cmp_server_missing(s, why, sizeof(why))[0]) {
        snprintf(m->missing[i], sizeof(m->missing[i]), "%s", why);
        fail_all(m, i, why);
        return;
    }
    g_opt.server_cpu = m->server_cpu; /* what cmp_server_start and the command line use */
    if (rep == 0) {
        cmp_server_cmdline(s, m->proto, m->processes, cmd, sizeof(cmd));
        cmp_command(r, "%s", cmd);
    }
    if (cmp_server_start(&srv, s, m->proto, m->processes) < 0) {
        snprintf(why, sizeof(why), "%s did not start (see %s)", s->label, srv.child.log);
        fail_all(m, i, why);
    } else {
        run_loads(m, r, i, &srv, rep);
        cmp_server_stop(&srv);
    }
    g_opt.server_cpu = cpu;
}

void cmp_matrix_run(cmp_matrix *m, cmp_report *r) {
    int rep, k;
    if (m->repeats <= 0) m->repeats = g_opt.repeats;
    if (m->repeats > CMP_MAX_REPEATS) m->repeats = CMP_MAX_REPEATS;
    for (rep = 0; rep < m->repeats; rep++)
        for (k = 0; k < m->nservers; k++) run_server(m, r, rep % 2 ? m->nservers - 1 - k : k, rep);
}

/* ---- what the scenarios share ---- */

void cmp_matrix_init(cmp_matrix *m, const char *name, cmp_proto proto) {
    memset(m, 0, sizeof(*m));
    m->name = name;
    m->proto = proto;
    m->repeats = g_opt.repeats;
    m->server_cpu = g_opt.server_cpu;
    m->processes = 64;
}

cmp_load *cmp_matrix_load(cmp_matrix *m, const char *name, int conns, int idle, int pipeline) {
    cmp_load *l = &m->loads[m->nloads];
    memset(l, 0, sizeof(*l));
    l->proto = m->proto;
    l->conns = conns;
    l->idle = idle;
    l->pipeline = pipeline;
    l->size = 64;
    l->duration = g_opt.duration;
    l->warmup = g_opt.warmup;
    m->load_names[m->nloads++] = name;
    return l;
}

int cmp_matrix_index(const cmp_matrix *m, const char *key) {
    int i;
    for (i = 0; i < m->nservers; i++)
        if (strcmp(m->servers[i]->key, key) == 0) return i;
    return -1;
}

double cmp_med(const cmp_matrix *m, const char *key, int load, cmp_metric what) {
    int i = cmp_matrix_index(m, key);
    return i < 0 ? NAN : cmp_cell_median(&m->cells[i][load], what);
}

/* A bar chart of req/s: a group per server, a bar per load. */
void cmp_matrix_chart(cmp_report *r, const cmp_matrix *m, const char *file, const char *title) {
    const char *groups[CMP_MAX_SERVERS];
    double v[CMP_MAX_SERVERS * CMP_MAX_LOADS];
    char path[600];
    int i, j;
    for (i = 0; i < m->nservers; i++) {
        groups[i] = m->servers[i]->key;
        for (j = 0; j < m->nloads; j++) v[i * m->nloads + j] = cmp_cell_median(&m->cells[i][j], M_RPS);
    }
    snprintf(path, sizeof(path), "%s/%s", g_opt.outdir, file);
    svg_bars(path, title, "requests/s", groups, m->nservers, m->load_names, m->nloads, v, 0);
    fprintf(r->md, "\n![%s](%s)\n\n", title, file);
}

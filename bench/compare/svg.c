/* The report's charts, written as SVG text: a line chart (one line per
 * model, e.g. throughput as idle connections grow) and a grouped bar chart.
 * Written here rather than with gnuplot or matplotlib so `make run` needs no
 * plotting package and the output is the same everywhere. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "compare.h"

#define W 860
#define H 520
#define L 90  /* left margin: the y labels */
#define R 220 /* right margin: the legend */
#define T 50
#define B 100 /* bottom margin: the x labels, slanted in bar charts */

static const char *const colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                                     "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939",
                                     "#8c6d31", "#843c39", "#7b4173", "#3182bd"};
#define NCOLORS (int)(sizeof(colors) / sizeof(colors[0]))

/* Text at (x, y), turned by `deg` degrees about that point. */
static void text_rot(FILE *f, double x, double y, const char *anchor, int size, int deg, const char *s) {
    if (deg)
        fprintf(f, "<text transform=\"translate(%.1f,%.1f) rotate(%d)\" text-anchor=\"%s\" font-size=\"%d\">", x, y,
                deg, anchor, size);
    else fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" font-size=\"%d\">", x, y, anchor, size);
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else fputc(*s, f);
    }
    fputs("</text>\n", f);
}

static void text(FILE *f, double x, double y, const char *anchor, int size, const char *s) {
    text_rot(f, x, y, anchor, size, 0, s);
}

/* A round step giving about 5 ticks from 0 to max. */
static double nice_step(double max) {
    double raw = max / 5, mag = pow(10, floor(log10(raw))), n = raw / mag;
    return (n < 1.5 ? 1 : n < 3.5 ? 2 : n < 7.5 ? 5 : 10) * mag;
}

static void short_num(double v, char *buf, size_t len) {
    if (v >= 1e6) snprintf(buf, len, "%gM", v / 1e6);
    else if (v >= 1e3) snprintf(buf, len, "%gk", v / 1e3);
    else snprintf(buf, len, "%g", v);
}

static FILE *begin(const char *path, const char *title) {
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"sans-serif\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            W, H, W, H);
    text(f, W / 2.0, 28, "middle", 17, title);
    return f;
}

static int end(FILE *f) {
    fputs("</svg>\n", f);
    return fclose(f) == 0 ? 0 : -1;
}

/* The y axis from 0 (or from the smallest power of ten, logy) to ymax. */
static double y_pos(double v, double ymin, double ymax, int logy) {
    double frac = logy ? (log10(v) - log10(ymin)) / (log10(ymax) - log10(ymin)) : v / ymax;
    return T + (H - T - B) * (1 - frac);
}

static void y_axis(FILE *f, double ymin, double ymax, int logy, const char *label) {
    char buf[32];
    double v, step = nice_step(ymax);
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", L, T, L, H - B);
    for (v = logy ? ymin : 0; v <= ymax * 1.0001; v = logy ? v * 10 : v + step) {
        double y = y_pos(v, ymin, ymax, logy);
        short_num(v, buf, sizeof(buf));
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", L, y, W - R, y);
        text(f, L - 6, y + 4, "end", 12, buf);
    }
    fprintf(f, "<text transform=\"translate(18,%d) rotate(-90)\" text-anchor=\"middle\" font-size=\"13\">%s</text>\n",
            (T + H - B) / 2, label);
}

static void legend(FILE *f, int i, const char *name, int bar) {
    double y = T + 10 + i * 20;
    if (bar) fprintf(f, "<rect x=\"%d\" y=\"%.1f\" width=\"14\" height=\"10\" fill=\"%s\"/>\n", W - R + 14, y - 9,
                     colors[i % NCOLORS]);
    else fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2.5\"/>\n",
                 W - R + 10, y - 4, W - R + 30, y - 4, colors[i % NCOLORS]);
    text(f, W - R + 36, y, "start", 12, name);
}

static void range(const svg_series *s, int n, double *xmax, double *ymax, double *ymin) {
    int i, k;
    *xmax = *ymax = 0;
    *ymin = INFINITY;
    for (i = 0; i < n; i++)
        for (k = 0; k < s[i].n; k++) {
            if (s[i].x[k] > *xmax) *xmax = s[i].x[k];
            if (isnan(s[i].y[k])) continue;
            if (s[i].y[k] > *ymax) *ymax = s[i].y[k];
            if (s[i].y[k] > 0 && s[i].y[k] < *ymin) *ymin = s[i].y[k];
        }
    if (*xmax <= 0) *xmax = 1;
    if (*ymax <= 0) *ymax = 1;
    if (!(*ymin < INFINITY)) *ymin = 1;
}

int svg_lines(const char *path, const char *title, const char *xlabel, const char *ylabel, const svg_series *s,
              int nseries, int logy) {
    double xmax, ymax, ymin, step;
    char buf[32];
    int i, k;
    FILE *f = begin(path, title);
    if (!f) return -1;
    range(s, nseries, &xmax, &ymax, &ymin);
    if (logy) ymin = pow(10, floor(log10(ymin))), ymax = pow(10, ceil(log10(ymax)));
    else ymax = ceil(ymax * 1.05 / nice_step(ymax * 1.05)) * nice_step(ymax * 1.05);
    y_axis(f, ymin, ymax, logy, ylabel);
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", L, H - B, W - R, H - B);
    step = nice_step(xmax);
    for (double v = 0; v <= xmax * 1.0001; v += step) {
        short_num(v, buf, sizeof(buf));
        text(f, L + (W - L - R) * v / xmax, H - B + 18, "middle", 12, buf);
    }
    text(f, L + (W - L - R) / 2.0, H - B + 40, "middle", 13, xlabel);
    for (i = 0; i < nseries; i++) {
        int pen = 0;
        fprintf(f, "<path fill=\"none\" stroke=\"%s\" stroke-width=\"2.5\" d=\"", colors[i % NCOLORS]);
        for (k = 0; k < s[i].n; k++) {
            if (isnan(s[i].y[k]) || (logy && s[i].y[k] <= 0)) {
                pen = 0;
                continue;
            }
            fprintf(f, "%s%.1f %.1f ", pen ? "L" : "M", L + (W - L - R) * s[i].x[k] / xmax,
                    y_pos(s[i].y[k], ymin, ymax, logy));
            pen = 1;
        }
        fprintf(f, "\"/>\n");
        for (k = 0; k < s[i].n; k++) /* a dot where each measurement is */
            if (!isnan(s[i].y[k]) && !(logy && s[i].y[k] <= 0))
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n",
                        L + (W - L - R) * s[i].x[k] / xmax, y_pos(s[i].y[k], ymin, ymax, logy), colors[i % NCOLORS]);
        legend(f, i, s[i].name, 0);
    }
    return end(f);
}

int svg_bars(const char *path, const char *title, const char *ylabel, const char *const *groups, int ngroups,
             const char *const *names, int nnames, const double *values, int logy) {
    double ymax = 0, ymin = INFINITY, gw, bw;
    int g, k;
    FILE *f = begin(path, title);
    if (!f) return -1;
    for (k = 0; k < ngroups * nnames; k++) {
        if (!isnan(values[k]) && values[k] > ymax) ymax = values[k];
        if (!isnan(values[k]) && values[k] > 0 && values[k] < ymin) ymin = values[k];
    }
    if (ymax <= 0) ymax = 1;
    if (logy) ymin = ymin < INFINITY ? pow(10, floor(log10(ymin))) : 1, ymax = pow(10, ceil(log10(ymax)));
    else ymin = 0, ymax = ceil(ymax * 1.05 / nice_step(ymax * 1.05)) * nice_step(ymax * 1.05);
    y_axis(f, ymin, ymax, logy, ylabel);
    gw = (double)(W - L - R) / (ngroups > 0 ? ngroups : 1);
    bw = gw * 0.8 / (nnames > 0 ? nnames : 1);
    for (g = 0; g < ngroups; g++) {
        double x0 = L + g * gw + gw * 0.1;
        for (k = 0; k < nnames; k++) {
            double v = values[g * nnames + k], y;
            if (isnan(v) || (logy && v < ymin)) continue;
            y = y_pos(v, ymin, ymax, logy);
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n", x0 + k * bw, y,
                    bw * 0.92, H - B - y, colors[k % NCOLORS]);
        }
        text_rot(f, x0 + gw * 0.3, H - B + 12, "start", 11, 35, groups[g]);
    }
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", L, H - B, W - R, H - B);
    for (k = 0; k < nnames; k++) legend(f, k, names[k], 1);
    return end(f);
}

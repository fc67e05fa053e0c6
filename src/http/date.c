/* HTTP dates (IMF-fixdate, RFC 7231 7.1.1.1) and the access log's time,
 * formatted by hand: strftime would follow the locale. */
#ifdef _WIN32
#define _POSIX_THREAD_SAFE_FUNCTIONS 200112L /* mingw-w64 declares gmtime_r only then */
#endif
#include <string.h>

#include "internal.h"

static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static void put2(char *p, int v) {
    p[0] = (char)('0' + v / 10 % 10);
    p[1] = (char)('0' + v % 10);
}

static void put4(char *p, int v) {
    put2(p, v / 100);
    put2(p + 2, v % 100);
}

static void put_hms(char *p, const struct tm *tm) {
    put2(p, tm->tm_hour);
    p[2] = ':';
    put2(p + 3, tm->tm_min);
    p[5] = ':';
    put2(p + 6, tm->tm_sec);
}

/* "Sun, 06 Nov 1994 08:49:37 GMT" and a NUL: 30 bytes. */
void iomux__http_date_format(time_t t, char out[30]) {
    struct tm tm;
    gmtime_r(&t, &tm);
    memcpy(out, days[tm.tm_wday], 3);
    memcpy(out + 3, ", ", 2);
    put2(out + 5, tm.tm_mday);
    out[7] = ' ';
    memcpy(out + 8, months[tm.tm_mon], 3);
    out[11] = ' ';
    put4(out + 12, tm.tm_year + 1900);
    out[16] = ' ';
    put_hms(out + 17, &tm);
    memcpy(out + 25, " GMT", 5);
}

/* "06/Nov/1994:08:49:37 +0000" and a NUL. */
void iomux__http_clf_format(time_t t, char out[32]) {
    struct tm tm;
    gmtime_r(&t, &tm);
    put2(out, tm.tm_mday);
    out[2] = '/';
    memcpy(out + 3, months[tm.tm_mon], 3);
    out[6] = '/';
    put4(out + 7, tm.tm_year + 1900);
    out[11] = ':';
    put_hms(out + 12, &tm);
    memcpy(out + 20, " +0000", 7);
}

static int num(const char *p, int n, int *out) {
    int v = 0, i;
    for (i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 0;
}

static int month_of(const char *p) {
    int i;
    for (i = 0; i < 12; i++)
        if (memcmp(p, months[i], 3) == 0) return i;
    return -1;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; m 1..12). */
static int64_t days_from_civil(int64_t y, int m, int d) {
    int64_t era, yoe, doy, doe;
    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Parses exactly an IMF-fixdate; returns 0, or -1 for anything else (RFC
 * 7232 3.3: an invalid If-Modified-Since is ignored, so the obsolete
 * formats need no parser). The weekday is checked for shape only. */
int iomux__http_date_parse(const char *s, size_t n, time_t *out) {
    int day, year, hh, mm, ss, mon;
    if (n != 29 || s[3] != ',' || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' ||
        s[19] != ':' || s[22] != ':' || memcmp(s + 25, " GMT", 4) != 0)
        return -1;
    if (num(s + 5, 2, &day) || num(s + 12, 4, &year) || num(s + 17, 2, &hh) || num(s + 20, 2, &mm) ||
        num(s + 23, 2, &ss))
        return -1;
    mon = month_of(s + 8);
    if (mon < 0 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60) return -1;
    *out = (time_t)(days_from_civil(year, mon + 1, day) * 86400 + hh * 3600 + mm * 60 + ss);
    return 0;
}

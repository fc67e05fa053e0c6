/* The model, API and balance names, and what each model runs on. */
#include <errno.h>
#include <string.h>

#include "app.h"

static const char *const model_names[APP_MODEL_COUNT] = {
    [APP_MODEL_SELECT] = "select",     [APP_MODEL_POLL] = "poll",
    [APP_MODEL_EPOLL] = "epoll",       [APP_MODEL_EPOLL_ET] = "epoll-et",
    [APP_MODEL_URING] = "uring",       [APP_MODEL_URING_POLL] = "uring-poll",
    [APP_MODEL_THREADS] = "threads",   [APP_MODEL_PREFORK] = "prefork",
#ifdef _WIN32
    [APP_MODEL_IOCP] = "iocp",
#endif
};

static const char *const api_names[] = {"reactor", "proactor", "blocking"};
static const char *const balance_names[] = {"reuseport", "acceptor"};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static int lookup(const char *const *names, unsigned count, const char *name) {
    unsigned i;
    for (i = 0; name && i < count; i++)
        if (strcmp(names[i], name) == 0) return (int)i;
    return -EINVAL;
}

const char *app_model_name(app_model m) {
    return (unsigned)m < APP_MODEL_COUNT ? model_names[m] : "?";
}

const char *app_api_name(app_api a) {
    return (unsigned)a < COUNT(api_names) ? api_names[a] : "?";
}

const char *app_balance_name(app_balance b) {
    return (unsigned)b < COUNT(balance_names) ? balance_names[b] : "?";
}

int app_model_parse(const char *name, app_model *out) {
    int i = lookup(model_names, APP_MODEL_COUNT, name);
    if (i < 0) return i;
    *out = (app_model)i;
    return 0;
}

int app_api_parse(const char *name, app_api *out) {
    int i = lookup(api_names, COUNT(api_names), name);
    if (i < 0) return i;
    *out = (app_api)i;
    return 0;
}

int app_balance_parse(const char *name, app_balance *out) {
    int i = lookup(balance_names, COUNT(balance_names), name);
    if (i < 0) return i;
    *out = (app_balance)i;
    return 0;
}

int app_model_available(app_model m) {
#ifdef _WIN32
    return m == APP_MODEL_POLL || m == APP_MODEL_IOCP;
#else
    return (unsigned)m < APP_MODEL_COUNT;
#endif
}

int app_model_is_event(app_model m) {
    return m != APP_MODEL_THREADS && m != APP_MODEL_PREFORK && (unsigned)m < APP_MODEL_COUNT;
}

iomux_backend app_model_backend(app_model m) {
    switch (m) {
    case APP_MODEL_SELECT: return IOMUX_BACKEND_SELECT;
    case APP_MODEL_POLL: return IOMUX_BACKEND_POLL;
    case APP_MODEL_EPOLL:
    case APP_MODEL_EPOLL_ET: return IOMUX_BACKEND_EPOLL;
    case APP_MODEL_URING:
    case APP_MODEL_URING_POLL: return IOMUX_BACKEND_URING;
#ifdef _WIN32
    case APP_MODEL_IOCP: return IOMUX_BACKEND_IOCP;
#endif
    default: return IOMUX_BACKEND_AUTO;
    }
}

/* app_main and app_run: parse, then start the shape the model asks for
 * (loops.c, threads.c, prefork.c). */
#include <signal.h>

#include "internal.h"

int app_run(const app_spec *spec, const app_options *o) {
    app__name = spec->name;
#ifdef _WIN32
    /* Windows has neither SIGPIPE nor fork: the event models only */
    if (!app_model_is_event(o->model)) return 1;
#else
    signal(SIGPIPE, SIG_IGN); /* a peer that went away is an error return, not a death */
    if (o->model == APP_MODEL_THREADS) return app__run_threads(spec, o);
    if (o->model == APP_MODEL_PREFORK) return app__run_prefork(spec, o);
#endif
    return app__run_loops(spec, o);
}

int app_main(const app_spec *spec, int argc, char **argv) {
    app_options o;
    int rc;
    app__name = spec->name;
    rc = app_parse(spec, argc, argv, &o);
    if (rc == 1) return 0;
    if (rc) return rc;
    return app_run(spec, &o);
}

/* Built against an installed iomux: creates a loop, fires one timer. */
#include <iomux.h>
#include <stdio.h>

static void on_timer(iomux_timer *t) {
    *(int *)t->data = 1;
}

int main(void) {
    iomux_loop *loop;
    iomux_timer t;
    int fired = 0;
    if (iomux_loop_new(&loop, NULL) < 0) return 1;
    iomux_timer_init(loop, &t, on_timer);
    t.data = &fired;
    iomux_timer_start(&t, 1, 0);
    iomux_run(loop, IOMUX_RUN_DEFAULT);
    printf("%s %d\n", iomux_backend_name(loop), fired);
    return iomux_loop_free(loop) == 0 && fired ? 0 : 1;
}

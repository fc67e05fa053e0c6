#!/bin/sh
# The full hostile-client suite (README "Reliability"): every scenario of
# tests/test-hostile.c on every event model at full size
# (IOMUX_HOSTILE_FULL=1: 4,000 slowloris / slow-body attackers, 100 + 400
# slow readers, 10 RST storms of 10,000 connections with 1,000 resets,
# 4 s of load before SIGTERM), the slowfile scenarios included. With a second build directory
# (configured with -DIOMUX_SANITIZE=address,undefined), the RST storms and
# the drains also run there, so LeakSanitizer checks the server's exit.
#
#   scripts/reliability/hostile.sh [BUILD [ASAN_BUILD]]
#   HOSTILE_MODELS="epoll uring" scripts/reliability/hostile.sh ...   (a subset)
#
# Logs go to BUILD/hostile-full/<scenario>.log; the figures are printed as
# each one ends. Exit status: the number of failed scenarios (0: all passed
# or skipped). IOMUX_HOSTILE_SEED fixes the storms' random choices.
set -u
build=${1:-build}
asan=${2:-}
models=${HOSTILE_MODELS:-"select poll epoll epoll-et uring uring-poll epoll-proactor"}
failed=0

run() { # dir scenario
    bin=$1/tests/test-hostile
    log=$1/hostile-full/$2.log
    mkdir -p "$1/hostile-full"
    start=$(date +%s)
    IOMUX_HOSTILE_FULL=1 "$bin" "$1/apps/httpd/iomux-httpd" "$1/apps/load/iomux-load" "$2" >"$log" 2>&1
    rc=$?
    case $rc in
        0) verdict=passed ;;
        77) verdict=skipped ;;
        *) verdict="FAILED ($rc)"; failed=$((failed + 1)) ;;
    esac
    echo "== $2 ($1): $verdict in $(( $(date +%s) - start )) s"
    grep -E '^   ' "$log" | grep -v 'listening on'
    [ "$rc" = 0 ] || [ "$rc" = 77 ] || tail -n 5 "$log"
}

[ -x "$build/tests/test-hostile" ] || { echo "no $build/tests/test-hostile: build first" >&2; exit 100; }
for m in $models; do
    for s in slowloris slowbody slowread slowfile rst drain; do run "$build" "$s-$m"; done
done
if [ -n "$asan" ]; then
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    for m in $models; do
        for s in rst drain; do run "$asan" "$s-$m"; done
    done
fi
echo "hostile: $failed scenario(s) failed"
exit $failed

#!/usr/bin/env bash
# bench/http/run.sh: iomux-httpd in every I/O model against nginx.
#
#   bench/http/run.sh [--duration S] [--conns C] [--models "epoll uring ..."]
#                     [--repeats R] [--no-nginx] [--idle-conns N]
#                     [--blocking-idle-conns N] [--build DIR]
#   bench/http/run.sh --echo [--models ...] [--repeats R] [--idle-conns N]
#
# For each server (the iomux models, then nginx), pinned to CPU 0:
#   1. iomux-idle --http on CPU 1, on the freshly started server: N keep-alive
#      connections that each served one request, the server's RSS growth per
#      connection (its user-space memory; kernel socket buffers are not in
#      RSS), then all closed
#   2. wrk on CPU 1: -t1 -cC -dS --latency  GET /plaintext  -> req/s, p99
#   3. the same with pipeline.lua (16 pipelined requests per write) -> req/s
#      (no p99: wrk 4.1 reports 0 for pipelined percentiles, wg/wrk#236)
# then SIGTERM and wait. With --repeats R > 1 the servers run in alternating
# order (forward, reversed, ...) and every figure is the median of R.
#
# Per-connection models hold a thread or a process per connection, so:
#   threads: the idle test uses --blocking-idle-conns (default 1000);
#   prefork: runs with --processes 256 (wrk's 256 connections each need a
#            worker; more with --conns > 256), so its idle test uses that
#            many connections, and reports Pss
#            (summed Rss counts libc's shared pages once per waking worker);
#            each worker's own Pss before any connection is printed apart.
#
# --echo: no HTTP; for each model, iomux-echo and iomux-idle without --http
# (64 bytes echoed per connection): the echo server's bytes per connection.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/bench/http"
BUILD="$ROOT/build"
DURATION=10
CONNS=256
MODELS="select poll epoll epoll-et uring uring-poll threads prefork"
REPEATS=1
NGINX=1
ECHO=0
IDLE_CONNS=10000
BLOCKING_IDLE_CONNS=1000
PREFORK_PROCS=256
BASE_PORT=18080
SERVER_CPU=0
CLIENT_CPU=1

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

die() {
    echo "run.sh: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case "$1" in
    --duration) DURATION=${2:?}; shift ;;
    --conns) CONNS=${2:?}; shift ;;
    --models) MODELS=${2:?}; shift ;;
    --repeats) REPEATS=${2:?}; shift ;;
    --no-nginx) NGINX=0 ;;
    --echo) ECHO=1 ;;
    --idle-conns) IDLE_CONNS=${2:?}; shift ;;
    --blocking-idle-conns) BLOCKING_IDLE_CONNS=${2:?}; shift ;;
    --build) BUILD=$(cd "${2:?}" && pwd); shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done
for v in DURATION CONNS REPEATS IDLE_CONNS BLOCKING_IDLE_CONNS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --${v,,} needs a positive integer" >&2; exit 2; }
done
(( CONNS > PREFORK_PROCS )) && PREFORK_PROCS=$CONNS # a worker per wrk connection

HTTPD="$BUILD/apps/httpd/iomux-httpd"
ECHOD="$BUILD/apps/echo/iomux-echo"
IDLE="$BUILD/bench/iomux-idle"
[ -x "$IDLE" ] || die "$IDLE is not built (cmake --build build -j2)"
for t in taskset curl; do command -v $t >/dev/null || die "$t is not installed"; done
if [ $ECHO = 0 ]; then command -v wrk >/dev/null || die "wrk is not installed"; fi
[ "$(nproc)" -ge 2 ] || echo "run.sh: warning: one CPU, server and client share it" >&2

ulimit -n "$(ulimit -Hn)" # iomux-idle and the servers inherit it

TMP=$(mktemp -d /tmp/iomux-http-bench.XXXXXX)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        # prefork's workers and nginx's worker exit with their master.
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- servers ----

# start_server NAME PORT: starts it pinned to SERVER_CPU, sets SERVER_PID,
# waits until it serves; returns 1 (with a message) if it does not.
start_server() {
    local name=$1 port=$2 out="$TMP/$1.out" err="$TMP/$1.err"
    : >"$out"
    : >"$err"
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "  $name: port $port is already taken by another server" >&2
        return 1
    fi
    case "$name" in
    nginx)
        sed "s|@PORT@|$port|g; s|@DIR@|$TMP|g" "$HERE/nginx.conf" >"$TMP/nginx.conf"
        (exec taskset -c $SERVER_CPU nginx -p "$TMP" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf") >"$out" 2>"$err" &
        ;;
    echo:*)
        local m=${name#echo:} extra=()
        [ "$m" = prefork ] && extra=(--processes "$BLOCKING_IDLE_CONNS")
        (exec taskset -c $SERVER_CPU "$ECHOD" --model "$m" --port "$port" --bind 127.0.0.1 "${extra[@]}") >"$out" 2>"$err" &
        ;;
    *)
        local extra=()
        [ "$name" = prefork ] && extra=(--processes "$PREFORK_PROCS")
        (exec taskset -c $SERVER_CPU "$HTTPD" --model "$name" --port "$port" --bind 127.0.0.1 "${extra[@]}") >"$out" 2>"$err" &
        ;;
    esac
    SERVER_PID=$! # (exec ...): $! is the server itself, whatever bash does with "cmd &"
    local i
    for ((i = 0; i < 100; i++)); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            wait "$SERVER_PID" 2>/dev/null || true
            SERVER_PID=
            echo "  $name: exited at start: $(tail -n 3 "$err" "$TMP/nginx-error.log" 2>/dev/null | tr '\n' ' ')" >&2
            return 1
        fi
        case "$name" in
        nginx)
            curl -s -o /dev/null "http://127.0.0.1:$port/plaintext" && return 0 ;;
        *)
            grep -q ": listening on 127.0.0.1:$port " "$out" && return 0 ;;
        esac
        sleep 0.1
    done
    echo "  $name: not ready after 10 s" >&2
    stop_server
    return 1
}

# SIGTERM, up to 15 s to drain and exit, then SIGKILL.
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    local i
    for ((i = 0; i < 150; i++)); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "  warning: server $SERVER_PID still running 15 s after SIGTERM, killed" >&2
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    local rc=0
    wait "$SERVER_PID" 2>/dev/null || rc=$?
    [ $rc = 0 ] || [ $rc = 143 ] || echo "  warning: server exited with status $rc" >&2
    SERVER_PID=
}

# ---- measurements ----

# "99%  1.23ms" -> milliseconds
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1
        if (f < 0) print "nan"; else printf "%.3f\n", n * f }'
}

# run_wrk PORT [SCRIPT]: prints "RPS P99_MS"; warns about errors.
run_wrk() {
    local port=$1 script=${2:-} out="$TMP/wrk.out" args=()
    [ -n "$script" ] && args=(-s "$script")
    if ! taskset -c $CLIENT_CPU wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "${args[@]}" \
        "http://127.0.0.1:$port/plaintext" >"$out" 2>&1; then
        echo "  wrk failed: $(tail -n 2 "$out" | tr '\n' ' ')" >&2
        echo "nan nan"
        return
    fi
    grep -E "Socket errors|Non-2xx" "$out" | sed 's/^/  wrk: /' >&2 || true
    local rps p99
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    p99=$(awk '$1 == "99%" { print $2 }' "$out")
    echo "${rps:-nan} $(to_ms "${p99:-x}")"
}

# run_idle PORT N [--http]: prints "RSS_PER_CONN PSS_PER_CONN PSS_BEFORE PROCS".
run_idle() {
    local port=$1 n=$2 http=${3:-} out="$TMP/idle.out"
    if ! taskset -c $CLIENT_CPU "$IDLE" --port "$port" --conns "$n" --pid "$SERVER_PID" $http >"$out" 2>&1; then
        echo "  iomux-idle failed: $(tail -n 2 "$out" | tr '\n' ' ')" >&2
        echo "nan nan nan nan"
        return
    fi
    awk '{ for (i = 1; i < NF; i++) v[$i] = $(i + 1) }
         END { print v["per_conn"], v["pss_per_conn"], v["pss_before"], v["procs"] }' "$out"
}

# median of the arguments ("nan" ignored; "nan" if none)
median() {
    printf '%s\n' "$@" | grep -v nan | sort -g |
        awk '{ v[NR] = $1 } END { if (!NR) print "nan"; else if (NR % 2) print v[(NR + 1) / 2];
              else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

declare -A RES # RES[name:metric] = "v1 v2 ..." (one value per repeat)
add() { RES[$1:$2]="${RES[$1:$2]:-} $3"; }
med() { median ${RES[$1:$2]:-nan}; }

# bench_http NAME PORT
bench_http() {
    local name=$1 port=$2 r p pb np
    echo "== $name (port $port)" >&2
    if ! start_server "$name" "$port"; then
        add "$name" fail 1
        return
    fi
    local body
    body=$(curl -s --max-time 5 "http://127.0.0.1:$port/plaintext" || true)
    [ "$body" = "Hello, World!" ] || echo "  warning: GET /plaintext answered '$body'" >&2
    local n=$IDLE_CONNS
    case "$name" in
    threads) n=$BLOCKING_IDLE_CONNS ;;
    prefork) n=$PREFORK_PROCS ;;
    esac
    read -r r p pb np < <(run_idle "$port" "$n" --http)
    echo "  idle:      $n conns, $r B/conn (Rss), $p B/conn (Pss)" >&2
    add "$name" idle "$([ "$name" = prefork ] && echo "$p" || echo "$r")"
    add "$name" idlen "$n"
    if [ "$name" = prefork ] && [ "$pb" != nan ]; then
        add "$name" proc_pss "$(awk -v a="$pb" -v n="$np" 'BEGIN { print a / n }')"
    fi
    sleep 1 # the server sees the 10,000 connections close
    read -r r p < <(run_wrk "$port")
    echo "  plain:     $r req/s, p99 $p ms" >&2
    add "$name" rps "$r"
    add "$name" p99 "$p"
    read -r r p < <(run_wrk "$port" "$HERE/pipeline.lua")
    echo "  pipelined: $r req/s" >&2
    add "$name" prps "$r"
    stop_server
}

# bench_echo MODEL PORT
bench_echo() {
    local m=$1 port=$2 r p n=$IDLE_CONNS
    case "$m" in threads | prefork) n=$BLOCKING_IDLE_CONNS ;; esac
    echo "== echo $m (port $port)" >&2
    if ! start_server "echo:$m" "$port"; then
        add "$m" fail 1
        return
    fi
    read -r r p _ _ < <(run_idle "$port" "$n")
    echo "  idle: $n conns, $r B/conn (Rss), $p B/conn (Pss)" >&2
    add "$m" rss "$r"
    add "$m" pss "$p"
    add "$m" idlen "$n"
    stop_server
}

fmt_int() { [ "$1" = nan ] && echo "n/a" || printf "%.0f" "$1"; }
fmt_ms() { [ "$1" = nan ] && echo "n/a" || printf "%.2f ms" "$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b == 0) print "n/a"; else printf "%.2f", a / b }'; }

# ---- the runs ----

read -r -a model_list <<<"$MODELS"
names=()
if [ $ECHO = 1 ]; then
    [ -x "$ECHOD" ] || die "$ECHOD is not built"
    names=("${model_list[@]}")
else
    if [ ${#model_list[@]} -gt 0 ] && [ ! -x "$HTTPD" ]; then
        echo "run.sh: $HTTPD is not built: skipping the iomux models (${model_list[*]})" >&2
        model_list=()
    fi
    names=("${model_list[@]}")
    if [ $NGINX = 1 ]; then
        command -v nginx >/dev/null || die "nginx is not installed (or pass --no-nginx)"
        names+=(nginx)
    fi
fi
[ ${#names[@]} -gt 0 ] || die "nothing to run"

declare -A PORT
for i in "${!names[@]}"; do PORT[${names[$i]}]=$((BASE_PORT + i)); done

for ((rep = 1; rep <= REPEATS; rep++)); do
    order=("${names[@]}")
    if ((rep % 2 == 0)); then
        order=()
        for ((i = ${#names[@]} - 1; i >= 0; i--)); do order+=("${names[$i]}"); done
    fi
    [ "$REPEATS" -gt 1 ] && echo "-- repeat $rep of $REPEATS: ${order[*]}" >&2
    for name in "${order[@]}"; do
        if [ $ECHO = 1 ]; then bench_echo "$name" "${PORT[$name]}"; else bench_http "$name" "${PORT[$name]}"; fi
    done
done

# ---- the table ----

echo
if [ $ECHO = 1 ]; then
    echo "iomux-echo: server memory per idle connection (64 bytes echoed on each; median of $REPEATS)"
    echo
    echo "| model | conns | B/conn (Rss) | B/conn (Pss) |"
    echo "|---|---:|---:|---:|"
    for name in "${names[@]}"; do
        if [ -n "${RES[$name:fail]:-}" ] && [ -z "${RES[$name:rss]:-}" ]; then
            echo "| $name | | failed to start | |"
            continue
        fi
        echo "| $name | $(med "$name" idlen) | $(fmt_int "$(med "$name" rss)") | $(fmt_int "$(med "$name" pss)") |"
    done
    echo
    echo "Rss/Pss growth of the server (and its children) from before the connections to"
    echo "500 ms after; user-space memory only, kernel socket buffers are not included."
    exit 0
fi

echo "wrk -t1 -c$CONNS -d${DURATION}s on CPU $CLIENT_CPU, server on CPU $SERVER_CPU; GET /plaintext; median of $REPEATS"
echo
echo "| model | req/s | p99 | pipelined req/s | pipelined/plain | idle B/conn |"
echo "|---|---:|---:|---:|---:|---:|"
best= best_rps=0 best_p= best_prps=0 best_i= best_idle=
for name in "${names[@]}"; do
    if [ -n "${RES[$name:fail]:-}" ] && [ -z "${RES[$name:rps]:-}" ]; then
        echo "| $name | failed to start | | | | |"
        continue
    fi
    rps=$(med "$name" rps) p99=$(med "$name" p99) prps=$(med "$name" prps)
    idle=$(med "$name" idle) n=$(med "$name" idlen)
    note=""
    [ "$n" != "$IDLE_CONNS" ] && note=" (N=$n)"
    [ "$name" = prefork ] && note=" (N=$n, Pss)"
    echo "| $name | $(fmt_int "$rps") | $(fmt_ms "$p99") | $(fmt_int "$prps") | $(ratio "$prps" "$rps") | $(fmt_int "$idle")$note |"
    [ "$name" = nginx ] && continue
    if [ "$rps" != nan ] && awk -v a="$rps" -v b="$best_rps" 'BEGIN { exit !(a > b) }'; then best=$name best_rps=$rps; fi
    if [ "$prps" != nan ] && awk -v a="$prps" -v b="$best_prps" 'BEGIN { exit !(a > b) }'; then best_p=$name best_prps=$prps; fi
    case "$name" in threads | prefork) continue ;; esac # a different N, not comparable
    if [ "$idle" != nan ] && { [ -z "$best_idle" ] || awk -v a="$idle" -v b="$best_idle" 'BEGIN { exit !(a < b) }'; }; then
        best_i=$name best_idle=$idle
    fi
done
echo
echo "idle: N=$IDLE_CONNS keep-alive connections that each served one request; the server's Rss"
echo "growth per connection (user-space memory only; kernel socket buffers are not in it)."
[ -n "${RES[threads:idlen]:-}" ] && echo "threads: N=$BLOCKING_IDLE_CONNS (a thread per connection)."
if [ -n "${RES[prefork:idlen]:-}" ]; then
    echo "prefork: N=$PREFORK_PROCS (its --processes; a worker per connection), Pss growth; on top of"
    echo "that each pre-forked worker holds $(fmt_int "$(med prefork proc_pss)") B of Pss before serving anything."
fi
if [ -n "${RES[nginx:rps]:-}" ] && [ -n "$best" ]; then
    echo
    echo "best iomux / nginx:"
    echo "- req/s:           $best $(ratio "$best_rps" "$(med nginx rps)")x"
    echo "- pipelined req/s: $best_p $(ratio "$best_prps" "$(med nginx prps)")x"
    [ -n "$best_i" ] && echo "- idle B/conn:     $best_i $(ratio "$best_idle" "$(med nginx idle)")x (lower is better)"
fi
exit 0

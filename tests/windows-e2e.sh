#!/usr/bin/env bash
# The Windows servers end to end: starts a Windows build's iomux-echo.exe
# (or iomux-httpd.exe) under Wine on 127.0.0.1 with a free port, and talks
# to it from Linux over loopback, checking every byte:
#   echo:  one short line; 2 MB of random bytes through one connection;
#          8 connections at once, each with its own 256 KiB; then, given
#          --load, the Linux iomux-load (echo protocol: it compares each
#          response with what it sent) with 32 connections;
#   httpd: curl fetches a file of random bytes (and a missing one: 404),
#          then, given --load, iomux-load in http mode;
# then SIGINT, which Wine turns into a console Ctrl-C: the server drains
# and must exit 0.
#
#   windows-e2e.sh --wine WINE --exe PATH.exe --model iocp|poll
#                  [--api reactor|proactor] [--app echo|httpd] [--load IOMUX-LOAD]
#
# Exit: 0 pass, 1 fail, 77 skipped (no Wine, or httpd without curl).
# The Wine process is killed on every way out.
set -u

wine="" exe="" model="" api="" app=echo load=""
while [ $# -gt 0 ]; do
    case "$1" in
    --wine) wine=$2; shift 2 ;;
    --exe) exe=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --api) api=$2; shift 2 ;;
    --app) app=$2; shift 2 ;;
    --load) load=$2; shift 2 ;;
    *) echo "windows-e2e: unknown argument $1" >&2; exit 1 ;;
    esac
done

log() { echo "windows-e2e: $*"; }
fail() { log "FAIL: $*"; exit 1; }

[ -n "$exe" ] && [ -n "$model" ] || fail "usage: --wine WINE --exe PATH.exe --model MODEL"
if [ -z "$wine" ] || [ ! -x "$wine" ]; then log "no Wine ('$wine'): skipped"; exit 77; fi
[ -f "$exe" ] || fail "no $exe"
if [ "$app" = httpd ] && ! command -v curl >/dev/null; then log "no curl: skipped"; exit 77; fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/iomux-win-e2e.XXXXXX") || fail "mktemp"
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

export WINEDEBUG=-all
args=(--model "$model" --bind 127.0.0.1 --port 0 --drain-ms 3000)
[ -n "$api" ] && args+=(--api "$api")
if [ "$app" = httpd ]; then
    mkdir -p "$tmp/www"
    head -c 300000 /dev/urandom >"$tmp/www/blob.bin"
    printf 'hello from wine\n' >"$tmp/www/hello.txt"
    printf 'not to be served\n' >"$tmp/outside.txt"
    ln -s ../outside.txt "$tmp/www/link.txt" # a link out of the root
    # Wine maps the Unix root to drive Z:
    args+=(--root "Z:$(echo "$tmp/www" | tr / '\\')")
fi

log "starting: $exe ${args[*]}"
"$wine" "$exe" "${args[@]}" >"$tmp/out" 2>"$tmp/err" &
pid=$!

# The ready line; Wine's first start can take a while.
port=""
for _ in $(seq 1 240); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\) .*/\1/p' "$tmp/out")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
done
if [ -z "$port" ]; then
    cat "$tmp/out" "$tmp/err"
    kill -0 "$pid" 2>/dev/null && fail "no ready line within 120 s"
    fail "the server exited before its ready line"
fi
log "ready: $(head -n 1 "$tmp/out")"
case "$(head -n 1 "$tmp/out")" in
*"(model $model, api ${api:-}"*) ;;
*) fail "the ready line does not name model $model${api:+ api $api}" ;;
esac

alive() { kill -0 "$pid" 2>/dev/null || { cat "$tmp/err"; fail "the server died ($1)"; }; }

# Sends file $1 on one connection while reading as many bytes back into
# $2, both bounded by 60 s. Bash's /dev/tcp: a plain Linux TCP client.
roundtrip() {
    local in=$1 out=$2 n
    n=$(wc -c <"$in")
    timeout 60 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
        cat "$1" >&3 &
        head -c "$2" <&3 >"$3"
        wait' "$port" "$in" "$n" "$out"
}

check_echo() {
    local i
    printf 'iomux on %s under Wine\n' "$model" >"$tmp/line"
    roundtrip "$tmp/line" "$tmp/line.back" || fail "short round trip did not complete"
    cmp "$tmp/line" "$tmp/line.back" || fail "short round trip: bytes differ"
    log "ok: one line"

    head -c 2097152 /dev/urandom >"$tmp/big"
    roundtrip "$tmp/big" "$tmp/big.back" || fail "2 MB round trip did not complete"
    cmp "$tmp/big" "$tmp/big.back" || fail "2 MB round trip: bytes differ"
    log "ok: 2 MB on one connection"

    local pids=()
    for i in 1 2 3 4 5 6 7 8; do
        head -c 262144 /dev/urandom >"$tmp/c$i"
        roundtrip "$tmp/c$i" "$tmp/c$i.back" &
        pids+=($!)
    done
    for i in "${!pids[@]}"; do wait "${pids[$i]}" || fail "connection $((i + 1)) of 8 did not complete"; done
    for i in 1 2 3 4 5 6 7 8; do cmp "$tmp/c$i" "$tmp/c$i.back" || fail "connection $i of 8: bytes differ"; done
    log "ok: 8 connections at once, 256 KiB each"
    alive "after the echo checks"

    [ -n "$load" ] || { log "no --load: iomux-load part skipped"; return; }
    [ -x "$load" ] || fail "no iomux-load at $load"
    timeout 90 "$load" --port "$port" --proto echo --conns 32 --size 1500 --pipeline 2 \
        --requests 20000 --timeout-s 60 --json >"$tmp/load" 2>&1 || { cat "$tmp/load"; fail "iomux-load failed"; }
    grep -q '"requests":20000,' "$tmp/load" && grep -q '"errors":0,' "$tmp/load" ||
        { cat "$tmp/load"; fail "iomux-load: not 20000 requests without errors"; }
    log "ok: iomux-load, 32 connections, 20000 echoes of 1500 bytes, errors 0"
}

check_httpd() {
    local code
    curl --noproxy '*' -sS --max-time 30 -o "$tmp/blob.got" "http://127.0.0.1:$port/blob.bin" ||
        fail "curl /blob.bin failed"
    cmp "$tmp/www/blob.bin" "$tmp/blob.got" || fail "/blob.bin: bytes differ"
    log "ok: GET /blob.bin (300000 bytes)"
    curl --noproxy '*' -sS --max-time 30 -o "$tmp/hello.got" "http://127.0.0.1:$port/hello.txt" ||
        fail "curl /hello.txt failed"
    cmp "$tmp/www/hello.txt" "$tmp/hello.got" || fail "/hello.txt: bytes differ"
    code=$(curl --noproxy '*' -s --max-time 30 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/missing")
    [ "$code" = 404 ] || fail "/missing: status $code, not 404"
    log "ok: GET /hello.txt, and 404 for /missing"
    for p in /link.txt:404 /%2e%2e/outside.txt:400 /hello.txt::%24DATA:400 /nul:404; do
        code=$(curl --noproxy '*' -s --path-as-is --max-time 30 -o /dev/null -w '%{http_code}' \
            "http://127.0.0.1:$port${p%:*}")
        [ "$code" = "${p##*:}" ] || fail "${p%:*}: status $code, not ${p##*:}"
    done
    log "ok: nothing outside the root (a link out: 404, .. : 400, a stream: 400, a device: 404)"
    alive "after curl"

    [ -n "$load" ] || { log "no --load: iomux-load part skipped"; return; }
    [ -x "$load" ] || fail "no iomux-load at $load"
    timeout 90 "$load" --port "$port" --proto http --path /hello.txt --conns 16 --requests 5000 \
        --timeout-s 60 --json >"$tmp/load" 2>&1 || { cat "$tmp/load"; fail "iomux-load failed"; }
    grep -q '"requests":5000,' "$tmp/load" && grep -q '"errors":0,' "$tmp/load" ||
        { cat "$tmp/load"; fail "iomux-load: not 5000 requests without errors"; }
    log "ok: iomux-load http, 16 connections, 5000 requests, errors 0"
}

if [ "$app" = httpd ]; then check_httpd; else check_echo; fi

# The drain: Wine delivers SIGINT to a console program as Ctrl-C.
kill -INT "$pid"
for _ in $(seq 1 40); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
done
kill -0 "$pid" 2>/dev/null && fail "still running 10 s after SIGINT (Ctrl-C)"
wait "$pid"
rc=$?
pid=""
[ "$rc" = 0 ] || { cat "$tmp/err"; fail "exit code $rc after the drain, not 0"; }
log "ok: drained on Ctrl-C, exit 0"
if [ -s "$tmp/err" ]; then log "its stderr:"; cat "$tmp/err"; fi
log "PASS"
exit 0

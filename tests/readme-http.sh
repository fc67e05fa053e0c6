#!/bin/bash
# Runs the README's embedded HTTP server on $IOMUX_BACKEND in a temporary
# directory holding www/f.txt, asks it with curl (loopback only) for its
# handler's /hello, a static file and the built-in /plaintext, then sends
# SIGTERM: it must drain and exit 0. Fails on a wrong body or a timeout.
set -u
bin=$1 port=$2
dir=$(mktemp -d)
trap 'kill $server 2>/dev/null; rm -rf "$dir"' EXIT
command -v curl >/dev/null || { echo "curl is missing: skipped"; exit 77; }
mkdir "$dir/www" && echo "static file" > "$dir/www/f.txt"
cd "$dir" || exit 1
"$bin" "$port" > out 2>&1 &
server=$!
for i in $(seq 50); do
    grep -q "serving on" "$dir/out" 2>/dev/null && break
    sleep 0.1
done
get() { curl --noproxy '*' -s --max-time 5 "http://127.0.0.1:$port$1"; }
[ "$(get /hello)" = "hi" ] || { echo "/hello: wrong answer"; cat "$dir/out"; exit 1; }
[ "$(get /f.txt)" = "static file" ] || { echo "/f.txt: wrong answer"; exit 1; }
[ "$(get /plaintext)" = "Hello, World!" ] || { echo "/plaintext: wrong answer"; exit 1; }
[ "$(curl --noproxy '*' -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/../etc/passwd" --path-as-is)" = 400 ] ||
    { echo "/../etc/passwd: not refused"; exit 1; }
kill -TERM $server
for i in $(seq 50); do kill -0 $server 2>/dev/null || break; sleep 0.1; done
wait $server; rc=$?
[ $rc = 0 ] || { echo "exit status $rc after SIGTERM"; cat "$dir/out"; exit 1; }
echo "readme-http: ok on ${IOMUX_BACKEND:-auto}"

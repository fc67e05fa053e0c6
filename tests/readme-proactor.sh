#!/bin/bash
# Runs the README's Proactor echo server on $IOMUX_BACKEND and talks to it
# over loopback with bash's /dev/tcp: three connections, each echoed back
# byte for byte. Fails on a wrong echo, a missing banner or a timeout.
set -u
bin=$1 port=$2
"$bin" "$port" > "${TMPDIR:-/tmp}/readme-proactor.$$" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -f "${TMPDIR:-/tmp}/readme-proactor.$$"' EXIT
for i in $(seq 50); do
    grep -q "echo on 127.0.0.1:$port (${IOMUX_BACKEND:-})" "${TMPDIR:-/tmp}/readme-proactor.$$" 2>/dev/null && break
    sleep 0.1
done
grep -q "echo on" "${TMPDIR:-/tmp}/readme-proactor.$$" || { echo "no banner"; cat "${TMPDIR:-/tmp}/readme-proactor.$$"; exit 1; }
for msg in hello "iomux proactor" "$(head -c 3000 /dev/zero | tr '\0' x)"; do
    exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    printf '%s' "$msg" >&3
    got=$(timeout 5 head -c "${#msg}" <&3)
    exec 3>&-
    [ "$got" = "$msg" ] || { echo "echo mismatch for a ${#msg}-byte message"; exit 1; }
done
echo "readme-proactor: ok on ${IOMUX_BACKEND:-auto}"

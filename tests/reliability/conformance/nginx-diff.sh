#!/bin/sh
# The nginx differential of the conformance corpus: sends every vector of
# vectors.txt to Debian's nginx (started non-daemon on a loopback port with
# a temporary prefix; see tests/test-http-conformance.c) and lists each
# disagreement with iomux-httpd's expected behaviour, with its reason from
# known-disagreements.txt. An unexplained disagreement exits 1; no nginx: 77.
#
#   tests/reliability/conformance/nginx-diff.sh [BUILD-DIR] [NGINX]
#
# BUILD-DIR holds tests/test-http-conformance (default: build); NGINX
# defaults to /usr/sbin/nginx. CONFORMANCE_ONLY=name runs one vector.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
nginx=${2:-/usr/sbin/nginx}
driver=$build/tests/test-http-conformance
if [ ! -x "$driver" ]; then
    echo "nginx-diff.sh: no $driver (build the test-http-conformance target first)" >&2
    exit 2
fi
exec "$driver" --nginx "$nginx" "$here/vectors.txt" "$here/known-disagreements.txt"

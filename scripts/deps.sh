#!/bin/sh
# Makes sure the Debian packages the build needs are present. As root it
# installs what is missing (apt-get update once, then apt-get install -y);
# otherwise it prints the exact command to run and fails.
#
#   scripts/deps.sh         what `make test` needs (the reliability suite too)
#   scripts/deps.sh run     also what `make run` (iomux-compare) measures
#                           with: the peers' libraries, wrk, nginx, perf
set -eu

need=""
want() { # want <package> <test command...>
    pkg=$1; shift
    if ! "$@" >/dev/null 2>&1; then need="$need $pkg"; fi
}

want cmake       command -v cmake
want make        command -v make
want gcc         command -v cc
want pkgconf     command -v pkg-config
want libc6-dev   test -e /usr/include/stdio.h
want liburing-dev test -e /usr/include/liburing.h
want node-llhttp  test -e /usr/share/llhttp/llhttp.c
want curl         command -v curl
want libasan8    sh -c 'ls /usr/lib/gcc/*/*/libasan.so >/dev/null 2>&1 || ls /usr/lib/*/libasan.so.* >/dev/null 2>&1'
want libtsan2    sh -c 'ls /usr/lib/gcc/*/*/libtsan.so >/dev/null 2>&1 || ls /usr/lib/*/libtsan.so.* >/dev/null 2>&1'
want libubsan1   sh -c 'ls /usr/lib/gcc/*/*/libubsan.so >/dev/null 2>&1 || ls /usr/lib/*/libubsan.so.* >/dev/null 2>&1'
# The reliability suite (README "Reliability"): libFuzzer from clang, the
# hostile clients, nginx for the conformance differential, wrk for the
# drain under load, nft and ip for the packet-loss namespaces.
want clang        command -v clang
want libclang-rt-14-dev sh -c 'ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a'
want slowhttptest command -v slowhttptest
want nginx-light  sh -c 'command -v nginx || test -x /usr/sbin/nginx'
want wrk          command -v wrk
want nftables     sh -c 'command -v nft || test -x /usr/sbin/nft'
want iproute2     sh -c 'command -v ip || test -x /usr/sbin/ip'
# The Windows leg (README "Windows"): mingw-w64 cross-compiles, Wine runs.
want gcc-mingw-w64-x86-64 command -v x86_64-w64-mingw32-gcc-posix
want wine64       test -x /usr/lib/wine/wine64

if [ "${1:-}" = run ]; then
    want libuv1-dev   test -e /usr/include/uv.h
    want libevent-dev test -e /usr/include/event2/event.h
    want libev-dev    test -e /usr/include/ev.h
    want linux-perf   command -v perf
fi

[ -z "$need" ] && exit 0

if [ "$(id -u)" = 0 ]; then
    echo "deps: installing:$need"
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need
else
    echo "deps: missing Debian packages:$need" >&2
    echo "deps: run:  sudo apt-get update && sudo apt-get install -y$need" >&2
    exit 1
fi

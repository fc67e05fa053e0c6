#!/bin/sh
# Installs the build tree into a temporary prefix, then builds and runs a
# consumer three ways: CMake find_package (shared and static) and pkg-config.
set -eu
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
cmake -S "$src/tests/install" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/consumer/consumer-shared"
"$tmp/consumer/consumer-static"
pc=$(find "$tmp/prefix" -name iomux.pc)
flags=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --cflags --libs iomux)
case "$flags" in *"$tmp/prefix"*) ;; *) echo "pkg-config points elsewhere: $flags"; exit 1 ;; esac
# shellcheck disable=SC2086
cc -o "$tmp/consumer-pc" "$src/tests/install/consumer.c" $flags -pthread
LD_LIBRARY_PATH=$(dirname "$(dirname "$pc")") "$tmp/consumer-pc"
echo "install: ok"

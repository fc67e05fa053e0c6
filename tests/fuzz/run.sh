#!/bin/sh
# Runs one libFuzzer binary for a bounded time over a temporary copy of its
# committed corpus, so fuzzing never writes into the source tree.
#
#   run.sh FUZZER CORPUS_DIR ARTIFACT_DIR [SECONDS [DICT]]
#
# SECONDS: $IOMUX_FUZZ_SECONDS if set, else the argument, else 20.
# Extra libFuzzer flags: $IOMUX_FUZZ_FLAGS (e.g. "-jobs=2 -workers=2").
# $IOMUX_FUZZ_SEED: libFuzzer's -seed (default 1; 0: a random one).
# $IOMUX_FUZZ_KEEP=DIR: merge the new interesting inputs into DIR (e.g. the
# committed corpus, after a long run: then minimise with -merge=1 by hand).
# Exits non-zero on any crash, leak, sanitizer report or per-input timeout;
# the input that did it is left in ARTIFACT_DIR (crash-*, leak-*, timeout-*).
set -eu

fuzzer=$1 corpus=$2 artifacts=$3
seconds=${IOMUX_FUZZ_SECONDS:-${4:-20}}
dict=${5:-}

work=$(mktemp -d "${TMPDIR:-/tmp}/iomux-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
mkdir -p "$work/corpus" "$artifacts"
if [ -d "$corpus" ]; then
    cp -R "$corpus/." "$work/corpus/"
fi

# A fixed seed by default, so that the short run in `make test` explores the
# same mutations each time; IOMUX_FUZZ_SEED=0 lets libFuzzer pick one (long runs).
set -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -seed="${IOMUX_FUZZ_SEED:-1}" \
       -artifact_prefix="$artifacts/" -print_final_stats=1
if [ -n "$dict" ]; then
    set -- "$@" -dict="$dict"
fi
echo "run.sh: $fuzzer for ${seconds}s over a copy of $corpus"
# shellcheck disable=SC2086 # IOMUX_FUZZ_FLAGS is a list of flags
"$fuzzer" "$@" ${IOMUX_FUZZ_FLAGS:-} "$work/corpus"
if [ -n "${IOMUX_FUZZ_KEEP:-}" ]; then
    mkdir -p "$IOMUX_FUZZ_KEEP"
    "$fuzzer" -merge=1 "$IOMUX_FUZZ_KEEP" "$work/corpus"
fi

#!/usr/bin/env bash
# Builds the library (release) and bench/stream_bench.cpp, and runs the
# benchmark: progress on stderr, a markdown table on stdout.
#
#   bash scripts/bench.sh [--runs N] [--seconds S] [--only NAME[,NAME...]] [--list]
#
# Defaults: 5 runs of 2 s per measurement, every scenario (about 3 minutes).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/ensure_deps.sh
. scripts/ensure_deps.sh
ensure_deps

cargo build --release >&2
# Its own build directory: optimized, and never the sanitizer build that
# `BRPC_STREAM_SANITIZE=1 scripts/test.sh` may leave in build/cpp_tests.
cmake -S cpp_tests -B build/bench -DCMAKE_BUILD_TYPE=Release -DBRPC_STREAM_SANITIZE=OFF >&2
cmake --build build/bench --target stream_bench -j2 >&2
exec build/bench/stream_bench "$@"

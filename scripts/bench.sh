#!/usr/bin/env bash
# Builds the library (release) and the benchmarks, and runs one of them:
# progress on stderr, a markdown table on stdout.
#
#   bash scripts/bench.sh [--runs N] [--seconds S] [--only NAME[,NAME...]] [--list]
#       bench/stream_bench.cpp: every scenario in one process, against the
#       raw TCP ceiling (5 runs of 2 s by default, about 3 minutes).
#   bash scripts/bench.sh --procs [--brpc-prefix DIR] [--runs N] [--runs-64 N]
#                         [--seconds S] [--only 1m,4k,64,churn,memory]
#       bench/stream_procs.cpp: client and server in separate processes, as
#       users run them. With --brpc-prefix DIR (or BRPC_PREFIX=DIR), DIR
#       being a build of apache/brpc with include/ and lib/libbrpc.a (or
#       output/include and output/lib), the same source is also built
#       against brpc and every figure is given beside brpc's. brpc is never
#       fetched or built here.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

procs=0
brpc_prefix="${BRPC_PREFIX:-}"
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --procs) procs=1 ;;
        --brpc-prefix)
            [ $# -ge 2 ] || { echo "--brpc-prefix takes a directory" >&2; exit 2; }
            brpc_prefix="$2"
            shift ;;
        *) args+=("$1") ;;
    esac
    shift
done
[ -z "$brpc_prefix" ] || procs=1

# shellcheck source=scripts/ensure_deps.sh
. scripts/ensure_deps.sh
ensure_deps

cargo build --release >&2
# Its own build directory: optimized, and never the sanitizer build that
# `BRPC_STREAM_SANITIZE=1 scripts/test.sh` may leave in build/cpp_tests.
cmake -S cpp_tests -B build/bench -DCMAKE_BUILD_TYPE=Release -DBRPC_STREAM_SANITIZE=OFF >&2
if [ "$procs" = 0 ]; then
    cmake --build build/bench --target stream_bench -j2 >&2
    exec build/bench/stream_bench "${args[@]+"${args[@]}"}"
fi
cmake --build build/bench --target stream_procs -j2 >&2

impl=()
if [ -n "$brpc_prefix" ]; then
    include="$brpc_prefix/include"
    lib="$brpc_prefix/lib"
    if [ ! -f "$lib/libbrpc.a" ] && [ -f "$brpc_prefix/output/lib/libbrpc.a" ]; then
        include="$brpc_prefix/output/include"
        lib="$brpc_prefix/output/lib"
    fi
    if [ ! -f "$lib/libbrpc.a" ] || [ ! -f "$include/brpc/stream.h" ]; then
        echo "--brpc-prefix $brpc_prefix: no lib/libbrpc.a and include/brpc/stream.h there" >&2
        exit 2
    fi
    out=build/bench-brpc
    mkdir -p "$out"
    protoc --cpp_out="$out" -Ibench bench/stream_bench.proto
    echo "building bench/stream_procs.cpp against $lib/libbrpc.a" >&2
    g++ -std=c++17 -O2 -DNDEBUG -I"$out" -I"$include" bench/stream_procs.cpp "$out/stream_bench.pb.cc" \
        "$lib/libbrpc.a" -lgflags -lprotobuf -lleveldb -lssl -lcrypto -lz -lpthread -ldl -lrt \
        -o "$out/stream_procs"
    impl=(--impl "brpc=$ROOT/$out/stream_procs")
fi
exec build/bench/stream_procs "${impl[@]+"${impl[@]}"}" "${args[@]+"${args[@]}"}"

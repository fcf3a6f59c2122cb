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
#   bash scripts/bench.sh --faults [--brpc-prefix DIR] [--only NAME,...]
#       examples/fault_probe.rs: the fault suite's attacks on
#       bench/fault_server.cpp in a separate process, RSS before/peak/after
#       and a legitimate client's latency for each (about 10 minutes per
#       server); with --brpc-prefix, the same server built against brpc is
#       attacked too, each attack on one server at a time.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

procs=0
faults=0
brpc_prefix="${BRPC_PREFIX:-}"
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --procs) procs=1 ;;
        --faults) faults=1 ;;
        --brpc-prefix)
            [ $# -ge 2 ] || { echo "--brpc-prefix takes a directory" >&2; exit 2; }
            brpc_prefix="$2"
            shift ;;
        *) args+=("$1") ;;
    esac
    shift
done

# shellcheck source=scripts/ensure_deps.sh
. scripts/ensure_deps.sh
ensure_deps

cargo build --release >&2
# Its own build directory: optimized, and never the sanitizer build that
# `BRPC_STREAM_SANITIZE=1 scripts/test.sh` may leave in build/cpp_tests.
cmake -S cpp_tests -B build/bench -DCMAKE_BUILD_TYPE=Release -DBRPC_STREAM_SANITIZE=OFF >&2

# DIR's include/ and lib/ (or output/include and output/lib), in
# brpc_include and brpc_lib.
find_brpc() {
    brpc_include="$brpc_prefix/include"
    brpc_lib="$brpc_prefix/lib"
    if [ ! -f "$brpc_lib/libbrpc.a" ] && [ -f "$brpc_prefix/output/lib/libbrpc.a" ]; then
        brpc_include="$brpc_prefix/output/include"
        brpc_lib="$brpc_prefix/output/lib"
    fi
    if [ ! -f "$brpc_lib/libbrpc.a" ] || [ ! -f "$brpc_include/brpc/stream.h" ]; then
        echo "--brpc-prefix $brpc_prefix: no lib/libbrpc.a and include/brpc/stream.h there" >&2
        exit 2
    fi
}

# bench/NAME.cpp (with bench/PROTO.proto) built against brpc into
# build/bench-brpc/NAME.
build_against_brpc() {
    local name="$1" proto="$2" out=build/bench-brpc
    mkdir -p "$out"
    protoc --cpp_out="$out" -Ibench "bench/$proto.proto"
    echo "building bench/$name.cpp against $brpc_lib/libbrpc.a" >&2
    g++ -std=c++17 -O2 -DNDEBUG -I"$out" -I"$brpc_include" "bench/$name.cpp" "$out/$proto.pb.cc" \
        "$brpc_lib/libbrpc.a" -lgflags -lprotobuf -lleveldb -lssl -lcrypto -lz -lpthread -ldl -lrt \
        -o "$out/$name"
}

if [ "$faults" = 1 ]; then
    cargo build --release --example fault_probe >&2
    cmake --build build/bench --target fault_server -j2 >&2
    servers=(--server "ours=$ROOT/build/bench/fault_server")
    if [ -n "$brpc_prefix" ]; then
        find_brpc
        build_against_brpc fault_server fault_server
        servers+=(--server "brpc=$ROOT/build/bench-brpc/fault_server")
    fi
    exec target/release/examples/fault_probe "${servers[@]}" "${args[@]+"${args[@]}"}"
fi
[ -z "$brpc_prefix" ] || procs=1
if [ "$procs" = 0 ]; then
    cmake --build build/bench --target stream_bench -j2 >&2
    exec build/bench/stream_bench "${args[@]+"${args[@]}"}"
fi
cmake --build build/bench --target stream_procs -j2 >&2

impl=()
if [ -n "$brpc_prefix" ]; then
    find_brpc
    build_against_brpc stream_procs stream_bench
    impl=(--impl "brpc=$ROOT/build/bench-brpc/stream_procs")
fi
exec build/bench/stream_procs "${impl[@]+"${impl[@]}"}" "${args[@]+"${args[@]}"}"

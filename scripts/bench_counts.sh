#!/usr/bin/env bash
# What a stream operation costs, counted rather than timed, so that a
# loaded machine still gives comparable figures:
#
#   bash scripts/bench_counts.sh [--reps N] [--no-syscalls | --no-instructions] [CHECKOUT]
#
# Builds bench/stream_count.cpp (from this checkout) against CHECKOUT's
# library (default: this checkout; `cargo build --release` is run there),
# then runs each scenario at two counts and divides the difference by the
# difference of the counts, so setup and teardown cancel out:
#   - instructions per operation, every thread: valgrind --tool=callgrind
#     (the kernel's work, such as copying into sockets, is not counted);
#   - syscalls and context switches per operation: perf stat with the
#     raw_syscalls:sys_enter tracepoint, natively, one run at ten times the
#     larger count divided by that count (a difference of two native runs
#     is too noisy: these depend on how writes batch, so on timing).
# Scenarios: 64 B, 4 KiB and 1 MiB messages on one stream (StreamWrite,
# StreamWait on EAGAIN, until the server's handler has them all), and
# churn (StreamCreate, a call whose method StreamAccepts, StreamClose,
# wait for on_closed). Prints one line per run, then a markdown table of
# medians with the range. CHECKOUT may be a worktree at an older commit
# (`git worktree add /tmp/before <commit>`): the driver uses only the
# brpc/ facade, which has not changed shape.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
reps=5
syscalls=1
instructions=1
checkout="$ROOT"
while [ $# -gt 0 ]; do
    case "$1" in
        --reps) reps="$2"; shift ;;
        --no-syscalls) syscalls=0 ;;
        --no-instructions) instructions=0 ;;
        *) checkout="$(cd "$1" && pwd)" ;;
    esac
    shift
done

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
(cd "$checkout" && cargo build --release >&2)
protoc -I"$ROOT/bench" --cpp_out="$out" "$ROOT/bench/stream_bench.proto"
g++ -O2 -std=c++17 -I"$checkout/include" -I"$out" -I"$ROOT/bench" "$ROOT/bench/stream_count.cpp" "$out/stream_bench.pb.cc" \
    "$checkout/target/release/libbrpc_stream.a" -lprotobuf -lpthread -ldl -lm -o "$out/stream_count"
bin="$out/stream_count"

instructions() {
    valgrind --tool=callgrind --fair-sched=yes --callgrind-out-file="$out/cg" "$bin" "$1" "$2" >/dev/null 2>&1
    awk '/^totals:/ {print $2; exit}' "$out/cg"
}
syscalls_and_switches() {
    perf stat -x, -e 'raw_syscalls:sys_enter,context-switches' "$bin" "$1" "$2" 2>&1 >/dev/null |
        awk -F, '/raw_syscalls/ {s = $1} /context-switches/ {c = $1} END {print s, c}'
}
per_op() { echo "scale=3; ($2 - $1) / $3" | bc; }
# median, then (min-max), of numbers on stdin
summary() { sort -n | awk '{v[NR] = $1} END {printf "%s (%s-%s)", v[int((NR + 1) / 2)], v[1], v[NR]}'; }

rows=()
for spec in "64 20000 40000" "4k 4000 8000" "1m 100 300" "churn 100 200"; do
    set -- $spec
    what=$1 low=$2 high=$3
    ir=() sc=() cs=()
    for rep in $(seq "$reps"); do
        line="$what run $rep:"
        if [ "$instructions" = 1 ]; then
            a=$(instructions "$what" "$low")
            b=$(instructions "$what" "$high")
            ir+=("$(( (b - a) / (high - low) ))")
            line="$line instructions/op ${ir[-1]}"
        fi
        if [ "$syscalls" = 1 ]; then
            read -r s c <<<"$(syscalls_and_switches "$what" $((high * 10)))"
            sc+=("$(per_op 0 "$s" $((high * 10)))")
            cs+=("$(per_op 0 "$c" $((high * 10)))")
            line="$line syscalls/op ${sc[-1]}, context switches/op ${cs[-1]}"
        fi
        echo "$line" >&2
    done
    row="| $what |"
    if [ "$instructions" = 1 ]; then
        row="$row $(printf '%s\n' "${ir[@]}" | summary) |"
    fi
    if [ "$syscalls" = 1 ]; then
        row="$row $(printf '%s\n' "${sc[@]}" | summary) | $(printf '%s\n' "${cs[@]}" | summary) |"
    fi
    rows+=("$row")
done
header="| scenario |"
rule="| --- |"
if [ "$instructions" = 1 ]; then
    header="$header instructions/op |"
    rule="$rule --- |"
fi
if [ "$syscalls" = 1 ]; then
    header="$header syscalls/op | context switches/op |"
    rule="$rule --- | --- |"
fi
echo "$header"
echo "$rule"
printf '%s\n' "${rows[@]}"

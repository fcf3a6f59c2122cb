#!/usr/bin/env bash
# Three echo servers registered in a real etcd, and a client that finds
# them with "etcd://.../services/echo" and the rr balancer (README "Service
# discovery with etcd"). During the client's run of calls one server is
# killed with SIGKILL (no Stop: its entry goes when its 2 s lease lapses), a
# fourth one starts, and a first one stops with SIGTERM (it withdraws its
# entry before refusing calls). Prints what the client saw per half second.
#
#   bash scripts/etcd_demo.sh                 builds what it needs, runs the demo
#   bash scripts/etcd_demo.sh --check --bin-dir DIR
#                                             ctest's form: uses the programs in DIR
#                                             and fails unless what the README
#                                             promises happened
#
# etcd runs on free loopback ports with a data dir of its own; everything it
# started is killed and removed on exit, also on failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
check=0
bin_dir=""
while [ $# -gt 0 ]; do
    case "$1" in
        --check) check=1 ;;
        --bin-dir) bin_dir="$2"; shift ;;
        *) echo "etcd_demo: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

if [ -z "$bin_dir" ]; then
    cd "$ROOT"
    # shellcheck source=scripts/ensure_deps.sh
    . scripts/ensure_deps.sh
    ensure_deps
    cargo build --release
    cmake -S cpp_tests -B build/cpp_tests
    cmake --build build/cpp_tests --target etcd_echo_server etcd_echo_client -j2
    bin_dir="$ROOT/build/cpp_tests"
fi
for tool in etcd etcdctl; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "etcd_demo: $tool not found: bash scripts/ensure_deps.sh installs etcd-server and etcd-client" >&2
        exit 1
    }
done

dir=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
}

fail() {
    echo "etcd_demo: FAILED: $*" >&2
    for log in "$dir"/*.log; do
        echo "---- $log" >&2
        tail -n 20 "$log" >&2
    done
    exit 1
}

client_port=$(free_port)
peer_port=$(free_port)
while [ "$peer_port" = "$client_port" ]; do peer_port=$(free_port); done
endpoint="127.0.0.1:$client_port"
url="etcd://$endpoint/services/echo"

echo "== etcd on $endpoint"
etcd --name=demo --data-dir="$dir/etcd" \
    --listen-client-urls="http://$endpoint" --advertise-client-urls="http://$endpoint" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="demo=http://127.0.0.1:$peer_port" >"$dir/etcd.log" 2>&1 &
etcd_pid=$!
pids+=($etcd_pid)
# Bounded in time, not in tries: each health check can itself wait, and a
# loaded machine starts etcd slowly; an etcd that exited (its port taken)
# fails at once.
etcd_up() {
    etcdctl --endpoints="http://$endpoint" --dial-timeout=1s --command-timeout=2s endpoint health >/dev/null 2>&1
}
deadline=$((SECONDS + 60))
until etcd_up; do
    kill -0 "$etcd_pid" 2>/dev/null || fail "etcd exited"
    [ "$SECONDS" -lt "$deadline" ] || fail "etcd did not start within 60 s"
    sleep 0.2
done

declare -A server_pid server_port
start_server() {
    local name=$1
    "$bin_dir/etcd_echo_server" --port=0 --port_file="$dir/$name.port" --etcd="$url" \
        --lease_ttl_s=2 >"$dir/server_$name.log" 2>&1 &
    server_pid[$name]=$!
    pids+=($!)
    for _ in $(seq 1 300); do
        [ -s "$dir/$name.port" ] && break
        kill -0 "${server_pid[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    [ -s "$dir/$name.port" ] || fail "server $name did not start"
    server_port[$name]=$(cat "$dir/$name.port")
    echo "== server $name on port ${server_port[$name]}"
}

start_server A
start_server B
start_server C
echo "== registered under /services/echo/:"
etcdctl --endpoints="http://$endpoint" get --prefix /services/echo/ --print-value-only | sed '/^$/d; s/^/   /'

"$bin_dir/etcd_echo_client" --naming="$url" --lb=rr --interval_ms=5 --report_ms=500 \
    --max_failures=1 >"$dir/client.log" 2>&1 &
client_pid=$!
pids+=($client_pid)

sleep 2
echo "== kill -9 server B (port ${server_port[B]}): no Stop, its entry stays until the lease lapses"
kill -KILL "${server_pid[B]}"
sleep 4
echo "== start server D"
start_server D
sleep 2
echo "== SIGTERM server A (port ${server_port[A]}): it withdraws, then stops"
kill -TERM "${server_pid[A]}"
wait "${server_pid[A]}" || fail "server A exited with an error"
sleep 2
echo "== registered now:"
etcdctl --endpoints="http://$endpoint" get --prefix /services/echo/ --print-value-only | sed '/^$/d; s/^/   /'
kill -INT "$client_pid"
client_rc=0
wait "$client_pid" || client_rc=$?
echo "== the client's calls per server, every 0.5 s:"
grep -E '^(window|total):' "$dir/client.log" | sed 's/^/   /'

if [ "$check" -eq 1 ]; then
    [ "$client_rc" -eq 0 ] || fail "the client exited $client_rc (more than one call failed)"
    last=$(grep '^window:' "$dir/client.log" | tail -n 1)
    total=$(grep '^total:' "$dir/client.log" | tail -n 1)
    [ -n "$last" ] && [ -n "$total" ] || fail "the client printed no report"
    for gone in A B; do
        case "$last" in *":${server_port[$gone]}="*) fail "server $gone still answered at the end: $last" ;; esac
    done
    for alive in C D; do
        case "$last" in *":${server_port[$alive]}="*) ;; *) fail "server $alive did not answer at the end: $last" ;; esac
    done
    for name in A B C D; do
        case "$total" in *":${server_port[$name]}="*) ;; *) fail "server $name never answered: $total" ;; esac
    done
    echo "etcd_demo: OK"
fi

#!/bin/bash
# Runs a brpc-style server and its client on loopback, as a ctest test:
#
#   run_pair.sh SERVER_BIN "SERVER_ARGS" CLIENT_BIN "CLIENT_ARGS"
#
# The server listens on a port the system picks (--port=0) and writes it to
# --port_file; the client gets --server=127.0.0.1:PORT. When the client has
# exited the server is sent SIGINT (brpc's IsAskedToQuit) and must exit by
# itself. Passes when both exit 0. Every wait is bounded (load-tolerant).
set -u
server_bin=$1 server_args=$2 client_bin=$3 client_args=$4
limit_s=${BRPC_STYLE_LIMIT_S:-240}

dir=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null
    fi
    rm -rf "$dir"
}
trap cleanup EXIT

# shellcheck disable=SC2086  # the argument strings are word lists
"$server_bin" --port=0 --port_file="$dir/port" $server_args &
server_pid=$!

for _ in $(seq 1 $((limit_s * 10))); do
    [ -s "$dir/port" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
if [ ! -s "$dir/port" ]; then
    echo "run_pair: the server did not start listening" >&2
    exit 1
fi
port=$(cat "$dir/port")

# shellcheck disable=SC2086
timeout "$limit_s" "$client_bin" --server="127.0.0.1:$port" $client_args
client_rc=$?

kill -INT "$server_pid"
for _ in $(seq 1 $((limit_s * 10))); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$server_pid" 2>/dev/null; then
    echo "run_pair: the server did not exit after SIGINT" >&2
    exit 1
fi
wait "$server_pid"
server_rc=$?
server_pid=

echo "run_pair: client exited $client_rc, server exited $server_rc"
[ "$client_rc" -eq 0 ] && [ "$server_rc" -eq 0 ]

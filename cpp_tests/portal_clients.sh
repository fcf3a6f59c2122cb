#!/usr/bin/env bash
# Looks at a running server's builtin pages with real clients: curl on
# every page, `promtool check metrics` on /brpc_metrics, and headless
# Chromium on /status (its DOM must name the services; a screenshot is
# kept in OUT_DIR/status.png). Started by ctest; bounded in time.
#
#   portal_clients.sh PORTAL_SERVER OUT_DIR
set -euo pipefail

server_bin="$1"
out="$2"
mkdir -p "$out"

fail() {
    echo "portal_clients: error: $*" >&2
    exit 1
}
for tool in curl promtool chromium; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed (scripts/ensure_deps.sh installs it)"
done

# The server runs until its stdin (a pipe this script holds) closes.
coproc SERVER { exec timeout 200 "$server_bin"; }
server_in="${SERVER[1]}"
server_pid="$SERVER_PID"
trap 'exec {server_in}>&- 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true' EXIT
read -r -t 60 word port <&"${SERVER[0]}" || fail "the server printed no port"
[ "$word" = port ] || fail "the server printed '$word $port'"
base="http://127.0.0.1:$port"
echo "server on $base"

fetch() {
    curl --silent --show-error --fail --max-time 20 "$@"
}
expect() {
    local page="$1" pattern="$2" body
    body="$(fetch "$base$page")" || fail "GET $page failed"
    grep -q -- "$pattern" <<<"$body" || fail "GET $page lacks '$pattern':
$body"
    echo "GET $page: ok ($(wc -l <<<"$body") lines)"
}

expect /health '^OK$'
# As brpc: the version set with set_version, else the services' class names joined by '+'.
expect /version 'EchoImpl+.*StreamsImpl'
expect /status 'test.EchoService'
expect /status 'bench.StreamService'
expect /vars '^rpc_socket_count : '
expect /vars/rpc_socket_count '^rpc_socket_count : [0-9]'
expect "/vars/rpc_server_${port}_connection_count" "^rpc_server_${port}_connection_count : [1-9]"
# portal_server made one Echo call before printing its port.
expect "/vars/rpc_server_${port}_test_echo_service_echo_count" "^rpc_server_${port}_test_echo_service_echo_count : 1$"
expect /status '^test.EchoService  *Echo  *1  *0 '
expect /brpc_metrics "^# TYPE rpc_server_${port}_test_echo_service_echo summary$"
expect /connections '^socket  *peer  *age_s  *streams  *bytes_in  *bytes_out  *unwritten'
expect /connections '127\.0\.0\.1:'
expect /brpc_metrics '^# TYPE rpc_socket_count gauge$'
code="$(curl --silent --max-time 20 -o /dev/null -w '%{http_code}' "$base/no_such_page")"
[ "$code" = 404 ] || fail "an unknown page answered $code"
code="$(curl --silent --max-time 20 -o /dev/null -w '%{http_code}' -X POST "$base/status")"
[ "$code" = 405 ] || fail "POST answered $code"
echo "404 and 405: ok"

# Prometheus' own parser and linter. Its one objection allowed is brpc's
# naming: bvars such as rpc_socket_count are gauges ending in _count.
fetch "$base/brpc_metrics" >"$out/brpc_metrics.txt"
set +e
promtool check metrics <"$out/brpc_metrics.txt" >"$out/promtool.txt" 2>&1
rc=$?
set -e
case "$rc" in
    0) ;;
    3) if grep -v 'should not have "_count" suffix' "$out/promtool.txt" | grep -q .; then
           fail "promtool objects: $(cat "$out/promtool.txt")"
       fi ;;
    *) fail "promtool could not parse /brpc_metrics (rc $rc): $(cat "$out/promtool.txt")" ;;
esac
echo "promtool check metrics: ok ($(grep -c '^# TYPE' "$out/brpc_metrics.txt") metrics)"

# A browser: the status page as HTML, rendered.
profile="$(mktemp -d)"
chrome=(timeout 90 chromium --headless --no-sandbox --disable-gpu --disable-background-networking
        --disable-component-update --disable-sync --no-first-run --user-data-dir="$profile")
"${chrome[@]}" --dump-dom "$base/status" >"$out/status.html" 2>"$out/chromium.log" \
    || fail "chromium --dump-dom failed: $(tail -5 "$out/chromium.log")"
for name in test.EchoService bench.StreamService; do
    grep -q "<td>$name</td>" "$out/status.html" || fail "the rendered /status lacks $name"
done
rm -rf "$profile"
profile="$(mktemp -d)"
chrome=(timeout 90 chromium --headless --no-sandbox --disable-gpu --disable-background-networking
        --disable-component-update --disable-sync --no-first-run --user-data-dir="$profile")
rm -f "$out/status.png"
"${chrome[@]}" --window-size=1000,600 --screenshot="$out/status.png" "$base/status" >>"$out/chromium.log" 2>&1 \
    || fail "chromium --screenshot failed: $(tail -5 "$out/chromium.log")"
rm -rf "$profile"
[ -s "$out/status.png" ] || fail "chromium left no screenshot"
echo "chromium: /status names both services; screenshot $out/status.png"
echo "portal_clients: all pages seen"

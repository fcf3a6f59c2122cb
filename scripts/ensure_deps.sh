#!/usr/bin/env bash
# Installs what building and testing need when something is missing, on
# Debian 12 (apt). Idempotent: does nothing when all is present.
# Run it, or source it and call ensure_deps (which also puts ~/.cargo/bin on
# PATH for the caller).

ensure_deps() {
    local missing=()
    command -v cmake >/dev/null 2>&1 || missing+=(cmake)
    command -v make >/dev/null 2>&1 || missing+=(make)
    command -v g++ >/dev/null 2>&1 || missing+=(g++)
    command -v protoc >/dev/null 2>&1 || missing+=(protoc)
    [ -d /usr/include/gtest ] || missing+=(gtest)
    [ -d /usr/include/google/protobuf ] || missing+=(protobuf)
    [ -d /usr/include/gflags ] || missing+=(gflags)
    command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
    command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
    # The etcd tests start their own etcd (3.4 in Debian 12); etcdctl is
    # for the README's etcd walk-through.
    command -v etcd >/dev/null 2>&1 || missing+=(etcd)
    command -v etcdctl >/dev/null 2>&1 || missing+=(etcdctl)
    # The clients of the builtin pages' test (cpp_tests/portal_clients.sh).
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)

    if [ "${#missing[@]}" -gt 0 ]; then
        echo "ensure_deps: missing ${missing[*]}; installing with apt-get" >&2
        local sudo=()
        if [ "$(id -u)" -ne 0 ]; then
            if ! command -v sudo >/dev/null 2>&1; then
                echo "ensure_deps: error: not root and no sudo; install: cmake make g++" \
                     "libgtest-dev libprotobuf-dev protobuf-compiler libgflags-dev valgrind pkg-config" \
                     "etcd-server etcd-client curl prometheus chromium" >&2
                return 1
            fi
            sudo=(sudo)
        fi
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q || return 1
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            cmake make g++ libgtest-dev libprotobuf-dev protobuf-compiler libgflags-dev valgrind pkg-config \
            etcd-server etcd-client curl prometheus chromium || return 1
    fi

    if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        echo "ensure_deps: error: cargo not found; install Rust 1.85 or newer (https://rustup.rs)" >&2
        return 1
    fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    ensure_deps
fi

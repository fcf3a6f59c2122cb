#!/usr/bin/env bash
# Uses brpc_stream as a package, the four ways a program can: CMake's
# add_subdirectory and FetchContent on this checkout, find_package on a copy
# installed with `cmake --install` into a temporary prefix, and a Makefile
# with pkg-config. Each consumer is built static and shared and run; the
# install's contents, the SONAME and the shared library's exports are
# checked. cargo's target/release is reused (cargo runs, finds it current).
#
#   bash cpp_tests/consumers/run.sh [BUILD_DIR]     (default build/consumers)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/cpp_tests/consumers"
OUT="${1:-$ROOT/build/consumers}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PREFIX="$OUT/prefix"
rm -rf "$PREFIX"

fail() {
    echo "consumers: error: $*" >&2
    exit 1
}

# Runs a consumer program (bounded in time) and checks what it printed.
run_consumer() {
    local program="$1" output
    output="$(timeout 60 "$program")" || fail "$program failed: $output"
    case "$output" in
        "consumer ok"*) echo "  $program: $output" ;;
        *) fail "$program printed '$output'" ;;
    esac
}

# A shared consumer must load the library by its SONAME.
check_needed() {
    readelf -d "$1" | grep -q 'NEEDED.*\[libbrpc_stream\.so\.0\]' \
        || fail "$1 does not need libbrpc_stream.so.0: $(readelf -d "$1" | grep NEEDED)"
}

build_cmake_consumer() {
    local name="$1"
    shift
    echo "== consumer: $name"
    cmake -S "$HERE/$name" -B "$OUT/$name" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
    cmake --build "$OUT/$name" -j2 >/dev/null
    run_consumer "$OUT/$name/consumer_static"
    run_consumer "$OUT/$name/consumer_shared"
    check_needed "$OUT/$name/consumer_shared"
}

build_cmake_consumer add_subdirectory -DBRPC_STREAM_SOURCE_DIR="$ROOT"
build_cmake_consumer fetchcontent -DBRPC_STREAM_SOURCE_DIR="$ROOT"

echo "== install into $PREFIX"
cmake -S "$ROOT" -B "$OUT/package" -DCMAKE_INSTALL_PREFIX=/nonexistent >/dev/null
cmake --build "$OUT/package" >/dev/null
cmake --install "$OUT/package" --prefix "$PREFIX" >/dev/null
for file in include/brpc_stream.h include/brpc/stream.h include/brpc/server.h include/butil/iobuf.h \
    lib/libbrpc_stream.a lib/libbrpc_stream.so lib/libbrpc_stream.so.0 \
    lib/cmake/brpc_stream/brpc_stream-config.cmake lib/cmake/brpc_stream/brpc_stream-config-version.cmake \
    lib/pkgconfig/brpc_stream.pc; do
    [ -e "$PREFIX/$file" ] || fail "the install has no $file"
done
soname="$(readelf -d "$PREFIX/lib/libbrpc_stream.so.0" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')"
[ "$soname" = libbrpc_stream.so.0 ] || fail "the shared library's SONAME is '$soname'"
exported="$(nm -D --defined-only "$PREFIX/lib/libbrpc_stream.so.0" | awk '{print $3}')"
[ -n "$exported" ] || fail "the shared library exports nothing"
others="$(grep -v '^brpc_' <<<"$exported" || true)"
[ -z "$others" ] || fail "the shared library exports more than the C ABI: $(head -5 <<<"$others")"
echo "  SONAME $soname, $(wc -l <<<"$exported") symbols exported, all brpc_*"

build_cmake_consumer find_package -DCMAKE_PREFIX_PATH="$PREFIX"
# Installed, the shared consumer finds the library through its RUNPATH.
readelf -d "$OUT/find_package/consumer_shared" | grep -q "$PREFIX/lib" \
    || fail "the find_package consumer has no RUNPATH to $PREFIX/lib"

echo "== consumer: Makefile with pkg-config"
export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig"
flags="$(pkg-config --cflags --libs brpc_stream)" || fail "pkg-config knows no brpc_stream"
echo "  pkg-config --cflags --libs brpc_stream: $flags"
grep -q -- "-I$PREFIX/include" <<<"$flags" || fail "pkg-config's flags lack -I$PREFIX/include"
grep -q -- "-L$PREFIX/lib" <<<"$flags" || fail "pkg-config's flags lack -L$PREFIX/lib"
[ "$(pkg-config --modversion brpc_stream)" = "$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -n 1)" ] \
    || fail "pkg-config's version differs from Cargo.toml's"
mkdir -p "$OUT/pkgconfig"
make -s -C "$HERE/pkgconfig" OUT="$OUT/pkgconfig" >/dev/null
check_needed "$OUT/pkgconfig/consumer"
LD_LIBRARY_PATH="$PREFIX/lib" run_consumer "$OUT/pkgconfig/consumer"

echo "== consumers: all four built and ran"

#!/usr/bin/env bash
# Builds the library and the C++ demo (examples/demo.cpp) and runs it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/ensure_deps.sh
. scripts/ensure_deps.sh
ensure_deps

cargo build --release
cmake -S cpp_tests -B build/cpp_tests
cmake --build build/cpp_tests --target stream_demo -j2
exec build/cpp_tests/stream_demo "$@"

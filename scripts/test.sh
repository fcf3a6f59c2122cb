#!/usr/bin/env bash
# Runs every test: the Rust unit and integration tests, the loom models, and
# the C++ tests (GoogleTest, through ctest). Exits non-zero on any failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/ensure_deps.sh
. scripts/ensure_deps.sh
ensure_deps

# The wire captures of a real brpc peer, for the tests that replay them.
for dir in "$ROOT/../shared/wire" /work/shared/wire; do
    if [ -d "$dir" ]; then
        BRPC_WIRE_DIR="$(cd "$dir" && pwd)"
        export BRPC_WIRE_DIR
        break
    fi
done
echo "== BRPC_WIRE_DIR=${BRPC_WIRE_DIR:-<none found>}"

echo "== cargo build --release"
cargo build --release

# The build regenerates the C header; the committed one must match it.
header=include/brpc_stream.h
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    if ! git ls-files --error-unmatch "$header" >/dev/null 2>&1; then
        echo "error: $header is not committed; run 'cargo build' and commit it" >&2
        exit 1
    fi
    if ! git diff --exit-code -- "$header"; then
        echo "error: the committed $header is stale (diff above); run 'cargo build' and commit it" >&2
        exit 1
    fi
else
    echo "== not a git checkout: skipping the check that $header is committed and current"
fi

# The Rust code keeps the committed style (rustfmt.toml), where the
# toolchain has rustfmt (rustup's default profile does; it cannot be
# fetched here when missing).
if cargo fmt --version >/dev/null 2>&1; then
    echo "== cargo fmt --check"
    if ! cargo fmt --check; then
        echo "error: the Rust code is not formatted (diff above); run 'cargo fmt' and commit" >&2
        exit 1
    fi
else
    echo "== cargo fmt is not installed: skipping the format check"
fi

# Lints and docs are part of the build: clippy's warnings (undocumented
# unsafe blocks among them) and rustdoc's fail the run, where the toolchain
# has the tools.
if cargo clippy --version >/dev/null 2>&1; then
    echo "== cargo clippy --release --all-targets -- -D warnings"
    cargo clippy --release --all-targets -- -D warnings
else
    echo "== cargo clippy is not installed: skipping the lint check"
fi
echo "== cargo doc --no-deps (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps

echo "== cargo test --release"
cargo test --release

# The lifecycle storm once more under valgrind's memcheck, at a count that
# keeps it to seconds: invalid reads and writes, and memory definitely
# lost, fail it (threads the runtime keeps are "possibly lost", not errors).
echo "== valgrind memcheck: the storm, BRPC_STORM_SETUPS=2000"
storm="$(cargo test --release --test storm --no-run --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)"
if [ -z "$storm" ]; then
    echo "error: could not find the storm test's executable" >&2
    exit 1
fi
BRPC_STORM_SETUPS=2000 valgrind --tool=memcheck --error-exitcode=99 --leak-check=full \
    --show-leak-kinds=definite --errors-for-leak-kinds=definite --fair-sched=yes -q "$storm" --nocapture \
    2>&1 | { grep -Ev "^[VINWEF][0-9]{4} [0-9:.]+ +[0-9]+ +[0-9]+ [^ ]+:[0-9]+( [^ ]+)?\] " || true; }

# loom models: every tests/loom_*.rs, under --cfg brpc_loom in its own target dir.
shopt -s nullglob
for model in tests/loom_*.rs; do
    name="$(basename "$model" .rs)"
    echo "== loom: $name"
    RUSTFLAGS="--cfg brpc_loom" CARGO_TARGET_DIR=target/loom cargo test --release --test "$name"
done
shopt -u nullglob

# The C++ suite twice: as a program would build it, and with AddressSanitizer
# and UndefinedBehaviorSanitizer on the C++ side (the facade and the tests).
run_cpp_tests() {
    local dir="$1" sanitize="$2"
    cmake -S cpp_tests -B "$dir" -DBRPC_STREAM_SANITIZE="$sanitize"
    cmake --build "$dir" -j2
    (cd "$dir" && ctest --output-on-failure --no-tests=error --timeout 300 -j2)
}
echo "== C++ tests"
run_cpp_tests build/cpp_tests OFF
echo "== C++ tests under ASan + UBSan"
(
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
    run_cpp_tests build/cpp_tests_sanitize ON
)

# The library as a package: add_subdirectory, FetchContent, find_package
# after `cmake --install`, and a Makefile with pkg-config (reuses
# target/release).
echo "== package consumers"
bash cpp_tests/consumers/run.sh build/consumers

echo "== all tests passed"

#!/usr/bin/env bash
# run-all.sh - builds larder and runs every test, twice: on the normal build
# and on an AddressSanitizer + UndefinedBehaviorSanitizer build.
#
# Each run is one ctest invocation: the C unit tests, then the integration
# tests that drive real clients through larder to the GCS emulator. A client
# that is not installed makes its test report SKIP with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=$(nproc)

tests/deps.sh --test

if command -v npm >/dev/null && [[ -f tests/clients/node/package-lock.json ]]; then
    (cd tests/clients/node && npm ci --no-audit --no-fund --loglevel=error)
fi

# Sanitizer reports must fail the run: UBSan aborts on the first finding and
# the harness fails any test whose larder log holds a report.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:print_suppressions=0"

status=0
for variant in normal sanitize; do
    dir="$root/build/test-$variant"
    sanitize=OFF
    [[ $variant == sanitize ]] && sanitize=ON
    echo "=== build: $variant ==="
    cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLARDER_SANITIZE=$sanitize >/dev/null
    cmake --build "$dir" -j"$jobs"
    echo "=== tests: $variant ==="
    if ! ctest --test-dir "$dir" --output-on-failure -j"$jobs" --timeout 900; then
        status=1
    fi
done
exit $status

#!/usr/bin/env bash
# The threaded test programs under ThreadSanitizer (build-tsan, gcc's
# libtsan; clang works too: CC=clang tools/tsan.sh). Ends with the line
# "tsan: N passed, N failed"; exits nonzero when any program failed.
set -uo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh || exit 2

dir=${TSAN_BUILD_DIR:-build-tsan}
tests=(${TSAN_TESTS:-engine flow retry dialects pool stream cache})
# halt_on_error: the first race fails the program (meson sees a nonzero
# exit); second_deadlock_stack: both stacks of a lock-order inversion.
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/tools/tsan.supp ${TSAN_OPTIONS:-}"
# TSan's shadow mapping clashes with full ASLR on newer kernels; the
# runtime re-executes itself without it, but only when it may.
if [ ! -f "$dir/build.ninja" ]; then
	CC=${CC:-gcc} meson setup "$dir" --buildtype=debug -Db_sanitize=thread -Db_lundef=false \
		>"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; echo "tsan: 0 passed, 1 failed"; exit 1; }
fi
targets=()
for t in "${tests[@]}"; do targets+=("tests/test_$t"); done
if ! meson compile -C "$dir" "${targets[@]}"; then
	echo "tsan: 0 passed, 1 failed (build)"; exit 1
fi
passed=0 failed=0
for t in "${tests[@]}"; do
	start=$(date +%s)
	if timeout 600 setarch "$(uname -m)" -R "$dir/tests/test_$t" >"$dir/test_$t.log" 2>&1; then
		passed=$((passed + 1)); echo "tsan: test_$t OK ($(( $(date +%s) - start )) s)"
	else
		failed=$((failed + 1)); echo "tsan: test_$t FAILED ($(( $(date +%s) - start )) s)"
		grep -A40 -m1 'WARNING: ThreadSanitizer' "$dir/test_$t.log" || tail -40 "$dir/test_$t.log"
	fi
done
echo "tsan: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

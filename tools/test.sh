#!/usr/bin/env bash
# The whole test suite: installs what it needs, then builds and runs every
# test twice (release build, and an ASan+UBSan debug build), compiles once
# more with clang, and ends with the line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh || exit 2

passed=${EXTRA_PASSED:-0}
failed=${EXTRA_FAILED:-0}
skipped=0

count_log() { # testlog.json -> adds to the totals
	local p f s
	read -r p f s < <(python3 - "$1" <<'PY'
import json, sys
p = f = s = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["result"] in ("OK", "EXPECTEDFAIL"): p += 1
    elif r["result"] == "SKIP": s += 1
    else: f += 1
print(p, f, s)
PY
)
	passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
}

run_suite() { # name, meson setup args...
	local dir=$1; shift
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; failed=$((failed + 1)); return; }
	fi
	if ! meson compile -C "$dir"; then
		echo "build failed: $dir"; failed=$((failed + 1)); return
	fi
	meson test -C "$dir" --print-errorlogs --num-processes 1
	count_log "$dir/meson-logs/testlog.json"
}

run_suite build-release --buildtype=release
run_suite build-asan --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false

# Second compiler: the whole tree must build -Werror clean with clang.
if [ ! -f build-clang/build.ninja ]; then
	CC=clang meson setup build-clang --buildtype=debugoptimized >build-clang.setup.log 2>&1 || cat build-clang.setup.log
fi
if meson compile -C build-clang >build-clang.log 2>&1; then
	echo "clang build: OK"; passed=$((passed + 1))
else
	cat build-clang.log; echo "clang build: FAILED"; failed=$((failed + 1))
fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]

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

count_log() { # testlog.json -> adds each program's test cases to the totals
	local p f s
	read -r p f s < <(python3 - "$1" <<'PY'
import json, re, sys
p = f = s = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    out = (r.get("stdout") or "") + (r.get("stderr") or "")
    ok = r["result"] in ("OK", "EXPECTEDFAIL")
    # cmocka: "[  PASSED  ] N test(s)." / "[  FAILED  ] N test(s)" / "[  SKIPPED ] N test(s)"
    # python: "N tests, N passed, N failed"
    cp = re.findall(r"\[  PASSED  \] (\d+) test", out)
    cf = re.findall(r"\[  FAILED  \] (\d+) test", out)
    cs = re.findall(r"\[  SKIPPED \] (\d+) test", out)
    py = re.findall(r"(\d+) tests, (\d+) passed, (\d+) failed", out)
    if cp or cf:
        np, nf, ns = sum(map(int, cp)), sum(map(int, cf)), sum(map(int, cs))
    elif py:
        np, nf, ns = int(py[-1][1]), int(py[-1][2]), 0
    elif r["result"] == "SKIP":
        np, nf, ns = 0, 0, 1
    else:
        np, nf, ns = (1, 0, 0) if ok else (0, 1, 0)
    if not ok and nf == 0:
        nf = 1  # crashed, timed out or leaked after its own summary
    p += np; f += nf; s += ns
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

# Scripts whose last tally line is "NAME: N passed, N failed" (TSan, and
# later the fuzzers, the soak and the exhaustion runs): their counts join
# the totals; a script that prints no tally counts as one failure.
run_tallied() { # name, command...
	local name=$1; shift
	local log="$name.log" p f
	"$@" 2>&1 | tee "$log"
	read -r p f < <(grep -E "^$name[a-z ]*: [0-9]+ passed, [0-9]+ failed" "$log" | tail -1 |
		sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed.*/\1 \2/')
	if [ -z "${p:-}" ]; then
		echo "$name: no tally"; failed=$((failed + 1)); return
	fi
	passed=$((passed + p)); failed=$((failed + f))
}
run_tallied tsan bash tools/tsan.sh
# libFuzzer harnesses (clang, ASan+UBSan), 300 s in all.
run_tallied fuzz bash tools/fuzz.sh 300
# 200,000 requests under every mock fault, ten kill -9s and resumes, --retry-errors.
run_tallied soak python3 tools/soak.py build-release/llmring

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]

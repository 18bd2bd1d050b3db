#!/usr/bin/env bash
# Memory that does not grow with the job (issue 14): peak RSS per input line,
# client CPU per request and lines per second of `llmring batch` at several
# input sizes, against one `llmring mock` on loopback (see docs/benchmarks.md).
# A benchmark, not a test: 10 million lines take minutes and about 7 GB of disk.
#
# usage: tools/bench/bench_batch_memory.sh [BUILD_DIR]
#   BUILD_DIR   meson build directory holding `llmring` (default: build)
# environment:
#   SIZES="10000 1000000 10000000"  input lines of each run (unique custom_ids)
#   C=64        --concurrency
#   RESUME=1    also run each job again over its complete output (every line
#               skipped: the resume bookkeeping alone); 0 skips that
#   TMPDIR      where the inputs and outputs go (the largest input is about
#               200 bytes a line, its output about 500)
#
# Per size: wall time, lines/s, client CPU (user + sys from wait4's rusage) per
# request, peak RSS (ru_maxrss) in total and per line, and the marginal bytes a
# line (RSS above the smallest run's, over the lines above its count), which is
# what grows with the job; the resume's CPU per line (resume_us/l). The ids are
# spooled to a file beside the output (tools/cli/batch_idset.c): disk, not memory.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "bench_batch_memory: $*" >&2; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=build
for a in "$@"; do
	case $a in
	-h | --help) usage; exit 0 ;;
	-*) usage >&2; exit 2 ;;
	*) build=$a ;;
	esac
done
SIZES=${SIZES:-"10000 1000000 10000000"}
C=${C:-64}
RESUME=${RESUME:-1}
[ -d "$build" ] || build="$root/$build"
LLMRING=$(cd "$build" 2>/dev/null && pwd)/llmring
[ -x "$LLMRING" ] || die "no llmring executable in $build (meson setup $build && meson compile -C $build)"
command -v python3 >/dev/null || die "python3 is needed (wait4 rusage at microsecond precision)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/llmring-bench-mem.XXXXXX")
mock_pid=""
cleanup() {
	if [ -n "$mock_pid" ] && kill -0 "$mock_pid" 2>/dev/null; then
		kill -INT "$mock_pid" 2>/dev/null || true
		wait "$mock_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# timed OUT_FILE CMD...: writes "wall_s user_s sys_s maxrss_kib exit_status".
timed() {
	local out=$1
	shift
	python3 -c '
import os, sys, time
t0 = time.monotonic()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, st, ru = os.wait4(pid, 0)
wall = time.monotonic() - t0
with open(sys.argv[1], "w") as f:
    f.write("%.6f %.6f %.6f %d %d\n" % (wall, ru.ru_utime, ru.ru_stime, ru.ru_maxrss,
                                        os.waitstatus_to_exitcode(st)))
' "$out" "$@"
}

max=0
for n in $SIZES; do
	[[ $n =~ ^[0-9]+$ ]] && [ "$n" -gt 0 ] || die "SIZES holds $n, not a line count"
	[ "$n" -gt "$max" ] && max=$n
done
need_kib=$((max * 700 / 1024))
free_kib=$(df -Pk "$tmp" | awk 'NR == 2 { print $4 }')
[ "$free_kib" -gt "$need_kib" ] || die "$tmp has $((free_kib >> 20)) GiB free, $max lines need about $((need_kib >> 20)) GiB"

# The input of the largest size; each smaller one is its first lines.
body='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Write one short sentence about the sea."}],"max_tokens":16}'
awk -v n="$max" -v body="$body" 'BEGIN {
	for (i = 1; i <= n; i++)
		printf "{\"custom_id\":\"req-%d\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":%s}\n", i, body
}' >"$tmp/all.jsonl"

"$LLMRING" mock --listen 127.0.0.1:0 >"$tmp/mock.out" 2>"$tmp/mock.err" &
mock_pid=$!
port=""
for _ in $(seq 200); do
	port=$(sed -n 's|^listening on http://127\.0\.0\.1:\([0-9][0-9]*\).*|\1|p' "$tmp/mock.out")
	[ -n "$port" ] && break
	kill -0 "$mock_pid" 2>/dev/null || die "llmring mock exited: $(cat "$tmp/mock.err")"
	sleep 0.05
done
[ -n "$port" ] || die "llmring mock printed no port"
base="http://127.0.0.1:$port/v1"

# run_batch INPUT OUTPUT TIMES_FILE: one `llmring batch`, checked.
run_batch() {
	timed "$3" env OPENAI_API_KEY=bench "$LLMRING" batch "$1" -o "$2" --base-url "$base" \
		--concurrency "$C" --quiet --stats "$tmp/stats.json" </dev/null >/dev/null 2>"$tmp/batch.err"
	local rc
	rc=$(awk '{ print $5 }' "$3")
	[ "$rc" = 0 ] || die "llmring batch exit $rc: $(head -c 2000 "$tmp/batch.err")"
}

echo "machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), kernel $(uname -r)"
echo "llmring: $LLMRING, concurrency $C, against llmring mock on 127.0.0.1:$port"
printf '%-10s %8s %9s %10s %9s %10s %10s' lines wall_s lines/s cpu_us/req rss_MiB rss_B/line marg_B/line
[ "$RESUME" = 1 ] && printf ' %9s %11s %10s %10s' resume_s resume_us/l resume_MiB resume_B/l
echo
first_n="" first_rss=""
for n in $SIZES; do
	head -n "$n" "$tmp/all.jsonl" >"$tmp/in.jsonl"
	rm -f "$tmp/out.jsonl"
	run_batch "$tmp/in.jsonl" "$tmp/out.jsonl" "$tmp/run.t"
	got=$(wc -l <"$tmp/out.jsonl")
	[ "$got" = "$n" ] || die "$got output lines for $n input lines"
	ok=$(grep -o '"succeeded": *[0-9]*' "$tmp/stats.json" | grep -o '[0-9]*$')
	[ "$ok" = "$n" ] || die "$ok of $n lines succeeded"
	read -r wall user sys rss _ <"$tmp/run.t"
	line=$(awk -v n="$n" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" -v fn="$first_n" -v fr="$first_rss" 'BEGIN {
		m = (fn != "" && n > fn) ? sprintf("%.1f", (r - fr) * 1024 / (n - fn)) : "-"
		printf "%-10d %8.2f %9.0f %10.2f %9.1f %10.1f %10s", n, w, n / w, (u + s) * 1e6 / n, r / 1024, r * 1024 / n, m
	}')
	printf '%s' "$line"
	if [ "$RESUME" = 1 ]; then
		run_batch "$tmp/in.jsonl" "$tmp/out.jsonl" "$tmp/resume.t"
		skipped=$(grep -o '"skipped": *[0-9]*' "$tmp/stats.json" | grep -o '[0-9]*$')
		[ "$skipped" = "$n" ] || die "the resume skipped $skipped of $n lines"
		read -r rwall ruser rsys rrss _ <"$tmp/resume.t"
		awk -v n="$n" -v w="$rwall" -v u="$ruser" -v s="$rsys" -v r="$rrss" 'BEGIN {
			printf " %9.2f %11.2f %10.1f %10.1f", w, (u + s) * 1e6 / n, r / 1024, r * 1024 / n }'
	fi
	echo
	if [ -z "$first_n" ]; then
		first_n=$n
		first_rss=$rss
	fi
	rm -f "$tmp/out.jsonl" "$tmp/in.jsonl"
done

#!/usr/bin/env bash
# Client CPU per request of `llmring batch` next to wrk, against the same
# `llmring mock` on loopback, in one run (see docs/benchmarks.md).
#
# usage: tools/bench/bench_batch.sh [--callgrind] [--syscalls] [--perf] [BUILD_DIR]
#   BUILD_DIR     meson build directory holding `llmring` (default: build)
#   --callgrind   also count instructions per request (valgrind callgrind,
#                 user space only): llmring batch of 1,000 and 3,000 lines, the
#                 difference / 2,000 cancels start-up; wrk for a few seconds.
#                 valgrind 3.19 deadlocks on llmring's two threads (it holds its
#                 lock across io_uring_enter): bounded by CG_TIMEOUT=120 s
#   --syscalls    also count system calls per request: perf stat on syscall
#                 tracepoints (llmring batch of N, wrk 2 s) when perf works, and
#                 strace -c -f (llmring batch of 5,000, wrk 3 s; strace slows
#                 the client and so changes how much io_uring batches)
#   --perf        also sample where the CPU goes (perf record -e cpu-clock,
#                 kernel + user): llmring batch of PERF_N=100000 lines, wrk 2 s
# environment:
#   N=20000       requests per llmring batch run
#   C=64          concurrency (wrk -c, batch --concurrency)
#   REPEAT=3      alternating wrk / batch pairs; the summary takes medians
#   WRK_SECONDS=4 duration of each wrk run (wrk has no request-count flag)
#
# The mock, wrk and llmring are separate processes. Client CPU = user + sys
# of the client process from wait4() rusage (what /usr/bin/time reports, read
# here at microsecond precision instead of /usr/bin/time's 10 ms; /usr/bin/time
# is the fallback without python3). Peak RSS = ru_maxrss. Server CPU = the
# mock's CPU time (all threads) before and after each run: the scheduler's ns
# sum from /proc/PID/task/*/sched, else utime + stime from /proc/PID/stat.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "bench_batch: $*" >&2; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=build
do_cg=0
do_sc=0
do_perf=0
for a in "$@"; do
	case $a in
	--callgrind) do_cg=1 ;;
	--syscalls) do_sc=1 ;;
	--perf) do_perf=1 ;;
	-h | --help) usage; exit 0 ;;
	-*) usage >&2; exit 2 ;;
	*) build=$a ;;
	esac
done
N=${N:-20000}
C=${C:-64}
REPEAT=${REPEAT:-3}
WRK_SECONDS=${WRK_SECONDS:-4}

[ -d "$build" ] || build="$root/$build"
LLMRING=$(cd "$build" 2>/dev/null && pwd)/llmring
[ -x "$LLMRING" ] || die "no llmring executable in $build (meson setup $build && meson compile -C $build)"

# --- tools -----------------------------------------------------------------
need=()
command -v wrk >/dev/null || need+=(wrk)
[ -x /usr/bin/time ] || need+=(time)
[ $do_cg = 1 ] && ! command -v valgrind >/dev/null && need+=(valgrind)
[ $do_perf = 1 ] && ! command -v perf >/dev/null && need+=(linux-perf)
[ $do_sc = 1 ] && ! command -v strace >/dev/null && need+=(strace)
if [ ${#need[@]} -gt 0 ]; then
	echo "bench_batch: installing ${need[*]}" >&2
	sudo=""
	[ "$(id -u)" -ne 0 ] && sudo="sudo"
	if [ -x "$root/tools/install-deps.sh" ] && [[ " ${need[*]} " != *" strace "* ]] &&
		[[ " ${need[*]} " != *" linux-perf "* ]]; then
		"$root/tools/install-deps.sh" --bench >&2
	else
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${need[@]}" >&2
	fi
fi
command -v wrk >/dev/null || die "wrk is missing (apt-get install wrk)"
have_py=0
command -v python3 >/dev/null && have_py=1

tmp=$(mktemp -d "${TMPDIR:-/tmp}/llmring-bench.XXXXXX")
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

# timed OUT_FILE CMD...: runs CMD (stdin/stdout/stderr as given to timed) and
# writes "wall_s user_s sys_s maxrss_kib exit_status" to OUT_FILE.
timed() {
	local out=$1
	shift
	if [ $have_py = 1 ]; then
		python3 -c '
import os, sys, time
out = sys.argv[1]
t0 = time.monotonic()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, st, ru = os.wait4(pid, 0)
wall = time.monotonic() - t0
rc = os.waitstatus_to_exitcode(st)
with open(out, "w") as f:
    f.write("%.6f %.6f %.6f %d %d\n" % (wall, ru.ru_utime, ru.ru_stime, ru.ru_maxrss, rc))
' "$out" "$@"
	else
		local t0 t1 rc=0
		t0=$(date +%s%N)
		/usr/bin/time -f "%U %S %M %x" -o "$out.t" "$@" || rc=$?
		t1=$(date +%s%N)
		awk -v w="$(((t1 - t0) / 1000))" '{ printf "%.6f %s %s %s %s\n", w / 1e6, $1, $2, $3, $4 }' \
			"$out.t" >"$out"
	fi
}

clk_tck=$(getconf CLK_TCK)
# The mock's CPU time so far in ns, all threads. Preferably the scheduler's
# nanosecond sum (se.sum_exec_runtime of each thread, CONFIG_SCHED_DEBUG);
# else utime + stime from /proc/PID/stat, in clock ticks (10 ms at 100 Hz,
# coarse for a 0.2 s batch run).
if grep -qs sum_exec_runtime "/proc/$$/sched"; then
	cpu_source="se.sum_exec_runtime of each thread (/proc/PID/task/*/sched)"
else
	cpu_source="utime+stime from /proc/PID/stat at $clk_tck ticks/s"
fi
mock_ns() {
	if [[ $cpu_source == se.* ]]; then
		awk '/sum_exec_runtime/ { s += $NF } END { printf "%.0f\n", s * 1e6 }' "/proc/$mock_pid/task/"*/sched
	else
		local line rest
		read -r line <"/proc/$mock_pid/stat"
		rest=${line##*) }
		# shellcheck disable=SC2086
		set -- $rest
		echo $(((${12} + ${13}) * 1000000000 / clk_tck))
	fi
}

# --- workload ----------------------------------------------------------------
body='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Write one short sentence about the sea."}],"max_tokens":16}'
printf '%s\n' "$body" >"$tmp/body.json"
gen_input() { # gen_input COUNT FILE
	awk -v n="$1" -v body="$body" 'BEGIN {
		for (i = 1; i <= n; i++)
			printf "{\"custom_id\":\"r%d\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":%s}\n", i, body
	}' >"$2"
}
gen_input "$N" "$tmp/in.jsonl"

# --- the server ----------------------------------------------------------------
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

# --- one run of each tool ----------------------------------------------------------
# Each appends "tool requests wall_s user_s sys_s maxrss_kib server_cpu_ns" to results.
run_wrk() { # run_wrk SECONDS [record]
	local s0 s1
	s0=$(mock_ns)
	WRK_BODY_FILE="$tmp/body.json" timed "$tmp/wrk.t" wrk -t1 -c"$C" -d"$1"s \
		-s "$here/wrk_post.lua" "$base/chat/completions" >"$tmp/wrk.out" 2>&1
	s1=$(mock_ns)
	local wall user sys rss rc
	read -r wall user sys rss rc <"$tmp/wrk.t"
	[ "$rc" = 0 ] || die "wrk failed ($rc): $(cat "$tmp/wrk.out")"
	local res reqs errs
	res=$(grep '^WRK_RESULT' "$tmp/wrk.out") || die "no wrk summary: $(cat "$tmp/wrk.out")"
	reqs=${res#*requests=}
	reqs=${reqs%% *}
	errs=$(awk '{ e = 0; for (i = 5; i <= NF; i++) { split($i, kv, "="); e += kv[2] } print e }' <<<"$res")
	[ "$errs" = 0 ] || echo "bench_batch: warning: wrk reported errors: $res" >&2
	[ "${2:-}" = record ] && echo "wrk $reqs $wall $user $sys $rss $((s1 - s0))" >>"$tmp/results"
	return 0
}
run_batch() { # run_batch INPUT COUNT [record]
	local s0 s1 out="$tmp/out.jsonl" stats="$tmp/stats.json"
	rm -f "$out" "$stats"
	s0=$(mock_ns)
	timed "$tmp/batch.t" "$LLMRING" batch "$1" -o "$out" --base-url "$base" \
		--concurrency "$C" --quiet --stats "$stats" </dev/null >/dev/null 2>"$tmp/batch.err"
	s1=$(mock_ns)
	local wall user sys rss rc lines ok
	read -r wall user sys rss rc <"$tmp/batch.t"
	lines=$({ wc -l <"$out"; } 2>/dev/null || echo 0)
	[ "$lines" -gt 0 ] || die "llmring batch wrote no output (exit $rc): $(head -c 2000 "$tmp/batch.err")"
	ok=$(grep -o '"succeeded": *[0-9]*' "$stats" 2>/dev/null | grep -o '[0-9]*$' || echo "?")
	if [ "$rc" != 0 ] || [ "$lines" != "$2" ] || [ "$ok" != "$2" ]; then
		echo "bench_batch: warning: llmring batch exit $rc, $lines output lines, $ok succeeded of $2" >&2
		head -c 2000 "$tmp/batch.err" >&2
	fi
	[ "${3:-}" = record ] && echo "llmring $2 $wall $user $sys $rss $((s1 - s0))" >>"$tmp/results"
	return 0
}

# --- machine -------------------------------------------------------------------------
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
run_batch "$tmp/in.jsonl" "$N" # warm-up, not recorded
# The ring mode: the setup flags of the client's io_uring_setup call that
# succeeded (strace decodes only the flags it knows; the rest are bits).
ring_mode="unknown (strace not installed)"
if command -v strace >/dev/null; then
	head -n 10 "$tmp/in.jsonl" >"$tmp/ring_in.jsonl"
	rm -f "$tmp/ring_out.jsonl"
	strace -f -e trace=io_uring_setup -o "$tmp/ring.txt" "$LLMRING" batch "$tmp/ring_in.jsonl" \
		-o "$tmp/ring_out.jsonl" --base-url "$base" --quiet </dev/null >/dev/null 2>&1 || true
	flags=$(grep 'io_uring_setup(' "$tmp/ring.txt" | grep -v '= -1' | tail -1 |
		sed -n 's/^[^{]*{flags=\([^,]*\),.*/\1/p' || true)
	if [ -n "$flags" ]; then
		bits=$(grep -o '0x[0-9a-fA-F]*' <<<"$flags" | head -1 || true)
		bits=$((${bits:-0}))
		names=()
		{ [[ $flags == *SQPOLL* ]] || ((bits & 0x2)); } && names+=(SQPOLL)
		{ [[ $flags == *COOP_TASKRUN* ]] || ((bits & 0x100)); } && names+=(COOP_TASKRUN)
		{ [[ $flags == *SINGLE_ISSUER* ]] || ((bits & 0x1000)); } && names+=(SINGLE_ISSUER)
		{ [[ $flags == *DEFER_TASKRUN* ]] || ((bits & 0x2000)); } && names+=(DEFER_TASKRUN)
		[ ${#names[@]} -gt 0 ] || names=(plain)
		ring_mode="$(
			IFS='|'
			echo "${names[*]}"
		) (io_uring_setup flags=$flags)"
	fi
fi
[ -n "${LLMRING_RING_PLAIN:-}" ] && ring_mode="$ring_mode, LLMRING_RING_PLAIN=$LLMRING_RING_PLAIN"
run_wrk 1 # warm-up, not recorded

echo "machine: $(nproc) CPUs ($cpu), kernel $(uname -r), $(uname -m)"
echo "llmring: $(timeout 5 "$LLMRING" --version 2>/dev/null </dev/null | head -1 || echo '?'), ring mode: $ring_mode"
echo "wrk: $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')"
echo "server: llmring mock on 127.0.0.1:$port (pid $mock_pid); its CPU from $cpu_source"
echo "workload: N=$N batch lines, concurrency $C, wrk -t1 -c$C -d${WRK_SECONDS}s, REPEAT=$REPEAT"
echo "body ($(wc -c <"$tmp/body.json" | tr -d ' ') bytes with newline): $body"
echo

# --- the alternating runs ------------------------------------------------------------------
: >"$tmp/results"
for r in $(seq "$REPEAT"); do
	run_wrk "$WRK_SECONDS" record
	run_batch "$tmp/in.jsonl" "$N" record
	echo "  pair $r/$REPEAT done" >&2
done

awk '
function med(a, n,    i, j, t) {
	for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{
	tool = $1; req = $2; wall = $3; usr = $4; sys = $5; rss = $6; srv = $7 / 1e9
	k = ++cnt[tool]
	v[tool, 1, k] = req; v[tool, 2, k] = wall; v[tool, 3, k] = req / wall
	v[tool, 4, k] = (usr + sys) * 1e6 / req; v[tool, 5, k] = usr * 1e6 / req; v[tool, 6, k] = sys * 1e6 / req
	v[tool, 7, k] = rss / 1024; v[tool, 8, k] = srv * 1e6 / req; v[tool, 9, k] = srv * 100 / wall
	rows[++nrows] = sprintf("%-8s %3d %9d %7.3f %9.0f %10.2f %8.2f %8.2f %8.1f %10.2f %8.1f",
		tool, k, req, wall, req / wall, (usr + sys) * 1e6 / req, usr * 1e6 / req, sys * 1e6 / req,
		rss / 1024, srv * 1e6 / req, srv * 100 / wall)
}
END {
	hdr = sprintf("%-8s %3s %9s %7s %9s %10s %8s %8s %8s %10s %8s", "tool", "run", "requests", "wall s",
		"req/s", "client", "usr", "sys", "peak RSS", "server", "server")
	hdr2 = sprintf("%-8s %3s %9s %7s %9s %10s %8s %8s %8s %10s %8s", "", "", "", "", "",
		"CPU us/req", "us/req", "us/req", "MiB", "CPU us/req", "CPU %")
	print hdr; print hdr2
	for (i = 1; i <= nrows; i++) print rows[i]
	print ""
	print "medians:"
	print hdr; print hdr2
	split("wrk llmring", tools, " ")
	for (t = 1; t <= 2; t++) {
		tool = tools[t]; n = cnt[tool]
		if (!n) continue
		for (c = 1; c <= 9; c++) { delete a; for (k = 1; k <= n; k++) a[k] = v[tool, c, k]; m[tool, c] = med(a, n) }
		printf "%-8s %3s %9d %7.3f %9.0f %10.2f %8.2f %8.2f %8.1f %10.2f %8.1f\n", tool, "med",
			m[tool, 1], m[tool, 2], m[tool, 3], m[tool, 4], m[tool, 5], m[tool, 6], m[tool, 7], m[tool, 8], m[tool, 9]
	}
	if (cnt["wrk"] && cnt["llmring"]) {
		print ""
		printf "client CPU per request, llmring batch / wrk (ratio of medians): %.2fx\n", m["llmring", 4] / m["wrk", 4]
		s = ""
		for (k = 1; k <= cnt["llmring"] && k <= cnt["wrk"]; k++)
			s = s sprintf("%s%.2fx", k > 1 ? ", " : "", v["llmring", 4, k] / v["wrk", 4, k])
		printf "per pair (wrk run k, then llmring run k): %s\n", s
	}
}' "$tmp/results"

# --- instructions per request (callgrind) -----------------------------------------------------
if [ $do_cg = 1 ]; then
	echo
	echo "callgrind (user-space instructions; kernel work is not counted):"
	cg_ir() { sed -n 's/^totals: *\([0-9]*\).*/\1/p; s/^summary: *\([0-9]*\).*/\1/p' "$1" | head -1; }
	declare -A ir=()
	for n in 1000 3000; do
		gen_input "$n" "$tmp/cg_in$n.jsonl"
		rm -f "$tmp/cg_out.jsonl"
		# valgrind 3.19 (Debian 12) keeps its big lock while a thread blocks in
		# io_uring_enter, so llmring's engine thread can deadlock the main one:
		# bounded by a timeout (SIGKILL: a blocked valgrind ignores SIGTERM).
		rc=0
		(timeout -s KILL "${CG_TIMEOUT:-120}" valgrind --tool=callgrind \
			--callgrind-out-file="$tmp/cg$n.out" "$LLMRING" batch "$tmp/cg_in$n.jsonl" \
			-o "$tmp/cg_out.jsonl" --base-url "$base" --concurrency "$C" --quiet \
			</dev/null >/dev/null 2>"$tmp/cg$n.err"
		exit $?) 2>/dev/null || rc=$?
		lines=$({ wc -l <"$tmp/cg_out.jsonl"; } 2>/dev/null || echo 0)
		if [ "$rc" != 0 ] || [ "$lines" != "$n" ]; then
			echo "  llmring batch $n under valgrind: exit $rc, $lines of $n output lines (killed after" \
				"${CG_TIMEOUT:-120} s: valgrind holds its lock across io_uring_enter); no count"
			break
		fi
		ir[$n]=$(cg_ir "$tmp/cg$n.out")
		echo "  llmring batch $n requests: ${ir[$n]} Ir"
	done
	if [ -n "${ir[3000]:-}" ]; then
		echo "  llmring batch: $(((ir[3000] - ir[1000]) / 2000)) Ir per request ((Ir(3000) - Ir(1000)) / 2000)"
		WRK_BODY_FILE="$tmp/body.json" timeout -s KILL 60 valgrind --tool=callgrind \
			--callgrind-out-file="$tmp/cgwrk.out" wrk -t1 -c"$C" -d3s -s "$here/wrk_post.lua" \
			"$base/chat/completions" >"$tmp/cgwrk.stdout" 2>"$tmp/cgwrk.err" || true
		wreq=$(sed -n 's/^WRK_RESULT requests=\([0-9]*\).*/\1/p' "$tmp/cgwrk.stdout")
		wir=$(cg_ir "$tmp/cgwrk.out" 2>/dev/null || true)
		if [ -n "$wreq" ] && [ "$wreq" -gt 0 ] && [ -n "$wir" ]; then
			echo "  wrk (3 s under callgrind): $wreq requests, $wir Ir, $((wir / wreq)) Ir per request (start-up included)"
		fi
		if command -v callgrind_annotate >/dev/null; then
			echo "  llmring batch 3000, top functions by own instructions:"
			callgrind_annotate --threshold=90 "$tmp/cg3000.out" 2>/dev/null |
				awk '/^-+$/ { d++; next } d >= 3 && NF { print }' | sed -n '1,25p' | sed 's/^/    /'
		fi
	fi
fi

# --- where the CPU goes (perf, software cpu-clock sampling) -----------------------------------------
if [ $do_perf = 1 ]; then
	echo
	pn=${PERF_N:-100000}
	echo "perf record -e cpu-clock (kernel and user samples; needs perf and kernel symbols):"
	gen_input "$pn" "$tmp/perf_in.jsonl"
	rm -f "$tmp/perf_out.jsonl"
	if perf record -q -e cpu-clock -F 4999 -o "$tmp/perf_batch.data" "$LLMRING" batch "$tmp/perf_in.jsonl" \
		-o "$tmp/perf_out.jsonl" --base-url "$base" --concurrency "$C" --quiet </dev/null >/dev/null 2>"$tmp/perf.err"; then
		echo "  llmring batch $pn requests, samples by thread and object:"
		perf report -i "$tmp/perf_batch.data" --sort comm,dso --stdio 2>/dev/null |
			grep -v '^#' | grep . | sed -n '1,12s/^/   /p'
		echo "  top symbols:"
		perf report -i "$tmp/perf_batch.data" --sort comm,dso,sym --stdio 2>/dev/null |
			grep -v '^#' | grep . | sed -n "1,${PERF_TOP:-30}s/^/   /p"
		if WRK_BODY_FILE="$tmp/body.json" perf record -q -e cpu-clock -F 4999 -o "$tmp/perf_wrk.data" \
			wrk -t1 -c"$C" -d2s -s "$here/wrk_post.lua" "$base/chat/completions" >/dev/null 2>&1; then
			echo "  wrk 2 s, samples by thread and object:"
			perf report -i "$tmp/perf_wrk.data" --sort comm,dso --stdio 2>/dev/null |
				grep -v '^#' | grep . | sed -n '1,6s/^/   /p'
		fi
	else
		echo "  perf record failed: $(head -c 500 "$tmp/perf.err")"
	fi
fi

# --- system calls per request (strace) ------------------------------------------------------------
if [ $do_sc = 1 ]; then
	echo
	echo "system calls per request:"
	# st_table FILE REQUESTS LABEL: top syscalls with calls per request
	st_table() {
		awk -v n="$2" -v label="$3" '
		$1 ~ /^[0-9.]+$/ && NF >= 5 { name = $NF; calls = $4
			if (name == "total") total = calls; else { c[name] = calls; order[++k] = name } }
		END {
			printf "  %s: %d calls, %.2f per request\n", label, total, total / n
			for (i = 1; i <= k && i <= 8; i++)
				printf "    %-22s %9d  %6.3f / request\n", order[i], c[order[i]], c[order[i]] / n
		}' "$1"
	}
	# Tracepoint counts (perf stat) barely slow the client, unlike strace.
	ev=raw_syscalls:sys_enter,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_write
	ev=$ev,syscalls:sys_enter_read,syscalls:sys_enter_futex,syscalls:sys_enter_epoll_ctl
	ev=$ev,syscalls:sys_enter_epoll_wait,context-switches
	pstat() { # pstat FILE REQUESTS LABEL
		awk -F, -v n="$2" -v label="$3" '
			$1 ~ /^[0-9]+$/ && $1 > 0 { e = $3; sub(/^syscalls:sys_enter_/, "", e); sub(/^raw_syscalls:sys_enter/, "all syscalls", e)
				line = line sprintf("%s%s %.3f", sep, e, $1 / n); sep = ", " }
			END { printf "  %s, per request: %s\n", label, line }' "$1"
	}
	if command -v perf >/dev/null && rm -f "$tmp/out.jsonl" &&
		perf stat -x, -e "$ev" -o "$tmp/pstat_batch.txt" "$LLMRING" batch "$tmp/in.jsonl" -o "$tmp/out.jsonl" \
			--base-url "$base" --concurrency "$C" --quiet </dev/null >/dev/null 2>&1; then
		echo "perf stat (syscall tracepoints, little overhead):"
		pstat "$tmp/pstat_batch.txt" "$N" "llmring batch $N requests"
		if WRK_BODY_FILE="$tmp/body.json" perf stat -x, -e "$ev" -o "$tmp/pstat_wrk.txt" wrk -t1 -c"$C" -d2s \
			-s "$here/wrk_post.lua" "$base/chat/completions" >"$tmp/pstat_wrk.out" 2>&1; then
			wreq=$(sed -n 's/^WRK_RESULT requests=\([0-9]*\).*/\1/p' "$tmp/pstat_wrk.out")
			[ -n "$wreq" ] && [ "$wreq" -gt 0 ] && pstat "$tmp/pstat_wrk.txt" "$wreq" "wrk 2 s, $wreq requests"
		fi
		echo "strace -c -f (by count; strace slows the client, so io_uring batches differently):"
	fi
	gen_input 5000 "$tmp/sc_in.jsonl"
	rm -f "$tmp/sc_out.jsonl"
	strace -c -S calls -f -o "$tmp/strace_batch.txt" "$LLMRING" batch "$tmp/sc_in.jsonl" -o "$tmp/sc_out.jsonl" \
		--base-url "$base" --concurrency "$C" --quiet </dev/null >/dev/null 2>"$tmp/sc.err" ||
		echo "  (llmring batch under strace exited $?)"
	st_table "$tmp/strace_batch.txt" 5000 "llmring batch 5000 requests"
	WRK_BODY_FILE="$tmp/body.json" strace -c -S calls -f -o "$tmp/strace_wrk.txt" \
		wrk -t1 -c"$C" -d3s -s "$here/wrk_post.lua" "$base/chat/completions" >"$tmp/sc_wrk.out" 2>&1 || true
	wreq=$(sed -n 's/^WRK_RESULT requests=\([0-9]*\).*/\1/p' "$tmp/sc_wrk.out")
	[ -n "$wreq" ] && [ "$wreq" -gt 0 ] && st_table "$tmp/strace_wrk.txt" "$wreq" "wrk 3 s, $wreq requests"
fi

echo
kill -INT "$mock_pid" 2>/dev/null || true
wait "$mock_pid" 2>/dev/null || true
echo "server: $(tail -1 "$tmp/mock.err")"
mock_pid=""

#!/usr/bin/env bash
# CPU per request and per streamed event as concurrency grows (issue 14,
# "Concurrency scaling"): one table, concurrency 1, 64, 1,024 and 10,000.
#
#   whole replies:  `llmring batch` of N lines against `llmring mock` (its own
#                   process), --concurrency C; client CPU = user + sys of the
#                   batch process (GNU time), peak RSS its maximum resident set.
#   streams:        bench_stream (the caller-driven engine, every event handed
#                   to a callback), S streams of T tokens at concurrency C.
#
# The mock answers at once (whole replies) and sends each stream's events
# coalesced, so what grows with C is the client's own bookkeeping: the pool,
# the ring, timers, the future lists. Nothing here should grow faster than
# linearly; per-request figures that rise with C point at it.
#
# usage: tools/bench/bench_scaling.sh [BUILD_DIR]   (default: build-release)
# environment: N=100000 lines per batch run (at least 3xC are sent),
#              S=20000 streams, T=20 tokens each, LEVELS="1 64 1024 10000",
#              REPEAT=2 (the table takes the lower of the runs)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build-release}
case $build in /*) ;; *) build=$root/$build ;; esac
LLMRING=$build/llmring
BENCH_STREAM=$build/bench_stream
N=${N:-100000}
S=${S:-20000}
T=${T:-20}
LEVELS=${LEVELS:-"1 64 1024 10000"}
REPEAT=${REPEAT:-2}
[ -x "$LLMRING" ] || { echo "bench_scaling: no $LLMRING (build it first)" >&2; exit 1; }
[ -x "$BENCH_STREAM" ] || { echo "bench_scaling: no $BENCH_STREAM" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench_scaling: needs GNU time (apt-get install time)" >&2; exit 1; }
# 10,000 connections need 10,000 descriptors in each process (client and mock).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge 10500 ] || echo "bench_scaling: ulimit -n is $(ulimit -n); 10,000 connections may not fit" >&2

tmp=$(mktemp -d)
mock_pid=
cleanup() { [ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

"$LLMRING" mock --listen 127.0.0.1:0 >"$tmp/mock.out" 2>&1 &
mock_pid=$!
for _ in $(seq 50); do grep -q listening "$tmp/mock.out" && break; sleep 0.1; done
base=$(sed -n 's/^listening on //p' "$tmp/mock.out")/v1
[ -n "$base" ] || { echo "bench_scaling: the mock did not start" >&2; cat "$tmp/mock.out" >&2; exit 1; }

awk -v n="$N" 'BEGIN {
	for (i = 1; i <= n; i++)
		printf "{\"custom_id\":\"r%d\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello\"}]}}\n", i
}' >"$tmp/in.jsonl"

batch_run() { # concurrency -> "cpu_us_per_req user_us sys_us rss_mib lines"
	local c=$1
	rm -f "$tmp/out.jsonl"
	/usr/bin/time -f "%e %U %S %M" -o "$tmp/time" "$LLMRING" batch "$tmp/in.jsonl" \
		-o "$tmp/out.jsonl" --base-url "$base" --concurrency "$c" --quiet 2>"$tmp/batch.err" || true
	local lines
	lines=$(wc -l <"$tmp/out.jsonl" 2>/dev/null || echo 0)
	read -r _ usr sys rss <"$tmp/time"
	awk -v u="$usr" -v s="$sys" -v r="$rss" -v n="$N" -v l="$lines" \
		'BEGIN { printf "%.2f %.2f %.2f %.1f %d\n", (u + s) * 1e6 / n, u * 1e6 / n, s * 1e6 / n, r / 1024, l }'
}

stream_run() { # concurrency -> "cpu_us_per_event user_us sys_us"
	local c=$1 s=$S
	[ "$s" -ge $((3 * c)) ] || s=$((3 * c))
	"$BENCH_STREAM" "$LLMRING" "$s" "$T" "$c" 0 >"$tmp/stream.out" 2>/dev/null || true
	local total user
	total=$(sed -n 's/^client CPU per streamed event: \([0-9.]*\) us.*/\1/p' "$tmp/stream.out")
	user=$(sed -n 's/^of which user space: \([0-9.]*\) us per event, kernel \([0-9.]*\) us/\1 \2/p' "$tmp/stream.out")
	echo "${total:-nan} ${user:-nan nan}"
}

min_of() { sort -g | head -1; }

echo "machine: $(nproc) cores, $(uname -r); N=$N lines, S=$S streams x $T tokens, REPEAT=$REPEAT (lower run kept)"
printf "%-12s | %-10s %-8s %-8s %-9s %-8s | %-10s %-8s %-8s\n" concurrency "µs/req" user sys "RSS MiB" lines \
	"µs/event" user sys
for c in $LEVELS; do
	best_b="" best_s=""
	for _ in $(seq "$REPEAT"); do
		b=$(batch_run "$c")
		s=$(stream_run "$c")
		if [ -z "$best_b" ] || awk -v a="${b%% *}" -v b="${best_b%% *}" 'BEGIN { exit !(a < b) }'; then best_b=$b; fi
		if [ -z "$best_s" ] || awk -v a="${s%% *}" -v b="${best_s%% *}" 'BEGIN { exit !(a < b) }'; then best_s=$s; fi
	done
	read -r bc bu bs br bl <<<"$best_b"
	read -r sc su ss <<<"$best_s"
	printf "%-12s | %-10s %-8s %-8s %-9s %-8s | %-10s %-8s %-8s\n" "$c" "$bc" "$bu" "$bs" "$br" "$bl" "$sc" "$su" "$ss"
done

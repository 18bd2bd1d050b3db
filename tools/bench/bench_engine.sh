#!/usr/bin/env bash
# The batch engine's own costs: `llmring batch` against `llmring mock` (a
# separate process) plain, with the progress bar drawn on a terminal, with
# the rate limiter on (limits high enough never to wait, so what is measured
# is the limiter's bookkeeping), and with both; then user-space instructions
# per request under callgrind (see docs/benchmarks.md).
#
# usage: tools/bench/bench_engine.sh [BUILD_DIR]   (default: build-release)
# environment: N=100000 requests per run, C=64 concurrency, REPEAT=3
#
# Client CPU = user + sys of the batch process (GNU time, -o file), peak RSS
# its maximum resident set. The progress bar needs a terminal: those runs go
# through script(1), which gives the batch a pseudo-terminal as stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build-release}
case $build in /*) ;; *) build=$root/$build ;; esac
LLMRING=$build/llmring
N=${N:-100000}
C=${C:-64}
REPEAT=${REPEAT:-3}
[ -x "$LLMRING" ] || { echo "bench_engine: no $LLMRING (build it first)" >&2; exit 1; }
command -v script >/dev/null || { echo "bench_engine: needs script(1) (bsdutils)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench_engine: needs GNU time (apt-get install time)" >&2; exit 1; }

tmp=$(mktemp -d)
mock_pid=
cleanup() { [ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

"$LLMRING" mock --listen 127.0.0.1:0 >"$tmp/mock.out" 2>&1 &
mock_pid=$!
for _ in $(seq 50); do grep -q listening "$tmp/mock.out" && break; sleep 0.1; done
base=$(sed -n 's/^listening on //p' "$tmp/mock.out")/v1
python3 - "$N" "$tmp/in.jsonl" <<'PY'
import json, sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    for i in range(n):
        f.write(json.dumps({"custom_id": "r%d" % i, "method": "POST", "url": "/v1/chat/completions",
                            "body": {"model": "gpt-4o-mini",
                                     "messages": [{"role": "user", "content": "Say hello"}]}}) + "\n")
PY

run() { # name, extra flags...
	local name=$1; shift
	rm -f "$tmp/out.jsonl"
	local cmd=(/usr/bin/time -f "%e %U %S %M" -o "$tmp/time" "$LLMRING" batch "$tmp/in.jsonl"
		-o "$tmp/out.jsonl" --base-url "$base" --concurrency "$C" "$@")
	case $name in
	*bar*) script -qec "$(printf '%q ' "${cmd[@]}")" /dev/null >/dev/null ;;
	*) "${cmd[@]}" --quiet 2>/dev/null ;;
	esac
	local lines
	lines=$(wc -l <"$tmp/out.jsonl")
	read -r wall usr sys rss <"$tmp/time"
	awk -v n="$name" -v w="$wall" -v u="$usr" -v s="$sys" -v r="$rss" -v req="$N" -v l="$lines" 'BEGIN {
		printf "%-22s %8d %7.2f %10.0f %8.2f %8.2f %8.2f %8.1f\n", n, l, w, req / (w > 0 ? w : 1e-9),
			(u + s) * 1e6 / req, u * 1e6 / req, s * 1e6 / req, r / 1024 }'
}

printf "%-22s %8s %7s %10s %8s %8s %8s %8s\n" mode lines wall_s req/s cpu_us usr_us sys_us rss_MiB
for k in $(seq "$REPEAT"); do
	run plain
	run "progress bar"
	run "rate limiter" --rpm 1000000000 --tpm 1000000000000
	run "bar + limiter" --rpm 1000000000 --tpm 1000000000000
done

echo
echo "callgrind (user-space instructions per request, (Ir(3000) - Ir(1000)) / 2000):"
head -n 1000 "$tmp/in.jsonl" >"$tmp/in1000.jsonl"
head -n 3000 "$tmp/in.jsonl" >"$tmp/in3000.jsonl"
cg() { # lines, extra flags...
	local n=$1; shift
	rm -f "$tmp/cgout.jsonl"
	timeout -s KILL 300 valgrind --tool=callgrind --callgrind-out-file="$tmp/cg$n.out" "$LLMRING" batch \
		"$tmp/in$n.jsonl" -o "$tmp/cgout.jsonl" --base-url "$base" --concurrency "$C" --quiet "$@" \
		>/dev/null 2>&1 || true
	sed -n 's/^summary: *\([0-9]*\).*/\1/p; s/^totals: *\([0-9]*\).*/\1/p' "$tmp/cg$n.out" | head -1
}
if command -v valgrind >/dev/null; then
	for mode in plain limiter; do
		extra=()
		[ $mode = limiter ] && extra=(--rpm 1000000000 --tpm 1000000000000)
		a=$(cg 1000 "${extra[@]}")
		b=$(cg 3000 "${extra[@]}")
		if [ -n "$a" ] && [ -n "$b" ]; then
			echo "  $mode: $(((b - a) / 2000)) Ir per request"
		else
			echo "  $mode: no count (valgrind failed)"
		fi
	done
else
	echo "  valgrind not installed (tools/install-deps.sh --bench)"
fi

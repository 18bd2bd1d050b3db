#!/usr/bin/env bash
# What the response cache costs `llmring batch`: the same input against one
# `llmring mock`, alternating three runs (see docs/guide.md, "The response cache"):
#   none   no --cache
#   cold   --cache on a new file: every line a miss, looked up and stored
#   warm   --cache on the file the cold run filled: every line a hit
#
# usage: tools/bench/bench_cache.sh [BUILD_DIR [BUILD_DIR2 ...]]
#   BUILD_DIR     meson build directory holding `llmring` (default: build);
#                 with more than one, the builds alternate within every round
#                 (the first one's `llmring mock` serves them all) and each
#                 gets its summary: on a shared machine compare them there,
#                 by client CPU, not across separate runs
# environment:
#   N=20000       lines per run
#   C=64          --concurrency
#   REPEAT=3      rounds of the three runs; the summary takes medians
#   MOCK_ARGS=    flags for `llmring mock` ("--ttft-ms 20": a provider's
#                 latency; without it the mock answers at once and the run
#                 measures the client alone)
#
# Wall time and client CPU (user + sys of the llmring process, all its
# threads, the cache's included, from wait4() rusage) per run; lines per
# second = N / wall. The overhead of cold over none is the one the cache
# promises to keep under 10 %.
set -euo pipefail

die() { echo "bench_cache: $*" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
exes=()
for build in "${@:-build}"; do
	[ -d "$build" ] || build="$root/$build"
	exe=$(cd "$build" 2>/dev/null && pwd)/llmring
	[ -x "$exe" ] || die "no llmring executable in $build (meson setup $build && meson compile -C $build)"
	exes+=("$exe")
done
LLMRING=${exes[0]}
command -v python3 >/dev/null || die "python3 is needed"
N=${N:-20000}
C=${C:-64}
REPEAT=${REPEAT:-3}

tmp=$(mktemp -d /tmp/bench-cache.XXXXXX)
mock_pid=
cleanup() {
	[ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null && wait "$mock_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

python3 - "$N" > "$tmp/in.jsonl" <<'EOF'
import json, sys
for i in range(int(sys.argv[1])):
    print(json.dumps({"custom_id": "r%d" % i, "method": "POST", "url": "/v1/chat/completions",
                      "body": {"model": "gpt-4o-mini", "max_tokens": 16, "temperature": 0.7,
                               "messages": [{"role": "system", "content": "You are terse."},
                                            {"role": "user", "content": "Question number %d?" % i}]}}))
EOF

# shellcheck disable=SC2086 # MOCK_ARGS is a list of flags
"$LLMRING" mock --listen 127.0.0.1:0 ${MOCK_ARGS:-} > "$tmp/mock.out" 2> "$tmp/mock.err" &
mock_pid=$!
for _ in $(seq 50); do
	grep -q "listening on" "$tmp/mock.out" 2>/dev/null && break
	sleep 0.1
done
url=$(sed -n 's/^listening on //p' "$tmp/mock.out" | head -1)
[ -n "$url" ] || die "the mock did not start: $(cat "$tmp/mock.err")"

python3 - "$url/v1" "$tmp" "$N" "$C" "$REPEAT" "${exes[@]}" <<'EOF'
import os, statistics, subprocess, sys, time
base, tmp, n, c, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
exes = sys.argv[6:]

def one(llmring, kind, rnd):
    out = os.path.join(tmp, "out-%s-%d.jsonl" % (kind, rnd))
    args = [llmring, "batch", os.path.join(tmp, "in.jsonl"), "-o", out, "--base-url", base,
            "--concurrency", c, "--quiet"]
    db = os.path.join(tmp, "cache-%d.db" % rnd)
    if kind == "cold":
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.unlink(db + suffix)
    if kind != "none":
        args += ["--cache", db]
    start = time.perf_counter()
    p = subprocess.Popen(args)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        sys.exit("bench_cache: %s run failed (status %d)" % (kind, status))
    with open(out, "rb") as f:
        lines = f.read().count(b"\n")
        f.seek(0)
        hits = f.read().count(b'"cached":true')
    os.unlink(out)
    want = {"none": 0, "cold": 0, "warm": n}[kind]
    if lines != n or hits != want:
        sys.exit("bench_cache: %s run wrote %d lines, %d hits (want %d, %d)" % (kind, lines, hits, n, want))
    return wall, ru.ru_utime + ru.ru_stime

res = [{k: [] for k in ("none", "cold", "warm")} for _ in exes]
for rnd in range(repeat):
    for i, exe in enumerate(exes):
        for kind in ("none", "cold", "warm"):
            res[i][kind].append(one(exe, kind, rnd))
print("bench_cache: N=%d lines, concurrency %s, mock %s, %d rounds (medians)"
      % (n, c, os.environ.get("MOCK_ARGS") or "without latency", repeat))
for i, exe in enumerate(exes):
    if len(exes) > 1:
        print(" %s" % exe)
    med = {}
    for kind in ("none", "cold", "warm"):
        wall = statistics.median(w for w, _ in res[i][kind])
        cpu = statistics.median(u for _, u in res[i][kind])
        med[kind] = (wall, cpu)
        print("  %-5s %8.3f s wall %10.0f lines/s   client CPU %6.3f s (%5.1f us/line)"
              % (kind, wall, n / wall, cpu, cpu / n * 1e6))
    ratios = " ".join("%.2f" % (cold[1] / none[1]) for cold, none in zip(res[i]["cold"], res[i]["none"]))
    print("  cold over none: wall %+.1f %%, client CPU %+.1f %% (cold / none CPU by round: %s)"
          % ((med["cold"][0] / med["none"][0] - 1) * 100, (med["cold"][1] / med["none"][1] - 1) * 100,
             ratios))
    print("  warm over none: wall %+.1f %%, lines/s x%.2f"
          % ((med["warm"][0] / med["none"][0] - 1) * 100, med["none"][0] / med["warm"][0]))
EOF

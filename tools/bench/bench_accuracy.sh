#!/bin/bash
# llmring bench's accuracy and capacity beside a vLLM-style aiohttp client (issue 12,
# "Benchmarks"); the figures go to docs/benchmarks.md.
#
#   tools/bench/bench_accuracy.sh BUILD_DIR [OUT_DIR]
#
# 1. Accuracy: `llmring mock --ttft-ms 100 --itl-ms 10 --tokens 64`, then at concurrency
#    100, 2,000 and 10,000 (closed loop, 2 x C requests, at least 1,000) llmring bench and
#    tools/bench/vllm_style_client.py, each reporting mean TTFT and TPOT; their error is
#    against what the mock was told. A size needs about C descriptors per side: the script
#    raises `ulimit -n` to the hard limit and skips a size the limit cannot hold.
# 1b. Steady state: the same at each size, with the mock's gap I = max(10, C * 1000 /
#    STEADY_EVENTS) ms, so that it is asked for STEADY_EVENTS (40,000) events a second at most, --warmup C (not drained: the counted part takes the warm-up's slots as they free)
#    and lengths drawn with --random-range-ratio 0.5 --ignore-eos, so that streams do not end
#    and start again in lock-step waves; the mock's TTFT and ITL get log-normal spreads (5 ms,
#    I / 5) with means T and I, so that their ticks do not stay in phase. Both clients get the
#    same flags; their errors are against the means.
# 2. Capacity: both clients against `--ttft-ms 0 --itl-ms 0 --tokens 256` at concurrency
#    256: streamed events parsed per second of the client's own CPU.
# 3. Open loop: bench at --rate 1000 ... 20000 (2 x rate requests) against
#    `--ttft-ms 5 --itl-ms 1 --tokens 8`: schedule lag p99 and the achieved rate.
#
# Events are counted alike for both clients: the SSE events that carry a choice (the ones
# TTFT and ITL are stamped on: the role chunk, one per token, the finish chunk), i.e. the
# ITL count plus the requests. The usage chunk and [DONE] are parsed too but not counted.
# Each run is bounded by `timeout`; the mock is this script's own process and is stopped
# on exit. Nothing but 127.0.0.1 is contacted.
set -u
B=${1:?usage: bench_accuracy.sh BUILD_DIR [OUT_DIR]}
OUT=${2:-$(mktemp -d /tmp/bench-accuracy.XXXXXX)}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
PORT=${PORT:-18470}
URL=http://127.0.0.1:$PORT/v1
SIZES=${SIZES:-"100 2000 10000"}
CAP_REQUESTS=${CAP_REQUESTS:-10000}
RATES=${RATES:-"1000 2000 5000 10000 20000"}
mkdir -p "$OUT"

ulimit -n "$(ulimit -Hn)" 2>/dev/null
NOFILE=$(ulimit -n)
echo "# out: $OUT; open files limit $NOFILE; $(nproc) cores; $(date -u +%FT%TZ)"

MOCK=
start_mock() {
	"$B/llmring" mock --listen "127.0.0.1:$PORT" "$@" >>"$OUT/mock.log" 2>&1 &
	MOCK=$!
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "mock did not start" >&2
	exit 2
}
stop_mock() {
	[ -n "$MOCK" ] || return 0
	kill "$MOCK" 2>/dev/null
	wait "$MOCK" 2>/dev/null
	MOCK=
}
trap stop_mock EXIT

# The mock's CPU seconds so far (utime + stime of /proc/PID/stat), to show when the
# single-threaded server, not the client, is what a figure measures.
mock_cpu() {
	awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$MOCK/stat"
}

# The whole machine's busy CPU seconds so far (all cores, from /proc/stat): what is left
# after the client's and the mock's is other work on the machine, which skews a run.
machine_cpu() {
	awk -v hz="$(getconf CLK_TCK)" '$1 == "cpu" { print ($2 + $3 + $4 + $7 + $8 + $9) / hz }' \
		/proc/stat
}

# run NAME CMD...: runs one client; its exit code in NAME.rc, and in NAME.mock the mock's
# and the machine's CPU seconds and the wall clock before and after.
run() {
	local name=$1
	shift
	local m0 m1 s0 s1 t0 t1
	m0=$(mock_cpu)
	s0=$(machine_cpu)
	t0=$(date +%s.%N)
	timeout 600 "$@" >"$OUT/$name.out" 2>"$OUT/$name.err"
	echo $? >"$OUT/$name.rc"
	t1=$(date +%s.%N)
	s1=$(machine_cpu)
	m1=$(mock_cpu)
	echo "$m0 $m1 $t0 $t1 $s0 $s1" >"$OUT/$name.mock"
	echo "  $name: exit $(cat "$OUT/$name.rc")"
}

# `timeout` runs programs, not shell functions: the two clients' common words as arrays.
bench=("$B/llmring" bench --base-url "$URL" --model openai/m --quiet)
aio=("$PY" "$HERE/vllm_style_client.py" --base-url "$URL" --model m)

echo "## accuracy: mock --ttft-ms 100 --itl-ms 10 --tokens 64"
start_mock --ttft-ms 100 --itl-ms 10 --tokens 64
for C in $SIZES; do
	if [ "$NOFILE" -lt $((C + 64)) ]; then
		echo "  concurrency $C skipped: open files hard limit $NOFILE < $((C + 64))"
		echo "$C" >>"$OUT/skipped"
		continue
	fi
	R=$((2 * C))
	[ "$R" -lt 1000 ] && R=1000
	run "acc-$C-llmring" "${bench[@]}" --requests "$R" --concurrency "$C" --max-tokens 64 \
		--json "$OUT/acc-$C-llmring.json"
	run "acc-$C-aiohttp" "${aio[@]}" --requests "$R" --concurrency "$C" --max-tokens 64 \
		--json "$OUT/acc-$C-aiohttp.json"
done
stop_mock

STEADY_SIZES=${STEADY_SIZES:-$SIZES}
STEADY_EVENTS=${STEADY_EVENTS:-40000} # events a second asked of the mock at each size
for C in $STEADY_SIZES; do
	if [ "$NOFILE" -lt $((C + 64)) ]; then
		echo "  steady $C skipped: open files hard limit $NOFILE < $((C + 64))"
		continue
	fi
	I=$((C * 1000 / STEADY_EVENTS))
	[ "$I" -lt 10 ] && I=10
	echo "$I" >"$OUT/steady-$C.itl"
	echo "## steady state: mock --ttft-ms 100 --ttft-spread-ms 5 --itl-ms $I --itl-spread-ms $((I / 5)) --tokens 64, concurrency $C"
	# Spreads (log-normal, means T and I): with fixed times every stream started together
	# keeps ticking together (a replacement starts on a tick, T later is a tick again when
	# I divides T), and the mock sends each tick's events in one burst.
	start_mock --ttft-ms 100 --ttft-spread-ms 5 --itl-ms "$I" --itl-spread-ms $((I / 5)) --tokens 64
	R=$((3 * C))
	[ "$R" -lt 1000 ] && R=1000
	run "steady-$C-llmring" "${bench[@]}" --requests "$R" --warmup "$C" --concurrency "$C" \
		--max-tokens 64 --ignore-eos --random-range-ratio 0.5 --json "$OUT/steady-$C-llmring.json"
	run "steady-$C-aiohttp" "${aio[@]}" --requests "$R" --warmup "$C" --concurrency "$C" \
		--max-tokens 64 --ignore-eos --range-ratio 0.5 --json "$OUT/steady-$C-aiohttp.json"
	stop_mock
done

echo "## capacity: mock --ttft-ms 0 --itl-ms 0 --tokens 256, concurrency 256"
start_mock --ttft-ms 0 --itl-ms 0 --tokens 256
run cap-llmring "${bench[@]}" --requests "$CAP_REQUESTS" --concurrency 256 --max-tokens 256 \
	--json "$OUT/cap-llmring.json"
run cap-aiohttp "${aio[@]}" --requests "$CAP_REQUESTS" --concurrency 256 --max-tokens 256 \
	--json "$OUT/cap-aiohttp.json"
stop_mock

echo "## open loop: mock --ttft-ms 5 --itl-ms 1 --tokens 8"
start_mock --ttft-ms 5 --itl-ms 1 --tokens 8
for RATE in $RATES; do
	run "rate-$RATE" "${bench[@]}" --rate "$RATE" --requests $((2 * RATE)) --max-tokens 8 \
		--json "$OUT/rate-$RATE.json"
done
stop_mock

"$PY" - "$OUT" "$SIZES" "$RATES" "$STEADY_SIZES" <<'EOF'
import json, os, sys
out, sizes, rates, steady = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4].split()

def load(name):
    try:
        with open(os.path.join(out, name + ".json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def rc(name):
    try:
        return open(os.path.join(out, name + ".rc")).read().strip()
    except OSError:
        return "-"

def mock_share(name):
    """The mock's CPU over the run, % of a core."""
    try:
        m0, m1, t0, t1, s0, s1 = map(float, open(os.path.join(out, name + ".mock")).read().split())
        return 100.0 * (m1 - m0) / (t1 - t0)
    except (OSError, ValueError):
        return float("nan")

def other_share(name, client_cpu):
    """The machine's busy CPU over the run less the mock's and the client's, % of a core."""
    try:
        m0, m1, t0, t1, s0, s1 = map(float, open(os.path.join(out, name + ".mock")).read().split())
        return 100.0 * ((s1 - s0) - (m1 - m0) - client_cpu) / (t1 - t0)
    except (OSError, ValueError):
        return float("nan")

def row(name):
    """(ttft mean, tpot mean, ttft p99, cpu s, events, wall s, completed, failed)"""
    d = load(name)
    if d is None:
        return None
    if "schema" in d:  # llmring bench's JSON
        ev = d["itl_ms"]["count"] + d["completed"]
        return (d["ttft_ms"]["mean"], d["tpot_ms"]["mean"], d["ttft_ms"]["percentiles"]["99"],
                d["client_cpu_s"], ev, d["duration_s"], d["completed"], d["failed"])
    return (d["ttft_ms"]["mean"], d["tpot_ms"]["mean"], d["ttft_ms"]["p99"],
            d["client_cpu_s"], d["choice_events"], d["wall_s"], d["completed"], d["failed"])

print()
print("| concurrency | client | requests ok/failed | mean TTFT ms | error vs 100 | mean TPOT ms "
      "| error vs 10 | p99 TTFT ms | client CPU s | CPU µs/event | events/s | mock CPU % | other CPU % | exit |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for c in sizes:
    for client in ("llmring", "aiohttp"):
        name = f"acc-{c}-{client}"
        r = row(name)
        if r is None:
            print(f"| {c} | {client} | skipped or no JSON | | | | | | | | | | | {rc(name)} |")
            continue
        ttft, tpot, p99, cpu, ev, wall, ok, bad = r
        print(f"| {int(c):,} | {client} | {ok}/{bad} | {ttft:.2f} | {ttft - 100:+.2f} | {tpot:.3f} "
              f"| {tpot - 10:+.3f} | {p99:.2f} | {cpu:.2f} | {1e6 * cpu / ev:.2f} "
              f"| {ev / wall:,.0f} | {mock_share(name):.0f} | {other_share(name, cpu):.0f} "
              f"| {rc(name)} |")

print()
print("| steady state: concurrency | mock I ms | client | requests ok/failed | mean TTFT ms "
      "| error vs 100 | median TTFT ms | p99 TTFT ms | mean TPOT ms | error vs I | client CPU % "
      "| mock CPU % | other CPU % | exit |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for c in steady:
    try:
        itl = float(open(os.path.join(out, f"steady-{c}.itl")).read())
    except OSError:
        continue
    for client in ("llmring", "aiohttp"):
        name = f"steady-{c}-{client}"
        d = load(name)
        if d is None:
            print(f"| {c} | {itl:g} | {client} | no JSON | | | | | | | | | | {rc(name)} |")
            continue
        r = row(name)
        ttft, tpot, p99, cpu, ev, wall, ok, bad = r
        med = d["ttft_ms"]["median"]
        print(f"| {int(c):,} | {itl:g} | {client} | {ok}/{bad} | {ttft:.2f} | {ttft - 100:+.2f} "
              f"| {med:.2f} | {p99:.2f} | {tpot:.3f} | {tpot - itl:+.3f} | {100 * cpu / wall:.0f} "
              f"| {mock_share(name):.0f} | {other_share(name, cpu):.0f} | {rc(name)} |")

print()
print("| capacity (c=256, 256 tokens) | requests ok/failed | events | wall s | client CPU s "
      "| events/s | events per CPU-second | CPU µs/event | mock CPU % | other CPU % | exit |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
eps = {}
for client in ("llmring", "aiohttp"):
    name = f"cap-{client}"
    r = row(name)
    if r is None:
        print(f"| {client} | no JSON | | | | | | | | | {rc(name)} |")
        continue
    _, _, _, cpu, ev, wall, ok, bad = r
    eps[client] = ev / cpu
    print(f"| {client} | {ok}/{bad} | {ev:,} | {wall:.2f} | {cpu:.2f} | {ev / wall:,.0f} "
          f"| {ev / cpu:,.0f} | {1e6 * cpu / ev:.2f} | {mock_share(name):.0f} "
          f"| {other_share(name, cpu):.0f} | {rc(name)} |")
if len(eps) == 2:
    print(f"\nllmring / aiohttp events per CPU-second: {eps['llmring'] / eps['aiohttp']:.1f}x")

print()
print("| target rate | requests | achieved rate | schedule lag p50 ms | p99 ms | max ms "
      "| late sends | client CPU % | mock CPU % | other CPU % | exit |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
held = None
for rate in rates:
    d = load(f"rate-{rate}")
    if d is None:
        print(f"| {rate} | no JSON | | | | | | | | | {rc('rate-' + rate)} |")
        continue
    lag = d["schedule_lag_ms"]
    p99 = lag["percentiles"]["99"]
    if p99 < 1.0 and d["failed"] == 0:
        held = rate
    print(f"| {int(rate):,} | {d['requests']} | {d['achieved_rate']:,.1f} | {lag['median']:.3f} "
          f"| {p99:.3f} | {lag['max']:.3f} | {d['late_sends']} "
          f"| {100 * d['client_cpu_share']:.0f} | {mock_share('rate-' + rate):.0f} "
          f"| {other_share('rate-' + rate, d['client_cpu_s']):.0f} | {rc('rate-' + rate)} |")
print(f"\nhighest rate with schedule lag p99 < 1 ms: {held}")
EOF

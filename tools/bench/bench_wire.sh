#!/bin/bash
# Splits bench_accuracy.sh's TTFT/TPOT error into the client's and the mock's: each client
# runs once more under tcpdump on the loopback, and tools/bench/wire_timing.py reads the
# same figures from the kernel's packet times. client - wire is the client's own error;
# wire - (100 ms, 10 ms) is the mock's lateness.
#
#   tools/bench/bench_wire.sh BUILD_DIR [OUT_DIR]      (SIZES="100 2000" by default)
#
# Needs tcpdump (Debian's package) and root. tcpdump takes CPU of its own on this 2-core
# machine, so these runs are for the split, not for the headline figures.
set -u
B=${1:?usage: bench_wire.sh BUILD_DIR [OUT_DIR]}
OUT=${2:-$(mktemp -d /tmp/bench-wire.XXXXXX)}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
PORT=${PORT:-18471}
URL=http://127.0.0.1:$PORT/v1
SIZES=${SIZES:-"100 2000"}
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null
command -v tcpdump >/dev/null || { echo "tcpdump not installed: skipped"; exit 77; }

"$B/llmring" mock --listen "127.0.0.1:$PORT" --ttft-ms 100 --itl-ms 10 --tokens 64 \
	>"$OUT/mock.log" 2>&1 &
MOCK=$!
TD=
cleanup() {
	[ -n "$TD" ] && kill "$TD" 2>/dev/null
	kill "$MOCK" 2>/dev/null
	wait 2>/dev/null
}
trap cleanup EXIT
for _ in $(seq 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
	sleep 0.05
done

echo "| concurrency | client | client TTFT ms | wire TTFT ms | client - wire | new conns: client - wire | reused conns: client - wire | client TPOT ms | wire TPOT ms | client - wire | tcpdump drops |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for C in $SIZES; do
	R=$((2 * C))
	[ "$R" -lt 1000 ] && R=1000
	for client in llmring aiohttp; do
		name=$C-$client
		tcpdump -i lo -s 0 -B 262144 --time-stamp-precision=nano -w "$OUT/$name.pcap" \
			"tcp port $PORT" 2>"$OUT/$name.tcpdump" &
		TD=$!
		sleep 1
		if [ $client = llmring ]; then
			timeout 600 "$B/llmring" bench --base-url "$URL" --model openai/m --quiet \
				--requests "$R" --concurrency "$C" --max-tokens 64 --json "$OUT/$name.json" \
				--requests-out "$OUT/$name.jsonl"
		else
			timeout 600 "$PY" "$HERE/vllm_style_client.py" --base-url "$URL" --model m \
				--requests "$R" --concurrency "$C" --max-tokens 64 \
				--json "$OUT/$name.json" >/dev/null
		fi
		sleep 0.5
		kill -INT "$TD"
		wait "$TD"
		TD=
		"$PY" "$HERE/wire_timing.py" "$OUT/$name.pcap" "$PORT" 64 >"$OUT/$name.wire"
		"$PY" - "$OUT/$name" "$C" "$client" <<'EOF'
import json, re, sys
base, c, client = sys.argv[1:]
d = json.load(open(base + ".json"))
w = json.load(open(base + ".wire"))
m = re.search(r"(\d+) packets dropped by kernel", open(base + ".tcpdump").read())
ttft, tpot = d["ttft_ms"]["mean"], d["tpot_ms"]["mean"]
wt, wp = w["wire_ttft_ms_mean"], w["wire_tpot_ms_mean"]
if client == "llmring":  # split bench's own records the same way: first C sent, the rest
    rs = sorted((json.loads(l) for l in open(base + ".jsonl")), key=lambda r: r["sent_ms"])
    t = [r["first_event_ms"] - r["sent_ms"] for r in rs]
    new, reused = sum(t[:int(c)]) / int(c), sum(t[int(c):]) / max(1, len(t) - int(c))
else:
    new, reused = d["ttft_ms_new_conn_mean"], d["ttft_ms_reused_conn_mean"]
print(f"| {int(c):,} | {client} | {ttft:.3f} | {wt:.3f} | {ttft - wt:+.3f} "
      f"| {new - w['new_conn_ttft_ms_mean']:+.3f} | {reused - w['reused_conn_ttft_ms_mean']:+.3f} "
      f"| {tpot:.4f} | {wp:.4f} | {tpot - wp:+.4f} | {m.group(1) if m else '?'} |")
EOF
		rm -f "$OUT/$name.pcap" "$OUT/$name.jsonl"
	done
done

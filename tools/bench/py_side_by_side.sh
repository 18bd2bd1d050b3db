#!/bin/bash
# Client CPU of pyllmring builds side by side, against `llmring mock` in its
# own process (docs/benchmarks.md, "Against llmring mock"): every mode RUNS
# times, the builds interleaved within each run so that the machine's load
# falls on all of them alike, plus the C batch job on the same 20,000
# requests and each build's start-up (`import pyllmring`), which the
# summary subtracts.
#
#   tools/bench/py_side_by_side.sh LABEL=PYTHONPATH [LABEL=PYTHONPATH ...]
#   e.g. before=/tmp/py-before/python after=build/tools/python
#
# LLMRING (build/llmring) is the binary for the mock and the C row; RUNS (3).
# Prints one line per run, then the means: µs per request (20,000 requests,
# concurrency 64) and µs per streamed event (2,000 streams of 53 events).
set -eu
cd "$(dirname "$0")/../.."
LLMRING=${LLMRING:-build/llmring}
RUNS=${RUNS:-3}
WORK=$(mktemp -d)
trap 'kill $P1 $P2 2>/dev/null; rm -rf "$WORK"' EXIT
echo '{"model":"openai/mock","messages":[{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":50}' > "$WORK/req.json"
echo '{"model":"openai/mock","messages":[{"role":"user","content":"Say hello in one short sentence."}]}' > "$WORK/req_s.json"
/usr/bin/python3 - "$WORK" <<'EOF'
import json, sys
body = json.load(open(sys.argv[1] + "/req.json"))
with open(sys.argv[1] + "/c-in.jsonl", "w") as f:
    for i in range(20000):
        f.write(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                            "body": body}) + "\n")
EOF
"$LLMRING" mock --listen 127.0.0.1:18787 >/dev/null 2>&1 & P1=$!
"$LLMRING" mock --listen 127.0.0.1:18788 --tokens 51 >/dev/null 2>&1 & P2=$!
sleep 0.5
cpu() { /usr/bin/time -f "%U %S" "$@" 2>&1 >/dev/null | tail -1; }
{
for run in $(seq "$RUNS"); do
  rm -f "$WORK/c-out.jsonl"
  echo "c-batch run$run cpu=$(cpu "$LLMRING" batch "$WORK/c-in.jsonl" -o "$WORK/c-out.jsonl" \
        --base-url http://127.0.0.1:18787/v1 --concurrency 64 --quiet)"
  for mode in gather batch sync stream; do
    for spec in "$@"; do
      label=${spec%%=*}; pp=${spec#*=}
      if [ $mode = stream ]; then url=http://127.0.0.1:18788/v1; body=$WORK/req_s.json; n=2000
      else url=http://127.0.0.1:18787/v1; body=$WORK/req.json; n=20000; fi
      out=$(PYTHONPATH=$pp /usr/bin/time -f "%U %S" /usr/bin/python3 tools/bench/py_llmring.py \
            --url $url --body "$body" --n $n --mode $mode 2>&1)
      ev=$(echo "$out" | grep '^{' | sed 's/.*"events":\([0-9]*\).*/\1/')
      echo "$mode $label run$run cpu=$(echo "$out" | tail -1) events=$ev"
    done
  done
  for spec in "$@"; do
    label=${spec%%=*}; pp=${spec#*=}
    echo "startup $label run$run cpu=$(PYTHONPATH=$pp cpu /usr/bin/python3 -c 'import pyllmring')"
  done
done
} | tee "$WORK/runs.txt"
/usr/bin/python3 - "$WORK/runs.txt" <<'EOF'
import collections, re, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    m = re.match(r"(\S+) (?:(\S+) )?run\d+ cpu=([\d.]+) ([\d.]+)(?: events=(\d*))?", line)
    if m:
        mode, label, u, s, ev = m.groups()
        rows[(mode, label)].append((float(u) + float(s), int(ev or 0)))
start = {lab: sum(x for x, _ in v) / len(v) for (mo, lab), v in rows.items() if mo == "startup"}
for (mode, label), v in sorted(rows.items()):
    if mode == "startup":
        continue
    mean = sum(x for x, _ in v) / len(v)
    net = mean - (start.get(label, 0) if label else 0)
    what = f"{net / v[0][1] * 1e6:.2f} µs/event" if mode == "stream" else \
        f"{net / 20000 * 1e6:.1f} µs/request"
    print(f"{mode:8} {label or 'C':8} runs {[round(x, 2) for x, _ in v]} -> {what}")
EOF

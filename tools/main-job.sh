#!/usr/bin/env bash
# The main job: install, build (release), then run a batch of N requests
# (default 10,000) through `llmring batch --mock` against the built-in mock
# server. No key, no network. Prints the batch summary.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
tools/install-deps.sh
if [ ! -f build/build.ninja ]; then
	meson setup build --buildtype=release >/dev/null
fi
meson compile -C build >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# One OpenAI Batch API line per request.
awk -v n="$N" 'BEGIN { for (i = 1; i <= n; i++)
	printf "{\"custom_id\":\"req-%d\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello to number %d\"}],\"max_tokens\":16}}\n", i, i }' \
	> "$work/requests.jsonl"
status=0
build/llmring batch "$work/requests.jsonl" -o "$work/results.jsonl" --mock --stats "$work/stats.json" || status=$?
lines=$(wc -l < "$work/results.jsonl")
echo "main job: $lines result lines for $N requests; stats: $(cat "$work/stats.json")"
[ "$status" -eq 0 ] && [ "$lines" -eq "$N" ]

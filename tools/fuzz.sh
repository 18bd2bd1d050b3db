#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz) and runs each for its share
# (weight) of TOTAL_SECONDS (default 240); the shares never add up to more
# than TOTAL_SECONDS. Last line: "fuzz: N passed, N failed".
set -u
cd "$(dirname "$0")/.."
TOTAL=${1:-240}
# name:weight; the parsers with more paths (and slower runs) weigh more.
weighted=(fuzz_http_reader:3 fuzz_sse:2 fuzz_ndjson:1 fuzz_json:3 fuzz_url:1
	fuzz_provider:6 fuzz_batch_input:3 fuzz_prices:2 fuzz_mock_request:6
	fuzz_mock_batch:2 fuzz_tls_rec:2)
targets=() weights=() wsum=0
for tw in "${weighted[@]}"; do
	targets+=("${tw%%:*}"); weights+=("${tw##*:}"); wsum=$((wsum + ${tw##*:}))
done
if [ ! -f build-fuzz/build.ninja ]; then
	CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined \
		-Db_lundef=false --buildtype=debugoptimized >/dev/null || { echo "fuzz: setup failed"; exit 1; }
fi
ninja -C build-fuzz "${targets[@]/#/tests/fuzz/}" >/dev/null || { echo "fuzz: build failed"; exit 1; }
dir=$(mktemp -d /tmp/llmring-fuzz.XXXXXX)
passed=0; failed=0
for i in "${!targets[@]}"; do
	t=${targets[$i]}
	per=$(( TOTAL * ${weights[$i]} / wsum )); [ "$per" -lt 1 ] && per=1
	corp="$dir/$t-corpus"; mkdir -p "$corp" "$dir/$t"
	cp tests/fuzz/corpus/"$t"/* "$corp"/ 2>/dev/null
	log="$dir/$t.log"
	build-fuzz/tests/fuzz/"$t" -max_total_time="$per" -rss_limit_mb=2048 -timeout=10 \
		-print_final_stats=1 -artifact_prefix="$dir/$t/" "$corp" tests/fuzz/corpus/"$t" >"$log" 2>&1
	rc=$?
	runs=$(grep -ao 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
	eps=$(grep -ao 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
	cov=$(grep -ao 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
	if [ "$rc" -eq 0 ]; then passed=$((passed + 1)); res=ok
	else failed=$((failed + 1)); res="FAIL rc=$rc (log $log, artifacts $dir/$t/)"; fi
	printf '%-18s %3ss runs=%s exec/s=%s cov=%s %s\n' "$t" "$per" "${runs:-?}" "${eps:-?}" "${cov:-?}" "$res"
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

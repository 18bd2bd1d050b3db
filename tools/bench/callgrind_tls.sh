#!/usr/bin/env bash
# Client instructions per request, plain HTTP and pooled HTTPS, by the
# difference method: `llmring batch` of 1,000 and of 3,000 requests against
# `llmring mock` (plain, and --tls-cert), under callgrind; Ir per request =
# (Ir(3000) - Ir(1000)) / 2000, so start-up and handshakes cancel out.
# Noise does not move these counts (docs/benchmarks.md, "TLS next to plain HTTP").
#
# usage: callgrind_tls.sh LLMRING CERT_DIR [OUT_DIR]   (env C: concurrency, default 8;
#   env MOCK: the llmring binary whose mock serves, default LLMRING; the mock
#   picks the suite, AES-128-GCM since issue 14 on a CPU with AES instructions,
#   so MOCK=<an older build> measures the client on ChaCha20-Poly1305)
#   CERT_DIR from tests/certs/gen-certs.sh (ca.crt, server.crt, server.key)
set -euo pipefail
L=$1 certs=$2 out=${3:-$(mktemp -d /tmp/callgrind-tls.XXXXXX)} M=${MOCK:-$1}
mkdir -p "$out"
gen() {
	/usr/bin/python3 -c "
import json
for i in range($1): print(json.dumps({'custom_id':'r%d'%i,'method':'POST','url':'/v1/chat/completions','body':{'model':'gpt-4o-mini','messages':[{'role':'user','content':'Say hello to request %d'%i}]}}))" >"$2"
}
gen 1000 "$out/in1000.jsonl"; gen 3000 "$out/in3000.jsonl"
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
p_plain=$(port) p_tls=$(port)
"$M" mock --listen 127.0.0.1:$p_plain >/dev/null 2>&1 & m1=$!
"$M" mock --listen 127.0.0.1:$p_tls --tls-cert "$certs/server.crt" --tls-key "$certs/server.key" >/dev/null 2>&1 & m2=$!
trap 'kill $m1 $m2 2>/dev/null' EXIT
sleep 0.5
declare -A ir
for kind in plain tls; do
	if [ $kind = plain ]; then url=http://127.0.0.1:$p_plain/v1; extra=(); else
		url=https://localhost:$p_tls/v1; extra=(--cacert "$certs/ca.crt"); fi
	for n in 1000 3000; do
		rm -f "$out/o.jsonl"
		timeout -s KILL 400 valgrind --tool=callgrind --callgrind-out-file="$out/cg_${kind}_$n.out" \
			"$L" batch "$out/in$n.jsonl" -o "$out/o.jsonl" --base-url "$url" "${extra[@]}" \
			--concurrency "${C:-8}" --quiet </dev/null >/dev/null 2>"$out/err_${kind}_$n"
		ir[$n]=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p; s/^totals: *\([0-9]*\).*/\1/p' "$out/cg_${kind}_$n.out" | head -1)
		echo "$kind $n: ${ir[$n]} Ir, $(wc -l <"$out/o.jsonl") lines"
	done
	echo "$kind: $(( (ir[3000] - ir[1000]) / 2000 )) Ir/request"
done
echo "callgrind files in $out"

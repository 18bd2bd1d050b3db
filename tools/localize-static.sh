#!/usr/bin/env bash
# Builds libllmring.a as one relocatable object whose hidden symbols are
# made local, so a program linking the static library sees only lr_*
# names and its own ring_init or json_parse can never clash with ours.
# usage: localize-static.sh OUTPUT.a INPUT.a
set -euo pipefail
out=$1 in=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ld -r --whole-archive "$in" -o "$tmp/llmring.o"
objcopy --localize-hidden "$tmp/llmring.o"
rm -f "$out"
ar rcs "$out" "$tmp/llmring.o"

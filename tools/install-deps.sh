#!/usr/bin/env bash
# Installs what llmring needs to build and test on Debian 12 (idempotent).
# Build: gcc, meson, ninja, liburing 2.3, jsmn, mbedTLS, OpenSSL's libcrypto (the
# TLS record layer: faster AES-GCM/ChaCha20 than mbedTLS 2.28), SQLite. Tests: cmocka,
# clang (second compiler), python3 (CLI tests). --bench adds wrk and what
# ../shared/peers/run_peers.sh runs (nginx's echo module, libcurl, aiohttp,
# httpx; Node.js is the machine's, the SDK comes from npm there).
set -euo pipefail
pkgs=(build-essential gcc clang meson ninja-build pkg-config liburing-dev libjsmn-dev
      libmbedtls-dev libssl-dev libsqlite3-dev libcmocka-dev python3 ca-certificates openssl nginx-light
      python3-dev python3-venv python3-mesonpy python3-pytest python3-pytest-asyncio python3-uvloop)
[ "${1:-}" = "--bench" ] && pkgs+=(wrk valgrind time nginx libnginx-mod-http-echo curl
	libcurl4-openssl-dev libjansson-dev python3-aiohttp python3-httpx)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"

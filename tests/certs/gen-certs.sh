#!/usr/bin/env bash
# Test certificates for the TLS tests, made with the openssl command-line tool
# (OpenSSL 3.0 or later) into DIR:
#   ca.crt ca.key                 the test CA the clients trust
#   server.crt server.key         DNS:localhost, IP:127.0.0.1, signed by the CA
#   other.crt other.key           DNS:other.example only
#   expired.crt expired.key       DNS:localhost, IP:127.0.0.1, valid 2020-2021 only
#   untrusted.crt untrusted.key   DNS:localhost, IP:127.0.0.1, signed by untrusted-ca.crt
#   untrusted-ca.crt              a second CA nobody trusts
#   noip.crt noip.key             DNS:localhost only (no IP SAN)
# EC P-256 keys (fast). Every run makes a fresh set, so running it again is
# harmless. Quiet on success; on failure prints what openssl said and exits 1.
#
# usage: gen-certs.sh DIR
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "usage: gen-certs.sh DIR" >&2
	exit 2
fi
dir=$1
mkdir -p "$dir"
work=$(mktemp -d "$dir/.gen-certs.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Runs openssl quietly; shows its output only when it fails.
run() {
	local out
	if ! out=$(openssl "$@" 2>&1); then
		printf '%s\n' "$out" >&2
		echo "gen-certs.sh: failed: openssl $*" >&2
		exit 1
	fi
}

# Our own config, so the system openssl.cnf cannot add or clash with extensions.
# `openssl ca` is used for every leaf because only it can set a start date in
# the past (OpenSSL 3.0 rejects negative -days).
cnf=$work/openssl.cnf
cat >"$cnf" <<EOF
[ca]
default_ca = test_ca

[test_ca]
database = $work/index.txt
new_certs_dir = $work
serial = $work/serial
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no

[policy_any]
commonName = supplied

[req]
distinguished_name = req_dn
prompt = no

[req_dn]
CN = unused

[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash

[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = \$ENV::SAN
EOF
: >"$work/index.txt"
echo 1000 >"$work/serial"
export SAN=DNS:unused

key() {
	run genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
	chmod 600 "$1"
}

# ca NAME CN: a self-signed CA, NAME.crt and NAME.key
ca() {
	key "$work/$1.key"
	run req -config "$cnf" -x509 -new -key "$work/$1.key" -subj "/CN=$2" \
		-extensions v3_ca -days 3650 -out "$work/$1.crt"
}

# leaf NAME CA SAN [openssl ca date options]: NAME.crt and NAME.key
leaf() {
	local name=$1 signer=$2
	export SAN=$3
	shift 3
	key "$work/$name.key"
	run req -config "$cnf" -new -key "$work/$name.key" -subj "/CN=llmring test $name" \
		-out "$work/$name.csr"
	if [ $# -eq 0 ]; then
		set -- -days 825
	fi
	run ca -batch -notext -config "$cnf" -extensions leaf \
		-cert "$work/$signer.crt" -keyfile "$work/$signer.key" \
		-in "$work/$name.csr" -out "$work/$name.crt" "$@"
}

ca ca "llmring test CA"
ca untrusted-ca "llmring untrusted test CA"
leaf server ca "DNS:localhost,IP:127.0.0.1"
leaf other ca "DNS:other.example"
leaf expired ca "DNS:localhost,IP:127.0.0.1" \
	-startdate 20200101000000Z -enddate 20210101000000Z
leaf untrusted untrusted-ca "DNS:localhost,IP:127.0.0.1"
leaf noip ca "DNS:localhost"

for f in ca server other expired untrusted noip; do
	cp "$work/$f.crt" "$dir/$f.crt"
	cp "$work/$f.key" "$dir/$f.key"
done
cp "$work/untrusted-ca.crt" "$dir/untrusted-ca.crt"

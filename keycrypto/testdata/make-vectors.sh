#!/usr/bin/env bash
# make-vectors.sh writes keycrypto's known-good vectors with the openssl CLI,
# independently of the Go code they check. Inputs are test pool keys
# (keycrypto/testkeys/testdata, test-only). Run from anywhere:
#   bash keycrypto/testdata/make-vectors.sh
# Outputs (next to this script):
#   rsa4096-00.pub.pem   openssl pkey -pubout           (SPKI PEM)
#   rsa4096-00.der.hex   openssl pkey -pubin -outform DER | xxd -p (one line)
#   rsa4096-00.sha256    SHA-256 of the DER, lowercase hex (the fingerprint)
#   ecp256-00.pub.pem    P-256 verification key, openssl pkey -pubout
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pool="$here/../testkeys/testdata"
command -v openssl >/dev/null || { echo "openssl is required (apt-get install openssl)" >&2; exit 1; }
command -v xxd >/dev/null || { echo "xxd is required (apt-get install xxd)" >&2; exit 1; }

openssl pkey -in "$pool/rsa4096-00.pem" -pubout -out "$here/rsa4096-00.pub.pem"
openssl pkey -pubin -in "$here/rsa4096-00.pub.pem" -outform DER | xxd -p | tr -d '\n' >"$here/rsa4096-00.der.hex"
echo >>"$here/rsa4096-00.der.hex"
openssl pkey -pubin -in "$here/rsa4096-00.pub.pem" -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1 >"$here/rsa4096-00.sha256"
openssl pkey -in "$pool/ecp256-00.pem" -pubout -out "$here/ecp256-00.pub.pem"

hex=$(cat "$here/rsa4096-00.der.hex")
[[ ${#hex} -eq 1100 && $hex == 30820222300d06092a864886f70d0101010500* ]] || {
	echo "unexpected DER hex: ${#hex} chars, starts ${hex:0:38}" >&2
	exit 1
}
echo "vectors written to $here"

#!/bin/sh
# Make a throwaway test CA and a server certificate signed by it, for the wss:// interop
# tests (nothing is committed, nothing outlives the test's temporary directory):
#   DIR/ca.pem                 the CA to trust
#   DIR/server.crt DIR/server.key   CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1
#   DIR/other.crt DIR/other.key     CN=other.test, SAN DNS:other.test (a wrong-host check)
# Usage: gen_certs.sh DIR
set -eu
dir=$1
mkdir -p "$dir"
cd "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=kite interop test CA" -keyout ca.key -out ca.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
leaf() { # name CN SAN
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
        -keyout "$1.key" -out "$1.csr" 2>/dev/null
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth" "subjectAltName=$3" > "$1.cnf"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile "$1.cnf" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.cnf"
}
leaf server localhost "DNS:localhost,IP:127.0.0.1,IP:::1"
leaf other other.test "DNS:other.test"
rm -f ca.srl

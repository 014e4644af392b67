#!/bin/sh
# Make a throw-away CA and a server certificate for trying wss:// by hand, with the
# openssl command line. The unit tests do not use this script: they make their own
# certificates at run time (testcerts.h), so nothing committed can expire.
#
#   tests/certs/gen-test-certs.sh [DIR] [NAME...]
#
# DIR (default: ./test-certs) receives ca.pem, ca.key, server.crt, server.key. NAMEs
# (default: localhost) become DNS subjectAltNames; 127.0.0.1 and ::1 are always added.
# Then give a server cert_file = DIR/server.crt and key_file = DIR/server.key
# (struct kite_tls_server_options), and a client ca_file = DIR/ca.pem
# (struct kite_tls_client_options). See docs/tls.md.
set -eu

dir=${1:-./test-certs}
[ $# -gt 0 ] && shift
[ $# -eq 0 ] && set -- localhost

san=""
for n in "$@"; do
    san="${san}DNS:${n},"
done
san="${san}IP:127.0.0.1,IP:::1"

mkdir -p "$dir"
cd "$dir"

# The CA: a P-256 key and a self-signed certificate for 30 days.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout ca.key -out ca.pem -days 30 -subj "/CN=kite test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

# The server: a key, a request, and a certificate signed by the CA.
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout server.key -out server.csr -subj "/CN=$1" 2>/dev/null
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' \
    "$san" > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
    -out server.crt -days 30 -extfile server.ext 2>/dev/null
rm -f server.csr server.ext ca.srl

echo "wrote $dir/ca.pem (trust this), $dir/server.crt and $dir/server.key ($san)"

#!/bin/sh
# Regenerates this operator PKI: a root and an intermediate made with openssl,
# the way an operator's own PKI looks to Horizon. Neither carries a SPIFFE ID,
# and ca.key is a SEC 1 key preceded by EC PARAMETERS. The root's key is thrown
# away. Run from this directory.
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/ext.cnf" <<'CNF'
[root]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[intermediate]
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
openssl ecparam -name secp384r1 -genkey -out "$tmp/root.key"
openssl req -new -x509 -key "$tmp/root.key" -subj "/O=Example Corp/CN=Example Root CA" \
	-days 3650 -sha384 -extensions root -config "$tmp/ext.cnf" -out root.crt
openssl ecparam -name prime256v1 -genkey -out ca.key
openssl req -new -key ca.key -subj "/O=Example Corp/OU=mesh/CN=Example Mesh CA" -out "$tmp/ca.csr"
openssl x509 -req -in "$tmp/ca.csr" -CA root.crt -CAkey "$tmp/root.key" -CAcreateserial \
	-days 1825 -sha384 -extfile "$tmp/ext.cnf" -extensions intermediate -out ca.crt
rm -f root.srl

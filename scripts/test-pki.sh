#!/usr/bin/env bash
# Make a throwaway PKI in DIR with openssl: ca.pem/ca.key (a CA named NAME) and
# server.pem/server.key (ECDSA P-256, CN localhost, SANs localhost and 127.0.0.1, signed by
# the CA, valid two days). For tests and benchmarks only. Usage: scripts/test-pki.sh DIR [NAME]
set -euo pipefail
pki=$1
name=${2:-romp test CA}
mkdir -p "$pki"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=$name" \
  -keyout "$pki/ca.key" -out "$pki/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
  -keyout "$pki/server.key" -out "$pki/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$pki/san.ext"
openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial -days 2 \
  -extfile "$pki/san.ext" -out "$pki/server.pem" 2>/dev/null
chmod 644 "$pki"/*

#!/bin/sh
# TLS on loopback against plain TCP, one process (client and server share
# the loop, so each figure is both sides' work): the cost of a handshake
# (TLS 1.3, ECDHE X25519, a P-256 certificate, the chain verified), an
# HTTP request on a new connection each time, plaintext and HTTPS, and a
# request on one kept connection (the handshake paid once). Medians of
# RUNS (5) rounds (tests/bench/real/tls.lua).
cd "$(dirname "$0")/../.." || exit 1
B="${FB_BUILD:-build}"
pki=$(mktemp -d)
trap 'rm -rf "$pki"' EXIT
sh tests/tls/mkcerts.sh "$pki" || exit 1
echo "# $(openssl version)"
timeout 300 "$B/fusebox" run tests/bench/real/tls.lua "$pki" "${RUNS:-5}"

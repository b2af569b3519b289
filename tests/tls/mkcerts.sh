#!/bin/sh
# Makes the test PKI in DIR (tests/tls/mkcerts.sh DIR), with the openssl
# command only, all on fresh keys (EC P-256: quick to make):
#   ca.pem ca.key          the test CA
#   server.pem server.key  signed by it for localhost and 127.0.0.1 (good chain;
#                          a client certificate too, as etcd's gateway uses it so)
#   wrong.pem wrong.key    signed by it for wrong.example only
#   expired.pem expired.key signed by it for localhost, valid in 2020 only
#   self.pem self.key      self-signed for localhost
#   client.pem client.key  a client certificate (CN=fusebox-client) signed by the CA
#   other-ca.pem, rogue.pem rogue.key  another CA and a client certificate it signed
set -e
d=$1
[ -n "$d" ] || { echo "usage: mkcerts.sh DIR" >&2; exit 2; }
mkdir -p "$d"
cd "$d"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() { # name subject
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -sha256 -days 30 -subj "$2" -out "$1.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}
# leaf NAME CA SUBJECT SAN EKU
leaf() {
  key "$1.key"
  openssl req -new -key "$1.key" -subj "$3" -out "$1.csr"
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$4" "$5" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -days 30 \
    -sha256 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
ca ca "/CN=fusebox test CA"
ca other-ca "/CN=fusebox other CA"
leaf server ca "/CN=localhost" "DNS:localhost,IP:127.0.0.1" serverAuth,clientAuth
leaf wrong ca "/CN=wrong.example" "DNS:wrong.example" serverAuth
leaf client ca "/CN=fusebox-client" "DNS:fusebox-client" clientAuth
leaf rogue other-ca "/CN=rogue-client" "DNS:rogue-client" clientAuth
# expired: `openssl ca` is the one that takes explicit dates
key expired.key
openssl req -new -key expired.key -subj "/CN=localhost" -out expired.csr
mkdir -p ca.db
: > ca.db/index.txt
echo 1000 > ca.db/serial
cat > ca.db/ca.cnf <<CNF
[ca]
default_ca = test
[test]
database = ca.db/index.txt
serial = ca.db/serial
new_certs_dir = ca.db
default_md = sha256
policy = any
copy_extensions = none
x509_extensions = leaf
[any]
commonName = supplied
[leaf]
subjectAltName = DNS:localhost,IP:127.0.0.1
extendedKeyUsage = serverAuth
basicConstraints = CA:FALSE
CNF
openssl ca -batch -config ca.db/ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr \
  -startdate 20200101000000Z -enddate 20200102000000Z -out expired.pem 2>/dev/null
rm -rf expired.csr ca.db
key self.key
openssl req -x509 -new -key self.key -sha256 -days 30 -subj "/CN=localhost" -out self.pem \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1

#!/bin/sh
# Throwaway TLS material for nginx: a CA made for this one start and a server certificate
# it signs, with the given subject alternative names.
#
#   make-tls.sh DIR SAN...      e.g. make-tls.sh .stack/tls IP:127.0.0.1 DNS:localhost
#
# Writes DIR/ca.pem (the CA certificate clients trust), DIR/server.pem (the server
# certificate followed by the CA's, as nginx's ssl_certificate wants the chain) and
# DIR/server.key (mode 600: nginx's master process reads it before its workers start).
# The CA's key only lives during this script: once the server certificate is signed,
# nothing can be signed by that CA again. ECDSA P-256, valid 30 days, replaced on every
# run. Needs only the openssl CLI (no system openssl.cnf); POSIX sh, so it also runs in
# the Compose nginx container (busybox or dash).
set -eu

[ "$#" -ge 2 ] || { echo "usage: make-tls.sh DIR SAN..." >&2; exit 2; }
dir="$1"; shift
sans=""
for san in "$@"; do
  case "$san" in
    IP:*|DNS:*) sans="${sans:+$sans,}$san" ;;
    *) echo "make-tls.sh: a SAN is IP:ADDRESS or DNS:NAME, not '$san'" >&2; exit 2 ;;
  esac
done

mkdir -p "$dir"
chmod 755 "$dir"
work="$(mktemp -d "$dir/.make-tls.XXXXXX")"
trap 'rm -rf "$work"' EXIT INT TERM

# A config of our own: the CA and server extensions, and no dependence on the system's.
cat >"$work/openssl.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $sans
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
export OPENSSL_CONF="$work/openssl.cnf"
serial() { echo "0x$(openssl rand -hex 16)"; }

umask 077
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$work/ca.key" -out "$work/ca.pem" -days 30 -set_serial "$(serial)" \
  -subj "/O=loadgen/CN=loadgen throwaway CA $(date -u +%Y%m%dT%H%M%SZ)" \
  -config "$work/openssl.cnf" -extensions ca 2>"$work/log" || { cat "$work/log" >&2; exit 1; }
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$work/server.key" -out "$work/server.csr" -subj "/O=loadgen/CN=localhost" \
  -config "$work/openssl.cnf" 2>"$work/log" || { cat "$work/log" >&2; exit 1; }
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
  -set_serial "$(serial)" -days 30 -extfile "$work/openssl.cnf" -extensions server \
  -out "$work/server.crt" 2>"$work/log" || { cat "$work/log" >&2; exit 1; }

cat "$work/server.crt" "$work/ca.pem" >"$work/server.pem"
chmod 644 "$work/ca.pem" "$work/server.pem"
chmod 600 "$work/server.key"
# Each file appears whole (rename), the key before the certificate that names it.
mv -f "$work/server.key" "$dir/server.key"
mv -f "$work/server.pem" "$dir/server.pem"
mv -f "$work/ca.pem" "$dir/ca.pem"

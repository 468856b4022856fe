# shellcheck shell=bash
# The TLS files of the Querier that requires a client certificate. Sourced by up.sh.

# A CA, a server certificate for 127.0.0.1 and localhost, a client certificate, and an
# unrelated CA (for tests of a wrong CA), made once with openssl and cached.
tls_files() { # -> prints the directory
  local dir="$CACHE_DIR/tls/v1" tmp
  if [ ! -f "$dir/client.key" ]; then
    command -v openssl >/dev/null || die "openssl is not installed: run integration/stack/install.sh"
    tmp="$dir.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    (
      cd "$tmp"
      for ca in ca other-ca; do
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
          -subj "/CN=storeapi-exporter test $ca" -keyout "$ca.key" -out "$ca.pem" 2>/dev/null
      done
      for leaf in server client; do
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
          -subj "/CN=storeapi-exporter test $leaf" -keyout "$leaf.key" -out "$leaf.csr" 2>/dev/null
      done
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
      printf 'extendedKeyUsage=clientAuth\n' >client.ext
      for leaf in server client; do
        openssl x509 -req -in "$leaf.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
          -extfile "$leaf.ext" -out "$leaf.pem" 2>/dev/null
      done
      rm -f ./*.csr ./*.ext ./*.srl other-ca.key
    ) || die "making the TLS certificates with openssl failed"
    mkdir -p "$(dirname "$dir")"
    mv "$tmp" "$dir"
  fi
  echo "$dir"
}

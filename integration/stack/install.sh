#!/usr/bin/env bash
# Installs the real peers the tests and the benchmark run against, skipping what is there:
#   prometheus + promtool (Debian package), thanos (built from its Go module at a pinned
#   version), grafana mimir (the same way; only the full topology runs it), minio (built from its Go module; s3s-fs from crates.io if that build fails),
#   python3 for the data generator and the live scrape target, openssl for the TLS test
#   certificates, prometheus-pushgateway (Debian package) for the run metrics; for the full
#   topology the older Thanos releases of the version matrix and an OpenTelemetry Collector
#   (integration/otelcol, built from its Go modules).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mkdir -p "$BIN_DIR"

install_prometheus() {
  if command -v prometheus >/dev/null && command -v promtool >/dev/null; then return 0; fi
  apt_install prometheus
  # The package tries to start a service; we run our own instances, so stop it if it started.
  command -v systemctl >/dev/null && systemctl stop prometheus >/dev/null 2>&1 || true
  pkill -x prometheus-node-exporter >/dev/null 2>&1 || true
}

# go build of a module that has replace directives: download it, copy it somewhere writable,
# build in place; `fix`, a command run in the copy first (a dependency today's Go needs).
go_build_module() { # module version package output [build tags] [ldflags] [fix]
  local module=$1 version=$2 pkg=$3 out=$4 tags=${5:-} ldflags=${6:-} fix=${7:-}
  command -v go >/dev/null || die "go is not installed: install go >= 1.26 to build $module"
  local dir src
  dir=$(GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] || die "go mod download $module@$version gave no directory"
  src=$(mktemp -d "$CACHE_DIR/build.XXXXXX")
  cp -r "$dir/." "$src/"
  chmod -R u+w "$src"
  log "building $module@$version (takes minutes on a cold machine)"
  rm -f "$out.tmp"
  if [ -n "$fix" ]; then
    (cd "$src" && GOTOOLCHAIN=local GOFLAGS=-mod=mod bash -c "$fix" 2>&1 | grep -v '^go: downloading' >&2 || true)
  fi
  (cd "$src" && GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -tags "$tags" \
    -ldflags "$ldflags" -o "$out.tmp" "$pkg" 2>&1 | grep -v '^go: downloading' >&2 || true)
  [ -s "$out.tmp" ] || die "building $module@$version failed"
  mv "$out.tmp" "$out"
  rm -rf "$src"
}

# Today's Go builds the older releases with two fixes: v0.31's go4.org/unsafe/assume-no-moving-gc
# panics at start on Go >= 1.22 (a newer one knows them), and v0.37 to v0.39 need
# zenhack.net/go/util, whose domain expired, from its GitHub module (Thanos does this itself
# from v0.40.0).
thanos_fix() { # version
  case $1 in
  v0.31.*) echo "go get go4.org/unsafe/assume-no-moving-gc@v0.0.0-20231121144256-b99613f794b6" ;;
  v0.3[7-9].*) echo "go mod edit -replace zenhack.net/go/util=github.com/zenhack/go-util@v0.0.0-20231005031245-66f5419c2aea" ;;
  esac
}

install_thanos() { # version
  local bin
  bin=$(thanos_bin "$1")
  [ -x "$bin" ] && return 0
  go_build_module github.com/thanos-io/thanos "$1" ./cmd/thanos "$bin" "$(thanos_tags "$1")" \
    "-X github.com/prometheus/common/version.Version=${1#v}" "$(thanos_fix "$1")"
}

# The Collector: our own module (integration/otelcol), its dependencies from the Go module proxy.
install_otelcol() {
  [ -x "$OTELCOL_BIN" ] && return 0
  command -v go >/dev/null || die "go is not installed: install go >= 1.26 to build the OpenTelemetry Collector"
  log "building the OpenTelemetry Collector $OTELCOL_VERSION (integration/otelcol; takes minutes on a cold machine)"
  rm -f "$OTELCOL_BIN.tmp"
  (cd "$REPO_ROOT/integration/otelcol" && GOTOOLCHAIN=local CGO_ENABLED=0 go build -trimpath \
    -o "$OTELCOL_BIN.tmp" . 2>&1 | grep -v '^go: downloading' >&2 || true)
  [ -s "$OTELCOL_BIN.tmp" ] || die "building the OpenTelemetry Collector failed"
  mv "$OTELCOL_BIN.tmp" "$OTELCOL_BIN"
}

install_mimir() {
  [ -x "$MIMIR_BIN" ] && return 0
  go_build_module github.com/grafana/mimir "$MIMIR_VERSION" ./cmd/mimir "$MIMIR_BIN"
}

install_s3() {
  [ -x "$MINIO_BIN" ] && return 0
  [ -x "$BIN_DIR/s3s-fs-$S3SFS_VERSION" ] && return 0
  if [ "${S3_SERVER:-minio}" = minio ]; then
    if go_build_module github.com/minio/minio "$MINIO_VERSION" . "$MINIO_BIN"; then return 0; fi
    log "minio could not be built; falling back to s3s-fs $S3SFS_VERSION"
  fi
  cargo install --quiet --locked "s3s-fs@$S3SFS_VERSION" --features binary --root "$CACHE_DIR/s3s-fs"
  cp "$CACHE_DIR/s3s-fs/bin/s3s-fs" "$BIN_DIR/s3s-fs-$S3SFS_VERSION"
}

install_prometheus
if [ "${STACK_TOPOLOGY:-full}" = full ] && ! command -v prometheus-pushgateway >/dev/null; then
  apt_install prometheus-pushgateway
  # the package may start its service; the stack runs its own instance
  command -v systemctl >/dev/null && systemctl stop prometheus-pushgateway >/dev/null 2>&1 || true
  pkill -x prometheus-pushgateway >/dev/null 2>&1 || true
fi
# integration/image/build.sh builds the runtime image with buildah, check.sh inspects it with podman
if [ "${STACK_TOPOLOGY:-full}" = full ] && ! { command -v buildah && command -v podman; } >/dev/null; then
  apt_install buildah podman
fi
command -v python3 >/dev/null || apt_install python3
command -v curl >/dev/null || apt_install curl
command -v openssl >/dev/null || apt_install openssl
install_thanos "$THANOS_VERSION"
if [ "${STACK_TOPOLOGY:-full}" = full ]; then
  install_mimir
  install_otelcol
  for v in $THANOS_OLDER; do install_thanos "$v"; done
fi
install_s3
log "peers installed under $BIN_DIR"

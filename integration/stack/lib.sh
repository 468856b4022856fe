# shellcheck shell=bash
# Shared settings for the integration scripts. Sourced, never executed.
#
# Everything built or generated is cached outside the work tree, keyed by version or by
# parameters, so a fresh clone on a warm machine reuses it and a cold machine rebuilds it.

set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE_DIR=${STOREAPI_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/storeapi-exporter}
STACK_DIR=${STACK_DIR:-$REPO_ROOT/target/stack}

# Pinned peers. Thanos v0.42.5 only raises the go directive to 1.26.10 (newer than this
# machine's go); v0.42.4 builds with go >= 1.26.0. Thanos must be built with the tags of its
# release build (.promu.yml: netgo, slicelabels): without slicelabels its unsafe label casts
# misread Prometheus 3's label layout and the sidecar panics in grpc's buffer pool ("index out
# of range [64] with length 63") on the Querier's first Info call.
THANOS_VERSION=${THANOS_VERSION:-v0.42.4}
# The releases the version matrix reads beside it (tests/integration/releases.rs), one per era
# of Thanos Query's PromQL: v0.31.0, the oldest the exporter reads (Prometheus 2.42 inside),
# and v0.37.2 (Prometheus 2.55); v0.38 and later evaluate as the pinned one.
THANOS_OLDER=${THANOS_OLDER:-v0.31.0 v0.37.2}
# MinIO publishes no semver tags on the Go module proxy; this is its last pseudo-version there.
MINIO_VERSION=${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}
S3SFS_VERSION=${S3SFS_VERSION:-0.14.1}
# Grafana Mimir's Go module refuses its tagged versions (v2+ without a /v2 module path): the
# proxy serves pseudo-versions of its main branch only. This one needs go >= 1.25.9.
MIMIR_VERSION=${MIMIR_VERSION:-v1.3.1-0.20260423142704-aced80d74930}

# The OpenTelemetry Collector distribution of integration/otelcol (its go.mod pins every module
# at one release), cached by its sources.
OTELCOL_VERSION=v0.165.0

BIN_DIR=$CACHE_DIR/bin
# A Thanos release as its own release build makes it: its build tags, and its version in
# /api/v1/status/buildinfo and --version (empty without the ldflags), which the exporter reads.
thanos_bin() { echo "$BIN_DIR/thanos-$1-release"; }
thanos_tags() { # version: its .promu.yml's tags
  case $1 in
  v0.3[0-9].*) echo netgo ;;
  *) echo netgo,slicelabels ;;
  esac
}
THANOS_BIN=$(thanos_bin "$THANOS_VERSION")
OTELCOL_BIN=$BIN_DIR/otelcol-$OTELCOL_VERSION-$(cat "$REPO_ROOT"/integration/otelcol/{go.mod,go.sum,main.go} | sha256sum | cut -c1-12)
MINIO_BIN=$BIN_DIR/minio-$MINIO_VERSION
MIMIR_BIN=$BIN_DIR/mimir-$MIMIR_VERSION

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Installs the Debian packages not installed yet (with sudo when not root).
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} from debian"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat; the command
# name in field 2 may contain spaces, so count from the closing parenthesis). Empty if gone.
proc_start_time() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  echo "$stat" | awk '{print $20}'
}

# User + system CPU ticks of every process of the stack in $STACK_DIR (its pid files).
stack_cpu_ticks() { # user+system ticks of the stack's processes
  local total=0 f pid stat
  for f in "$STACK_DIR"/pids/*.pid; do
    read -r pid _ <"$f"
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    stat=${stat##*) }
    total=$((total + $(echo "$stat" | awk '{print $12 + $13}')))
  done
  echo "$total"
}

# Waits until the stack in $STACK_DIR is idle: under 30 ticks (3 % of one core) over 10 s, as
# after Prometheus compacted the backfilled blocks; dies after 30 minutes. $1 names it.
wait_until_idle() {
  local deadline=$((SECONDS + 1800)) a b
  while :; do
    a=$(stack_cpu_ticks)
    sleep 10
    b=$(stack_cpu_ticks)
    [ $((b - a)) -lt 30 ] && return 0
    [ $SECONDS -ge $deadline ] && die "$1 stayed busy for 30 minutes"
  done
}

#!/usr/bin/env bash
# The steady-state benchmark (`integration/bench/bench.sh steady`): what a day of the CronJob
# costs the monitoring stack, against the HTTP path's day. Not part of CI (it builds two data
# sets once, tens of minutes, and simulates days of runs).
#
# For each data set (BENCH_SETS, default "22k 110k"), one stack of its own (STACK_TOPOLOGY=
# minimal: Prometheus with backfilled blocks, a sidecar each, one Thanos Query), idle first
# (Prometheus compacts the backfilled blocks after start), then `storeapi-exporter bench
# --steady` for each BATCH_DELAY in BENCH_BATCH_DELAYS (default "5h 0s"): a `run` every 30
# minutes with its state over the day [DATA_FROM+6h, DATA_FROM+30h) over the StoreAPI, and the
# same day over HTTP as Finout's exporter runs it. The sets span 32 hours: the day, the
# batch delay's lead before it and the settle delay after it.
#
#   22k  2 clusters (a an HA pair), 40 nodes and 680 pods each, 30 s scrapes
#   110k 2 clusters (a an HA pair), 200 nodes and 3,400 pods each, 120 s scrapes
#
# Writes target/bench/steady/<set>/<delay>/steady.{json,md} and the command beside it.
# Settings (environment): BENCH_SETS, BENCH_BATCH_DELAYS, BENCH_BASE_PORT (29000),
# BENCH_STACK_DIR (target/stack-bench).
source "$(dirname "${BASH_SOURCE[0]}")/../stack/lib.sh"
cd "$REPO_ROOT"

export STACK_BASE_PORT=${BENCH_BASE_PORT:-29000}
STACK_ROOT=${BENCH_STACK_DIR:-$REPO_ROOT/target/stack-bench}
export STACK_TOPOLOGY=minimal
SETS=${BENCH_SETS:-22k 110k}
DELAYS=${BENCH_BATCH_DELAYS:-5h 0s}
OUT=$REPO_ROOT/target/bench/steady
# the release binary cargo builds (CARGO_TARGET_DIR=~/.cache/storeapi-exporter/image-target
# measures the very binary integration/image/build.sh puts in the image)
BIN=${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/storeapi-exporter

data_set() { # name: exports the DATA_* parameters of a set
  unset DATA_DAYS DATA_BATCH
  case $1 in
  22k) export DATA_HOURS=32 DATA_INTERVAL=30 DATA_CLUSTERS=2 DATA_NODES=40 DATA_PODS=680 DATA_SLICE_HOURS=2 ;;
  110k) export DATA_HOURS=32 DATA_INTERVAL=120 DATA_CLUSTERS=2 DATA_NODES=200 DATA_PODS=3400 DATA_SLICE_HOURS=2 ;;
  *) die "unknown data set $1 (22k, 110k)" ;;
  esac
}

log "building the release binary"
cargo build --release --locked --quiet
for set in $SETS; do
  data_set "$set"
  export STACK_DIR=$STACK_ROOT-$set
  trap 'bash "$REPO_ROOT/integration/stack/down.sh"' EXIT
  bash integration/stack/up.sh >"$STACK_DIR.up.log" || die "the $set stack did not start: see $STACK_DIR.up.log"
  # shellcheck disable=SC1091
  source "$STACK_DIR/env"
  log "$set: stack up; waiting for it to settle (Prometheus compacts the backfilled blocks)"
  # Prometheus plans its first compaction a minute after it starts: idle before that is not idle
  sleep 90
  wait_until_idle "the $set stack"
  for delay in $DELAYS; do
    dir=$OUT/$set/$delay
    mkdir -p "$dir"
    cmd=(storeapi-exporter --store "$THANOS_GRPC" --prometheus-url "$THANOS_HTTP" --batch-delay "$delay"
      bench --steady --from $((DATA_FROM + 6 * 3600)) --to $((DATA_FROM + 30 * 3600))
      --out "target/bench/steady/$set/$delay" --stack-pids "$STACK_DIR/pids")
    log "$set, BATCH_DELAY=$delay: ${cmd[*]}"
    echo "${cmd[*]}" >"$dir/command"
    "$BIN" "${cmd[@]:1}" --log-format text 2>"$dir/bench.log" >/dev/null ||
      die "the steady bench failed: see $dir/bench.log"
    cat "$dir/steady.md"
    rm -rf "$dir/steady"
  done
  bash integration/stack/down.sh
  trap - EXIT
done

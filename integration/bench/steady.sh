#!/usr/bin/env bash
# The steady-state benchmark (`integration/bench/bench.sh steady`): what a day of the CronJob
# costs the monitoring stack, against the HTTP path's day. Not part of CI (it builds two data
# sets once, tens of minutes, and simulates days of runs).
#
# For each data set (BENCH_SETS, default "22k 110k"), one stack of its own (STACK_TOPOLOGY=
# minimal: Prometheus with backfilled blocks, a sidecar each, one Thanos Query), idle first
# (Prometheus compacts the backfilled blocks after start), then `storeapi-exporter bench
# --steady` for each BATCH_DELAY in BENCH_BATCH_DELAYS (default "5h30m 5h 0s"): a `run` every 30
# minutes with its state over the day [DATA_FROM+6h, DATA_FROM+30h) over the StoreAPI, and the
# same day over HTTP as Finout's exporter runs it. The sets span 32 hours: the day, the
# batch delay's lead before it and the settle delay after it (integration/bench/sets.sh).
#
# Writes target/bench/steady/<set>/<delay>/steady.{json,md} and the command beside it, then
# the part of docs/benchmarks.md between its steady markers (integration/bench/steady_report.py).
# Settings (environment): BENCH_SETS, BENCH_BATCH_DELAYS, BENCH_BASE_PORT (29000),
# BENCH_STACK_DIR (target/stack-bench).
source "$(dirname "${BASH_SOURCE[0]}")/../stack/lib.sh"
cd "$REPO_ROOT"
# shellcheck source=integration/bench/sets.sh
source "$REPO_ROOT/integration/bench/sets.sh"

export STACK_BASE_PORT=${BENCH_BASE_PORT:-29000}
STACK_ROOT=${BENCH_STACK_DIR:-$REPO_ROOT/target/stack-bench}
export STACK_TOPOLOGY=minimal
SETS=${BENCH_SETS:-22k 110k}
DELAYS=${BENCH_BATCH_DELAYS:-5h30m 5h 0s}
OUT=$REPO_ROOT/target/bench/steady
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
  settle "the $set stack"
  speed "$OUT/$set"
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

log "writing docs/benchmarks.md (steady-state section)"
python3 integration/bench/steady_report.py --bench-dir "$OUT" --sets "$SETS" --delays "$DELAYS" \
  --out docs/benchmarks.md --rev "$(git rev-parse --short HEAD)"

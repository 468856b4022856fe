#!/usr/bin/env bash
# The scale benchmark (`integration/bench/bench.sh scale`): how the exporter's peak memory and
# CPU, and the whole stack's CPU, grow with the number of active series, per source. Not part
# of CI (it builds up to a million-series data set once and runs for tens of minutes).
#
# For each data set (BENCH_SETS, default "22k 110k 1m"), one stack of its own (STACK_TOPOLOGY=
# minimal: Prometheus with backfilled blocks, a sidecar each, one Thanos Query), then
# `storeapi-exporter bench --stack-pids` over the last hour of the data and, on the sets that
# span a day, over the last 24 hours (the backfill a first run does), then the stack is
# stopped. The data sets (integration/bench/sets.sh) are built once and cached by their
# parameters (integration/stack/up.sh --data); the largest spans only the two hours an hour's
# export reads, so it has no 24 h row.
#
# Writes target/bench/scale/<set>/{1h,24h}/bench.{json,md,svg}, then the part of
# docs/benchmarks.md between its scale markers and docs/scale.svg (integration/bench/
# scale_report.py). Settings (environment): BENCH_SETS, BENCH_ROUNDS (1), BENCH_BASE_PORT
# (29000), BENCH_STACK_DIR (target/stack-bench).
source "$(dirname "${BASH_SOURCE[0]}")/../stack/lib.sh"
cd "$REPO_ROOT"
# shellcheck source=integration/bench/sets.sh
source "$REPO_ROOT/integration/bench/sets.sh"

export STACK_BASE_PORT=${BENCH_BASE_PORT:-29000}
STACK_ROOT=${BENCH_STACK_DIR:-$REPO_ROOT/target/stack-bench}
export STACK_TOPOLOGY=minimal
SETS=${BENCH_SETS:-22k 110k 1m}
ROUNDS=${BENCH_ROUNDS:-1}
OUT=$REPO_ROOT/target/bench/scale

instant() { # PromQL at a time, dedup on or off -> the first value
  curl -fsS "$THANOS_HTTP/api/v1/query" --data-urlencode "query=$1" --data-urlencode "time=$2" \
    --data-urlencode "dedup=$3" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)'
}

log "building the release binary"
cargo build --release --locked --quiet
mkdir -p "$OUT"

# Build every set first (cached): a build needs both cores and must not overlap a bench.
for set in $SETS; do
  data_set "$set"
  started=$SECONDS
  dir=$(bash integration/stack/up.sh --data)
  if [ ! -f "$OUT/$set.data" ] || [ $((SECONDS - started)) -gt 5 ]; then
    echo "$((SECONDS - started)) $(du -sk "$dir" | cut -f1)" >"$OUT/$set.data"
  fi
done

for set in $SETS; do
  data_set "$set"
  export STACK_DIR=$STACK_ROOT-$set
  trap 'bash "$REPO_ROOT/integration/stack/down.sh"' EXIT
  started=$SECONDS
  bash integration/stack/up.sh >"$STACK_DIR.up.log" || die "the $set stack did not start: see $STACK_DIR.up.log"
  # shellcheck disable=SC1091
  source "$STACK_DIR/env"
  log "$set: stack up in $((SECONDS - started))s; waiting for it to settle (Prometheus compacts the backfilled blocks)"
  settle "the $set stack"
  speed "$OUT/$set"
  mid=$((DATA_TO - 1800))
  # counted per cluster: one count over a million series exceeds the Querier's limits (503)
  active=0 stored=0
  for c in $(curl -fsS "$THANOS_HTTP/api/v1/label/cluster/values" | python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)["data"]))'); do
    active=$((active + $(instant "count({cluster=\"$c\", __name__=~\".+\"})" "$mid" true)))
    stored=$((stored + $(instant "count({cluster=\"$c\", __name__=~\".+\"})" "$mid" false)))
  done
  processes=$(find "$STACK_DIR/pids" -name '*.pid' | wc -l)
  log "$set: $active active series ($stored stored), $processes stack processes"
  mkdir -p "$OUT/$set"
  printf '{"active": %s, "stored": %s, "processes": %s, "clusters": %s, "hours": %s, "interval": %s}\n' \
    "$active" "$stored" "$processes" "$DATA_CLUSTERS" "$DATA_HOURS" "$DATA_INTERVAL" >"$OUT/$set/set.json"
  spans="1h"
  [ "$DATA_HOURS" -gt 24 ] && spans="1h 24h"
  for s in $spans; do
    secs=$((${s%h} * 3600))
    # the last hours of the data: the first hour is only lookback and rate range
    cmd=(storeapi-exporter --store "$THANOS_GRPC" --prometheus-url "$THANOS_HTTP" bench
      --from $((DATA_TO - secs)) --to "$DATA_TO" --out "target/bench/scale/$set/$s"
      --rounds "$ROUNDS" --sources grpc,http --stack-pids "$STACK_DIR/pids")
    log "$set, $s: ${cmd[*]}"
    echo "${cmd[*]}" >"$OUT/$set/$s.cmd"
    nice "$BIN" "${cmd[@]:1}" --log-format text 2>"$OUT/$set/$s.log" | tee "$OUT/$set/$s.txt"
    # the 22k 24 h export stays for a look at the files; the others are large
    [ "$set/$s" = 22k/24h ] || rm -rf "$OUT/$set/$s/export"
  done
  bash integration/stack/down.sh
  trap - EXIT
done

log "writing docs/benchmarks.md (scale section) and docs/scale.svg"
python3 integration/bench/scale_report.py --bench-dir "$OUT" --sets "$SETS" \
  --out docs/benchmarks.md --svg docs/scale.svg --rev "$(git rev-parse --short HEAD)"

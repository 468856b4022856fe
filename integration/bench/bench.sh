#!/usr/bin/env bash
# The benchmark: the gRPC path against the HTTP path on the same Thanos, at scale. Not part of
# CI (it takes tens of minutes and both cores); a reproducible script.
#
#   1. builds the release binary;
#   2. starts a stack of its own (ports from 29000, directory target/stack-bench) over the 22k
#      set of integration/bench/sets.sh: 2 clusters (one an HA pair), ~22,000 active series,
#      32 hours at a 30 s scrape interval (generated and backfilled once, then cached), the
#      same data the scale and steady-state benchmarks read;
#   3. waits until the stack is idle (Prometheus compacts the backfilled blocks after start);
#   4. runs `storeapi-exporter bench --stack-pids` over 1 h, 6 h and 24 h spans (gRPC with
#      gzip as a third source on the 24 h span), the 24 h gRPC export at several stream
#      concurrencies, and once more under perf for a CPU profile;
#   5. writes docs/benchmarks.md (the part between its bench markers; the analysis around them
#      is kept) and docs/bench.svg. The stack it started is stopped on exit.
#
# Settings (environment): BENCH_ROUNDS (3), BENCH_SPANS ("1h 6h 24h"), BENCH_PROFILE (1),
# BENCH_CONCURRENCY ("1 4 16": --concurrency values tried on the 24 h gRPC export),
# BENCH_BASE_PORT (29000), BENCH_STACK_DIR (target/stack-bench), BENCH_SET (22k).
#
# `bench.sh scale` runs the scale benchmark instead (below, `scale`): the 22k, 110k and largest
# sets, one stack each; `bench.sh steady` the steady-state benchmark (integration/bench/
# steady.sh): a simulated day of CronJob runs on the 22k and 110k sets against the HTTP path's;
# `bench.sh instructions [BIN...]` the instructions of one export per binary, under valgrind
# (integration/bench/instructions.sh): an A/B steadier than CPU time on this machine.
source "$(dirname "${BASH_SOURCE[0]}")/../stack/lib.sh"
cd "$REPO_ROOT"
# shellcheck source=integration/bench/sets.sh
source "$REPO_ROOT/integration/bench/sets.sh"

if [ "${1:-}" = scale ]; then
  exec bash "$REPO_ROOT/integration/bench/scale.sh"
fi
if [ "${1:-}" = steady ]; then
  exec bash "$REPO_ROOT/integration/bench/steady.sh"
fi
if [ "${1:-}" = instructions ]; then
  shift
  exec bash "$REPO_ROOT/integration/bench/instructions.sh" "$@"
fi

export STACK_BASE_PORT=${BENCH_BASE_PORT:-29000}
export STACK_DIR=${BENCH_STACK_DIR:-$REPO_ROOT/target/stack-bench}
# The historical topology only (no live scrapes, no object storage): an idle stack to measure.
export STACK_TOPOLOGY=minimal
data_set "${BENCH_SET:-22k}"
ROUNDS=${BENCH_ROUNDS:-3}
SPANS=${BENCH_SPANS:-1h 6h 24h}
PROFILE=${BENCH_PROFILE:-1}
OUT=$REPO_ROOT/target/bench

log "building the release binary"
cargo build --release --locked --quiet

trap 'bash "$REPO_ROOT/integration/stack/down.sh"' EXIT
started=$SECONDS
bash integration/stack/up.sh >"$STACK_DIR.up.log" || die "the stack did not start: see $STACK_DIR.up.log"
# shellcheck disable=SC1091
source "$STACK_DIR/env"
# seconds the data took to generate and backfill, when this run built it (it is cached)
data_seconds=$(sed -n 's/.*data ready in \([0-9]*\)s.*/\1/p' "$STACK_DIR.up.log")

log "waiting for the stack to settle (Prometheus compacts the backfilled blocks)"
settle "the stack"

query() { # PromQL at a time -> the first value
  curl -fsS "$THANOS_HTTP/api/v1/query" --data-urlencode "query=$1" --data-urlencode "time=$2" \
    --data-urlencode dedup=true |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)'
}
mid=$((DATA_FROM + (DATA_TO - DATA_FROM) / 2))
active=$(query 'count({__name__=~".+"})' "$mid")
raw_series=$(curl -fsS "$THANOS_HTTP/api/v1/query" --data-urlencode 'query=count({__name__=~".+"})' \
  --data-urlencode "time=$mid" --data-urlencode dedup=false |
  python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)')
log "dataset: $active active series across the clusters ($raw_series stored, HA replicas counted apart)"

# this benchmark's results only: the scale and steady-state ones live beside them
find "$OUT" -mindepth 1 -maxdepth 1 ! -name scale ! -name steady -exec rm -rf {} + 2>/dev/null || true
speed "$OUT"
commands=()
for s in $SPANS; do
  secs=$(python3 -c 'import sys; s=sys.argv[1]; print(int(s[:-1]) * {"h": 3600, "d": 86400}[s[-1]])' "$s")
  # spans are centred on the data, away from its first lookback and its end
  from=$((mid - secs / 2))
  from=$((from - from % 3600))
  to=$((from + secs))
  sources=grpc,http
  [ "$s" = 24h ] && sources=grpc,http,grpc-gzip
  cmd=(storeapi-exporter --store "$THANOS_GRPC" --prometheus-url "$THANOS_HTTP" bench
    --from "$from" --to "$to" --out "target/bench/$s" --rounds "$ROUNDS" --sources "$sources" --stack-pids "${STACK_DIR#"$REPO_ROOT"/}/pids")
  commands+=("${cmd[*]}")
  log "bench over $s: ${cmd[*]}"
  "$BIN" "${cmd[@]:1}" --log-format text 2>"$OUT/$s.log" | tee "$OUT/$s.txt"
done

# Streams in flight: the gRPC export of the 24 h span at several --concurrency values.
secs=86400
from=$((mid - secs / 2))
from=$((from - from % 3600))
: >"$OUT/concurrency.txt"
for c in ${BENCH_CONCURRENCY:-1 4 16}; do
  rm -rf "$OUT/concurrency-export"
  TIMEFORMAT='%R %U %S'
  { time "$BIN" --store "$THANOS_GRPC" export --from "$from" --to "$((from + secs))" \
    --output-dir "$OUT/concurrency-export" --s3-prefix k8s/prometheus --cluster-name bench \
    --concurrency "$c" --log-format json 2>"$OUT/concurrency-$c.log" >/dev/null; } 2>"$OUT/concurrency-time.txt"
  read -r wall user sys <"$OUT/concurrency-time.txt"
  rss=$(python3 -c 'import json,sys
for line in open(sys.argv[1]):
    if "export finished" in line: print(json.loads(line)["peak_rss_bytes"])' "$OUT/concurrency-$c.log")
  echo "$c $wall $user $sys $rss" >>"$OUT/concurrency.txt"
  log "grpc export of 24 h with --concurrency $c: ${wall}s wall, ${user}s user, ${sys}s system"
done
rm -rf "$OUT/concurrency-export"

# Where the time goes: perf of the exporter and of the Querier during one 24 h export per
# source (self time by symbol; Go and Rust binaries both carry their symbols).
profile=""
if [ "$PROFILE" = 1 ] && command -v perf >/dev/null; then
  secs=86400
  from=$((mid - secs / 2))
  from=$((from - from % 3600))
  read -r qpid _ <"$STACK_DIR/pids/query.pid"
  top() { perf report -i "$1" --no-children --sort "$2" --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -"$3" || true; }
  for src in grpc http; do
    log "profiling the $src export of 24 h and the Querier with perf"
    perf record -F 499 -o "$OUT/perf-querier-$src.data" -p "$qpid" 2>/dev/null &
    qperf=$!
    sleep 1
    if perf record -F 499 -o "$OUT/perf-exporter-$src.data" -- "$BIN" --store "$THANOS_GRPC" \
      --prometheus-url "$THANOS_HTTP" export --source "$src" --from "$from" --to "$((from + secs))" \
      --output-dir "$OUT/profile-export-$src" --s3-prefix k8s/prometheus --cluster-name bench \
      --log-format json 2>"$OUT/profile-$src.log" >/dev/null; then
      profile=$OUT
    fi
    kill -INT "$qperf" 2>/dev/null || true
    wait "$qperf" 2>/dev/null || true
    top "$OUT/perf-exporter-$src.data" symbol 20 >"$OUT/profile-exporter-$src.txt"
    top "$OUT/perf-exporter-$src.data" comm 6 >"$OUT/profile-exporter-$src-threads.txt"
    top "$OUT/perf-querier-$src.data" symbol 20 >"$OUT/profile-querier-$src.txt"
    rm -rf "$OUT/profile-export-$src"
  done
fi

log "writing docs/benchmarks.md"
mkdir -p docs
cp "$OUT/24h/bench.svg" docs/bench.svg 2>/dev/null || cp "$OUT/$(echo "$SPANS" | awk '{print $NF}')/bench.svg" docs/bench.svg
python3 integration/bench/report.py --out docs/benchmarks.md --bench-dir "$OUT" --spans "$SPANS" \
  --active "$active" --stored "$raw_series" --data-seconds "$data_seconds" \
  --profile "$profile" --commands "$(printf '%s\n' "${commands[@]}")" \
  --thanos "Thanos $THANOS_VERSION (built from its Go module, tags $(thanos_tags "$THANOS_VERSION"))" \
  --prometheus "$(prometheus --version 2>&1 | head -n1)" \
  --rustc "$(rustc --version)" --rev "$(git rev-parse --short HEAD)" --speed "$(cat "$OUT/speed")"
log "benchmark done in $((SECONDS - started))s: docs/benchmarks.md, docs/bench.svg, raw results in target/bench"

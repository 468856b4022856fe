#!/usr/bin/env bash
# Starts the integration stack on loopback ports and prints `export` lines describing it. The
# full topology (STACK_TOPOLOGY=full, the default) is a production Thanos in miniature:
#
#   cluster a: Prometheus a-0 and a-1 (an HA pair: external labels cluster=a, replica=a-0/a-1)
#   cluster b: Prometheus b (cluster=b, replica=b)
#     each with a Thanos sidecar, each holding the backfilled history (integration/data/
#     gen_data.py) AND scraping the live target (integration/data/scrape_target.py) every
#     LIVE_INTERVAL seconds: head chunks, staleness markers, replicas scraping apart;
#   cluster c (the next free letter): a Prometheus without a sidecar that scrapes the live
#     target and remote-writes to a Thanos Receive (tenant from the THANOS-TENANT header,
#     external label receive_replica="0"), through integration/tools/tenant_proxy.py, which
#     sets that header (Debian's Prometheus 2.42 does not send remote_write headers), and
#     to a monolithic Grafana Mimir (filesystem storage) through a second proxy setting
#     X-Scope-OrgID: the remote read source reads Mimir (and the other Prometheus) directly;
#   an S3-compatible server (MinIO, or s3s-fs) with the exporter's bucket, and a bucket
#     `thanos` holding the backfilled blocks (the same range the sidecars serve) plus one
#     earlier day that only object storage has, served by a Thanos store gateway;
#   a one-shot `thanos compact` (offline replica deduplication) over a copy of those blocks
#     in a filesystem bucket, served by a second store gateway behind a second Thanos Query;
#   the main Thanos Query over the sidecars, the store gateway and the receiver
#     (--query.replica-label=replica --query.replica-label=receive_replica), and a third one
#     over the same stores whose gRPC listener requires TLS and a client certificate;
#   cluster f (the letter after those): an OpenTelemetry Collector (integration/otelcol) scrapes
#     the live target and remote-writes to the same Thanos Receive under its own tenant,
#     no Prometheus at all (the seeds' Collector -> Receive topology);
#   late data (the two letters after c, d and e): two more Prometheus scraping the live target,
#     each remote-writing under its own tenant through its own proxy, the link a test cuts and
#     heals (tenant_proxy.py /-/cut), to a Receive of their own behind a Querier of their own:
#     only the late-data test uses them, so cutting a link or restarting a Prometheus
#     (restart.sh) disturbs no other test.
#
# STACK_TOPOLOGY=minimal starts only the first part without live scrapes (Prometheus with
# backfilled blocks, sidecars, one Query, S3): the benchmark uses it, an idle stack.
#
# The data is generated and backfilled once per set of parameters (cached under the cache
# directory), then hard-linked into each Prometheus' data directory; the compacted bucket and
# the TLS certificates are cached the same way. Live scraping starts before anything else that
# takes time, so live data accumulates while the rest starts (and while the tests run); on a
# cold cache the backfilled blocks are moved into the running Prometheus, which loads them
# within a minute. Running it while the stack is up only prints the environment again.
#
# `up.sh --check` only tells, by its exit status, whether the stack is up.
#
# `up.sh --data` only builds (or finds) the cached data and prints its directory.
#
# The pieces: data.sh (the history: generated, backfilled, uploaded, compacted; cached),
# tls.sh (certificates), peers.sh (one function per peer, configurations rendered from
# config/), probes.sh (questions to the running stack); this file holds the settings and the
# order in which the topology starts.
#
# Settings (environment): DATA_DAYS (or DATA_HOURS), DATA_INTERVAL, DATA_NODES, DATA_PODS, DATA_BATCH,
# DATA_CLUSTERS, DATA_SEED, DATA_START (see gen_data.py --help), STACK_BASE_PORT (default
# 19000), STACK_DIR (default target/stack), STOREAPI_CACHE_DIR, S3_SERVER (minio|s3s-fs),
# STACK_TOPOLOGY (full|minimal), LIVE_INTERVAL (scrape interval in seconds, default 2),
# LIVE_SEED (default 1).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TOPOLOGY=${STACK_TOPOLOGY:-full}
case $TOPOLOGY in full | minimal) ;; *) die "STACK_TOPOLOGY must be full or minimal, not $TOPOLOGY" ;; esac
LIVE_INTERVAL=${LIVE_INTERVAL:-2}
LIVE_SEED=${LIVE_SEED:-1}

# Ports, all derived from the base so that several stacks can run side by side.
# Prometheus i listens on BASE+90+i, its sidecar on BASE+910+i (gRPC) and BASE+920+i (HTTP);
# from the eleventh instance on, its sidecar on BASE+1000+i and BASE+1100+i.
BASE_PORT=${STACK_BASE_PORT:-19000}
S3_PORT=$((BASE_PORT + 0))
TARGET_PORT=$((BASE_PORT + 80))
QUERY_GRPC_PORT=$((BASE_PORT + 901))
QUERY_HTTP_PORT=$((BASE_PORT + 902))
STORE_GRPC_PORT=$((BASE_PORT + 931))
STORE_HTTP_PORT=$((BASE_PORT + 932))
CSTORE_GRPC_PORT=$((BASE_PORT + 933))
CSTORE_HTTP_PORT=$((BASE_PORT + 934))
CQUERY_GRPC_PORT=$((BASE_PORT + 941))
CQUERY_HTTP_PORT=$((BASE_PORT + 942))
TLS_GRPC_PORT=$((BASE_PORT + 951))
TLS_HTTP_PORT=$((BASE_PORT + 952))
RECV_GRPC_PORT=$((BASE_PORT + 961))
RECV_HTTP_PORT=$((BASE_PORT + 962))
RECV_WRITE_PORT=$((BASE_PORT + 963))
TENANT_PROXY_PORT=$((BASE_PORT + 964))
RECV_CAPNP_PORT=$((BASE_PORT + 965))
MIMIR_HTTP_PORT=$((BASE_PORT + 971))
MIMIR_GRPC_PORT=$((BASE_PORT + 972))
MIMIR_MEMBERLIST_PORT=$((BASE_PORT + 973))
MIMIR_PROXY_PORT=$((BASE_PORT + 974))
# The run metrics: a Pushgateway, and a Prometheus of its own that scrapes it.
PUSHGATEWAY_PORT=$((BASE_PORT + 981))
PUSH_PROMETHEUS_PORT=$((BASE_PORT + 982))
# Late data: its Receive, its Querier, and per cluster a Prometheus and the proxy of its link.
LATE_RECV_GRPC_PORT=$((BASE_PORT + 985))
LATE_RECV_HTTP_PORT=$((BASE_PORT + 986))
LATE_RECV_WRITE_PORT=$((BASE_PORT + 987))
LATE_RECV_CAPNP_PORT=$((BASE_PORT + 988))
LATE_QUERY_GRPC_PORT=$((BASE_PORT + 989))
LATE_QUERY_HTTP_PORT=$((BASE_PORT + 990))
LATE_PROXY_PORT=$((BASE_PORT + 991))      # and the next, one per cluster
LATE_PROMETHEUS_PORT=$((BASE_PORT + 993)) # and the next

ACCESS_KEY=storeapi-test
SECRET_KEY=storeapi-test-secret
BUCKET=finout-metrics
THANOS_BUCKET=thanos
REGION=us-east-1
RECEIVE_TENANT=live-tenant
OTEL_TENANT=otel-tenant
MIMIR_TENANT=mimir-tenant

here=$(dirname "${BASH_SOURCE[0]}")
source "$here/data.sh"
source "$here/tls.sh"
source "$here/peers.sh"
source "$here/probes.sh"

DATA_START=${DATA_START:-1761868800}
# DATA_HOURS, when set, wins over DATA_DAYS: the scale sets span only the hours they export
DATA_SPAN=${DATA_DAYS:-2}
[ -n "${DATA_HOURS:-}" ] && DATA_SPAN=${DATA_HOURS}h
read -ra GEN_ARGS <<<"$(data_args "$DATA_START" "$DATA_SPAN")"
# The day before the data: only object storage has it (blocks uploaded to the bucket only).
STORE_ONLY_FROM=$((DATA_START - 86400))
read -ra STORE_ONLY_ARGS <<<"$(data_args "$STORE_ONLY_FROM" 1)"

# What the steps below share: the instances of the generated data ("instance cluster
# replica"), their clusters, the receiver's cluster, and what the Queriers are given.
INSTANCES=() CLUSTERS="" LIVE_CLUSTER="" LIVE_FROM="" LATE_CLUSTERS=() OTEL_CLUSTER=""
ENDPOINTS=() SIDECARS=() PROMETHEUS_URLS=() PROM_DIRS=() QUERY_LABELS=(--query.replica-label=replica)

# 1. Live scrapes first: the target, the receiver and Mimir with their proxies, the run
# metrics' Pushgateway.
start_live_peers() {
  start scrape-target python3 "$REPO_ROOT/integration/data/scrape_target.py" \
    --port "$TARGET_PORT" --seed "$LIVE_SEED" \
    --clusters "$(echo $CLUSTERS "$LIVE_CLUSTER" "${LATE_CLUSTERS[@]}" "$OTEL_CLUSTER" | tr ' ' ,)"
  start_receive receive "$STACK_DIR/run/receive" "$RECV_GRPC_PORT" "$RECV_HTTP_PORT" \
    "$RECV_WRITE_PORT" "$RECV_CAPNP_PORT"
  start_tenant_proxy tenant-proxy "$TENANT_PROXY_PORT" "$RECEIVE_TENANT" \
    "http://127.0.0.1:$RECV_WRITE_PORT/api/v1/receive"
  # the Collector sets its tenant header itself
  render otelcol.yml CLUSTER="$OTEL_CLUSTER" INTERVAL="$LIVE_INTERVAL" TARGET_PORT="$TARGET_PORT" \
    ENDPOINT="http://127.0.0.1:$RECV_WRITE_PORT/api/v1/receive" TENANT="$OTEL_TENANT" \
    >"$STACK_DIR/run/otelcol.yml"
  start otelcol "$OTELCOL_BIN" --config="$STACK_DIR/run/otelcol.yml"
  start_mimir "$STACK_DIR/run/mimir"
  start_tenant_proxy mimir-proxy "$MIMIR_PROXY_PORT" "$MIMIR_TENANT" \
    "http://127.0.0.1:$MIMIR_HTTP_PORT/api/v1/push" X-Scope-OrgID
  wait_for "the live scrape target" 30 curl -fsS "http://127.0.0.1:$TARGET_PORT/-/healthy"
  start_pushgateway "$STACK_DIR/run/prom-push"
}

# Late data: a Receive, and per cluster a Prometheus writing to it under the cluster's own
# tenant through a proxy the test cuts, a Querier over the Receive.
start_late_peers() {
  local k cluster
  start_receive late-receive "$STACK_DIR/run/late-receive" "$LATE_RECV_GRPC_PORT" \
    "$LATE_RECV_HTTP_PORT" "$LATE_RECV_WRITE_PORT" "$LATE_RECV_CAPNP_PORT"
  for k in "${!LATE_CLUSTERS[@]}"; do
    cluster=${LATE_CLUSTERS[$k]}
    start_tenant_proxy "late-proxy-$cluster" $((LATE_PROXY_PORT + k)) "late-$cluster" \
      "http://127.0.0.1:$LATE_RECV_WRITE_PORT/api/v1/receive"
    start_prometheus "$cluster" $((LATE_PROMETHEUS_PORT + k)) "$STACK_DIR/run/prom-$cluster" 1d \
      "$cluster" "" "http://127.0.0.1:$((LATE_PROXY_PORT + k))/api/v1/receive,THANOS-TENANT,late-$cluster"
  done
  start_query late-query "$LATE_QUERY_GRPC_PORT" "$LATE_QUERY_HTTP_PORT" \
    --query.replica-label=receive_replica --endpoint="127.0.0.1:$LATE_RECV_GRPC_PORT"
}

# 2. A Prometheus and a sidecar per instance of the data (scraping the live target in the
# full topology); in the full topology, the receiver's cluster's Prometheus, which only
# remote-writes (to the receiver and to Mimir, each through its tenant proxy).
start_prometheus_instances() { # data-dir
  local data=$1 i=0 line inst cluster replica
  for line in "${INSTANCES[@]}"; do
    read -r inst cluster replica <<<"$line"
    local pp=$((BASE_PORT + 90 + i)) sg=$((BASE_PORT + 910 + i)) sh=$((BASE_PORT + 920 + i))
    # the eleventh instance on (the 20-cluster scale set) would collide with the ports above
    if [ "$i" -ge 10 ]; then sg=$((BASE_PORT + 1000 + i)) sh=$((BASE_PORT + 1100 + i)); fi
    local dir="$STACK_DIR/run/prom-$inst"
    mkdir -p "$dir/data"
    # With the data cached, the blocks are there from the start; else they follow below.
    [ -f "$data/truth.json" ] && link_blocks "$data/tsdb/$inst" "$dir/data"
    start_prometheus "$inst" "$pp" "$dir" 10y "$cluster" "$replica"
    wait_for "prometheus $inst" 60 curl -fsS "http://127.0.0.1:$pp/-/ready"
    start_sidecar "$inst" "$pp" "$dir/data" "$sg" "$sh"
    ENDPOINTS+=("--endpoint=127.0.0.1:$sg")
    SIDECARS+=("$inst=http://127.0.0.1:$sg")
    PROMETHEUS_URLS+=("$inst=http://127.0.0.1:$pp")
    PROM_DIRS+=("$inst $dir/data")
    i=$((i + 1))
  done
  [ "$TOPOLOGY" = full ] || return 0
  # Mimir takes a few seconds to join its own ring: remote write retries until then
  start_prometheus "$LIVE_CLUSTER" $((BASE_PORT + 90 + i)) "$STACK_DIR/run/prom-$LIVE_CLUSTER" 1d \
    "$LIVE_CLUSTER" "" \
    "http://127.0.0.1:$TENANT_PROXY_PORT/api/v1/receive,THANOS-TENANT,$RECEIVE_TENANT" \
    "http://127.0.0.1:$MIMIR_PROXY_PORT/api/v1/push,X-Scope-OrgID,$MIMIR_TENANT"
  LIVE_FROM=$(date +%s)
  log "live scrapes started at $LIVE_FROM (every ${LIVE_INTERVAL}s; clusters $(echo $CLUSTERS) and $LIVE_CLUSTER)"
}

# 4. Object storage: the history in the `thanos` bucket behind a store gateway, the compacted
# copy behind a second store gateway and its own Querier, and the Querier that requires TLS.
start_object_storage() { # data-dir
  local data=$1 store_only compacted tls
  store_only=$(cached_data "${STORE_ONLY_ARGS[@]}")
  compacted=$(compacted_bucket "$data" "$store_only")
  tls=$(tls_files)
  TLS_DIR=$tls

  python3 "$REPO_ROOT/integration/tools/s3_admin.py" mkbucket $THANOS_BUCKET
  s3_bucket_config $THANOS_BUCKET >"$STACK_DIR/run/bucket.yml"
  log "uploading the blocks to s3://$THANOS_BUCKET"
  upload_data "$STACK_DIR/run/bucket.yml" "$store_only" "${STORE_ONLY_ARGS[@]}"
  upload_data "$STACK_DIR/run/bucket.yml" "$data" "${GEN_ARGS[@]}"
  start_store_gateway store "$STACK_DIR/run/bucket.yml" "$STACK_DIR/run/store" \
    "$STORE_GRPC_PORT" "$STORE_HTTP_PORT"
  # The compacted bucket is read-only to the store gateway: links into the run directory.
  cp -al "$compacted" "$STACK_DIR/run/compacted-bucket"
  fs_bucket_config "$STACK_DIR/run/compacted-bucket" >"$STACK_DIR/run/compacted-bucket.yml"
  start_store_gateway compacted-store "$STACK_DIR/run/compacted-bucket.yml" \
    "$STACK_DIR/run/compacted-store" "$CSTORE_GRPC_PORT" "$CSTORE_HTTP_PORT"
  ENDPOINTS+=("--endpoint=127.0.0.1:$STORE_GRPC_PORT" "--endpoint=127.0.0.1:$RECV_GRPC_PORT")
  QUERY_LABELS+=(--query.replica-label=receive_replica)
  start_query compacted-query "$CQUERY_GRPC_PORT" "$CQUERY_HTTP_PORT" "${QUERY_LABELS[@]}" \
    --endpoint="127.0.0.1:$CSTORE_GRPC_PORT"
  start_query tls-query "$TLS_GRPC_PORT" "$TLS_HTTP_PORT" "${QUERY_LABELS[@]}" "${ENDPOINTS[@]}" \
    --grpc-server-tls-cert="$tls/server.pem" --grpc-server-tls-key="$tls/server.key" \
    --grpc-server-tls-client-ca="$tls/ca.pem"
}

# 5. Ready: every Querier sees its stores, the live data has reached the receiver and Mimir.
wait_until_served() {
  local ninstances=${#INSTANCES[@]}
  wait_for "thanos query to see all $ninstances stores" 120 all_stores_answer "$ninstances"
  [ "$TOPOLOGY" = full ] || return 0
  wait_for "thanos query to list the sidecars, the store gateway and the receiver" 60 \
    stores_listed "$QUERY_HTTP_PORT" "$ninstances"
  wait_for "the store gateway to serve the day only it has" 60 \
    instances_answer "$QUERY_HTTP_PORT" $((STORE_ONLY_FROM + 43200)) "$ninstances"
  wait_for "the compacted store to serve every cluster" 60 \
    instances_answer "$CQUERY_HTTP_PORT" "$DATA_TO" "$(echo "$CLUSTERS" | wc -l)"
  wait_for "the TLS Querier to see the stores" 60 stores_listed "$TLS_HTTP_PORT" "$ninstances"
  wait_for "the receiver to have cluster $LIVE_CLUSTER's live series under its tenant" 60 \
    live_answers "$QUERY_HTTP_PORT" "cluster=\"$LIVE_CLUSTER\", tenant_id=\"$RECEIVE_TENANT\""
  wait_for "mimir to have cluster $LIVE_CLUSTER's live series under its tenant" 120 \
    mimir_answers "$LIVE_CLUSTER"
  wait_for "the receiver to have cluster $OTEL_CLUSTER's series from the OpenTelemetry Collector" 60 \
    live_answers "$QUERY_HTTP_PORT" "cluster=\"$OTEL_CLUSTER\", tenant_id=\"$OTEL_TENANT\""
  local cluster
  for cluster in "${LATE_CLUSTERS[@]}"; do
    wait_for "the late-data receiver to have cluster $cluster's live series" 60 \
      live_answers "$LATE_QUERY_HTTP_PORT" "cluster=\"$cluster\", tenant_id=\"late-$cluster\""
  done
}

# The stack's description, for the tests and the scripts (`source $STACK_DIR/env`).
write_env() { # data-dir
  cat <<EOF
export THANOS_HTTP=http://127.0.0.1:$QUERY_HTTP_PORT
export THANOS_GRPC=http://127.0.0.1:$QUERY_GRPC_PORT
export S3_ENDPOINT=$S3_ENDPOINT
export S3_BUCKET=$BUCKET
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_REGION=$REGION
export DATA_FROM=$DATA_FROM
export DATA_TO=$DATA_TO
export DATA_DIR=$1
export STACK_DIR=$STACK_DIR
export STACK_TOPOLOGY=$TOPOLOGY
export SIDECARS="${SIDECARS[*]}"
export PROMETHEUS_URLS="${PROMETHEUS_URLS[*]}"
export THANOS_OLDER="$([ "$TOPOLOGY" = full ] && echo "$THANOS_OLDER")"
EOF
  [ "$TOPOLOGY" = full ] || return 0
  cat <<EOF
export THANOS_STORE_GRPC=http://127.0.0.1:$STORE_GRPC_PORT
export THANOS_RECEIVE_GRPC=http://127.0.0.1:$RECV_GRPC_PORT
export THANOS_COMPACT_STORE_GRPC=http://127.0.0.1:$CSTORE_GRPC_PORT
export THANOS_COMPACT_GRPC=http://127.0.0.1:$CQUERY_GRPC_PORT
export THANOS_COMPACT_HTTP=http://127.0.0.1:$CQUERY_HTTP_PORT
export THANOS_TLS_GRPC=https://127.0.0.1:$TLS_GRPC_PORT
export THANOS_TLS_HTTP=http://127.0.0.1:$TLS_HTTP_PORT
export TLS_CA_FILE=$TLS_DIR/ca.pem
export TLS_CERT_FILE=$TLS_DIR/client.pem
export TLS_KEY_FILE=$TLS_DIR/client.key
export TLS_OTHER_CA_FILE=$TLS_DIR/other-ca.pem
export STORE_ONLY_FROM=$STORE_ONLY_FROM
export STORE_ONLY_TO=$DATA_FROM
export LIVE_FROM=$LIVE_FROM
export LIVE_INTERVAL=$LIVE_INTERVAL
export LIVE_CLUSTERS="$(echo $CLUSTERS) $LIVE_CLUSTER $OTEL_CLUSTER"
export RECEIVE_CLUSTER=$LIVE_CLUSTER
export RECEIVE_TENANT=$RECEIVE_TENANT
export OTEL_CLUSTER=$OTEL_CLUSTER
export OTEL_TENANT=$OTEL_TENANT
export MIMIR_HTTP=http://127.0.0.1:$MIMIR_HTTP_PORT
export MIMIR_TENANT=$MIMIR_TENANT
export PUSHGATEWAY_URL=http://127.0.0.1:$PUSHGATEWAY_PORT
export PUSH_PROMETHEUS_URL=http://127.0.0.1:$PUSH_PROMETHEUS_PORT
export LATE_THANOS_GRPC=http://127.0.0.1:$LATE_QUERY_GRPC_PORT
export LATE_THANOS_HTTP=http://127.0.0.1:$LATE_QUERY_HTTP_PORT
export LATE_CLUSTERS="${LATE_CLUSTERS[*]}"
export LATE_PROXY_URL=http://127.0.0.1:$LATE_PROXY_PORT
EOF
}

main() {
  mkdir -p "$STACK_DIR"
  if [ "${1:-}" = --check ]; then
    stack_healthy # exit status only: is the stack up?
    return
  fi
  if [ "${1:-}" = --data ]; then
    cached_data "${GEN_ARGS[@]}" # builds the data set once, starts nothing
    return
  fi
  if stack_healthy; then
    log "stack already running"
    cat "$STACK_DIR/env"
    return 0
  fi
  "$REPO_ROOT/integration/stack/down.sh" >/dev/null 2>&1 || true
  bash "$REPO_ROOT/integration/stack/install.sh"
  local started=$SECONDS

  need_ports "$S3_PORT" "$QUERY_HTTP_PORT" "$QUERY_GRPC_PORT"
  if [ "$TOPOLOGY" = full ]; then
    need_ports "$TARGET_PORT" "$STORE_GRPC_PORT" "$STORE_HTTP_PORT" "$CSTORE_GRPC_PORT" \
      "$CSTORE_HTTP_PORT" "$CQUERY_GRPC_PORT" "$CQUERY_HTTP_PORT" "$TLS_GRPC_PORT" \
      "$TLS_HTTP_PORT" "$RECV_GRPC_PORT" "$RECV_HTTP_PORT" "$RECV_WRITE_PORT" "$TENANT_PROXY_PORT" \
      "$RECV_CAPNP_PORT" "$MIMIR_HTTP_PORT" "$MIMIR_GRPC_PORT" "$MIMIR_MEMBERLIST_PORT" "$MIMIR_PROXY_PORT" \
      "$PUSHGATEWAY_PORT" "$PUSH_PROMETHEUS_PORT" "$LATE_RECV_GRPC_PORT" "$LATE_RECV_HTTP_PORT" \
      "$LATE_RECV_WRITE_PORT" "$LATE_RECV_CAPNP_PORT" "$LATE_QUERY_GRPC_PORT" "$LATE_QUERY_HTTP_PORT" \
      "$LATE_PROXY_PORT" $((LATE_PROXY_PORT + 1))
  fi
  rm -rf "$STACK_DIR/run" "$STACK_DIR/pids" "$STACK_DIR/logs" "$STACK_DIR"/upload.*
  mkdir -p "$STACK_DIR/run" "$STACK_DIR/pids" "$STACK_DIR/logs"

  local data inst cluster replica
  data="$CACHE_DIR/data/$(data_key "${GEN_ARGS[@]}")"
  while read -r inst cluster replica; do
    [ "$inst" = slices ] || INSTANCES+=("$inst $cluster $replica")
  done < <(python3 "$REPO_ROOT/integration/data/gen_data.py" --out /dev/null "${GEN_ARGS[@]}" --list)
  CLUSTERS=$(printf '%s\n' "${INSTANCES[@]}" | awk '{print $2}' | sort -u)
  # The receiver's cluster: the letter after the generated clusters, so its series never
  # collide with theirs.
  local n
  n=$(echo "$CLUSTERS" | wc -l)
  LIVE_CLUSTER=$(python3 -c 'import sys; print(chr(ord("a") + int(sys.argv[1])))' "$n")
  # the late-data clusters: the two letters after it
  read -ra LATE_CLUSTERS <<<"$(python3 -c 'import sys; n = int(sys.argv[1]); print(chr(98 + n), chr(99 + n))' "$n")"
  # the Collector's cluster: the letter after those
  OTEL_CLUSTER=$(python3 -c 'import sys; print(chr(100 + int(sys.argv[1])))' "$n")

  if [ "$TOPOLOGY" = full ]; then
    start_live_peers
    start_late_peers
  fi
  start_prometheus_instances "$data"

  # 3. S3, while the history is built (cold) or linked (warm). On a cold cache the Prometheus
  # are already scraping: their blocks are moved in once built (Prometheus reloads its blocks
  # every minute).
  start_s3 "$STACK_DIR/run/s3"
  if [ ! -f "$data/truth.json" ]; then
    build_data "$data" "${GEN_ARGS[@]}"
    local line dir
    for line in "${PROM_DIRS[@]}"; do
      read -r inst dir <<<"$line"
      link_blocks "$data/tsdb/$inst" "$dir"
    done
  fi
  DATA_FROM=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["start"])' "$data/truth.json")
  DATA_TO=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["end"])' "$data/truth.json")

  export S3_ENDPOINT="http://127.0.0.1:$S3_PORT" AWS_ACCESS_KEY_ID=$ACCESS_KEY \
    AWS_SECRET_ACCESS_KEY=$SECRET_KEY AWS_REGION=$REGION
  # MinIO formats its directory first: tens of seconds on a loaded 2-core machine
  wait_for "the S3 server" 180 python3 "$REPO_ROOT/integration/tools/s3_admin.py" ready
  python3 "$REPO_ROOT/integration/tools/s3_admin.py" mkbucket $BUCKET

  [ "$TOPOLOGY" = full ] && start_object_storage "$data"
  start_query query "$QUERY_GRPC_PORT" "$QUERY_HTTP_PORT" "${QUERY_LABELS[@]}" "${ENDPOINTS[@]}"
  wait_until_served

  write_env "$data" >"$STACK_DIR/env"
  log "stack up in $((SECONDS - started))s ($TOPOLOGY): ${#INSTANCES[@]} prometheus + sidecars, thanos query, s3$(
    [ "$TOPOLOGY" = full ] && echo ", live scrapes, receive, mimir, an OpenTelemetry Collector, store gateways, compacted store, TLS query, late-data receive"
  ); environment in $STACK_DIR/env"
  cat "$STACK_DIR/env"
}

main "$@"

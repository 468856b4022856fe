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
#     over the same stores whose gRPC listener requires TLS and a client certificate.
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
# the receiver's Cap'n Proto replication server listens on 0.0.0.0:19391 unless told: two
# stacks on one machine would collide there whatever their STACK_BASE_PORT
RECV_CAPNP_PORT=$((BASE_PORT + 965))
MIMIR_HTTP_PORT=$((BASE_PORT + 971))
MIMIR_GRPC_PORT=$((BASE_PORT + 972))
MIMIR_MEMBERLIST_PORT=$((BASE_PORT + 973))
MIMIR_PROXY_PORT=$((BASE_PORT + 974))
# The run metrics: a Pushgateway, and a Prometheus of its own that scrapes it.
PUSHGATEWAY_PORT=$((BASE_PORT + 981))
PUSH_PROMETHEUS_PORT=$((BASE_PORT + 982))

data_args() { # start span (days, or hours with an h suffix): gen_data.py's arguments for that range
  local span="--days $2"
  [[ $2 == *h ]] && span="--hours ${2%h}"
  echo $span --interval "${DATA_INTERVAL:-30}" --nodes "${DATA_NODES:-3}" \
    --pods "${DATA_PODS:-16}" --batch-per-hour "${DATA_BATCH:-2}" \
    --clusters "${DATA_CLUSTERS:-2}" --seed "${DATA_SEED:-1}" --start "$1" \
    --slice-hours "${DATA_SLICE_HOURS:-24}"
}
DATA_START=${DATA_START:-1761868800}
# DATA_HOURS, when set, wins over DATA_DAYS: the scale sets span only the hours they export
DATA_SPAN=${DATA_DAYS:-2}
[ -n "${DATA_HOURS:-}" ] && DATA_SPAN=${DATA_HOURS}h
read -ra GEN_ARGS <<<"$(data_args "$DATA_START" "$DATA_SPAN")"
# The day before the data: only object storage has it (blocks uploaded to the bucket only).
STORE_ONLY_FROM=$((DATA_START - 86400))
read -ra STORE_ONLY_ARGS <<<"$(data_args "$STORE_ONLY_FROM" 1)"

ACCESS_KEY=storeapi-test
SECRET_KEY=storeapi-test-secret
BUCKET=finout-metrics
THANOS_BUCKET=thanos
REGION=us-east-1
RECEIVE_TENANT=live-tenant
MIMIR_TENANT=mimir-tenant

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
need_ports() {
  for p in "$@"; do
    port_busy "$p" && die "port $p is in use: stop what listens there or set STACK_BASE_PORT"
  done
  return 0
}

wait_for() { # description seconds command...
  local what=$1 secs=$2
  shift 2
  local began=$SECONDS deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      log "timed out after ${secs}s waiting for $what; logs are in $STACK_DIR/logs"
      return 1
    fi
    sleep 0.3
  done
  [ $((SECONDS - began)) -lt 3 ] || log "waited $((SECONDS - began))s for $what"
}

start() { # name command... (runs in the background, pid recorded for down.sh)
  local name=$1
  shift
  nohup "$@" >"$STACK_DIR/logs/$name.log" 2>&1 &
  # pid and start time (field 22 of /proc/PID/stat): down.sh signals only that very process
  echo "$! $(proc_start_time $!)" >"$STACK_DIR/pids/$name.pid"
}

# ---- the data, generated and backfilled once per parameter set ------------------------------

data_key() { # gen_data.py arguments...
  {
    cat "$REPO_ROOT/integration/data/gen_data.py"
    echo "$@"
    promtool --version 2>&1 | head -n1
  } | sha256sum | cut -c1-16
}

build_data() { # dir gen_data.py arguments...
  local dir=$1 tmp instances nslices
  shift
  local args=("$@")
  tmp="$dir.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp/om"
  instances=$(python3 "$REPO_ROOT/integration/data/gen_data.py" --out "$tmp" "${args[@]}" --list | awk '$1 != "slices" {print $1}')
  nslices=$(python3 "$REPO_ROOT/integration/data/gen_data.py" --out "$tmp" "${args[@]}" --list | awk '$1 == "slices" {print $2}')
  log "generating and backfilling data ($nslices slices x $(echo "$instances" | wc -w) instances) into $dir"
  local started=$SECONDS
  # One job per (instance, slice): generate the slice, backfill it, delete it. Two at a time
  # (2 cores); each job's disk use is one slice.
  local jobs=()
  for inst in $instances; do
    for ((k = 0; k < nslices; k++)); do jobs+=("$inst $k"); done
  done
  printf '%s\n' "${jobs[@]}" | xargs -P 2 -L 1 bash -c '
    set -euo pipefail
    inst=$0 k=$1
    om="'"$tmp"'/om/$inst.$(printf %04d "$k").om"
    python3 "'"$REPO_ROOT"'/integration/data/gen_data.py" --out "'"$tmp"'/om" '"${args[*]}"' --instance "$inst" --slice "$k" 2>/dev/null
    mkdir -p "'"$tmp"'/tsdb/$inst"
    promtool tsdb create-blocks-from openmetrics --max-block-duration=1000h "$om" "'"$tmp"'/tsdb/$inst" >"$om.log" 2>&1 || { cat "$om.log" >&2; exit 1; }
    rm -f "$om" "$om.log"
  ' || die "building the data failed"
  python3 "$REPO_ROOT/integration/data/gen_data.py" --out "$tmp" "${args[@]}" --truth
  rmdir "$tmp/om"
  mv "$tmp" "$dir"
  log "data ready in $((SECONDS - started))s"
}

cached_data() { # gen_data.py arguments... -> prints the cache directory, building it if needed
  local dir
  dir="$CACHE_DIR/data/$(data_key "$@")"
  [ -f "$dir/truth.json" ] || build_data "$dir" "$@" >&2
  echo "$dir"
}

# Hard links of the cached blocks into a Prometheus data directory: blocks are immutable, so
# the copy is free and the cache stays untouched when Prometheus compacts or deletes them.
# Each block is linked beside the directory first and then renamed into it, so a running
# Prometheus (which reloads its blocks every minute) never sees half a block.
link_blocks() { # from to
  local from=$1 to=$2 b stage="$2.stage"
  mkdir -p "$to"
  rm -rf "$stage"
  mkdir -p "$stage"
  for b in "$from"/*/; do
    b=$(basename "$b")
    [ -f "$from/$b/meta.json" ] || continue
    cp -al "$from/$b" "$stage/$b" 2>/dev/null || cp -r "$from/$b" "$stage/$b"
    mv "$stage/$b" "$to/$b"
  done
  rmdir "$stage"
}

# ---- live scrapes -----------------------------------------------------------------------------

prometheus_config() { # cluster replica (empty: none) [remote write url] [second remote write url]
  local cluster=$1 replica=$2 rw=${3:-} rw2=${4:-}
  echo "global:"
  if [ "$TOPOLOGY" = full ]; then
    echo "  scrape_interval: ${LIVE_INTERVAL}s"
    echo "  scrape_timeout: ${LIVE_INTERVAL}s"
  fi
  echo "  external_labels:"
  echo "    cluster: $cluster"
  [ -n "$replica" ] && echo "    replica: $replica"
  [ "$TOPOLOGY" = full ] || return 0
  # The kube-state-metrics and the kubelet's cAdvisor of this cluster, as the live target
  # serves them. Prometheus spreads scrapes over the interval by a hash of the target and of
  # its own external labels, so the two replicas of the HA pair scrape apart.
  cat <<EOF
scrape_configs:
  - job_name: kube-state-metrics
    metrics_path: /metrics/$cluster/kube-state-metrics
    static_configs: [{targets: ["127.0.0.1:$TARGET_PORT"]}]
  - job_name: kubelet
    metrics_path: /metrics/$cluster/cadvisor
    static_configs: [{targets: ["127.0.0.1:$TARGET_PORT"]}]
EOF
  if [ -n "$rw" ]; then
    cat <<EOF
remote_write:
  - url: $rw
    headers: {THANOS-TENANT: $RECEIVE_TENANT}
    queue_config: {batch_send_deadline: 1s}
EOF
  fi
  if [ -n "$rw2" ]; then
    cat <<EOF
  - url: $rw2
    headers: {X-Scope-OrgID: $MIMIR_TENANT}
    queue_config: {batch_send_deadline: 1s}
EOF
  fi
}

# The Prometheus that scrapes the Pushgateway every second, keeping the pushed labels.
push_prometheus_config() {
  cat <<EOF
global: {scrape_interval: 1s, scrape_timeout: 1s}
scrape_configs:
  - job_name: pushgateway
    honor_labels: true
    static_configs: [{targets: ["127.0.0.1:$PUSHGATEWAY_PORT"]}]
EOF
}

# Grafana Mimir, monolithic, every listener on loopback and derived from the base port, its
# blocks and rings local (filesystem storage, memberlist of one), usage reporting off.
mimir_config() { # directory
  local d=$1
  cat <<EOF
multitenancy_enabled: true
usage_stats: {enabled: false}
activity_tracker: {filepath: $d/metrics-activity.log}
server:
  http_listen_address: 127.0.0.1
  http_listen_port: $MIMIR_HTTP_PORT
  grpc_listen_address: 127.0.0.1
  grpc_listen_port: $MIMIR_GRPC_PORT
  log_level: warn
memberlist:
  bind_addr: [127.0.0.1]
  bind_port: $MIMIR_MEMBERLIST_PORT
  advertise_addr: 127.0.0.1
  advertise_port: $MIMIR_MEMBERLIST_PORT
common:
  storage:
    backend: filesystem
    filesystem: {dir: $d/data}
blocks_storage:
  storage_prefix: blocks
  tsdb: {dir: $d/tsdb}
  bucket_store: {sync_dir: $d/tsdb-sync}
ruler_storage:
  storage_prefix: rules
alertmanager_storage:
  storage_prefix: alertmanager
compactor:
  data_dir: $d/compactor
  sharding_ring: {instance_addr: 127.0.0.1, kvstore: {store: memberlist}}
distributor:
  ring: {instance_addr: 127.0.0.1, kvstore: {store: memberlist}}
ingester:
  ring: {instance_addr: 127.0.0.1, kvstore: {store: memberlist}, replication_factor: 1}
store_gateway:
  sharding_ring: {instance_addr: 127.0.0.1, kvstore: {store: memberlist}, replication_factor: 1}
query_scheduler:
  ring: {instance_addr: 127.0.0.1}
ruler:
  ring: {instance_addr: 127.0.0.1}
frontend:
  address: 127.0.0.1
EOF
}

# ---- object storage -------------------------------------------------------------------------

s3_bucket_config() { # bucket
  cat <<EOF
type: S3
config:
  bucket: $1
  endpoint: 127.0.0.1:$S3_PORT
  access_key: $ACCESS_KEY
  secret_key: $SECRET_KEY
  insecure: true
  bucket_lookup_type: path
EOF
}

fs_bucket_config() { # directory
  printf 'type: FILESYSTEM\nconfig:\n  directory: %s\n' "$1"
}

# Uploads every instance's blocks of a data directory, with the instance's cluster and replica
# as the blocks' external labels (what a sidecar's shipper would have uploaded).
upload_data() { # bucket-config data-dir gen_data.py arguments...
  local cfg=$1 data=$2
  shift 2
  local stage inst cluster replica
  while read -r inst cluster replica; do
    [ "$inst" = slices ] && continue
    # The shipper writes its own files beside the blocks: upload from links, not the cache.
    stage=$(mktemp -d "$STACK_DIR/upload.XXXXXX")
    link_blocks "$data/tsdb/$inst" "$stage/blocks"
    "$THANOS_BIN" tools bucket upload-blocks --objstore.config-file="$cfg" \
      --path="$stage/blocks" --label="cluster=\"$cluster\"" --label="replica=\"$replica\"" \
      >>"$STACK_DIR/logs/upload-blocks.log" 2>&1 ||
      die "uploading the blocks of $inst failed: see $STACK_DIR/logs/upload-blocks.log"
    rm -rf "$stage"
  done < <(python3 "$REPO_ROOT/integration/data/gen_data.py" --out /dev/null "$@" --list)
}

# The blocks of both ranges, compacted once by `thanos compact` with offline replica
# deduplication into a filesystem bucket, cached by the data and the Thanos version.
# --delete-delay=0s: the source blocks go at once, so the cache holds the compacted ones only.
COMPACT_FLAGS=(--deduplication.replica-label=replica --consistency-delay=0s --delete-delay=0s
  --downsampling.disable)
compacted_bucket() { # data-dir store-only-data-dir -> prints the bucket directory
  local key dir tmp
  key=$( {
    basename "$1"
    basename "$2"
    echo "$THANOS_VERSION ${COMPACT_FLAGS[*]}"
  } | sha256sum | cut -c1-16)
  dir="$CACHE_DIR/compacted/$key"
  if [ ! -d "$dir/bucket" ]; then
    log "compacting a copy of the bucket (offline deduplication of replica) into $dir" >&2
    tmp="$dir.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp/bucket" "$tmp/work"
    fs_bucket_config "$tmp/bucket" >"$tmp/bucket.yml"
    upload_data "$tmp/bucket.yml" "$2" "${STORE_ONLY_ARGS[@]}"
    upload_data "$tmp/bucket.yml" "$1" "${GEN_ARGS[@]}"
    "$THANOS_BIN" compact --objstore.config-file="$tmp/bucket.yml" --data-dir="$tmp/work" \
      --http-address="127.0.0.1:$CSTORE_HTTP_PORT" "${COMPACT_FLAGS[@]}" \
      >"$STACK_DIR/logs/compact.log" 2>&1 || die "thanos compact failed: see $STACK_DIR/logs/compact.log"
    rm -rf "$tmp/work" "$tmp/bucket.yml"
    mv "$tmp" "$dir"
  fi
  echo "$dir/bucket"
}

# ---- TLS --------------------------------------------------------------------------------------

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

# ---- stack ----------------------------------------------------------------------------------

stack_healthy() {
  [ -f "$STACK_DIR/env" ] || return 1
  for f in "$STACK_DIR"/pids/*.pid; do
    [ -e "$f" ] || return 1
    read -r pid started <"$f"
    [ "$(proc_start_time "$pid")" = "$started" ] || return 1
  done
  # shellcheck disable=SC1091
  (source "$STACK_DIR/env" && curl -fsS "$THANOS_HTTP/-/ready" >/dev/null)
}

instant_value() { # query-http-port promql time -> the first value, 0 if none
  curl -fsS "http://127.0.0.1:$1/api/v1/query" --data-urlencode "query=$2" \
    --data-urlencode "time=$3" --data-urlencode 'dedup=false' |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)'
}

instances_answer() { # query-http-port time expected instance count
  [ "$(instant_value "$1" 'count(count by (cluster, replica) (kube_node_info))' "$2")" = "$3" ]
}

all_stores_answer() { # expected instance count
  instances_answer "$QUERY_HTTP_PORT" "$DATA_TO" "$1"
}

# The main Querier lists every kind of store: sidecars, a store gateway, a receiver; and the
# sidecars announce the backfilled history (on a cold cache, their Prometheus load its blocks
# after they started, and a sidecar refreshes its min time only every few seconds: until then
# the Querier would not ask it for the history, the store gateway alone would answer).
stores_listed() { # query-http-port sidecars
  curl -fsS "http://127.0.0.1:$1/api/v1/stores" | python3 -c '
import json, sys
d = json.load(sys.stdin)["data"]
ok = lambda k: [s for s in d.get(k) or [] if not s.get("lastError")]
history = [s for s in ok("sidecar") if s["minTime"] <= int(sys.argv[2]) * 1000]
sys.exit(0 if len(history) == int(sys.argv[1]) and ok("store") and ok("receive") else 1)' "$2" $((DATA_FROM + 3600))
}

live_answers() { # query-http-port selector: the live target's series are queryable
  [ "$(instant_value "$1" "count(kube_node_info{$2})" "$(date +%s)")" != 0 ]
}

mimir_answers() { # cluster
  curl -fsS -H "X-Scope-OrgID: $MIMIR_TENANT" \
    "http://127.0.0.1:$MIMIR_HTTP_PORT/prometheus/api/v1/query" \
    --data-urlencode "query=count(kube_node_info{cluster=\"$1\"})" |
    python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["data"]["result"] else 1)'
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
      "$PUSHGATEWAY_PORT" "$PUSH_PROMETHEUS_PORT"
  fi
  rm -rf "$STACK_DIR/run" "$STACK_DIR/pids" "$STACK_DIR/logs" "$STACK_DIR"/upload.*
  mkdir -p "$STACK_DIR/run" "$STACK_DIR/pids" "$STACK_DIR/logs"

  local key data
  key=$(data_key "${GEN_ARGS[@]}")
  data="$CACHE_DIR/data/$key"
  local instances=() inst cluster replica
  while read -r inst cluster replica; do
    [ "$inst" = slices ] || instances+=("$inst $cluster $replica")
  done < <(python3 "$REPO_ROOT/integration/data/gen_data.py" --out /dev/null "${GEN_ARGS[@]}" --list)
  local ninstances=${#instances[@]}
  local clusters live_cluster
  clusters=$(printf '%s\n' "${instances[@]}" | awk '{print $2}' | sort -u)
  # The receiver's cluster: the letter after the generated clusters, so its series never
  # collide with theirs.
  live_cluster=$(python3 -c 'import sys; print(chr(ord("a") + int(sys.argv[1])))' "$(echo "$clusters" | wc -l)")

  # 1. Live scrapes first: the target, the receiver, every Prometheus.
  local live_from=""
  if [ "$TOPOLOGY" = full ]; then
    start scrape-target python3 "$REPO_ROOT/integration/data/scrape_target.py" \
      --port "$TARGET_PORT" --seed "$LIVE_SEED" --clusters "$(echo $clusters "$live_cluster" | tr ' ' ,)"
    mkdir -p "$STACK_DIR/run/receive"
    start receive "$THANOS_BIN" receive --tsdb.path="$STACK_DIR/run/receive" \
      --grpc-address="127.0.0.1:$RECV_GRPC_PORT" --http-address="127.0.0.1:$RECV_HTTP_PORT" \
      --remote-write.address="127.0.0.1:$RECV_WRITE_PORT" --label='receive_replica="0"' \
      --receive.capnproto-address="127.0.0.1:$RECV_CAPNP_PORT" \
      --tsdb.retention=1d
    start tenant-proxy python3 "$REPO_ROOT/integration/tools/tenant_proxy.py" \
      --port "$TENANT_PROXY_PORT" --tenant "$RECEIVE_TENANT" \
      --upstream "http://127.0.0.1:$RECV_WRITE_PORT/api/v1/receive"
    mkdir -p "$STACK_DIR/run/mimir"
    mimir_config "$STACK_DIR/run/mimir" >"$STACK_DIR/run/mimir.yml"
    start mimir "$MIMIR_BIN" -config.file="$STACK_DIR/run/mimir.yml" -target=all \
      -usage-stats.enabled=false
    start mimir-proxy python3 "$REPO_ROOT/integration/tools/tenant_proxy.py" \
      --port "$MIMIR_PROXY_PORT" --tenant "$MIMIR_TENANT" --header X-Scope-OrgID \
      --upstream "http://127.0.0.1:$MIMIR_HTTP_PORT/api/v1/push"
    wait_for "the live scrape target" 30 curl -fsS "http://127.0.0.1:$TARGET_PORT/-/healthy"
    # The run metrics' path: exporter -> Pushgateway -> Prometheus (honor_labels keeps the
    # pushed grouping labels), read back through PromQL by the tests.
    start pushgateway prometheus-pushgateway --web.listen-address="127.0.0.1:$PUSHGATEWAY_PORT"
    mkdir -p "$STACK_DIR/run/prom-push/data"
    push_prometheus_config >"$STACK_DIR/run/prom-push/prometheus.yml"
    start prometheus-push prometheus --config.file="$STACK_DIR/run/prom-push/prometheus.yml" \
      --storage.tsdb.path="$STACK_DIR/run/prom-push/data" --storage.tsdb.retention.time=1d \
      --web.listen-address="127.0.0.1:$PUSH_PROMETHEUS_PORT"
  fi
  local i=0 endpoints=() sidecars=() prom_dirs=() prometheus_urls=()
  for line in "${instances[@]}"; do
    read -r inst cluster replica <<<"$line"
    local pp=$((BASE_PORT + 90 + i)) sg=$((BASE_PORT + 910 + i)) sh=$((BASE_PORT + 920 + i))
    # the eleventh instance on (the 20-cluster scale set) would collide with the ports above
    if [ "$i" -ge 10 ]; then sg=$((BASE_PORT + 1000 + i)) sh=$((BASE_PORT + 1100 + i)); fi
    need_ports "$pp" "$sg" "$sh"
    local dir="$STACK_DIR/run/prom-$inst"
    mkdir -p "$dir/data"
    # With the data cached, the blocks are there from the start; else they follow below.
    [ -f "$data/truth.json" ] && link_blocks "$data/tsdb/$inst" "$dir/data"
    prometheus_config "$cluster" "$replica" >"$dir/prometheus.yml"
    start "prometheus-$inst" prometheus --config.file="$dir/prometheus.yml" \
      --storage.tsdb.path="$dir/data" --storage.tsdb.retention.time=10y \
      --web.listen-address="127.0.0.1:$pp"
    # A sidecar that finds its Prometheus not yet listening retries only every 30 s.
    wait_for "prometheus $inst" 60 curl -fsS "http://127.0.0.1:$pp/-/ready"
    start "sidecar-$inst" "$THANOS_BIN" sidecar --prometheus.url="http://127.0.0.1:$pp" \
      --tsdb.path="$dir/data" --grpc-address="127.0.0.1:$sg" --http-address="127.0.0.1:$sh"
    endpoints+=("--endpoint=127.0.0.1:$sg")
    sidecars+=("$inst=http://127.0.0.1:$sg")
    prometheus_urls+=("$inst=http://127.0.0.1:$pp")
    prom_dirs+=("$inst $dir/data")
    i=$((i + 1))
  done
  if [ "$TOPOLOGY" = full ]; then
    local cdir="$STACK_DIR/run/prom-$live_cluster" cp=$((BASE_PORT + 90 + i))
    need_ports "$cp"
    mkdir -p "$cdir/data"
    # Mimir takes a few seconds to join its own ring: remote write retries until then
    prometheus_config "$live_cluster" "" "http://127.0.0.1:$TENANT_PROXY_PORT/api/v1/receive" \
      "http://127.0.0.1:$MIMIR_PROXY_PORT/api/v1/push" >"$cdir/prometheus.yml"
    start "prometheus-$live_cluster" prometheus --config.file="$cdir/prometheus.yml" \
      --storage.tsdb.path="$cdir/data" --storage.tsdb.retention.time=1d \
      --web.listen-address="127.0.0.1:$cp"
    live_from=$(date +%s)
    log "live scrapes started at $live_from (every ${LIVE_INTERVAL}s; clusters $(echo $clusters) and $live_cluster)"
  fi

  # 2. S3, while the history is built (cold) or linked (warm).
  mkdir -p "$STACK_DIR/run/s3"
  if [ -x "$MINIO_BIN" ]; then
    start s3 env MINIO_ROOT_USER=$ACCESS_KEY MINIO_ROOT_PASSWORD=$SECRET_KEY \
      MINIO_BROWSER=off MINIO_UPDATE=off "$MINIO_BIN" server --quiet \
      --address "127.0.0.1:$S3_PORT" "$STACK_DIR/run/s3"
  else
    start s3 "$BIN_DIR/s3s-fs-$S3SFS_VERSION" --host 127.0.0.1 --port "$S3_PORT" \
      --access-key $ACCESS_KEY --secret-key $SECRET_KEY "$STACK_DIR/run/s3"
  fi

  # 3. The backfilled history. On a cold cache the Prometheus are already scraping: their
  # blocks are moved in once built (Prometheus reloads its blocks every minute).
  if [ ! -f "$data/truth.json" ]; then
    build_data "$data" "${GEN_ARGS[@]}"
    for line in "${prom_dirs[@]}"; do
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

  # 4. Object storage history, its store gateways, the Queriers.
  local tls="" query_labels=(--query.replica-label=replica)
  if [ "$TOPOLOGY" = full ]; then
    local store_only compacted
    store_only=$(cached_data "${STORE_ONLY_ARGS[@]}")
    compacted=$(compacted_bucket "$data" "$store_only")
    tls=$(tls_files)

    python3 "$REPO_ROOT/integration/tools/s3_admin.py" mkbucket $THANOS_BUCKET
    s3_bucket_config $THANOS_BUCKET >"$STACK_DIR/run/bucket.yml"
    log "uploading the blocks to s3://$THANOS_BUCKET"
    upload_data "$STACK_DIR/run/bucket.yml" "$store_only" "${STORE_ONLY_ARGS[@]}"
    upload_data "$STACK_DIR/run/bucket.yml" "$data" "${GEN_ARGS[@]}"
    # Test-friendly syncs: new blocks are seen within 5 s (the default is 15 m).
    start store "$THANOS_BIN" store --objstore.config-file="$STACK_DIR/run/bucket.yml" \
      --data-dir="$STACK_DIR/run/store" --grpc-address="127.0.0.1:$STORE_GRPC_PORT" \
      --http-address="127.0.0.1:$STORE_HTTP_PORT" --sync-block-duration=5s \
      --ignore-deletion-marks-delay=0s
    # The compacted bucket is read-only to the store gateway: links into the run directory.
    cp -al "$compacted" "$STACK_DIR/run/compacted-bucket"
    fs_bucket_config "$STACK_DIR/run/compacted-bucket" >"$STACK_DIR/run/compacted-bucket.yml"
    start compacted-store "$THANOS_BIN" store --objstore.config-file="$STACK_DIR/run/compacted-bucket.yml" \
      --data-dir="$STACK_DIR/run/compacted-store" --grpc-address="127.0.0.1:$CSTORE_GRPC_PORT" \
      --http-address="127.0.0.1:$CSTORE_HTTP_PORT" --sync-block-duration=5s \
      --ignore-deletion-marks-delay=0s
    endpoints+=("--endpoint=127.0.0.1:$STORE_GRPC_PORT" "--endpoint=127.0.0.1:$RECV_GRPC_PORT")
    query_labels+=(--query.replica-label=receive_replica)
    start compacted-query "$THANOS_BIN" query --grpc-address="127.0.0.1:$CQUERY_GRPC_PORT" \
      --http-address="127.0.0.1:$CQUERY_HTTP_PORT" "${query_labels[@]}" \
      --endpoint="127.0.0.1:$CSTORE_GRPC_PORT"
    start tls-query "$THANOS_BIN" query --grpc-address="127.0.0.1:$TLS_GRPC_PORT" \
      --http-address="127.0.0.1:$TLS_HTTP_PORT" "${query_labels[@]}" "${endpoints[@]}" \
      --grpc-server-tls-cert="$tls/server.pem" --grpc-server-tls-key="$tls/server.key" \
      --grpc-server-tls-client-ca="$tls/ca.pem"
  fi
  start query "$THANOS_BIN" query --grpc-address="127.0.0.1:$QUERY_GRPC_PORT" \
    --http-address="127.0.0.1:$QUERY_HTTP_PORT" "${query_labels[@]}" "${endpoints[@]}"

  wait_for "thanos query to see all $ninstances stores" 120 all_stores_answer "$ninstances"
  if [ "$TOPOLOGY" = full ]; then
    wait_for "thanos query to list the sidecars, the store gateway and the receiver" 60 \
      stores_listed "$QUERY_HTTP_PORT" "$ninstances"
    wait_for "the store gateway to serve the day only it has" 60 \
      instances_answer "$QUERY_HTTP_PORT" $((STORE_ONLY_FROM + 43200)) "$ninstances"
    wait_for "the compacted store to serve every cluster" 60 \
      instances_answer "$CQUERY_HTTP_PORT" "$DATA_TO" "$(echo "$clusters" | wc -l)"
    wait_for "the TLS Querier to see the stores" 60 stores_listed "$TLS_HTTP_PORT" "$ninstances"
    wait_for "the receiver to have cluster $live_cluster's live series under its tenant" 60 \
      live_answers "$QUERY_HTTP_PORT" "cluster=\"$live_cluster\", tenant_id=\"$RECEIVE_TENANT\""
    wait_for "mimir to have cluster $live_cluster's live series under its tenant" 120 \
      mimir_answers "$live_cluster"
  fi

  {
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
export DATA_DIR=$data
export STACK_DIR=$STACK_DIR
export STACK_TOPOLOGY=$TOPOLOGY
export SIDECARS="${sidecars[*]}"
export PROMETHEUS_URLS="${prometheus_urls[*]}"
EOF
    if [ "$TOPOLOGY" = full ]; then
      cat <<EOF
export THANOS_STORE_GRPC=http://127.0.0.1:$STORE_GRPC_PORT
export THANOS_RECEIVE_GRPC=http://127.0.0.1:$RECV_GRPC_PORT
export THANOS_COMPACT_STORE_GRPC=http://127.0.0.1:$CSTORE_GRPC_PORT
export THANOS_COMPACT_GRPC=http://127.0.0.1:$CQUERY_GRPC_PORT
export THANOS_COMPACT_HTTP=http://127.0.0.1:$CQUERY_HTTP_PORT
export THANOS_TLS_GRPC=https://127.0.0.1:$TLS_GRPC_PORT
export THANOS_TLS_HTTP=http://127.0.0.1:$TLS_HTTP_PORT
export TLS_CA_FILE=$tls/ca.pem
export TLS_CERT_FILE=$tls/client.pem
export TLS_KEY_FILE=$tls/client.key
export TLS_OTHER_CA_FILE=$tls/other-ca.pem
export STORE_ONLY_FROM=$STORE_ONLY_FROM
export STORE_ONLY_TO=$DATA_FROM
export LIVE_FROM=$live_from
export LIVE_INTERVAL=$LIVE_INTERVAL
export LIVE_CLUSTERS="$(echo $clusters) $live_cluster"
export RECEIVE_CLUSTER=$live_cluster
export RECEIVE_TENANT=$RECEIVE_TENANT
export MIMIR_HTTP=http://127.0.0.1:$MIMIR_HTTP_PORT
export MIMIR_TENANT=$MIMIR_TENANT
export PUSHGATEWAY_URL=http://127.0.0.1:$PUSHGATEWAY_PORT
export PUSH_PROMETHEUS_URL=http://127.0.0.1:$PUSH_PROMETHEUS_PORT
EOF
    fi
  } >"$STACK_DIR/env"
  log "stack up in $((SECONDS - started))s ($TOPOLOGY): $ninstances prometheus + sidecars, thanos query, s3$(
    [ "$TOPOLOGY" = full ] && echo ", live scrapes, receive, mimir, store gateways, compacted store, TLS query"
  ); environment in $STACK_DIR/env"
  cat "$STACK_DIR/env"
}

main "$@"

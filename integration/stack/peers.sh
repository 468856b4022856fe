# shellcheck shell=bash
# Starting the stack's peers: processes in the background with their pids recorded for down.sh,
# their configurations rendered from integration/stack/config/, and one function per peer.
# Sourced by up.sh, after its port and credential settings.

STACK_CONFIG=$REPO_ROOT/integration/stack/config

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
  # the command too, for restart.sh
  printf '%q ' "$@" >"$STACK_DIR/pids/$name.cmd"
  nohup "$@" >"$STACK_DIR/logs/$name.log" 2>&1 &
  # pid and start time (field 22 of /proc/PID/stat): down.sh signals only that very process
  echo "$! $(proc_start_time $!)" >"$STACK_DIR/pids/$name.pid"
}

# A template of integration/stack/config/ with each ${NAME} replaced by the value given as
# NAME=value; a name left without a value is an error.
render() { # template NAME=value...
  python3 - "$STACK_CONFIG/$1" "${@:2}" <<'PY'
import string, sys
values = dict(a.split("=", 1) for a in sys.argv[2:])
sys.stdout.write(string.Template(open(sys.argv[1]).read()).substitute(values))
PY
}

# ---- configurations ---------------------------------------------------------------------------

# A Prometheus' configuration: its external labels; in the full topology its scrapes of the
# live target, and its remote writes, each given as url,header,tenant (Debian's Prometheus 2.42
# does not send the header: a proxy in front of the receiver sets it, tools/tenant_proxy.py).
prometheus_config() { # cluster replica (empty: none) [url,header,tenant]...
  local cluster=$1 replica=$2 labels="cluster: $1" rw
  shift 2
  [ -n "$replica" ] && labels="$labels, replica: $replica"
  render prometheus.yml EXTERNAL_LABELS="$labels"
  [ "$TOPOLOGY" = full ] || return 0
  render scrape.yml CLUSTER="$cluster" INTERVAL="$LIVE_INTERVAL" TARGET_PORT="$TARGET_PORT"
  [ $# -gt 0 ] && echo "remote_write:"
  for rw in "$@"; do
    IFS=, read -r url header tenant <<<"$rw"
    render remote-write.yml URL="$url" HEADER="$header" TENANT="$tenant"
  done
}

s3_bucket_config() { # bucket
  render bucket-s3.yml BUCKET="$1" S3_PORT="$S3_PORT" ACCESS_KEY="$ACCESS_KEY" SECRET_KEY="$SECRET_KEY"
}

fs_bucket_config() { # directory
  render bucket-fs.yml DIR="$1"
}

# ---- peers ------------------------------------------------------------------------------------

# A Prometheus on its port with its configuration, ready before this returns (a sidecar that
# finds its Prometheus not yet listening retries only every 30 s).
start_prometheus() { # name port dir retention config-arguments...
  local name=$1 port=$2 dir=$3 retention=$4
  shift 4
  need_ports "$port"
  mkdir -p "$dir/data"
  prometheus_config "$@" >"$dir/prometheus.yml"
  start "prometheus-$name" prometheus --config.file="$dir/prometheus.yml" \
    --storage.tsdb.path="$dir/data" --storage.tsdb.retention.time="$retention" \
    --web.listen-address="127.0.0.1:$port"
}

start_sidecar() { # name prometheus-port data-dir grpc-port http-port
  need_ports "$4" "$5"
  start "sidecar-$1" "$THANOS_BIN" sidecar --prometheus.url="http://127.0.0.1:$2" \
    --tsdb.path="$3" --grpc-address="127.0.0.1:$4" --http-address="127.0.0.1:$5"
}

# A single-node Thanos Receive. Its Cap'n Proto replication server listens on 0.0.0.0:19391
# unless told: two stacks (or two receivers) on one machine would collide there.
start_receive() { # name dir grpc-port http-port write-port capnp-port
  mkdir -p "$2"
  start "$1" "$THANOS_BIN" receive --tsdb.path="$2" \
    --grpc-address="127.0.0.1:$3" --http-address="127.0.0.1:$4" \
    --remote-write.address="127.0.0.1:$5" --label='receive_replica="0"' \
    --receive.capnproto-address="127.0.0.1:$6" \
    --tsdb.retention=1d
}

start_tenant_proxy() { # name port tenant upstream [header]
  start "$1" python3 "$REPO_ROOT/integration/tools/tenant_proxy.py" \
    --port "$2" --tenant "$3" --upstream "$4" ${5:+--header "$5"}
}

start_mimir() { # dir
  mkdir -p "$1"
  render mimir.yml DIR="$1" HTTP_PORT="$MIMIR_HTTP_PORT" GRPC_PORT="$MIMIR_GRPC_PORT" \
    MEMBERLIST_PORT="$MIMIR_MEMBERLIST_PORT" >"$1.yml"
  start mimir "$MIMIR_BIN" -config.file="$1.yml" -target=all -usage-stats.enabled=false
}

# The run metrics' path: exporter -> Pushgateway -> Prometheus (honor_labels keeps the pushed
# grouping labels), read back through PromQL by the tests.
start_pushgateway() { # dir of its Prometheus
  start pushgateway prometheus-pushgateway --web.listen-address="127.0.0.1:$PUSHGATEWAY_PORT"
  mkdir -p "$1/data"
  render push-prometheus.yml PUSHGATEWAY_PORT="$PUSHGATEWAY_PORT" >"$1/prometheus.yml"
  start prometheus-push prometheus --config.file="$1/prometheus.yml" \
    --storage.tsdb.path="$1/data" --storage.tsdb.retention.time=1d \
    --web.listen-address="127.0.0.1:$PUSH_PROMETHEUS_PORT"
}

start_s3() { # dir
  mkdir -p "$1"
  if [ -x "$MINIO_BIN" ]; then
    start s3 env MINIO_ROOT_USER=$ACCESS_KEY MINIO_ROOT_PASSWORD=$SECRET_KEY \
      MINIO_BROWSER=off MINIO_UPDATE=off "$MINIO_BIN" server --quiet \
      --address "127.0.0.1:$S3_PORT" "$1"
  else
    start s3 "$BIN_DIR/s3s-fs-$S3SFS_VERSION" --host 127.0.0.1 --port "$S3_PORT" \
      --access-key $ACCESS_KEY --secret-key $SECRET_KEY "$1"
  fi
}

# A store gateway with test-friendly syncs: new blocks are seen within 5 s (the default is 15 m).
start_store_gateway() { # name bucket-config data-dir grpc-port http-port
  start "$1" "$THANOS_BIN" store --objstore.config-file="$2" \
    --data-dir="$3" --grpc-address="127.0.0.1:$4" \
    --http-address="127.0.0.1:$5" --sync-block-duration=5s \
    --ignore-deletion-marks-delay=0s
}

start_query() { # name grpc-port http-port arguments...
  local name=$1 grpc=$2 http=$3
  shift 3
  start "$name" "$THANOS_BIN" query --grpc-address="127.0.0.1:$grpc" \
    --http-address="127.0.0.1:$http" "$@"
}

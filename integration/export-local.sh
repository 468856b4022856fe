#!/usr/bin/env bash
# The main job end to end on a local stack: starts what the job needs and nothing more
# (integration/stack/up.sh with STACK_TOPOLOGY=minimal: Prometheus with the generated history,
# Thanos sidecars and Query, an S3 server; no live scrapes, store gateways or Mimir, whose
# build alone takes minutes), builds the exporter, and runs it as the CronJob does
# (`storeapi-exporter`, i.e. `run`) with the clock set just after the generated data, so it
# backfills every window over the StoreAPI into the S3 bucket (Finout's layout:
# <S3_PREFIX>/<cluster>/end=…/day=…/metric=…/…json.gz), saves its state and applies retention.
# Run it again: nothing is left to do. Extra arguments go to the exporter, e.g. `--source http`.
# The stack is its own (target/stack-local, ports from 18000), apart from the tests' stack.
export STACK_TOPOLOGY=minimal
export STACK_DIR=${STACK_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/stack-local}
export STACK_BASE_PORT=${STACK_BASE_PORT:-18000}
source "$(dirname "${BASH_SOURCE[0]}")/stack/lib.sh"
cd "$REPO_ROOT"
bash integration/stack/up.sh >/dev/null
# shellcheck disable=SC1091
source "$STACK_DIR/env"
cargo build --release --locked
prefix=${S3_PREFIX:-k8s/prometheus}
STORE_ENDPOINT=$THANOS_GRPC PROMETHEUS_URL=$THANOS_HTTP S3_PREFIX=$prefix CLUSTER_NAME=local \
  EXPORTER_NOW=$((DATA_TO + 600)) BACKFILL_DAYS=$(((DATA_TO - DATA_FROM) / 3600))h RETENTION_DAYS=0 \
  target/release/storeapi-exporter "$@"
count=$(python3 integration/tools/s3_admin.py ls "$S3_BUCKET" "$prefix/" | grep -c '\.json\.gz$' || true)
log "$count files in s3://$S3_BUCKET/$prefix/ at $S3_ENDPOINT; the state is $prefix/local/storeapi-exporter-state.json"
log "read one: python3 integration/tools/s3_admin.py get $S3_BUCKET KEY | gunzip; stop the stack with STACK_DIR=target/stack-local integration/stack/down.sh"

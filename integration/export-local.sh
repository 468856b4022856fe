#!/usr/bin/env bash
# The main job end to end on the local stack: starts the stack (integration/up.sh), builds the
# exporter, and exports every window of the generated data over the StoreAPI into
# target/local-export/ (Finout's layout: <S3_PREFIX>/<cluster>/end=…/day=…/metric=…/…json.gz).
# Extra arguments go to the exporter, e.g. `--source http` for the HTTP path.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
bash integration/up.sh >/dev/null
# shellcheck disable=SC1091
source "$STACK_DIR/env"
cargo build --release --locked
out=${OUTPUT_DIR:-$REPO_ROOT/target/local-export}
STORE_ENDPOINT=$THANOS_GRPC PROMETHEUS_URL=$THANOS_HTTP S3_PREFIX=k8s/prometheus CLUSTER_NAME=local \
  target/release/storeapi-exporter export --from "$DATA_FROM" --to "$DATA_TO" --output-dir "$out" "$@"
log "files written under $out ($(find "$out" -name '*.json.gz' | wc -l) in total); stop the stack with integration/down.sh"

# shellcheck shell=bash
# The stack's data: the generated history, backfilled once per parameter set and cached
# (integration/data/gen_data.py, promtool), linked into each Prometheus, uploaded to object
# storage as a sidecar's shipper would, and compacted once by `thanos compact`. Sourced by up.sh.

data_args() { # start span (days, or hours with an h suffix): gen_data.py's arguments for that range
  local span="--days $2"
  [[ $2 == *h ]] && span="--hours ${2%h}"
  echo $span --interval "${DATA_INTERVAL:-30}" --nodes "${DATA_NODES:-3}" \
    --pods "${DATA_PODS:-16}" --batch-per-hour "${DATA_BATCH:-2}" \
    --clusters "${DATA_CLUSTERS:-2}" --seed "${DATA_SEED:-1}" --start "$1" \
    --slice-hours "${DATA_SLICE_HOURS:-24}"
}

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


# The benchmarks' data sets, one definition for the four scripts (sourced by bench.sh,
# scale.sh, steady.sh and instructions.sh), so every figure in docs/benchmarks.md and the README comes from the
# same data and each set is generated and backfilled once (cached by its parameters by
# integration/stack/up.sh). The 22k and 110k sets span 32 hours: a day of windows, the
# lookback and rate range before it, the steady-state bench's batch delay before it and its
# settle delay after it.
#
#   22k  2 clusters (a an HA pair), 40 nodes and 680 pods each, 30 s scrapes, 32 h
#   110k 2 clusters (a an HA pair), 200 nodes and 3,400 pods each, 120 s scrapes, 32 h
#   1m   20 clusters (a an HA pair), 100 nodes and 3,300 pods each, 120 s scrapes, 2 h: one
#        Prometheus and sidecar per cluster, as each Kubernetes cluster runs its own, so the
#        Querier fans out to 21 stores and can skip the stores of other clusters
#
# DATA_SLICE_HOURS bounds the OpenMetrics text on disk while a slice is backfilled.

data_set() { # name: exports the DATA_* parameters of a set
  unset DATA_DAYS DATA_BATCH
  case $1 in
  22k) export DATA_HOURS=32 DATA_INTERVAL=30 DATA_CLUSTERS=2 DATA_NODES=40 DATA_PODS=680 DATA_SLICE_HOURS=2 ;;
  110k) export DATA_HOURS=32 DATA_INTERVAL=120 DATA_CLUSTERS=2 DATA_NODES=200 DATA_PODS=3400 DATA_SLICE_HOURS=2 ;;
  1m) export DATA_HOURS=2 DATA_INTERVAL=120 DATA_CLUSTERS=20 DATA_NODES=100 DATA_PODS=3300 DATA_SLICE_HOURS=2 DATA_BATCH=4 ;;
  *) die "unknown data set $1 (22k, 110k, 1m)" ;;
  esac
}

# the release binary cargo builds (CARGO_TARGET_DIR=~/.cache/storeapi-exporter/image-target
# measures the very binary integration/image/build.sh puts in the image)
BIN=${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/storeapi-exporter

# Waits until the stack is idle. Prometheus plans its first compaction a minute after it
# starts: idle before that is not idle.
settle() { # what
  sleep 90
  wait_until_idle "$1"
}

# The machine's speed varies from day to day, and within a day, by more than the figures'
# differences: the user CPU seconds of a fixed CPython loop, taken on the idle machine before
# the measurements and written to DIR/speed, let figures of two runs be compared.
speed() { # DIR
  mkdir -p "$1"
  python3 -c 'import resource
s = 0
for i in range(20_000_000):
    s += i
print(f"{resource.getrusage(resource.RUSAGE_SELF).ru_utime:.2f}")' >"$1/speed"
  log "machine speed: a fixed CPython loop took $(cat "$1/speed") s of CPU (lower is faster)"
}

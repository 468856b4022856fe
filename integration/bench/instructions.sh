#!/usr/bin/env bash
# The exporter's instructions for one export, counted by valgrind's callgrind
# (`integration/bench/bench.sh instructions [BIN...]`). This machine's CPU time of one export
# varies by 10 % and more from run to run, more than most changes to the exporter gain; the
# instructions it executes vary by 0.05 %, so an A/B of two binaries shows a change of a
# percent. They count user code only (not the kernel's writes and reads, which `bench.sh`'s
# CPU times and profiles include) and weigh every instruction alike. Not part of CI.
#
# For each release binary given (default: target/release/storeapi-exporter, built here), one
# `export --source grpc` of BENCH_HOURS (24) hours from the middle of the BENCH_SET (22k) data
# against a stack of its own (as bench.sh starts it), under callgrind: the instructions of
# every thread of the exporter, and per point written; then whether every file each binary
# wrote is byte-identical to the first one's. Under callgrind an export takes about 50 times
# its usual time: 24 h of the 22k set, 8 minutes. The profiles stay in
# target/bench/instructions (`callgrind_annotate --inclusive=yes FILE` reads them).
# Settings (environment): BENCH_SET (22k), BENCH_HOURS (24), BENCH_BASE_PORT (29000),
# BENCH_STACK_DIR (target/stack-bench).
source "$(dirname "${BASH_SOURCE[0]}")/../stack/lib.sh"
cd "$REPO_ROOT"
# shellcheck source=integration/bench/sets.sh
source "$REPO_ROOT/integration/bench/sets.sh"

export STACK_BASE_PORT=${BENCH_BASE_PORT:-29000}
export STACK_DIR=${BENCH_STACK_DIR:-$REPO_ROOT/target/stack-bench}
export STACK_TOPOLOGY=minimal
data_set "${BENCH_SET:-22k}"
HOURS=${BENCH_HOURS:-24}
OUT=$REPO_ROOT/target/bench/instructions
apt_install valgrind

bins=("$@")
if [ ${#bins[@]} -eq 0 ]; then
  log "building the release binary"
  cargo build --release --locked --quiet
  bins=("$BIN")
fi
for b in "${bins[@]}"; do
  [ -x "$b" ] || die "$b is not an executable: give release binaries of storeapi-exporter"
done

trap 'bash "$REPO_ROOT/integration/stack/down.sh"' EXIT
bash integration/stack/up.sh >"$STACK_DIR.up.log" || die "the stack did not start: see $STACK_DIR.up.log"
# shellcheck disable=SC1091
source "$STACK_DIR/env"
log "waiting for the stack to settle (Prometheus compacts the backfilled blocks)"
settle "the stack"

rm -rf "$OUT"
mkdir -p "$OUT"
mid=$((DATA_FROM + (DATA_TO - DATA_FROM) / 2))
from=$((mid - HOURS * 1800))
from=$((from - from % 3600))
to=$((from + HOURS * 3600))
for k in "${!bins[@]}"; do
  b=${bins[$k]}
  log "counting the instructions of $b over ${HOURS} h (about $((HOURS * 20)) s)"
  # callgrind runs the exporter some 50 times slower: a day's request outlives the call's
  # default deadline, which the Querier enforces, and a window asked again counts twice
  valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$k.out" \
    "$b" --store "$THANOS_GRPC" --timeout 30m --idle-timeout 30m \
    export --source grpc --from "$from" --to "$to" \
    --output-dir "$OUT/export-$k" --s3-prefix k8s/prometheus --cluster-name bench \
    --log-format json >/dev/null 2>"$OUT/export-$k.log" ||
    die "the export under callgrind failed: see $OUT/export-$k.log"
  if grep -q '"window failed, retrying"' "$OUT/export-$k.log"; then
    die "the export under callgrind asked a window again, so its count is no measure: see $OUT/export-$k.log"
  fi
done

# the instructions, the points written (the first binary's files) and whether the files agree
python3 - "$OUT" "${bins[@]}" <<'EOF'
import gzip, hashlib, json, pathlib, re, sys

out, bins = pathlib.Path(sys.argv[1]), sys.argv[2:]

def files(k):
    root = out / f"export-{k}"
    return {p.relative_to(root): hashlib.md5(p.read_bytes()).hexdigest()
            for p in root.rglob("*.json.gz")}

points = sum(len(s["values"])
             for p in (out / "export-0").rglob("*.json.gz")
             for s in json.loads(gzip.decompress(p.read_bytes()))["data"]["result"])
first = files(0)
print(f"{points:,} points written, {len(first)} files")
base, differ = None, False
for k, b in enumerate(bins):
    log = (out / f"export-{k}.log").read_text(errors="replace")
    n = int(re.search(r"Collected : (\d+)", log).group(1))
    base = base or n
    same = files(k) == first
    differ |= not same
    print(f"{b}: {n:,} instructions, {n / points:,.0f} a point ({n / base - 1:+.1%}); files "
          + ("byte-identical to the first's" if same else "NOT identical to the first's"))
# a binary whose files differ is no A/B of the same work: the run fails
sys.exit(1 if differ else 0)
EOF

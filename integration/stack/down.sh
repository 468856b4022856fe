#!/usr/bin/env bash
# Stops exactly the processes integration/stack/up.sh started (by their recorded pids) and removes
# their run directories. The generated data and the built peers stay cached.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ -d "$STACK_DIR/pids" ] || exit 0
pids=()
for f in "$STACK_DIR"/pids/*.pid; do
  [ -e "$f" ] || continue
  read -r pid started <"$f"
  # Only signal the very process up.sh started, never a recycled pid.
  if [ -n "$started" ] && [ "$(proc_start_time "$pid")" = "$started" ]; then
    kill "$pid" 2>/dev/null && pids+=("$pid")
  fi
  rm -f "$f"
done
for pid in "${pids[@]}"; do
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
done
rm -rf "$STACK_DIR/run" "$STACK_DIR/env"
log "stack down (${#pids[@]} processes stopped)"

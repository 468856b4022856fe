#!/usr/bin/env bash
# Runs every test of the project, as CI does (.ci/run calls this):
#   formatting and lints, unit tests, then the end-to-end tests against the integration stack
#   (integration/stack/up.sh), then the runtime image built and run against the same stack
#   (integration/image/check.sh). The stack starts first, in the background, so that its live
#   scrapes accumulate data while the lints and unit tests run. A stack this script started is
#   stopped on exit, pass or fail; a stack that was already running is left running.
source "$(dirname "${BASH_SOURCE[0]}")/stack/lib.sh"
cd "$REPO_ROOT"

command -v cargo >/dev/null || die "cargo is not installed: install Rust >= 1.94.1 (rustup)"
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    log "installing the $component component"
    rustup component add "$component"
  fi
done

started=$SECONDS
own_stack=0 stack_pid=""
stop_stack() {
  # a failed lint may come while up.sh is still starting processes: stop it first
  if [ -n "$stack_pid" ]; then
    kill "$stack_pid" 2>/dev/null || true
    wait "$stack_pid" 2>/dev/null || true
  fi
  bash integration/stack/down.sh
}
if ! bash integration/stack/up.sh --check >/dev/null 2>&1; then
  own_stack=1
  trap stop_stack EXIT
fi
mkdir -p target
log "starting the integration stack in the background (log: target/stack-up.log)"
bash integration/stack/up.sh >target/stack-up.log 2>&1 &
stack_pid=$!

log "checking formatting and lints"
cargo fmt --all -- --check
cargo clippy --all-targets --all-features --locked -- -D warnings
bash deploy/check.sh

log "unit tests and the tests that need no stack"
cargo test --locked --lib --bins --test cli

log "waiting for the integration stack"
wait "$stack_pid" || { tail -n 30 target/stack-up.log >&2; die "the stack did not start: see target/stack-up.log"; }
stack_pid=""

log "end-to-end tests against the stack"
cargo test --locked --features e2e --test integration

log "the runtime image: built, inspected and run against the stack"
bash integration/image/check.sh
[ $own_stack -eq 1 ] && log "stopping the stack this run started"
log "all tests passed in $((SECONDS - started))s"

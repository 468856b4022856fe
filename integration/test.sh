#!/usr/bin/env bash
# Runs every test of the project, as CI does (.ci/run calls this):
#   formatting and lints, unit tests, then the integration stack (integration/stack/up.sh) and the
#   end-to-end tests against it. A stack this script started is stopped on exit, pass or fail;
#   a stack that was already running is left running.
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
log "checking formatting and lints"
cargo fmt --all -- --check
cargo clippy --all-targets --all-features --locked -- -D warnings
bash deploy/check.sh

log "unit tests and the tests that need no stack"
cargo test --locked --lib --bins --test cli

own_stack=0
if ! bash integration/stack/up.sh --check >/dev/null 2>&1; then
  own_stack=1
  trap 'bash integration/stack/down.sh' EXIT
fi
bash integration/stack/up.sh >/dev/null

log "end-to-end tests against the stack"
cargo test --locked --features e2e --test integration
[ $own_stack -eq 1 ] && log "stopping the stack this run started"
log "all tests passed in $((SECONDS - started))s"

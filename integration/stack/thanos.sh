#!/usr/bin/env bash
# Runs the pinned Thanos binary that install.sh built, with the given arguments: the
# end-to-end tests start a Thanos Query of their own with it (tests/integration/limits.rs).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ -x "$THANOS_BIN" ] || die "thanos $THANOS_VERSION is not installed: run integration/stack/install.sh"
exec "$THANOS_BIN" "$@"

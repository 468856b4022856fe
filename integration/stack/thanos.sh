#!/usr/bin/env bash
# Runs a Thanos binary that install.sh built, with the given arguments: the pinned release, or
# THANOS_RELEASE (one of THANOS_OLDER). The end-to-end tests start Queriers and sidecars of
# their own with it (tests/integration/limits.rs, tests/integration/releases.rs).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
release=${THANOS_RELEASE:-$THANOS_VERSION}
bin=$(thanos_bin "$release")
[ -x "$bin" ] || die "thanos $release is not installed: run integration/stack/install.sh"
exec "$bin" "$@"

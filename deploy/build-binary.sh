#!/usr/bin/env bash
# Builds the release binary for a platform (linux/amd64 or linux/arm64) on whatever machine runs
# it, and copies it to OUT. Native: plain `cargo build --release`. Another architecture: a cross
# build (`--target`), with Debian's cross gcc for aws-lc-sys' C and the link, so that an arm64
# image is compiled at native speed instead of under emulation. Either way the binary's ELF
# machine must be the platform's, or this fails: nothing else would notice an amd64 binary in an
# arm64 image before a pod on a Graviton node failed with "exec format error".
#
# deploy/Dockerfile's build stage runs it for each TARGETPLATFORM, and CI's image build
# (integration/image/build.sh) for the machine's own platform, so both build the binary one
# way. `--setup PLATFORM` only installs what a cross build needs (the Dockerfile's layer of its
# own, so a source change does not fetch the toolchain again). `--check PLATFORM FILE` only
# checks that FILE is a binary for the platform (integration/image/check.sh, on the image's).
# Usage: deploy/build-binary.sh [--setup | --check] PLATFORM [OUT | FILE]. CARGO_TARGET_DIR is
# honoured.
set -euo pipefail
usage="usage: build-binary.sh [--setup | --check] PLATFORM [OUT | FILE]"
mode=build
case "${1:-}" in
  --setup | --check)
    mode=${1#--}
    shift
    ;;
esac
platform=${1:?$usage}
out=${2:-}
[ "$mode" = setup ] || [ -n "$out" ] || { echo "$usage" >&2; exit 1; }
cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() { echo "error: $*" >&2; exit 1; }

# The platform's Rust target, Debian architecture and ELF e_machine.
case "$platform" in
  linux/amd64) triple=x86_64-unknown-linux-gnu arch=amd64 gnu=x86_64-linux-gnu machine=62 ;;
  linux/arm64 | linux/arm64/v8) triple=aarch64-unknown-linux-gnu arch=arm64 gnu=aarch64-linux-gnu machine=183 ;;
  *) die "unsupported platform $platform: linux/amd64 and linux/arm64 are built" ;;
esac

# e_machine: the 16-bit little-endian field at offset 18 of the ELF header.
check_machine() { # binary
  local got
  got=$(od -An -tu2 -j18 -N2 "$1" | tr -d ' ')
  [ "$got" = "$machine" ] || die "$1 has ELF machine $got, $platform needs $machine"
}
if [ "$mode" = check ]; then
  check_machine "$out"
  exit 0
fi

host=$(rustc -vV | sed -n 's/^host: //p')
target_dir=${CARGO_TARGET_DIR:-target}

cross_toolchain() {
  if ! command -v "$gnu-gcc" >/dev/null; then
    command -v apt-get >/dev/null || die "$gnu-gcc is not installed (the C cross compiler for $platform)"
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "gcc-$gnu" "libc6-dev-$arch-cross" >/dev/null
  fi
  rustup target list --installed | grep -qx "$triple" || rustup target add "$triple"
}

if [ "$mode" = setup ]; then
  [ "$host" = "$triple" ] || cross_toolchain
  exit 0
fi

# jemalloc (the allocator, src/main.rs) takes its page size from the build: arm64 kernels run
# with 4 KiB or 64 KiB pages, and a 4 KiB jemalloc aborts on a 64 KiB kernel. 64 KiB runs on both.
[ "$arch" = arm64 ] && export JEMALLOC_SYS_WITH_LG_PAGE=16

if [ "$host" = "$triple" ]; then
  cargo build --release --locked --quiet
  binary=$target_dir/release/storeapi-exporter
else
  cross_toolchain
  upper=$(tr 'a-z-' 'A-Z_' <<<"$triple")
  lower=${triple//-/_}
  export "CARGO_TARGET_${upper}_LINKER=$gnu-gcc" "CC_${lower}=$gnu-gcc" "AR_${lower}=$gnu-ar"
  cargo build --release --locked --quiet --target "$triple"
  binary=$target_dir/$triple/release/storeapi-exporter
fi

check_machine "$binary"
install -D -m 0755 "$binary" "$out"
echo "built $out for $platform ($triple)"

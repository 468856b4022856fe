#!/usr/bin/env bash
# Builds the runtime image from what this machine has, no registry image needed: the release
# binary built on the host (cargo build --release, glibc, the program the benchmarks measure)
# on a base assembled from Debian's packages (libc6, libgcc-s1, ca-certificates, tzdata,
# netbase; /etc/passwd with nonroot 65532; /tmp 1777) that has the layout of deploy/Dockerfile's
# gcr.io/distroless/cc-debian12:nonroot runtime, without the libraries this binary does not
# link (libssl, libstdc++, libgomp). integration/image/Containerfile, built with buildah.
#
# Leaves the image as localhost/storeapi-exporter:VERSION in containers-storage and its
# unpacked root in target/image/root (what integration/image/check.sh runs when containers
# cannot run here). The packages are cached by name and version under CACHE_DIR/image-debs, the
# release build in CACHE_DIR/image-target (IMAGE_CARGO_TARGET_DIR), so a warm build recompiles
# only this crate.
source "$(dirname "${BASH_SOURCE[0]}")/../stack/lib.sh"
cd "$REPO_ROOT"

IMAGE_PACKAGES=${IMAGE_PACKAGES:-libc6 libgcc-s1 ca-certificates tzdata netbase}
IMAGE_CARGO_TARGET_DIR=${IMAGE_CARGO_TARGET_DIR:-$CACHE_DIR/image-target}
OUT=target/image

for tool in buildah dpkg-deb apt-get; do
  command -v "$tool" >/dev/null || die "$tool is not installed: run integration/stack/install.sh (Debian: apt-get install buildah podman)"
done

# The platform's binary built as deploy/Dockerfile's build stage builds it (deploy/build-binary.sh),
# for this machine's architecture (the image runs here).
IMAGE_PLATFORM=${IMAGE_PLATFORM:-linux/$(dpkg --print-architecture)}
log "building the release binary for $IMAGE_PLATFORM (target dir $IMAGE_CARGO_TARGET_DIR)"
binary=$IMAGE_CARGO_TARGET_DIR/image/storeapi-exporter
CARGO_TARGET_DIR=$IMAGE_CARGO_TARGET_DIR bash deploy/build-binary.sh "$IMAGE_PLATFORM" "$binary" >&2
version=$("$binary" --version | awk '{print $2}')
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
IMAGE=${IMAGE:-localhost/storeapi-exporter:$version}

debs=$CACHE_DIR/image-debs
mkdir -p "$debs"
fetch_deb() { # package: the cached .deb of its candidate version, downloaded once
  local pkg=$1 version file
  version=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    log "apt has no candidate for $pkg: updating the package lists"
    apt-get update -qq >&2 || die "apt-get update failed: the image's base needs Debian's $pkg package"
    version=$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')
  fi
  file=$(ls "$debs/${pkg}_${version//:/%3a}_"*.deb 2>/dev/null | head -n 1 || true)
  if [ -z "$file" ]; then
    (cd "$debs" && apt-get download -qq "$pkg=$version" >&2 2>/dev/null) ||
      { apt-get update -qq >&2 && (cd "$debs" && apt-get download -qq "$pkg=$version" >&2); } ||
      die "could not download Debian's $pkg $version: check the apt sources (apt-get update)"
    file=$(ls "$debs/${pkg}_${version//:/%3a}_"*.deb | head -n 1)
  fi
  echo "$file"
}

context=$OUT/context
rm -rf "$context"
mkdir -p "$context/rootfs"
root=$context/rootfs
for pkg in $IMAGE_PACKAGES; do
  dpkg-deb -x "$(fetch_deb "$pkg")" "$root"
done
rm -rf "$root"/usr/share/{doc,man,info,lintian,locale} "$root"/usr/share/ca-certificates/.??*
# What update-ca-certificates writes (it is a shell script; the image runs none): every
# certificate of the package in one bundle, where rustls-native-certs looks first.
mkdir -p "$root/etc/ssl/certs"
find "$root/usr/share/ca-certificates" -name '*.crt' | LC_ALL=C sort | xargs cat >"$root/etc/ssl/certs/ca-certificates.crt"
[ -s "$root/etc/ssl/certs/ca-certificates.crt" ] || die "no CA certificates in Debian's ca-certificates package"
cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
nonroot:x:65532:
GROUP
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
mkdir -p "$root/tmp" "$root/home/nonroot" "$root/root"
chmod 1777 "$root/tmp"
cp "$binary" "$context/storeapi-exporter"

log "building $IMAGE with buildah"
buildah build --quiet --layers=false --platform "$IMAGE_PLATFORM" -f integration/image/Containerfile -t "$IMAGE" \
  --build-arg VERSION="$version" --build-arg REVISION="$revision" "$context" >/dev/null

# The image's own root, as containers-storage holds it (not the context it was built from).
rm -rf "$OUT/root"
container=$(buildah from --quiet "$IMAGE")
mount=$(buildah mount "$container")
cp -a "$mount" "$OUT/root"
buildah umount "$container" >/dev/null
buildah rm "$container" >/dev/null
printf '%s\n' "$IMAGE" >"$OUT/name"
printf '%s\n' "$IMAGE_PLATFORM" >"$OUT/platform"
log "built $IMAGE ($(du -sh "$OUT/root" | cut -f1) unpacked in $OUT/root)"

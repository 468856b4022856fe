#!/usr/bin/env bash
# Builds the runtime image (integration/image/build.sh) and checks it is what users deploy:
#   - its config: its platform that of the binary's ELF machine, user 65532:65532, the exporter
#     as entrypoint and no CMD, the OCI labels (version = the binary's, revision = this
#     commit), no shell anywhere in its root, a CA bundle, tzdata and /etc/passwd with nonroot;
#   - it runs: the image's binary exports the last two hours of the stack's data read-only as
#     user 65532, exit 0, into one S3 prefix, the same binary on the host into another, and
#     every object must be byte-identical.
# Runs with `podman run --read-only --user 65532 --network host` where containers can run;
# where they cannot (IMAGE_RUN=chroot, or automatically when podman cannot start one: e.g.
# crun on a host with hybrid cgroups), the image's unpacked root is bind-mounted read-only in
# a private mount namespace with a tmpfs /tmp and the binary run in it by chroot as 65532.
# Needs a running stack (integration/stack/up.sh; STACK_DIR as there) and root for the chroot.
source "$(dirname "${BASH_SOURCE[0]}")/../stack/lib.sh"
cd "$REPO_ROOT"
[ -f "$STACK_DIR/env" ] || die "no stack in $STACK_DIR: start one with integration/stack/up.sh"
# shellcheck disable=SC1091
source "$STACK_DIR/env"

bash integration/image/build.sh
IMAGE=$(cat target/image/name)
root=target/image/root
binary=$root/usr/local/bin/storeapi-exporter
version=$("$binary" --version | awk '{print $2}')

log "checking the config of $IMAGE"
podman image inspect --format '{{json .Config}}' "$IMAGE" >target/image/config.json
podman image inspect --format '{{.Os}}/{{.Architecture}}' "$IMAGE" >target/image/platform.inspected
bash deploy/build-binary.sh --check "$(cat target/image/platform.inspected)" "$binary" ||
  die "the image's binary is not for the platform the image announces"
python3 - "$version" "$(git rev-parse HEAD)" target/image/config.json "$(cat target/image/platform)" \
  "$(cat target/image/platform.inspected)" <<'PY'
import json, sys
version, revision, path, platform, inspected = sys.argv[1:6]
config = json.load(open(path))
labels = config.get("Labels") or {}
problems = []
def expect(what, got, want):
    if got != want:
        problems.append(f"{what} is {got!r}, want {want!r}")
# The platform a node pulls by must be the one the binary runs on.
expect("platform", inspected, platform)
expect("User", config.get("User"), "65532:65532")
expect("Entrypoint", config.get("Entrypoint"), ["/usr/local/bin/storeapi-exporter"])
expect("Cmd", config.get("Cmd") or None, None)
expect("label version", labels.get("org.opencontainers.image.version"), version)
expect("label revision", labels.get("org.opencontainers.image.revision"), revision)
expect("label title", labels.get("org.opencontainers.image.title"), "storeapi-exporter")
if problems:
    sys.exit("the image's config is wrong: " + "; ".join(problems))
PY
shells=$(find "$root" \( -name sh -o -name bash -o -name dash -o -name busybox -o -name ash \) -print)
[ -z "$shells" ] || die "the image has a shell: $shells"
[ -s "$root/etc/ssl/certs/ca-certificates.crt" ] || die "the image has no CA bundle"
[ -e "$root/usr/share/zoneinfo/UTC" ] || die "the image has no tzdata"
grep -q '^nonroot:x:65532:65532:' "$root/etc/passwd" || die "the image's /etc/passwd has no nonroot 65532"
cmp -s "$binary" target/image/context/storeapi-exporter || die "the image's binary is not the one built"

# What both runs export: the stack's last two hours, every cluster, over the StoreAPI.
from=$((DATA_TO - 7200))
run_env=(STORE_ENDPOINT="$THANOS_GRPC" S3_ENDPOINT="$S3_ENDPOINT" S3_BUCKET="$S3_BUCKET"
  AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"
  AWS_REGION="$AWS_REGION" CLUSTER_NAME=image-check LOG_FORMAT=json)
args=(export --from "$from" --to "$DATA_TO")
check=image-check-$$
if [ "${IMAGE_RUN:-auto}" = auto ]; then
  if podman run --rm --read-only --user 65532 --network host "$IMAGE" --version >/dev/null 2>&1; then
    IMAGE_RUN=podman
  else
    IMAGE_RUN=chroot
    log "podman cannot run a container here ($(podman run --rm "$IMAGE" --version 2>&1 | tail -n 1)): running the image's root instead"
  fi
fi
in_image() { # S3 prefix: the image's binary, as a container would run it
  case "$IMAGE_RUN" in
    podman)
      local env_args=() e
      for e in "${run_env[@]}" S3_PREFIX="$1"; do env_args+=(-e "$e"); done
      podman run --rm --read-only --user 65532 --network host "${env_args[@]}" "$IMAGE" "${args[@]}"
      ;;
    chroot)
      local abs
      abs=$(cd "$root" && pwd)
      env -i "${run_env[@]}" S3_PREFIX="$1" unshare --mount --propagation private -- sh -c '
        mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" &&
          mount -t tmpfs -o mode=1777,size=512m tmpfs "$0/tmp" &&
          exec chroot --userspec=65532:65532 "$0" /usr/local/bin/storeapi-exporter "$@"' "$abs" "${args[@]}"
      ;;
    *) die "IMAGE_RUN is ${IMAGE_RUN}: use auto, podman or chroot" ;;
  esac
}
[ "$IMAGE_RUN" != chroot ] || [ "$(id -u)" -eq 0 ] ||
  die "running the image's root by chroot needs root: run as root, or where podman can run containers"
case "$IMAGE_RUN" in
  podman) log "running $IMAGE with podman run --read-only --user 65532 --network host" ;;
  chroot) log "running the image's root read-only as 65532 (chroot in a private mount namespace)" ;;
esac
in_image "$check/image" >target/image/run.log 2>&1 ||
  { tail -n 20 target/image/run.log >&2; die "the image's binary failed: see target/image/run.log"; }
env "${run_env[@]}" S3_PREFIX="$check/host" "$binary" "${args[@]}" >target/image/host.log 2>&1 ||
  { tail -n 20 target/image/host.log >&2; die "the host binary failed: see target/image/host.log"; }

s3() { python3 integration/tools/s3_admin.py "$@"; }
s3 ls "$S3_BUCKET" "$check/host/" | sed "s|^$check/host/||" | sort >target/image/host.keys
s3 ls "$S3_BUCKET" "$check/image/" | sed "s|^$check/image/||" | sort >target/image/image.keys
[ -s target/image/host.keys ] || die "the host binary wrote nothing under $check/host/"
diff -u target/image/host.keys target/image/image.keys >&2 ||
  die "the image's binary wrote other keys than the host binary (above)"
while read -r key; do
  s3 get "$S3_BUCKET" "$check/host/$key" >target/image/host.object || die "reading $check/host/$key failed"
  s3 get "$S3_BUCKET" "$check/image/$key" >target/image/image.object || die "reading $check/image/$key failed"
  [ -s target/image/host.object ] || die "s3://$S3_BUCKET/$check/host/$key is empty"
  cmp -s target/image/host.object target/image/image.object ||
    die "s3://$S3_BUCKET/$check/image/$key differs from the host binary's"
done <target/image/host.keys
log "the image ($IMAGE_RUN) wrote the same $(wc -l <target/image/host.keys) objects as the host binary, byte for byte"

#!/usr/bin/env bash
# Runs an S3 server of the kind up.sh runs (MinIO, else s3s-fs) on 127.0.0.1:PORT over DIR,
# with the credentials in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: the fault tests
# (tests/integration/faults/) start, freeze and kill servers of their own with it.
#   s3.sh PORT DIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
port=${1:?usage: s3.sh PORT DIR} dir=${2:?usage: s3.sh PORT DIR}
mkdir -p "$dir"
if [ -x "$MINIO_BIN" ] && [ "${S3_SERVER:-minio}" = minio ]; then
  MINIO_ROOT_USER=$AWS_ACCESS_KEY_ID MINIO_ROOT_PASSWORD=$AWS_SECRET_ACCESS_KEY \
    MINIO_BROWSER=off MINIO_UPDATE=off exec "$MINIO_BIN" server --quiet --address "127.0.0.1:$port" "$dir"
fi
s3sfs=$BIN_DIR/s3s-fs-$S3SFS_VERSION
[ -x "$s3sfs" ] || die "no S3 server installed: run integration/stack/install.sh"
exec "$s3sfs" --host 127.0.0.1 --port "$port" --access-key "$AWS_ACCESS_KEY_ID" \
  --secret-key "$AWS_SECRET_ACCESS_KEY" "$dir"

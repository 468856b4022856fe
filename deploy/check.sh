#!/usr/bin/env bash
# Renders deploy/base and every deploy/overlays/* with kustomize and validates the result with
# kubeconform -strict against the Kubernetes JSON schemas of the oldest and the newest
# Kubernetes we support; checks that the sharded overlay's JOB_COMPLETIONS and parallelism
# equal its completions, and that the IAM policies are JSON. Fails on the first invalid one.
#
# kustomize and kubeconform are built from their Go modules; the schemas come from the PyPI
# package kubernetes-validate, which bundles them per Kubernetes version (kubeconform's usual
# source is GitHub, which the machines here cannot reach). All three are cached by version
# under CACHE_DIR and skipped when present.
source "$(dirname "${BASH_SOURCE[0]}")/../integration/stack/lib.sh"
cd "$REPO_ROOT"

# v5.8.3 needs go >= 1.27.
KUSTOMIZE_VERSION=${KUSTOMIZE_VERSION:-v5.8.2}
KUBECONFORM_VERSION=${KUBECONFORM_VERSION:-v0.8.0}
K8S_SCHEMAS_PACKAGE_VERSION=${K8S_SCHEMAS_PACKAGE_VERSION:-1.37.0}
K8S_SCHEMAS_WHEEL_SHA256=${K8S_SCHEMAS_WHEEL_SHA256:-85136d018a27b50ec7fc049d902bfa5193f5976807e6c0f408e3ab6fe078cad9}
# 1.31: the first release with podFailurePolicy (and the Indexed Job fields we use) GA; 1.37:
# the newest in the pinned schema package. A field dropped or added in between fails one.
KUBERNETES_VERSIONS=${KUBERNETES_VERSIONS:-1.31.0 1.37.0}

KUSTOMIZE_BIN=$BIN_DIR/kustomize-$KUSTOMIZE_VERSION
KUBECONFORM_BIN=$BIN_DIR/kubeconform-$KUBECONFORM_VERSION
SCHEMA_DIR=$CACHE_DIR/k8s-schemas/kubernetes-validate-$K8S_SCHEMAS_PACKAGE_VERSION

go_install() { # package@version binary-name output
  local target=$1 name=$2 out=$3 tmp
  [ -x "$out" ] && return 0
  command -v go >/dev/null || die "go is not installed: install go >= 1.26 to build $target"
  mkdir -p "$BIN_DIR"
  tmp=$(mktemp -d "$CACHE_DIR/gobin.XXXXXX")
  log "building $target"
  (GOTOOLCHAIN=local GOBIN=$tmp CGO_ENABLED=0 go install -trimpath "$target" 2>&1 |
    grep -v '^go: downloading' >&2 || true)
  [ -x "$tmp/$name" ] || { rm -rf "$tmp"; die "go install $target failed"; }
  mv "$tmp/$name" "$out"
  rm -rf "$tmp"
}

# kubernetes-validate's schemas refer to their shared definitions by an absolute https $id
# (kubernetes.io/api/...), which kubeconform would try to download; rewritten here to the
# sibling file _definitions.json, which kubeconform then loads from disk.
install_schemas() {
  local missing=() v
  for v in $KUBERNETES_VERSIONS; do
    [ -s "$SCHEMA_DIR/v$v-local-strict/_definitions.json" ] || missing+=("$v")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v python3 >/dev/null || die "python3 is not installed (needed to fetch the Kubernetes schemas)"
  python3 -m pip --version >/dev/null 2>&1 || die "pip is not installed: apt-get install python3-pip"
  local tmp wheel
  tmp=$(mktemp -d "$CACHE_DIR/schemas.XXXXXX")
  log "fetching the Kubernetes ${missing[*]} schemas (kubernetes-validate $K8S_SCHEMAS_PACKAGE_VERSION from PyPI)"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --disable-pip-version-check \
    --no-input "kubernetes-validate==$K8S_SCHEMAS_PACKAGE_VERSION" -d "$tmp" >&2 ||
    { rm -rf "$tmp"; die "pip download kubernetes-validate==$K8S_SCHEMAS_PACKAGE_VERSION failed"; }
  wheel=$(ls "$tmp"/kubernetes_validate-*.whl)
  echo "$K8S_SCHEMAS_WHEEL_SHA256  $wheel" | sha256sum --check --quiet ||
    { rm -rf "$tmp"; die "kubernetes-validate wheel checksum mismatch"; }
  mkdir -p "$SCHEMA_DIR"
  python3 - "$wheel" "$SCHEMA_DIR" "${missing[@]}" <<'PY'
import json, os, sys, zipfile

wheel, out, versions = sys.argv[1], sys.argv[2], sys.argv[3:]
ABSOLUTE = "/api/_definitions.json#"

def relink(node):
    if isinstance(node, dict):
        node.pop("$id", None)
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(ABSOLUTE):
            node["$ref"] = "_definitions.json#" + ref[len(ABSOLUTE):]
        for value in node.values():
            relink(value)
    elif isinstance(node, list):
        for value in node:
            relink(value)

with zipfile.ZipFile(wheel) as z:
    for version in versions:
        prefix = f"kubernetes_validate/kubernetes-json-schema/v{version}-local-strict/"
        names = [n for n in z.namelist() if n.startswith(prefix) and n.endswith(".json")]
        if not names:
            sys.exit(f"kubernetes-validate has no schemas for Kubernetes {version}")
        final = os.path.join(out, f"v{version}-local-strict")
        partial = final + ".partial"
        os.makedirs(partial, exist_ok=True)
        for name in names:
            schema = json.loads(z.read(name))
            relink(schema)
            with open(os.path.join(partial, os.path.basename(name)), "w") as f:
                json.dump(schema, f)
        os.replace(partial, final)
PY
  rm -rf "$tmp"
}

mkdir -p "$CACHE_DIR"
go_install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" kustomize "$KUSTOMIZE_BIN"
go_install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" kubeconform "$KUBECONFORM_BIN"
install_schemas

out=$REPO_ROOT/target/deploy-check
rm -rf "$out"
mkdir -p "$out"

dirs=(deploy/base)
for d in deploy/overlays/*/; do dirs+=("${d%/}"); done
[ ${#dirs[@]} -gt 1 ] || die "no overlays under deploy/overlays"

rendered=()
for d in "${dirs[@]}"; do
  file=$out/$(basename "$d").yaml
  "$KUSTOMIZE_BIN" build "$d" >"$file" || die "kustomize build $d failed"
  log "rendered $d: $(grep -c '^kind:' "$file") resources"
  rendered+=("$file")
done

for v in $KUBERNETES_VERSIONS; do
  log "validating against Kubernetes $v"
  "$KUBECONFORM_BIN" -strict -summary -kubernetes-version "$v" \
    -schema-location "$SCHEMA_DIR/{{ .NormalizedKubernetesVersion }}-local-strict/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
    "${rendered[@]}" || die "kubeconform found invalid manifests (Kubernetes $v); rendered files are in target/deploy-check"
done

# The schema cannot see that these three must agree; a mismatch gives shards overlapping or
# orphaned clusters.
sharded=$out/sharded.yaml
if [ -f "$sharded" ]; then
  completions=$(sed -n 's/^ *completions: *\([0-9]*\)$/\1/p' "$sharded")
  parallelism=$(sed -n 's/^ *parallelism: *\([0-9]*\)$/\1/p' "$sharded")
  job_completions=$(grep -A1 -- '- name: JOB_COMPLETIONS$' "$sharded" | sed -n 's/^ *value: *"\{0,1\}\([0-9]*\)"\{0,1\}$/\1/p')
  if [ -z "$completions" ] || [ "$completions" != "$parallelism" ] || [ "$completions" != "$job_completions" ]; then
    die "sharded: completions ($completions), parallelism ($parallelism) and JOB_COMPLETIONS ($job_completions) differ"
  fi
  log "sharded: $completions shards, JOB_COMPLETIONS and parallelism agree"
fi

policies=(deploy/*.json)
for f in "${policies[@]}"; do
  python3 -m json.tool "$f" >/dev/null || die "$f is not valid JSON"
done
log "deploy/ is valid: ${#rendered[@]} kustomizations, ${#policies[@]} IAM policies"

#!/usr/bin/env bash
# Renders deploy/base and every deploy/overlays/* with kustomize, and the Helm chart in
# deploy/helm/storeapi-exporter with each value set in its ci/ (after `helm lint --strict`),
# and validates every render with kubeconform -strict against the Kubernetes JSON schemas of
# the oldest and the newest Kubernetes we support. Then what no schema sees: the chart refuses
# a missing required value and deadlines that contradict each other; its default render keeps
# the base's safety settings and environment; each sharded render's JOB_COMPLETIONS and
# parallelism equal its completions; the PrometheusRule (a CRD, no schema) has the shape the
# Prometheus Operator reads; the IAM policies are JSON. Fails on the first invalid one; the
# renders are left in target/deploy-check.
#
# kustomize, kubeconform, helm and actionlint are built from their Go modules; the schemas come from the
# PyPI package kubernetes-validate, which bundles them per Kubernetes version (kubeconform's
# usual source is GitHub, which the machines here cannot reach). All are cached by version
# under CACHE_DIR and skipped when present; a cold helm build takes about 12 minutes.
source "$(dirname "${BASH_SOURCE[0]}")/../integration/stack/lib.sh"
cd "$REPO_ROOT"

# v5.8.3 needs go >= 1.27.
KUSTOMIZE_VERSION=${KUSTOMIZE_VERSION:-v5.8.2}
KUBECONFORM_VERSION=${KUBECONFORM_VERSION:-v0.8.0}
HELM_VERSION=${HELM_VERSION:-v4.3.2}
ACTIONLINT_VERSION=${ACTIONLINT_VERSION:-v1.7.12}
# Reads the renders for the checks below, when python3 has no yaml module of its own.
PYYAML_VERSION=${PYYAML_VERSION:-6.0.3}
K8S_SCHEMAS_PACKAGE_VERSION=${K8S_SCHEMAS_PACKAGE_VERSION:-1.37.0}
K8S_SCHEMAS_WHEEL_SHA256=${K8S_SCHEMAS_WHEEL_SHA256:-85136d018a27b50ec7fc049d902bfa5193f5976807e6c0f408e3ab6fe078cad9}
# 1.31: the first release with podFailurePolicy (and the Indexed Job fields we use) GA; 1.37:
# the newest in the pinned schema package. A field dropped or added in between fails one.
KUBERNETES_VERSIONS=${KUBERNETES_VERSIONS:-1.31.0 1.37.0}

KUSTOMIZE_BIN=$BIN_DIR/kustomize-$KUSTOMIZE_VERSION
KUBECONFORM_BIN=$BIN_DIR/kubeconform-$KUBECONFORM_VERSION
HELM_BIN=$BIN_DIR/helm-$HELM_VERSION
ACTIONLINT_BIN=$BIN_DIR/actionlint-$ACTIONLINT_VERSION
CHART=deploy/helm/storeapi-exporter
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

# Helm's release build stamps its version with -X (without it `helm version` says only the
# minor). `go install module@version` refuses a module whose go.mod has replace directives, as
# some Helm releases have: then the module's source is built in place, with its go.mod.
helm_install() {
  [ -x "$HELM_BIN" ] && return 0
  command -v go >/dev/null || die "go is not installed: install go >= 1.26 to build helm"
  local ldflags="-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" tmp dir start=$SECONDS
  mkdir -p "$BIN_DIR"
  tmp=$(mktemp -d "$CACHE_DIR/helm.XXXXXX")
  log "building helm.sh/helm/v4/cmd/helm@$HELM_VERSION (minutes on a cold cache)"
  (GOTOOLCHAIN=local GOBIN=$tmp CGO_ENABLED=0 go install -trimpath -ldflags "$ldflags" \
    "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" 2>&1 | grep -v '^go: downloading' >&2 || true)
  if [ ! -x "$tmp/helm" ]; then
    log "go install failed; building helm from its module's source"
    dir=$(GOTOOLCHAIN=local go mod download -json "helm.sh/helm/v4@$HELM_VERSION" |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])') ||
      { rm -rf "$tmp"; die "go mod download helm.sh/helm/v4@$HELM_VERSION failed"; }
    # The module cache is read-only; go build writes nothing there, but a copy keeps it so.
    cp -r "$dir" "$tmp/src"
    chmod -R u+w "$tmp/src"
    (cd "$tmp/src" && GOTOOLCHAIN=local CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" \
      -o "$tmp/helm" ./cmd/helm 2>&1 | grep -v '^go: downloading' >&2 || true)
  fi
  [ -x "$tmp/helm" ] || { rm -rf "$tmp"; die "building helm $HELM_VERSION failed"; }
  mv "$tmp/helm" "$HELM_BIN"
  rm -rf "$tmp"
  log "built $("$HELM_BIN" version --template '{{ .Version }}') in $((SECONDS - start)) s"
}

install_pyyaml() {
  python3 -c 'import yaml' 2>/dev/null && return 0
  local dir=$CACHE_DIR/python/pyyaml-$PYYAML_VERSION
  if [ ! -d "$dir/yaml" ]; then
    python3 -m pip --version >/dev/null 2>&1 || die "pip is not installed: apt-get install python3-pip"
    log "installing PyYAML $PYYAML_VERSION (PyPI) under $dir"
    rm -rf "$dir.partial"
    python3 -m pip install --quiet --disable-pip-version-check --no-input --target "$dir.partial" \
      "PyYAML==$PYYAML_VERSION" >&2 || die "pip install PyYAML==$PYYAML_VERSION failed"
    mv "$dir.partial" "$dir"
  fi
  export PYTHONPATH=$dir${PYTHONPATH:+:$PYTHONPATH}
}

# Runs a command that must fail, and fails unless its output names what it was refused for.
expect_failure() { # what expected-text command...
  local what=$1 want=$2 output
  shift 2
  if output=$("$@" 2>&1); then
    die "$what: accepted, should have been refused"
  fi
  grep -qF -- "$want" <<<"$output" || die "$what: refused without naming $want: $output"
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
go_install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" actionlint "$ACTIONLINT_BIN"
helm_install
install_schemas
install_pyyaml

# The release workflow runs only on a tag, on GitHub: its syntax, expressions, action inputs and
# job outputs are checked here, and its scripts by shellcheck (Debian's, which actionlint runs).
command -v shellcheck >/dev/null || apt_install shellcheck ||
  die "shellcheck is not installed and apt-get could not install it: apt-get install shellcheck"
workflows=(.github/workflows/*.yml)
"$ACTIONLINT_BIN" -no-color "${workflows[@]}" || die "actionlint found problems in .github/workflows"
log "actionlint: ${#workflows[@]} workflow(s) valid"

python3 deploy/helm/readme.py --check || die "the chart's README is not the one its values.yaml gives"
log "the chart's README is current with its values.yaml"

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

# Every ci/ value set is complete on its own (required values included), as chart-testing
# reads them; chart-default.yaml is the one compared with the base below.
value_sets=("$CHART"/ci/*-values.yaml)
[ -f "$CHART/ci/default-values.yaml" ] || die "$CHART/ci/default-values.yaml is missing"
for values in "${value_sets[@]}"; do
  name=$(basename "$values" -values.yaml)
  for v in $KUBERNETES_VERSIONS; do
    "$HELM_BIN" lint --strict --kube-version "$v" "$CHART" -f "$values" >"$out/lint-$name-$v.log" 2>&1 ||
      { cat "$out/lint-$name-$v.log" >&2; die "helm lint --strict $CHART -f $values failed (Kubernetes $v)"; }
  done
  file=$out/chart-$name.yaml
  "$HELM_BIN" template storeapi-exporter "$CHART" --namespace monitoring -f "$values" >"$file" ||
    die "helm template $CHART -f $values failed"
  log "rendered $CHART with ci/$(basename "$values"): $(grep -c '^kind:' "$file") resources, lint clean"
  rendered+=("$file")
done

# The schema's required values and the relations _helpers.tpl enforces: each must be refused,
# with its reason. A chart that rendered without them would install a CronJob that fails at
# every run (or misbehaves under a fault) instead of failing the install.
defaults=$CHART/ci/default-values.yaml
expect_failure "helm lint without values" "/s3" "$HELM_BIN" lint --strict "$CHART"
expect_failure "helm lint without values" "/clusterName" "$HELM_BIN" lint --strict "$CHART"
expect_failure "helm lint without values" "/storeEndpoint" "$HELM_BIN" lint --strict "$CHART"
expect_failure "helm lint with an empty s3.bucket" "/s3/bucket" \
  "$HELM_BIN" lint --strict "$CHART" -f "$defaults" --set s3.bucket=
expect_failure "helm lint with an empty clusterName" "/clusterName" \
  "$HELM_BIN" lint --strict "$CHART" -f "$defaults" --set clusterName=
expect_failure "helm lint with an empty storeEndpoint" "/storeEndpoint" \
  "$HELM_BIN" lint --strict "$CHART" -f "$defaults" --set storeEndpoint=
expect_failure "helm lint with a misspelt value" "buckt" \
  "$HELM_BIN" lint --strict "$CHART" -f "$defaults" --set s3.buckt=my-bucket
expect_failure "a grace period shorter than shutdownTimeout + 5 s" "terminationGracePeriodSeconds" \
  "$HELM_BIN" template storeapi-exporter "$CHART" -f "$defaults" --set shutdownTimeout=30s
expect_failure "a deadline reaching into the next slot" "the schedule's period" \
  "$HELM_BIN" template storeapi-exporter "$CHART" -f "$defaults" --set activeDeadlineSeconds=1780
expect_failure "a variable the chart sets, in env" "batchDelay" \
  "$HELM_BIN" template storeapi-exporter "$CHART" -f "$defaults" --set env.BATCH_DELAY=1h
expect_failure "a client certificate without its key" "tls.keyKey" \
  "$HELM_BIN" template storeapi-exporter "$CHART" -f "$defaults" --set tls.existingSecret=tls --set tls.keyKey=
expect_failure "a TLS Secret without a key to mount" "are all empty" \
  "$HELM_BIN" template storeapi-exporter "$CHART" -f "$defaults" --set tls.existingSecret=tls \
  --set tls.caKey= --set tls.certKey= --set tls.keyKey=
expect_failure "a TLS variable in env beside tls.existingSecret" "TLS_CA_FILE is set by the chart from tls.existingSecret" \
  "$HELM_BIN" template storeapi-exporter "$CHART" -f "$defaults" --set tls.existingSecret=tls --set env.TLS_CA_FILE=/ca.pem
expect_failure "an extra volume named like the chart's own" "extraVolumes: tmp" \
  "$HELM_BIN" template storeapi-exporter "$CHART" -f "$defaults" --set 'extraVolumes[0].name=tmp' --set 'extraVolumes[0].emptyDir.medium=Memory'
expect_failure "a mount of no volume" "extraVolumeMounts: ca names no volume" \
  "$HELM_BIN" template storeapi-exporter "$CHART" -f "$defaults" --set 'extraVolumeMounts[0].name=ca' --set 'extraVolumeMounts[0].mountPath=/ca'
expect_failure "a common label replacing the chart's own" "commonLabels: app.kubernetes.io/name" \
  "$HELM_BIN" template storeapi-exporter "$CHART" -f "$defaults" --set 'commonLabels.app\.kubernetes\.io/name=x'
expect_failure "a misspelt security context field" "runAsUsr" \
  "$HELM_BIN" lint --strict "$CHART" -f "$defaults" --set podSecurityContext.runAsUsr=1000
expect_failure "alerts without run metrics" "pushgateway.url" \
  "$HELM_BIN" template storeapi-exporter "$CHART" -f "$defaults" --set prometheusRule.enabled=true
log "helm lint and template refuse the missing required values, the inconsistent deadlines and the contradicting values"

for v in $KUBERNETES_VERSIONS; do
  log "validating against Kubernetes $v"
  # PrometheusRule is the Prometheus Operator's CRD, which the schema package does not have;
  # its shape is checked below.
  "$KUBECONFORM_BIN" -strict -summary -kubernetes-version "$v" -skip PrometheusRule \
    -schema-location "$SCHEMA_DIR/{{ .NormalizedKubernetesVersion }}-local-strict/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
    "${rendered[@]}" || die "kubeconform found invalid manifests (Kubernetes $v); rendered files are in target/deploy-check"
done

# The schema cannot see that these three must agree; a mismatch gives shards overlapping or
# orphaned clusters.
check_shards() { # render expected-completions
  local file=$1 want=$2 completions parallelism job_completions
  completions=$(sed -n 's/^ *completions: *\([0-9]*\)$/\1/p' "$file")
  parallelism=$(sed -n 's/^ *parallelism: *\([0-9]*\)$/\1/p' "$file")
  job_completions=$(grep -A1 -- '- name: JOB_COMPLETIONS$' "$file" | sed -n 's/^ *value: *"\{0,1\}\([0-9]*\)"\{0,1\}$/\1/p')
  if [ -z "$completions" ] || [ "$completions" != "$parallelism" ] || [ "$completions" != "$job_completions" ]; then
    die "$(basename "$file"): completions ($completions), parallelism ($parallelism) and JOB_COMPLETIONS ($job_completions) differ"
  fi
  [ "$completions" = "$want" ] || die "$(basename "$file"): $completions shards, expected $want"
  log "$(basename "$file"): $completions shards, JOB_COMPLETIONS and parallelism agree"
}
[ -f "$out/sharded.yaml" ] && check_shards "$out/sharded.yaml" 4
check_shards "$out/chart-sharded.yaml" 4

# What kubeconform cannot see: the chart's default render against the base, references
# between the chart's objects, and the PrometheusRule's structure. Stops at the first
# difference, naming the field.
python3 deploy/check_renders.py "$out" || die "the chart's renders failed the checks above; they are in target/deploy-check"

# promtool parses the expressions too; Debian's prometheus package brings it (the integration
# stack installs it), so only where it is.
if command -v promtool >/dev/null; then
  promtool check rules "$out/chart-prometheusrule.rules.yaml" >"$out/promtool.log" 2>&1 ||
    { cat "$out/promtool.log" >&2; die "promtool rejects the chart's PrometheusRule"; }
  log "promtool check rules: the PrometheusRule's expressions parse"
  cp deploy/prometheusrule-test.yaml "$out/"
  promtool test rules "$out/prometheusrule-test.yaml" >"$out/promtool-test.log" 2>&1 ||
    { cat "$out/promtool-test.log" >&2; die "the PrometheusRule fails its unit tests (deploy/prometheusrule-test.yaml)"; }
  log "promtool test rules: the alerts fire on a failing and on a never-started CronJob, not on a healthy one or a first backfill"
else
  log "promtool not installed: the PrometheusRule's expressions are not parsed"
fi

# What the release workflow pushes: the packaged chart, with its README and without its tests.
"$HELM_BIN" package "$CHART" --destination "$out/package" >/dev/null || die "helm package $CHART failed"
package=$(ls "$out"/package/storeapi-exporter-*.tgz)
"$HELM_BIN" show readme "$package" | grep -q '^## Values' || die "$package: helm show readme prints no values table"
! tar tzf "$package" | grep -q '/ci/' || die "$package packs the ci/ value sets (.helmignore)"
log "helm package: $(basename "$package") with its README, without ci/"

policies=(deploy/*.json)
for f in "${policies[@]}"; do
  python3 -m json.tool "$f" >/dev/null || die "$f is not valid JSON"
done
log "deploy/ is valid: $((${#rendered[@]} - ${#value_sets[@]})) kustomizations, ${#value_sets[@]} chart value sets, ${#policies[@]} IAM policies"

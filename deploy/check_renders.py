"""The checks of deploy/check.sh that kubeconform cannot make, on the renders it left in its
output directory (argv[1]): the chart's default render against the base, references between the
chart's objects, what each value set must reach in the pod, and the PrometheusRule's structure.
Stops at the first failure, naming the render and the field."""
import glob, os, re, sys
import yaml

out = sys.argv[1]

def load(name):
    with open(os.path.join(out, name)) as f:
        return [d for d in yaml.safe_load_all(f) if d]

def fail(msg):
    sys.exit(f"error: {msg}")

def one(docs, kind, where):
    found = [d for d in docs if d.get("kind") == kind]
    if len(found) != 1:
        fail(f"{where}: {len(found)} {kind} objects, expected 1")
    return found[0]

def get(obj, path):
    for key in path.split("."):
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj

def first_diff(a, b, path):
    """The path of the first leaf where a and b differ, with both values; None if equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            d = first_diff(a.get(k), b.get(k), f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        for i in range(max(len(a), len(b))):
            d = first_diff(a[i] if i < len(a) else None, b[i] if i < len(b) else None, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else (path, a, b)

def same(a, b, where, path):
    d = first_diff(a, b, path)
    if d:
        fail(f"{where}: {d[0]} differs: base {d[1]!r}, chart {d[2]!r}")

def exporter(cronjob, where):
    containers = get(cronjob, "spec.jobTemplate.spec.template.spec.containers") or []
    named = [c for c in containers if c.get("name") == "exporter"]
    if len(named) != 1:
        fail(f"{where}: no single container named exporter (podFailurePolicy names it)")
    return named[0]

# The base's placeholders (<BUCKET_NAME>) stand for any value.
PLACEHOLDER = re.compile(r"^<[A-Z_]+>$")

def compare_to_base():
    base, chart = load("base.yaml"), load("chart-default.yaml")
    where = "chart-default.yaml against base.yaml"
    b, c = one(base, "CronJob", "base.yaml"), one(chart, "CronJob", "chart-default.yaml")
    pod = "spec.jobTemplate.spec.template.spec."
    job = "spec.jobTemplate.spec."
    paths = ["spec.schedule", "spec.concurrencyPolicy", "spec.startingDeadlineSeconds",
             "spec.successfulJobsHistoryLimit", "spec.failedJobsHistoryLimit", "spec.suspend",
             job + "activeDeadlineSeconds", job + "backoffLimit", job + "backoffLimitPerIndex",
             job + "completionMode", job + "completions", job + "parallelism",
             job + "ttlSecondsAfterFinished", job + "podFailurePolicy",
             pod + "restartPolicy", pod + "terminationGracePeriodSeconds",
             pod + "securityContext", pod + "automountServiceAccountToken", pod + "volumes",
             pod + "hostNetwork", pod + "serviceAccountName"]
    for p in paths:
        same(get(b, p), get(c, p), where, f"CronJob {p}")
    bc, cc = exporter(b, "base.yaml"), exporter(c, "chart-default.yaml")
    for p in ["image", "imagePullPolicy", "command", "args", "securityContext", "resources",
              "volumeMounts", "envFrom"]:
        same(bc.get(p), cc.get(p), where, f"container exporter {p}")
    benv = {e["name"]: e for e in bc.get("env", [])}
    cenv = {e["name"]: e for e in cc.get("env", [])}
    if set(benv) != set(cenv):
        fail(f"{where}: env names differ: only in the base {sorted(set(benv) - set(cenv))}, "
             f"only in the chart {sorted(set(cenv) - set(benv))}")
    for name in benv:
        be, ce = benv[name], cenv[name]
        if "value" in be and "value" in ce:
            if not PLACEHOLDER.match(str(be["value"])) and str(be["value"]) != str(ce["value"]):
                fail(f"{where}: env {name} differs: base {be['value']!r}, chart {ce['value']!r}")
        else:
            same(be, ce, where, f"env {name}")
    # Selectors written for the base (kubectl logs -l ...) must find the chart's objects.
    for p in ["metadata.labels", "spec.jobTemplate.spec.template.metadata.labels"]:
        missing = {k: v for k, v in (get(b, p) or {}).items() if (get(c, p) or {}).get(k) != v}
        if missing:
            fail(f"{where}: CronJob {p} lacks the base's {missing}")
    bs, cs = one(base, "ServiceAccount", "base.yaml"), one(chart, "ServiceAccount", "chart-default.yaml")
    if bs.get("automountServiceAccountToken") != cs.get("automountServiceAccountToken"):
        fail(f"{where}: ServiceAccount automountServiceAccountToken differs")
    print(f"chart-default.yaml keeps the base's safety settings and its {len(benv)} env variables")

def check_references(name):
    docs = load(name)
    c = one(docs, "CronJob", name)
    spec = get(c, "spec.jobTemplate.spec.template.spec")
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    sa = spec.get("serviceAccountName")
    if ("ServiceAccount", sa) not in names:
        fail(f"{name}: serviceAccountName {sa} is not rendered")
    mounts = {m["name"]: m for m in exporter(c, name).get("volumeMounts", [])}
    for vol in spec.get("volumes", []):
        if vol["name"] not in mounts:
            fail(f"{name}: volume {vol['name']} is mounted nowhere")
        cm = get(vol, "configMap.name")
        # The chart's own ConfigMaps carry the release's name; extraVolumes name the user's.
        if cm and cm.startswith(c["metadata"]["name"]) and ("ConfigMap", cm) not in names:
            fail(f"{name}: volume {vol['name']} names ConfigMap {cm}, which is not rendered")
    env = {e["name"]: e.get("value") for e in exporter(c, name).get("env", [])}
    if "CATALOG_FILE" in env:
        key = os.path.basename(env["CATALOG_FILE"])
        dirs = [m for m in mounts.values() if m["mountPath"] == os.path.dirname(env["CATALOG_FILE"])]
        cms = [d for d in docs if d["kind"] == "ConfigMap" and key in d.get("data", {})]
        if not dirs or not dirs[0].get("readOnly") or not cms:
            fail(f"{name}: CATALOG_FILE {env['CATALOG_FILE']} is not a read-only mounted ConfigMap key")
    # One release per cluster in one namespace: no object may keep another release's name.
    for kind, obj in names:
        if not obj.startswith(c["metadata"]["name"]):
            fail(f"{name}: {kind} {obj} is not named after the release ({c['metadata']['name']})")

TLS_VARIABLES = ("TLS_CA_FILE", "TLS_CERT_FILE", "TLS_KEY_FILE")

def check_tls(name, want):
    """Each TLS variable set names a key of a Secret mounted read-only where the variable says."""
    c = one(load(name), "CronJob", name)
    spec = get(c, "spec.jobTemplate.spec.template.spec")
    ctr = exporter(c, name)
    env = {e["name"]: e.get("value") for e in ctr.get("env", [])}
    have = [v for v in TLS_VARIABLES if v in env]
    if have != list(want):
        fail(f"{name}: sets {have}, expected {list(want)}")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for var in have:
        directory, key = os.path.split(env[var])
        mounts = [m for m in ctr.get("volumeMounts", []) if m["mountPath"] == directory]
        if len(mounts) != 1 or not mounts[0].get("readOnly"):
            fail(f"{name}: {var} {env[var]} is not in one read-only mount")
        secret = volumes.get(mounts[0]["name"], {}).get("secret") or {}
        if key not in [i.get("path") for i in secret.get("items", [])]:
            fail(f"{name}: {var} {env[var]}: the Secret volume {mounts[0]['name']} has no item {key}")
    return len(have)

def check_full():
    """What the full value set asks for reaches every object and the pod."""
    name = "chart-full.yaml"
    docs = load(name)
    for d in docs:
        labels = get(d, "metadata.labels") or {}
        if labels.get("team") != "finops" or labels.get("cost-center") != "4711":
            fail(f"{name}: {d['kind']} {d['metadata']['name']} lacks commonLabels")
    c = one(docs, "CronJob", name)
    pod = get(c, "spec.jobTemplate.spec.template")
    if get(pod, "metadata.labels.team") != "finops":
        fail(f"{name}: the pods lack commonLabels")
    if get(pod, "spec.priorityClassName") != "cost-reporting":
        fail(f"{name}: priorityClassName is not set")
    mounts = {m["name"]: m["mountPath"] for m in exporter(c, name).get("volumeMounts", [])}
    if mounts.get("corporate-ca") != "/etc/corporate-ca":
        fail(f"{name}: extraVolumeMounts is not mounted")
    n = check_tls(name, TLS_VARIABLES)
    print(f"{name}: commonLabels on every object and pod, the priority class, the extra volume and {n} TLS files")

def check_openshift():
    """No fixed UID or group anywhere, the restricted settings kept, the CA alone mounted."""
    name = "chart-openshift.yaml"
    c = one(load(name), "CronJob", name)
    pod = get(c, "spec.jobTemplate.spec.template.spec")
    for where, sc in (("the pod", pod.get("securityContext") or {}),
                      ("the container", exporter(c, name).get("securityContext") or {})):
        fixed = [k for k in ("runAsUser", "runAsGroup") if k in sc]
        if fixed:
            fail(f"{name}: {where} still fixes {fixed}")
    if get(pod, "securityContext.runAsNonRoot") is not True:
        fail(f"{name}: runAsNonRoot is gone")
    check_tls(name, ("TLS_CA_FILE",))
    print(f"{name}: no UID or group fixed, runAsNonRoot kept, the CA alone mounted")

def check_release_metadata():
    """One release everywhere: the crate's version is the chart's appVersion, and the chart's,
    the base's and Artifact Hub's image are the one the release workflow publishes, at it."""
    import tomllib
    with open("Cargo.toml", "rb") as f:
        version = tomllib.load(f)["package"]["version"]
    chart_dir = "deploy/helm/storeapi-exporter"
    with open(f"{chart_dir}/Chart.yaml") as f:
        chart = yaml.safe_load(f)
    with open(f"{chart_dir}/values.yaml") as f:
        repository = yaml.safe_load(f)["image"]["repository"]
    with open("deploy/base/kustomization.yaml") as f:
        base = [i for i in yaml.safe_load(f)["images"] if i["name"] == "storeapi-exporter"][0]
    hub = yaml.safe_load(chart["annotations"]["artifacthub.io/images"])[0]["image"]
    for field in ("version", "appVersion"):
        if str(chart[field]) != version:
            fail(f"Chart.yaml {field} {chart[field]} is not the crate's version {version} (one release)")
    want = f"{repository}:{version}"
    for what, image in (("deploy/base", f"{base['newName']}:{base['newTag']}"),
                        ("Chart.yaml's artifacthub.io/images", hub)):
        if image != want:
            fail(f"{what} names {image}, the chart's default image is {want}")
    with open("LICENSE") as f:
        if "Apache License" not in f.read(300):
            fail("LICENSE is not the Apache-2.0 text the image's label and Cargo.toml name")
    print(f"release {version}: {want} in the chart, the base and Artifact Hub")

ALERTS = {
    "StoreapiExporterNoSuccess": "storeapi_exporter_last_success_timestamp_seconds",
    "StoreapiExporterNeverSucceeded": "absent(storeapi_exporter_last_success_timestamp_seconds",
    "StoreapiExporterFallingBehind": "storeapi_exporter_exported_until_timestamp_seconds",
    "StoreapiExporterMissingCluster": "storeapi_exporter_missing_sources",
    "StoreapiExporterLastRunFailed": "storeapi_exporter_last_run_exit_code",
}
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")

def check_prometheus_rule():
    name = "chart-prometheusrule.yaml"
    rule = one(load(name), "PrometheusRule", name)
    if rule.get("apiVersion") != "monitoring.coreos.com/v1":
        fail(f"{name}: PrometheusRule apiVersion {rule.get('apiVersion')}")
    groups = get(rule, "spec.groups")
    if not isinstance(groups, list) or not groups:
        fail(f"{name}: spec.groups is not a non-empty list")
    alerts = {}
    for g in groups:
        if not isinstance(g.get("name"), str) or not g["name"]:
            fail(f"{name}: a group without a name")
        rules = g.get("rules")
        if not isinstance(rules, list) or not rules:
            fail(f"{name}: group {g['name']}: rules is not a non-empty list")
        for r in rules:
            what = r.get("alert") or r.get("record")
            if not isinstance(what, str) or ("alert" in r) == ("record" in r):
                fail(f"{name}: a rule of {g['name']} needs exactly one of alert and record")
            if not isinstance(r.get("expr"), str) or not r["expr"].strip():
                fail(f"{name}: {what}: expr is not a non-empty string")
            if "for" in r and not DURATION.match(str(r["for"])):
                fail(f"{name}: {what}: for {r['for']!r} is not a Prometheus duration")
            for m in ("labels", "annotations"):
                if not all(isinstance(v, str) for v in (r.get(m) or {}).values()):
                    fail(f"{name}: {what}: {m} must map to strings")
            alerts[what] = r["expr"]
    for alert, metric in ALERTS.items():
        if metric not in alerts.get(alert, ""):
            fail(f"{name}: alert {alert} on {metric} is missing")
    with open(os.path.join(out, "chart-prometheusrule.rules.yaml"), "w") as f:
        yaml.safe_dump({"groups": groups}, f, sort_keys=False)
    # promtool's unit tests compare annotations too; theirs are prose, parsed by promtool's
    # check above, so the tests read the rules without them.
    bare = [{**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]}
            for g in groups]
    with open(os.path.join(out, "chart-prometheusrule.bare-rules.yaml"), "w") as f:
        yaml.safe_dump({"groups": bare}, f, sort_keys=False)
    print(f"{name}: {sum(len(g['rules']) for g in groups)} rules in {len(groups)} groups, well formed")

compare_to_base()
for path in sorted(glob.glob(os.path.join(out, "chart-*.yaml"))):
    name = os.path.basename(path)
    if name.endswith("rules.yaml"):
        continue
    check_references(name)
    rules = [d for d in load(name) if d.get("kind") == "PrometheusRule"]
    if rules and name != "chart-prometheusrule.yaml":
        fail(f"{name}: renders a PrometheusRule, which is off unless prometheusRule.enabled")
check_release_metadata()
check_full()
check_openshift()
check_prometheus_rule()

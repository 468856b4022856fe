//! The Helm chart in `deploy/helm/storeapi-exporter` against the kustomize base it mirrors:
//! the deadlines derived from the README's fault table (and tested against the fault budget in
//! `src/cli/budget.rs` on the base) must be the chart's defaults too. `deploy/check.sh` renders
//! both and compares every safety setting; this is the part that needs no helm binary.

use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/helm/storeapi-exporter")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(path: &Path) -> Value {
    serde_yaml_ng::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A value at a dotted path, which must exist.
fn at<'a>(doc: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(doc, |v, key| {
        v.get(key)
            .unwrap_or_else(|| panic!("{path}: no {key} in {v:?}"))
    })
}

/// Every file of the chart, sorted, so a failure names the same file on every run.
fn chart_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            chart_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn the_chart_defaults_keep_the_base_deadlines() {
    let values = yaml(&chart_dir().join("values.yaml"));
    let base = yaml(&Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/base/cronjob.yaml"));
    for (value, base_path) in [
        ("schedule", "spec.schedule"),
        (
            "activeDeadlineSeconds",
            "spec.jobTemplate.spec.activeDeadlineSeconds",
        ),
        (
            "terminationGracePeriodSeconds",
            "spec.jobTemplate.spec.template.spec.terminationGracePeriodSeconds",
        ),
    ] {
        assert_eq!(
            at(&values, value),
            at(&base, base_path),
            "values.yaml {value} against deploy/base/cronjob.yaml {base_path}"
        );
    }
}

#[test]
fn the_chart_is_the_crates_version() {
    let chart = yaml(&chart_dir().join("Chart.yaml"));
    assert_eq!(
        at(&chart, "appVersion").as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "Chart.yaml appVersion is the default image tag: the crate's version"
    );
}

#[test]
fn every_default_value_is_in_the_schema() {
    // The schema refuses unknown keys (a misspelt value fails the install instead of being
    // ignored), so a default it does not list would make every install fail.
    let values = yaml(&chart_dir().join("values.yaml"));
    let schema: serde_json::Value =
        serde_json::from_str(&read(&chart_dir().join("values.schema.json"))).unwrap();
    let props = schema["properties"].as_object().expect("schema properties");
    let mut missing = Vec::new();
    for (key, value) in values.as_mapping().expect("values.yaml is a map") {
        let key = key.as_str().unwrap();
        let Some(prop) = props.get(key) else {
            missing.push(key.to_string());
            continue;
        };
        if let (Some(nested), Some(sub)) = (value.as_mapping(), prop["properties"].as_object()) {
            for k in nested.keys() {
                let k = k.as_str().unwrap();
                if !sub.contains_key(k) {
                    missing.push(format!("{key}.{k}"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "values.yaml keys values.schema.json does not list: {missing:?}"
    );
}

#[test]
fn chart_files_are_text_without_tabs() {
    // YAML forbids tabs in indentation, and a template's tab survives into the render.
    let mut files = Vec::new();
    chart_files(&chart_dir(), &mut files);
    let templates = files
        .iter()
        .filter(|p| p.parent().is_some_and(|d| d.ends_with("templates")))
        .count();
    assert!(templates >= 4, "templates/ has {templates} files");
    for f in &files {
        let text = read(f);
        if let Some((n, _)) = text.lines().enumerate().find(|(_, l)| l.contains('\t')) {
            let shown = f.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap_or(f);
            panic!("{}:{}: a tab", shown.display(), n + 1);
        }
    }
}

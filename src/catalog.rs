//! The metric catalog: Finout's metric names and the PromQL expressions that compute them.
//! Why each expression is what it is: README.md, "The metric catalog".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// The placeholder for the configured cluster label in catalog expressions.
pub const CLUSTER_LABEL_PLACEHOLDER: &str = "{{cluster_label}}";

/// One exported metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Finout's folder name (`metric=<name>`).
    pub name: String,
    /// The PromQL expression, with the cluster label substituted.
    pub expr: String,
    /// Evaluation step in seconds when it differs from the global one.
    pub step: Option<u64>,
}

/// The metrics to export, in a stable order, and the daily telemetry of Finout's S3
/// telemetry integration (name order).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Catalog {
    pub entries: Vec<Entry>,
    /// `telemetry:` entries: evaluated once per UTC day as an instant query at the day's end,
    /// written as one CSV file per day (`finout::telemetry`).
    pub telemetry: Vec<Entry>,
}

/// A catalog that cannot be used.
#[derive(Debug, Error)]
pub enum CatalogError {
    #[error("reading catalog file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "catalog file {path} is not valid {format}: {message} (expected `metrics:` mapping names to expressions or to {{expr, step}}, and optionally `telemetry:` mapping names to expressions)"
    )]
    Parse {
        path: PathBuf,
        format: &'static str,
        message: String,
    },
    #[error(
        "catalog metric name {0:?} is invalid: use letters, digits and underscores (it becomes part of the object key)"
    )]
    BadName(String),
    #[error(
        "catalog entry {name}: step {step}s must be a positive divisor of the time frame ({time_frame}s)"
    )]
    BadStep {
        name: String,
        step: u64,
        time_frame: u64,
    },
    #[error(
        "catalog telemetry name {0:?} is invalid: use letters, digits and underscores, not `date` (it becomes the folder and the telemetry column of Finout's CSV, whose headers must not include spaces)"
    )]
    BadTelemetryName(String),
    #[error("the catalog is empty: nothing to export")]
    Empty,
}

const DEFAULTS: &[(&str, &str)] = &[
    (
        "cpu_requests",
        r#"max by (CL, node, namespace, pod, container) (kube_pod_container_resource_requests{resource="cpu", unit="core"})"#,
    ),
    (
        "memory_requests",
        r#"max by (CL, node, namespace, pod, container) (kube_pod_container_resource_requests{resource="memory", unit="byte"})"#,
    ),
    (
        "cpu_limits",
        r#"max by (CL, node, namespace, pod, container) (kube_pod_container_resource_limits{resource="cpu", unit="core"})"#,
    ),
    (
        "memory_limits",
        r#"max by (CL, node, namespace, pod, container) (kube_pod_container_resource_limits{resource="memory", unit="byte"})"#,
    ),
    (
        "gpu_requests",
        r#"max by (CL, node, namespace, pod, container, resource) (kube_pod_container_resource_requests{resource=~"nvidia_com_gpu|amd_com_gpu"})"#,
    ),
    (
        "cpu_usage",
        r#"sum by (CL, node, namespace, pod, container) (rate(container_cpu_usage_seconds_total{pod!="", container!="", container!="POD"}[5m]))"#,
    ),
    (
        "memory_usage",
        r#"max by (CL, node, namespace, pod, container) (container_memory_working_set_bytes{pod!="", container!="", container!="POD"})"#,
    ),
    (
        "bytes_received",
        r#"sum by (CL, node, namespace, pod) (rate(container_network_receive_bytes_total{pod!=""}[5m]))"#,
    ),
    (
        "bytes_transmitted",
        r#"sum by (CL, node, namespace, pod) (rate(container_network_transmit_bytes_total{pod!=""}[5m]))"#,
    ),
    ("pod_info", "max without (instance, job) (kube_pod_info)"),
    (
        "pod_labels",
        "max without (instance, job) (kube_pod_labels)",
    ),
    ("pod_owner", "max without (instance, job) (kube_pod_owner)"),
    (
        "namespace_labels",
        "max without (instance, job) (kube_namespace_labels)",
    ),
    (
        "node_labels",
        "max without (instance, job) (kube_node_labels)",
    ),
    ("node_info", "max without (instance, job) (kube_node_info)"),
    (
        "node_capacity",
        "max by (CL, node, resource, unit) (kube_node_status_capacity)",
    ),
    (
        "node_allocatable",
        "max by (CL, node, resource, unit) (kube_node_status_allocatable)",
    ),
    (
        "pvc_info",
        "max without (instance, job) (kube_persistentvolumeclaim_info)",
    ),
    (
        "pv_capacity",
        "max without (instance, job) (kube_persistentvolume_capacity_bytes)",
    ),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    replace: bool,
    #[serde(default)]
    metrics: BTreeMap<String, FileEntry>,
    #[serde(default)]
    telemetry: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum FileEntry {
    Expr(String),
    Full(FullEntry),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FullEntry {
    expr: String,
    step: Option<u64>,
}

impl Catalog {
    /// The entries' names, in catalog order.
    pub fn entry_names(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.name.clone()).collect()
    }

    /// The default catalog for a cluster label.
    pub fn default_for(cluster_label: &str) -> Catalog {
        Catalog {
            entries: DEFAULTS
                .iter()
                .map(|(name, expr)| Entry {
                    name: name.to_string(),
                    expr: expr.replace("CL", cluster_label),
                    step: None,
                })
                .collect(),
            telemetry: Vec::new(),
        }
    }

    /// The default catalog extended (or replaced, with `replace: true`) by a YAML or JSON
    /// file. An entry of the file with a default's name overrides it.
    pub fn load(path: &Path, cluster_label: &str) -> Result<Catalog, CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let json = path.extension().is_some_and(|e| e == "json");
        let file: File = if json {
            serde_json::from_str(&text).map_err(|e| CatalogError::Parse {
                path: path.to_path_buf(),
                format: "JSON",
                message: e.to_string(),
            })?
        } else {
            serde_yaml_ng::from_str(&text).map_err(|e| CatalogError::Parse {
                path: path.to_path_buf(),
                format: "YAML",
                message: e.to_string(),
            })?
        };
        let mut catalog = if file.replace {
            Catalog::default()
        } else {
            Catalog::default_for(cluster_label)
        };
        for (name, e) in file.metrics {
            let (expr, step) = match e {
                FileEntry::Expr(expr) => (expr, None),
                FileEntry::Full(f) => (f.expr, f.step),
            };
            let entry = Entry {
                name,
                expr: expr.replace(CLUSTER_LABEL_PLACEHOLDER, cluster_label),
                step,
            };
            match catalog.entries.iter_mut().find(|x| x.name == entry.name) {
                Some(x) => *x = entry,
                None => catalog.entries.push(entry),
            }
        }
        catalog.telemetry = file
            .telemetry
            .into_iter()
            .map(|(name, expr)| Entry {
                name,
                expr: expr.replace(CLUSTER_LABEL_PLACEHOLDER, cluster_label),
                step: None,
            })
            .collect();
        Ok(catalog)
    }

    /// Checks names and steps (what every source needs; the in-process engine compiles the
    /// expressions on top, `engine::compile`).
    pub fn check(&self, time_frame: u64) -> Result<(), CatalogError> {
        if self.entries.is_empty() && self.telemetry.is_empty() {
            return Err(CatalogError::Empty);
        }
        for e in &self.telemetry {
            if !is_word(&e.name) || e.name == "date" {
                return Err(CatalogError::BadTelemetryName(e.name.clone()));
            }
        }
        for e in &self.entries {
            if !is_word(&e.name) {
                return Err(CatalogError::BadName(e.name.clone()));
            }
            if let Some(step) = e.step
                && (step == 0 || !time_frame.is_multiple_of(step))
            {
                return Err(CatalogError::BadStep {
                    name: e.name.clone(),
                    step,
                    time_frame,
                });
            }
        }
        Ok(())
    }
}

fn is_word(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_extends_overrides_and_replaces() {
        let dir = std::env::temp_dir().join(format!("catalog-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let yaml = dir.join("c.yaml");
        std::fs::write(
            &yaml,
            "metrics:\n  cpu_requests: 'sum by ({{cluster_label}}) (x)'\n  extra: {expr: 'max(y)', step: 300}\n",
        )
        .unwrap();
        let c = Catalog::load(&yaml, "cl").unwrap();
        assert_eq!(c.entries.len(), 20);
        assert_eq!(c.entries[0].expr, "sum by (cl) (x)");
        assert_eq!(c.entries[19].step, Some(300));
        let json = dir.join("c.json");
        std::fs::write(&json, r#"{"replace": true, "metrics": {"only": "max(z)"}}"#).unwrap();
        let c = Catalog::load(&json, "cl").unwrap();
        assert_eq!(c.entries.len(), 1);
        std::fs::write(&yaml, "metrics:\n  bad: {expr: 'x', stepp: 5}\n").unwrap();
        let err = Catalog::load(&yaml, "cl").unwrap_err().to_string();
        assert!(err.contains("not valid YAML"), "{err}");
        std::fs::write(&yaml, "metrics:\n  'bad name': 'x'\n").unwrap();
        let err = Catalog::load(&yaml, "cl").unwrap().check(3600).unwrap_err();
        assert!(matches!(err, CatalogError::BadName(_)));
        std::fs::write(&yaml, "metrics:\n  odd: {expr: 'x', step: 7}\n").unwrap();
        let err = Catalog::load(&yaml, "cl").unwrap().check(3600).unwrap_err();
        assert!(err.to_string().contains("divisor"));
        std::fs::write(
            &yaml,
            "telemetry:\n  pods: 'count by ({{cluster_label}}) (kube_pod_info)'\n  cpu_core_hours: 'sum(x)'\n",
        )
        .unwrap();
        let c = Catalog::load(&yaml, "cl").unwrap();
        assert_eq!(c.entries.len(), 19, "the default metrics stay");
        let t: Vec<_> = c
            .telemetry
            .iter()
            .map(|e| (e.name.as_str(), e.expr.as_str()))
            .collect();
        assert_eq!(
            t,
            vec![
                ("cpu_core_hours", "sum(x)"),
                ("pods", "count by (cl) (kube_pod_info)")
            ]
        );
        c.check(3600).unwrap();
        std::fs::write(&yaml, "replace: true\ntelemetry:\n  date: 'sum(x)'\n").unwrap();
        let c = Catalog::load(&yaml, "cl").unwrap();
        assert!(c.entries.is_empty());
        let err = c.check(3600).unwrap_err();
        assert!(matches!(err, CatalogError::BadTelemetryName(_)), "{err}");
        std::fs::write(&yaml, "telemetry:\n  t: {expr: 'sum(x)'}\n").unwrap();
        let err = Catalog::load(&yaml, "cl").unwrap_err().to_string();
        assert!(err.contains("telemetry"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

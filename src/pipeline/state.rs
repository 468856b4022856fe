//! The exporter's state: a small JSON object under `<S3_PREFIX>/<CLUSTER_NAME>/` recording the
//! end of the last fully exported window, the clusters this exporter writes (retention
//! deletes only those), how far each telemetry's daily files are written, and what the checks
//! of later windows need: the sources seen (`completeness`), each cluster's newest sample and
//! the windows written while clusters lagged (`lateness`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::lateness::LateData;
use crate::finout::cluster_folder;
use crate::sink::{Sink, SinkError};
use crate::source::grpc::Packing;
use crate::time::rfc3339;

/// The content of the state object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Format version.
    pub version: u32,
    /// Every window ending at or before this time (unix seconds) is exported.
    pub exported_until: i64,
    /// The same, readable.
    #[serde(default)]
    pub exported_until_utc: String,
    /// TIME_FRAME of the windows exported, seconds.
    pub time_frame: u64,
    /// Cluster folders this exporter has written, for retention.
    #[serde(default)]
    pub clusters: BTreeSet<String>,
    /// Per telemetry name, every UTC day ending at or before this time (unix seconds) is
    /// written. Absent from states without telemetry, so those read and write as before.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub telemetry: BTreeMap<String, i64>,
    /// The sources (external label sets, replica labels apart) whose data the exported windows
    /// held, keyed by their labels as PromQL writes them: what later windows expect
    /// (`completeness`). Absent from states written before the check, which read as before.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, SourceSeen>,
    /// Each cluster's newest sample seen, and the windows written while clusters lagged
    /// (`lateness`). Absent from states written before the check, which read as before.
    #[serde(default, skip_serializing_if = "LateData::is_empty")]
    pub late: LateData,
    /// What the StoreAPI requests of earlier runs gave per entry and cluster: a run's first
    /// window is packed from it instead of being asked entry by entry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub packing: Packing,
    /// When a run last succeeded (wall-clock unix seconds; 0: never), for the run metrics.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_success: i64,
    /// When the state was last written (unix seconds), and by which version.
    #[serde(default)]
    pub updated_at: i64,
    #[serde(default)]
    pub exporter_version: String,
}

/// What the state remembers of a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSeen {
    /// Its external labels, replica labels apart.
    pub labels: BTreeMap<String, String>,
    /// The earliest data a store held for it, milliseconds: no window before is expected of it.
    pub first_ms: i64,
    /// The end of the last exported window it served (unix seconds).
    pub last: i64,
    /// When a run last found a store serving its present (the run's clock, unix seconds): how
    /// long it has been absent is measured from here.
    #[serde(default)]
    pub live_at: i64,
    /// Its replicas (`replica="a-0"`), each with the end of the last window it served.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub replicas: BTreeMap<String, i64>,
}

const VERSION: u32 = 1;

fn is_zero(t: &i64) -> bool {
    *t == 0
}

/// The state cannot be used.
#[derive(Debug, Error)]
pub enum StateError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(
        "the state object {key} is not valid ({reason}): fix or delete it (deleting restarts the export from BACKFILL_DAYS ago; existing files are overwritten, not duplicated)"
    )]
    Corrupt { key: String, reason: String },
    #[error(
        "the state object {key} records windows exported up to {until} with TIME_FRAME={was}, which is not a window boundary for TIME_FRAME={now}: set TIME_FRAME back to {was}, or delete the state object to restart from BACKFILL_DAYS ago"
    )]
    TimeFrame {
        key: String,
        until: i64,
        was: u64,
        now: u64,
    },
}

impl State {
    /// A state saying that everything before `exported_until` is done.
    pub fn new(exported_until: i64, time_frame: u64) -> Self {
        State {
            version: VERSION,
            exported_until,
            exported_until_utc: rfc3339(exported_until),
            time_frame,
            clusters: BTreeSet::new(),
            telemetry: BTreeMap::new(),
            sources: BTreeMap::new(),
            late: LateData::default(),
            packing: Packing::new(),
            last_success: 0,
            updated_at: 0,
            exporter_version: String::new(),
        }
    }

    /// Moves the export mark to `until`.
    pub fn advance(&mut self, until: i64) {
        debug_assert!(until >= self.exported_until, "state never moves backwards");
        self.exported_until = until;
        self.exported_until_utc = rfc3339(until);
    }
}

/// The key of the state object. Each shard keeps its own.
pub fn state_key(prefix: &str, cluster_name: &str, shard: Option<(u32, u32)>) -> String {
    let folder = cluster_folder(prefix, cluster_name);
    match shard {
        Some((i, n)) if n > 1 => {
            format!("{folder}storeapi-exporter-state.shard-{i}-of-{n}.json")
        }
        _ => format!("{folder}storeapi-exporter-state.json"),
    }
}

/// Reads and writes the state object.
pub struct StateStore<'a> {
    pub sink: &'a Sink,
    pub key: String,
    /// The clock, for `updated_at`.
    pub now: i64,
}

impl StateStore<'_> {
    /// The saved state, if any; checked against this run's TIME_FRAME.
    pub async fn load(&self, time_frame: u64) -> Result<Option<State>, StateError> {
        let Some(bytes) = self.sink.get(&self.key).await? else {
            return Ok(None);
        };
        let state: State = serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
            key: self.key.clone(),
            reason: e.to_string(),
        })?;
        if state.version != VERSION {
            return Err(StateError::Corrupt {
                key: self.key.clone(),
                reason: format!(
                    "version {} is not {VERSION}, written by a different exporter version",
                    state.version
                ),
            });
        }
        if state.exported_until.rem_euclid(time_frame as i64) != 0 {
            return Err(StateError::TimeFrame {
                key: self.key.clone(),
                until: state.exported_until,
                was: state.time_frame,
                now: time_frame,
            });
        }
        Ok(Some(state))
    }

    /// Writes the state whole (one PutObject).
    pub async fn save(&self, state: &State) -> Result<(), SinkError> {
        let mut s = state.clone();
        s.updated_at = self.now;
        s.exporter_version = env!("CARGO_PKG_VERSION").to_string();
        let body = serde_json::to_vec_pretty(&s).expect("the state serialises");
        self.sink.put(&self.key, body, "application/json").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::LocalDir;

    #[test]
    fn keys() {
        assert_eq!(
            state_key("k8s/prometheus/", "home", None),
            "k8s/prometheus/home/storeapi-exporter-state.json"
        );
        assert_eq!(
            state_key("p", "home", Some((1, 4))),
            "p/home/storeapi-exporter-state.shard-1-of-4.json"
        );
        assert_eq!(
            state_key("p", "home", Some((0, 1))),
            "p/home/storeapi-exporter-state.json"
        );
    }

    #[tokio::test]
    async fn round_trip_and_bad_states() {
        let root = std::env::temp_dir().join(format!("state-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let sink = Sink::Local(LocalDir::new(&root));
        let store = StateStore {
            sink: &sink,
            key: "p/home/state.json".into(),
            now: 5,
        };
        assert_eq!(store.load(3600).await.unwrap(), None);
        let mut s = State::new(7200, 3600);
        s.clusters.insert("a".into());
        s.advance(10_800);
        store.save(&s).await.unwrap();
        let back = store.load(3600).await.unwrap().unwrap();
        assert_eq!(back.exported_until, 10_800);
        assert_eq!(back.exported_until_utc, "1970-01-01T03:00:00Z");
        assert_eq!(back.updated_at, 5);
        assert!(back.clusters.contains("a"));
        let err = store.load(7200).await.unwrap_err().to_string();
        assert!(err.contains("TIME_FRAME=3600"), "{err}");
        sink.put("p/home/state.json", b"{not json".to_vec(), "")
            .await
            .unwrap();
        let err = store.load(3600).await.unwrap_err().to_string();
        assert!(
            err.contains("not valid") && err.contains("delete it"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[tokio::test]
    async fn telemetry_progress_is_added_without_breaking_older_states() {
        let root = std::env::temp_dir().join(format!("state-telemetry-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let sink = Sink::Local(LocalDir::new(&root));
        let store = StateStore {
            sink: &sink,
            key: "p/home/state.json".into(),
            now: 5,
        };
        // a state as the exporter wrote it before telemetry existed
        let old = r#"{
  "version": 1,
  "exported_until": 1761955200,
  "exported_until_utc": "2025-11-01T00:00:00Z",
  "time_frame": 3600,
  "clusters": ["a", "b"],
  "updated_at": 1761955800,
  "exporter_version": "0.1.0"
}"#;
        sink.put(&store.key, old.as_bytes().to_vec(), "")
            .await
            .unwrap();
        let mut s = store.load(3600).await.unwrap().unwrap();
        assert_eq!(s.exported_until, 1_761_955_200);
        assert!(s.telemetry.is_empty());
        // without telemetry, the same fields as before
        store.save(&s).await.unwrap();
        let text = String::from_utf8(sink.get(&store.key).await.unwrap().unwrap()).unwrap();
        assert!(!text.contains("telemetry"), "{text}");
        s.telemetry.insert("pods".into(), 1_762_041_600);
        store.save(&s).await.unwrap();
        let back = store.load(3600).await.unwrap().unwrap();
        assert_eq!(back.telemetry.get("pods"), Some(&1_762_041_600));
        let _ = std::fs::remove_dir_all(&root);
    }
}

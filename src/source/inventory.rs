//! What the stores behind the endpoint serve right now: each queryable TSDB's external labels
//! (replica labels apart) and time range. Thanos Query drops a store that fails its health
//! check within seconds and then answers without it, with no warning even under
//! `partial_response_strategy=ABORT`; this is what lets the exporter notice.
//!
//! Read from the Querier's `thanos.info.Info` (`store.tsdb_infos`: one entry per TSDB of every
//! queryable store, a store gateway's per block), or, for the HTTP source without a StoreAPI
//! address, from Thanos Query's `/api/v1/stores` (healthy stores only; a store's label sets
//! share its whole time range, which is coarser for a store gateway).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::SourceError;
use crate::model::Labels;
use crate::observe::error_chain;
use crate::store::StoreClient;
use crate::store::proto::info::InfoResponse;

/// One TSDB a queryable store serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    /// Its external labels without the replica labels: what every replica of it shares.
    pub labels: Labels,
    /// The replica labels it has (`replica="a-0"`), empty without.
    pub replica: String,
    /// The time range it holds, milliseconds, inclusive.
    pub min_time: i64,
    pub max_time: i64,
}

/// Everything the endpoint serves now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    pub served: Vec<Served>,
    /// Its stores' label sets stand for their whole time range (a Querier before v0.32, or
    /// one whose stores are all older, lists no TSDBs; `/api/v1/stores`): coarser, so a store
    /// gateway announcing a dropped sidecar's labels makes that cluster look served.
    pub coarse: bool,
}

impl Inventory {
    /// From external label sets and their time ranges.
    fn from_sets(
        sets: impl IntoIterator<Item = (Vec<(String, String)>, i64, i64)>,
        replica_labels: &[String],
    ) -> Self {
        let served = sets
            .into_iter()
            .map(|(pairs, min_time, max_time)| {
                let (replica, rest): (Vec<_>, Vec<_>) = pairs
                    .into_iter()
                    .partition(|(n, _)| replica_labels.contains(n));
                let mut replica: Vec<String> =
                    replica.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
                replica.sort();
                Served {
                    labels: Labels::from_pairs(rest),
                    replica: replica.join(","),
                    min_time,
                    max_time,
                }
            })
            .collect();
        Inventory {
            served,
            coarse: false,
        }
    }

    /// From a Querier's (or any StoreAPI component's) Info answer: its TSDBs, or, from an
    /// endpoint too old to list them, its label sets over its whole time range.
    pub fn from_info(info: &InfoResponse, replica_labels: &[String]) -> Self {
        let Some(store) = &info.store else {
            return Inventory::default();
        };
        let pairs = |set: &crate::store::proto::LabelSet| -> Vec<(String, String)> {
            set.labels.iter().map(|l| l.lossy()).collect()
        };
        if !store.tsdb_infos.is_empty() {
            let sets = store.tsdb_infos.iter().map(|t| {
                let labels = t.labels.as_ref().map(pairs).unwrap_or_default();
                (labels, t.min_time, t.max_time)
            });
            return Inventory::from_sets(sets, replica_labels);
        }
        let sets = info
            .label_sets
            .iter()
            .map(|s| (pairs(s), store.min_time, store.max_time));
        Inventory {
            coarse: true,
            ..Inventory::from_sets(sets, replica_labels)
        }
    }

    /// From Thanos Query's `/api/v1/stores` answer: the label sets of every healthy store.
    pub fn from_stores(body: &[u8], replica_labels: &[String]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Answer {
            status: String,
            #[serde(default)]
            data: BTreeMap<String, Option<Vec<Store>>>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Store {
            #[serde(default)]
            last_error: Option<String>,
            #[serde(default)]
            label_sets: Vec<BTreeMap<String, String>>,
            #[serde(default)]
            min_time: i64,
            #[serde(default)]
            max_time: i64,
        }
        let a: Answer = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        if a.status != "success" {
            return Err(format!("status {:?}", a.status));
        }
        let sets = a
            .data
            .into_values()
            .flatten()
            .flatten()
            .filter(|s| s.last_error.is_none())
            .flat_map(|s| {
                let (min, max) = (s.min_time, s.max_time);
                s.label_sets
                    .into_iter()
                    .map(move |set| (set.into_iter().collect(), min, max))
            });
        Ok(Inventory {
            coarse: true,
            ..Inventory::from_sets(sets, replica_labels)
        })
    }
}

/// Where the inventory is read from.
#[derive(Clone)]
pub enum InventorySource {
    /// `thanos.info.Info` of the StoreAPI endpoint.
    Info(Box<StoreClient>),
    /// Thanos Query's `/api/v1/stores`, at this URL.
    Stores {
        client: reqwest::Client,
        url: String,
    },
}

impl InventorySource {
    /// What the endpoint serves now; `None` when it cannot tell (no Info service, no stores
    /// API: not a Thanos Querier).
    pub async fn fetch(&self, replica_labels: &[String]) -> Result<Option<Inventory>, SourceError> {
        match self {
            InventorySource::Info(client) => match client.info().await {
                Ok(info) => Ok(Some(Inventory::from_info(&info, replica_labels))),
                Err(e) if e.is_unimplemented() => Ok(None),
                Err(e) => Err(e.into()),
            },
            InventorySource::Stores { client, url } => {
                let failed = |message: String, retryable| SourceError::Http {
                    metric: "(stores)".into(),
                    message,
                    retryable,
                };
                let resp = client
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| failed(format!("GET {url}: {}", error_chain(&e)), true))?;
                let status = resp.status();
                if status.as_u16() == 404 {
                    return Ok(None);
                }
                let body = resp
                    .bytes()
                    .await
                    .map_err(|e| failed(format!("reading {url}: {e}"), true))?;
                if !status.is_success() {
                    let retryable = status.is_server_error() || status.as_u16() == 429;
                    return Err(failed(format!("GET {url}: HTTP {status}"), retryable));
                }
                Inventory::from_stores(&body, replica_labels)
                    .map(Some)
                    .map_err(|e| failed(format!("{url} is not Thanos' stores list: {e}"), false))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::label;
    use crate::store::proto::LabelSet;
    use crate::store::proto::info::{StoreInfo, TsdbInfo};

    fn set(pairs: &[(&str, &str)]) -> LabelSet {
        LabelSet {
            labels: pairs.iter().map(|&(n, v)| label(n, v)).collect(),
        }
    }

    #[test]
    fn tsdbs_are_read_with_their_replica_labels_apart() {
        let replicas = ["replica".to_string(), "receive_replica".to_string()];
        let info = InfoResponse {
            label_sets: vec![set(&[("cluster", "a")])],
            component_type: "query".into(),
            store: Some(StoreInfo {
                min_time: 0,
                max_time: i64::MAX,
                tsdb_infos: vec![
                    TsdbInfo {
                        labels: Some(set(&[("cluster", "a"), ("replica", "a-0")])),
                        min_time: 10,
                        max_time: i64::MAX,
                    },
                    TsdbInfo {
                        labels: Some(set(&[("cluster", "b")])),
                        min_time: 5,
                        max_time: 7,
                    },
                ],
                ..Default::default()
            }),
        };
        let inv = Inventory::from_info(&info, &replicas);
        assert_eq!(
            inv.served,
            vec![
                Served {
                    labels: Labels::from_pairs([("cluster", "a")]),
                    replica: "replica=\"a-0\"".into(),
                    min_time: 10,
                    max_time: i64::MAX,
                },
                Served {
                    labels: Labels::from_pairs([("cluster", "b")]),
                    replica: String::new(),
                    min_time: 5,
                    max_time: 7,
                },
            ]
        );
        // an endpoint that lists no TSDBs: its label sets over its whole range
        let mut old = info.clone();
        old.store.as_mut().unwrap().tsdb_infos.clear();
        let inv = Inventory::from_info(&old, &replicas);
        assert_eq!(inv.served.len(), 1);
        assert!(inv.coarse && !Inventory::from_info(&info, &replicas).coarse);
        assert_eq!(
            (inv.served[0].min_time, inv.served[0].max_time),
            (0, i64::MAX)
        );
    }

    #[test]
    fn the_stores_page_gives_the_healthy_stores_label_sets() {
        let body = br#"{"status":"success","data":{
            "sidecar":[
                {"name":"s0","lastError":null,"labelSets":[{"cluster":"a","replica":"a-0"}],"minTime":1,"maxTime":9223372036854775807},
                {"name":"s1","lastError":"rpc error: code = Unavailable","labelSets":[{"cluster":"b","replica":"b"}],"minTime":1,"maxTime":9}
            ],
            "store":[{"name":"g","labelSets":[{"cluster":"a","replica":"a-0"},{"cluster":"b","replica":"b"}],"minTime":0,"maxTime":5}],
            "rule":null}}"#;
        let inv = Inventory::from_stores(body, &["replica".into()]).unwrap();
        let got: Vec<(String, i64)> = inv
            .served
            .iter()
            .map(|s| (s.labels.to_string(), s.max_time))
            .collect();
        assert_eq!(
            got,
            vec![
                ("{cluster=\"a\"}".to_string(), i64::MAX),
                ("{cluster=\"a\"}".to_string(), 5),
                ("{cluster=\"b\"}".to_string(), 5),
            ]
        );
        assert!(Inventory::from_stores(br#"{"status":"error"}"#, &[]).is_err());
    }
}

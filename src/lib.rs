//! storeapi-exporter: exports Kubernetes cost-allocation metrics from Thanos to S3 in Finout's
//! layout, reading raw chunks over the StoreAPI and evaluating the catalog in-process.
//!
//! The modules below are listed in data-flow order; each imports only from those above it.
//!
//! ```text
//!  store ───────┐ (StoreAPI gRPC)
//!  remote_read ─┴─► source::grpc (chunk ─► dedup ─► engine) ─┐
//!  HTTP query_range ─► source::http ──────────────────────────┴─► finout ─► sink
//!  pipeline: batches of windows, each result (window, metric, cluster) streamed source →
//!            finout → sink as it is ready; then state, retention
//!  cli ─► cmd: run / export / bench
//! ```
//!
//! - vocabulary: `exit` codes, `inflight` (the remote calls in flight, for the heartbeat),
//!   `time`, `observe` (logs, process stats), `model` (samples, labels, steps, series), `shard`,
//!   `catalog`;
//! - the two inputs of the in-process engine: ① `store`, the StoreAPI client; `remote_read`,
//!   Prometheus' and Mimir's remote read, answering the StoreAPI's request with its series;
//!   ② `chunk`: XOR chunks; ③ `dedup`: HA replicas as Thanos Query merges them; ④ `engine`:
//!   the PromQL subset;
//! - `query_range`: the Prometheus answer body, read by the HTTP source, written by finout;
//! - `source`: windows evaluated in-process (`grpc`: its `input` is either transport) or by HTTP
//!   `query_range`, a result (window, metric, cluster) at a time;
//! - ⑤ `finout`: Finout's keys, the `query_range` body, gzip, the telemetry CSV; ⑥ `sink`: a
//!   directory or S3;
//! - ⑦ `pipeline`: the window loop (results written as they arrive) with retries, state and
//!   retention; the telemetry days;
//! - `cli`: flags and environment, resolved into settings; `cmd`: the commands;
//!   `bench`: the developer's benchmark, on top of everything, used by nothing but `cmd`.

pub mod exit;
pub(crate) mod inflight;
pub mod observe;
pub(crate) mod time;

pub mod model;
pub(crate) mod shard;

pub(crate) mod catalog;

pub mod store;

pub mod chunk;

pub mod remote_read;

pub mod dedup;

pub mod engine;

pub mod query_range;

pub(crate) mod source;

pub(crate) mod finout;

pub(crate) mod sink;

pub(crate) mod pipeline;

pub mod cli;

pub(crate) mod bench;

pub mod cmd;

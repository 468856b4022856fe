//! End-to-end tests against the integration stack (`integration/stack/up.sh`): real Prometheus,
//! Thanos sidecars and Query, and an S3 server. Built only with the `e2e` feature, which
//! `integration/test.sh` turns on after starting the stack; plain `cargo test` runs the tests
//! that need nothing running (`tests/cli`).

/// Fixtures, apart from the tests: the stack's addresses, the exporter binary, fakes.
mod support;

/// Bad input that needs a real Querier (TLS against plaintext, a catalog the engine refuses).
mod bad_input;
/// gRPC against HTTP over the whole dataset: same keys, byte-identical files.
mod export;
/// The fault matrix: peers frozen, killed, restarted; exit codes, times to exit, reruns.
mod faults;
/// Late data: a cluster's link cut and healed, its Prometheus restarted; held, corrected.
mod late_data;
/// What the HTTP API refuses (points, samples, timeouts) and gRPC exports.
mod limits;
/// The run metrics, pushed to a Pushgateway and read back through Prometheus.
mod metrics;
/// An OpenTelemetry Collector's cluster (no Prometheus) through Receive: equal to PromQL.
mod otel;
/// The Thanos releases users run: each era's Querier followed, a mixed fleet.
mod releases;
/// `--source remote-read` against Prometheus (one, and an HA pair) and Grafana Mimir.
mod remote_read;
/// `run` against S3: state, resume, retention, credentials, faults.
mod run;
/// The S3 destination on its own (bucket, keys, content type).
mod s3;
/// Several pods sharing the clusters (`--shard i/N`).
mod shard;
/// Finout telemetry CSV: rows against Thanos Query, resume, rerun, retention.
mod telemetry;
/// The StoreAPI as Thanos serves it: the generator's ground truth through the gRPC client.
mod thanos_grpc;
/// The generator's ground truth through Thanos Query's PromQL.
mod thanos_http;
/// The production topology's Querier behind TLS: the same bytes, or the setting to fix.
mod tls;
/// A production-shaped Thanos: store gateways, a compacted bucket, a receiver, live scrapes;
/// gRPC against HTTP over each.
mod topology;

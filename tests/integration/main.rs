//! End-to-end tests against the integration stack (`integration/stack/up.sh`): real Prometheus,
//! Thanos sidecars and Query, and an S3 server. One test binary, one module per concern.

mod bad_input;
mod export;
mod fake_store;
mod limits;
mod run;
mod s3;
mod s3_proxy;
mod s3_run;
mod shard;
mod stack;
mod thanos_grpc;
mod thanos_http;

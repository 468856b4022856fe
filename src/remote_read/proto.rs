//! Messages generated from our own subset of Prometheus' remote read protocol
//! (`proto/prometheus/remote.proto`).

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("prometheus");

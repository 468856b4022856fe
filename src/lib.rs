//! storeapi-exporter: exports Kubernetes cost-allocation metrics from Thanos to S3 in Finout's
//! layout, reading raw chunks over the StoreAPI and evaluating the catalog in-process.

pub mod app;
pub mod catalog;
pub mod chunk;
pub mod config;
pub mod dedup;
pub mod engine;
pub mod export;
pub mod labels;
pub mod output;
pub mod sink;
pub mod source;
pub mod storeapi;

//! storeapi-exporter: exports Kubernetes cost-allocation metrics from Thanos to S3 in Finout's
//! layout, reading raw chunks over the StoreAPI and evaluating the catalog in-process.

pub mod app;
pub mod bench;
pub mod catalog;
pub mod chunk;
pub mod config;
pub mod dedup;
pub mod engine;
pub mod export;
pub mod labels;
pub mod output;
pub mod retention;
pub mod shard;
pub mod sink;
pub mod source;
pub mod state;
pub mod storeapi;

/// An error and its sources on one line, without repeating a message a source already holds.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let m = inner.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = inner.source();
    }
    s
}

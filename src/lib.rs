//! storeapi-exporter: exports Kubernetes cost-allocation metrics from Thanos to S3 in Finout's
//! layout, reading raw chunks over the StoreAPI and evaluating the catalog in-process.

pub mod chunk;
pub mod storeapi;

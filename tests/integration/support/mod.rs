//! Fixtures shared by the tests: the running stack, the exporter binary run as a user runs
//! it, and the fakes for faults a real peer cannot give on demand.

// each test binary uses part of these
#![allow(dead_code)]

pub mod bucket;
pub mod exporter;
pub mod fake_remote_read;
pub mod fake_store;
pub mod peers;
pub mod s3_proxy;
pub mod stack;

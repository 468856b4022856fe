//! The fixtures of `tests/integration/support` that need no stack.

#![allow(dead_code)]

#[path = "../../integration/support/exporter.rs"]
pub mod exporter;
#[path = "../../integration/support/fake_remote_read.rs"]
pub mod fake_remote_read;
#[path = "../../integration/support/fake_store.rs"]
pub mod fake_store;

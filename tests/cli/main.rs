//! Tests that need nothing running: plain `cargo test` runs them on a fresh clone. The tests
//! against the integration stack are in `tests/integration` (`integration/test.sh`).

mod support;

/// Bad input from a fake StoreAPI: clear errors, exit codes, never a partial file.
mod bad_input;
/// The Helm chart's defaults against the kustomize base's deadlines.
mod chart;
/// The README's flag table against `--help`.
mod flags;
/// The modules of `src/` import only from those above them in `src/lib.rs`.
mod layout;
/// Bad input from a fake remote read server: the same guarantees over `--source remote-read`.
mod remote_read;
/// Telemetry entries that cannot be exported, refused at start-up.
mod telemetry;

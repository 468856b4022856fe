//! The production topology's Querier behind TLS (`STACK_TOPOLOGY=full`): with a client
//! certificate it writes the same bytes as the plaintext Querier; a wrong CA or a missing client
//! certificate is a configuration error that names the setting to fix, not an outage.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::support::exporter::{describe, files, scratch};
use crate::support::stack::{stack, topology};
use crate::topology::{METRICS, export};

/// The hour every test exports: the fourth of the data.
fn hour() -> (i64, i64) {
    let s = stack();
    (s.data_from + 3 * 3600, s.data_from + 4 * 3600)
}

/// The TLS flags with the stack's client certificate and key, trusting `ca`.
fn client_cert(ca: &str) -> [&str; 6] {
    let t = topology();
    [
        "--tls-ca-file",
        ca,
        "--tls-cert-file",
        &t.tls_cert_file,
        "--tls-key-file",
        &t.tls_key_file,
    ]
}

/// `export` through the TLS Querier with the given TLS flags.
fn export_tls(dir: &Path, range: (i64, i64), tls: &[&str]) -> Output {
    export(
        "grpc",
        dir,
        range,
        &topology().tls_grpc,
        &stack().thanos_http,
        tls,
    )
}

#[test]
fn grpc_over_tls_with_a_client_certificate_writes_the_same_bytes() {
    // (g) the same stores behind a Querier whose gRPC listener requires TLS and a client
    // certificate signed by the stack's CA.
    let (s, t) = (stack(), topology());
    let range = hour();
    let plain = scratch("topology-tls-plain");
    let out = export("grpc", &plain, range, &s.thanos_grpc, &s.thanos_http, &[]);
    assert!(
        out.status.success(),
        "plaintext Querier: {}",
        describe(&out)
    );
    let mtls = client_cert(&t.tls_ca_file);
    let tls = scratch("topology-tls");
    let out = export_tls(&tls, range, &mtls);
    assert!(out.status.success(), "TLS Querier: {}", describe(&out));
    let (pf, tf) = (files(&plain), files(&tls));
    assert_eq!(pf, tf, "the same keys");
    assert_eq!(pf.len(), METRICS * 2);
    for f in &pf {
        assert!(
            std::fs::read(plain.join(f)).unwrap() == std::fs::read(tls.join(f)).unwrap(),
            "{f}: the same bytes"
        );
    }
    // The certificate names 127.0.0.1 and localhost: --tls-server-name picks the other one.
    let named = scratch("topology-tls-named");
    let mut args = mtls.to_vec();
    args.extend(["--tls-server-name", "localhost"]);
    let out = export_tls(&named, range, &args);
    assert!(
        out.status.success(),
        "--tls-server-name localhost: {}",
        describe(&out)
    );
    assert_eq!(files(&named), pf);
}

#[test]
fn grpc_over_tls_with_a_wrong_ca_is_a_configuration_error() {
    let dir = scratch("topology-tls-wrong-ca");
    let out = export_tls(&dir, hour(), &client_cert(&topology().tls_other_ca_file));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TLS_CA_FILE"), "names the fix: {err}");
    assert!(files(&dir).is_empty(), "nothing written");
}

#[test]
fn grpc_over_tls_without_a_client_certificate_is_a_configuration_error() {
    // The server asks for a client certificate (mTLS); with TLS 1.3 the client learns of the
    // refusal only after its handshake, on the first call.
    let dir = scratch("topology-tls-no-cert");
    let started = std::time::Instant::now();
    let out = export_tls(&dir, hour(), &["--tls-ca-file", &topology().tls_ca_file]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TLS_CERT_FILE"), "names the fix: {err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "not retried as an outage: {:?}",
        started.elapsed()
    );
    assert!(files(&dir).is_empty(), "nothing written");
}

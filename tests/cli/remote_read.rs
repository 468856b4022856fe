//! Bad input from a remote read server (a fake one: what Prometheus and Mimir do not do on
//! demand): each fails the window with a clear error and its exit code, never a partial file;
//! and a Cortex-style SAMPLES answer is read into the very files the chunks give.

use std::path::PathBuf;

use crate::support::exporter::{BAD_INPUT_FROM, describe, export_blocking, files, scratch};
use crate::support::fake_remote_read::{Script, start};

const W1: i64 = BAD_INPUT_FROM;
const W2: i64 = W1 + 3600;

/// `export` of `windows` hourly windows over remote read from `url` into a fresh directory.
async fn export(url: &str, name: &str, windows: i64) -> (std::process::Output, PathBuf) {
    let dir = scratch(name);
    // one window per request: the faults are scripted by a request's start
    let extra = vec![
        ("SOURCE", "remote-read".to_string()),
        ("REMOTE_READ_URL", url.to_string()),
        ("WINDOWS_PER_REQUEST", "1".to_string()),
    ];
    let out = export_blocking(url.to_string(), dir.clone(), windows, extra).await;
    (out, dir)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Only the first window's files: the second window failed and left nothing.
fn only_the_first_window(dir: &std::path::Path) {
    let f = files(dir);
    assert!(!f.is_empty(), "the first window was written");
    assert!(f.iter().all(|k| k.contains(&format!("/{W1}_"))), "{f:?}");
    assert!(!f.iter().any(|k| k.contains(".tmp")), "{f:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_answers_are_read_into_the_same_files_as_chunks() {
    let (out, chunks) = export(&start(Script::Chunks).await, "rr-chunks", 2).await;
    assert!(out.status.success(), "{}", describe(&out));
    let (out, samples) = export(&start(Script::Samples).await, "rr-samples", 2).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("samples, not chunks"),
        "{}",
        stderr(&out)
    );
    let (c, s) = (files(&chunks), files(&samples));
    assert_eq!(c, s, "the same keys");
    assert_eq!(c.len(), 2 * 19, "19 metrics x 2 windows: {c:?}");
    for f in &c {
        assert_eq!(
            std::fs::read(chunks.join(f)).unwrap(),
            std::fs::read(samples.join(f)).unwrap(),
            "{f}: the same bytes"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_chunk_encoding_names_the_series_and_exits_4() {
    let (out, dir) = export(&start(Script::Xor2).await, "rr-xor2", 1).await;
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("chunk encoding XOR2"),
        "names the encoding: {err}"
    );
    assert!(err.contains(r#"pod=\"p1\""#), "names the series: {err}");
    assert!(files(&dir).is_empty(), "{:?}", files(&dir));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crc_mismatch_fails_the_window() {
    let (out, dir) = export(
        &start(Script::CrcFrom(W2 * 1000 - 600_000)).await,
        "rr-crc",
        2,
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let err = stderr(&out);
    assert!(err.contains("CRC32-Castagnoli"), "{err}");
    assert!(err.contains("after 2 attempt(s)"), "retried: {err}");
    only_the_first_window(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_frame_fails_the_window() {
    let (out, dir) = export(
        &start(Script::CutFrom(W2 * 1000 - 600_000)).await,
        "rr-cut",
        2,
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let err = stderr(&out);
    assert!(err.contains("the stream was cut"), "{err}");
    only_the_first_window(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_appended_to_a_200_answer_fails_the_window() {
    let (out, dir) = export(
        &start(Script::ErrorFrom(W2 * 1000 - 600_000)).await,
        "rr-error",
        2,
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("appended its error") && err.contains("iterator failed (injected)"),
        "shows the server's error: {err}"
    );
    only_the_first_window(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_statuses_are_retried_or_refused_by_their_meaning() {
    // 503 and 429: the server is busy or down, retried (the preflight's failure is retryable
    // too); 401 and 404: a configuration to fix, not retried
    for (code, exit) in [(503, 3), (429, 3), (401, 2), (404, 2)] {
        let (out, dir) = export(&start(Script::Status(code)).await, &format!("rr-{code}"), 1).await;
        assert_eq!(
            out.status.code(),
            Some(exit),
            "HTTP {code}: {}",
            describe(&out)
        );
        let err = stderr(&out);
        assert!(err.contains(&format!("injected status {code}")), "{err}");
        assert!(files(&dir).is_empty());
    }
    let (out, _) = export(&start(Script::Status(404)).await, "rr-404-hint", 1).await;
    assert!(
        stderr(&out).contains("/prometheus/api/v1/read"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_url_is_a_configuration_error() {
    let dir = scratch("rr-no-url");
    let extra = vec![("SOURCE", "remote-read".to_string())];
    let out = export_blocking("http://127.0.0.1:1".into(), dir.clone(), 1, extra).await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(stderr(&out).contains("REMOTE_READ_URL"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_url_of_several_refusing_fails_the_run_with_nothing_written() {
    // Each URL is a replica or a cluster of its own: exporting without one would write a
    // window with a cluster missing, or one replica's gaps, so a URL that does not answer is
    // an outage (exit 3), not skipped as Thanos Query skips an unhealthy store
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let good = start(Script::Chunks).await;
    let down = format!("http://127.0.0.1:{closed}/api/v1/read");
    let (out, dir) = export(&format!("{good},{down}"), "rr-one-down", 1).await;
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("127.0.0.1:{closed}")),
        "names the URL: {err}"
    );
    assert!(files(&dir).is_empty(), "{:?}", files(&dir));
}

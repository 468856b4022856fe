//! Bad input from a StoreAPI (a fake one: faults no real peer gives on demand): each gets a
//! clear error naming the problem and the fix, its exit code, and never a partial file.

use crate::support::exporter::{BAD_INPUT_FROM, describe, export_blocking, files, scratch};
use crate::support::fake_store::{Script, start};

const W1: i64 = BAD_INPUT_FROM;
const W2: i64 = W1 + 3600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoint() {
    let dir = scratch("bad-unreachable");
    let out = export_blocking("http://127.0.0.1:1".into(), dir.clone(), 1, vec![]).await;
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect to the StoreAPI at http://127.0.0.1:1"),
        "{err}"
    );
    assert!(files(&dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_with_an_unknown_encoding() {
    let store = start(Script::HistogramChunk).await;
    let dir = scratch("bad-encoding");
    let out = export_blocking(store, dir.clone(), 1, vec![]).await;
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HISTOGRAM"), "names the encoding: {err}");
    assert!(err.contains(r#"pod=\"p1\""#), "names the series: {err}");
    assert!(files(&dir).is_empty(), "nothing written: {:?}", files(&dir));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_cut_mid_series_fails_the_window_and_writes_nothing_for_it() {
    // one window per request: the first window exports; every stream of the second is cut
    // after one series
    let store = start(Script::CutFrom(W2 * 1000 - 300_000)).await;
    let dir = scratch("bad-cut");
    let one = vec![("WINDOWS_PER_REQUEST", "1".to_string())];
    let out = export_blocking(store, dir.clone(), 2, one).await;
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("injected"), "{err}");
    assert!(err.contains("after 2 attempt(s)"), "retried: {err}");
    let f = files(&dir);
    assert!(!f.is_empty(), "the first window was written");
    assert!(f.iter().all(|k| k.contains(&format!("/{W1}_"))), "{f:?}");
    assert!(!f.iter().any(|k| k.contains(&format!("/{W2}_"))), "{f:?}");
    assert!(
        !f.iter().any(|k| k.contains(".tmp")),
        "no temporary file left: {f:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_cut_in_a_batch_of_windows_fails_it_and_leaves_only_whole_files() {
    // a batch of two windows: the first is asked alone (it measures the requests of the
    // rest) and written, every request reaching the second is cut, the retries of the batch
    // ask both windows at once: the batch fails, files written before the failure are whole
    // (the rerun overwrites them), none is temporary
    let store = start(Script::CutReaching(W2 * 1000)).await;
    let dir = scratch("bad-cut-batch");
    let two = vec![("WINDOWS_PER_REQUEST", "2".to_string())];
    let out = export_blocking(store, dir.clone(), 2, two).await;
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("injected"), "{err}");
    assert!(
        err.contains(&format!("window {W1}")),
        "names the batch: {err}"
    );
    let f = files(&dir);
    assert!(
        !f.is_empty(),
        "the first window was written before the failure"
    );
    for k in f {
        assert!(!k.contains(".tmp"), "no temporary file left: {k}");
        let z = std::fs::read(dir.join(&k)).unwrap();
        let mut body = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&z[..]), &mut body)
            .unwrap_or_else(|e| panic!("{k} is not whole: {e}"));
        assert!(body.ends_with("]}}"), "{k} is not whole");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warning_frame_is_never_exported_as_partial_data() {
    let store = start(Script::Warning).await;
    let dir = scratch("bad-warning");
    let out = export_blocking(store, dir.clone(), 1, vec![]).await;
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("partial"), "{err}");
    assert!(files(&dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spill_dir_that_is_not_a_directory_is_refused_before_any_request() {
    let store = start(Script::CutFrom(i64::MAX)).await;
    let dir = scratch("bad-spill-dir");
    let not_a_dir = dir.join("spill-file");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&not_a_dir, b"").unwrap();
    let spill = vec![("SPILL_DIR", not_a_dir.display().to_string())];
    let out = export_blocking(store, dir.join("out"), 2, spill).await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SPILL_DIR") && err.contains("not a directory"),
        "{err}"
    );
    assert!(files(&dir.join("out")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_windows_leaves_nothing_in_the_spill_dir() {
    // three windows: the first asked alone, the other two in one request set aside in the
    // spill directory, which is empty again afterwards (the files are unlinked at once)
    let store = start(Script::CutFrom(i64::MAX)).await;
    let dir = scratch("spill-dir-clean");
    let spill_dir = dir.join("spill");
    std::fs::create_dir_all(&spill_dir).unwrap();
    let spill = vec![
        ("SPILL_DIR", spill_dir.display().to_string()),
        ("LOG_LEVEL", "debug".to_string()),
    ];
    let out = export_blocking(store, dir.join("out"), 3, spill).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("request set aside"), "{log}");
    let f = files(&dir.join("out"));
    for w in [W1, W2, W2 + 3600] {
        assert!(
            f.iter().any(|k| k.contains(&format!("/{w}_"))),
            "{w}: {f:?}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(&spill_dir).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

//! The HTTP query limits the gRPC path does not have, on the real stack: a span and step
//! beyond the 11,000 points per series Thanos Query (and Prometheus) answers, a Prometheus
//! started with a low `--query.max-samples` (Thanos Query v0.42 has no such flag: its engine's
//! limit is fixed at 2^31 - 1), and a Thanos Query with a short `--query.timeout`. HTTP refuses
//! each; gRPC exports each, equal to what the stack's own Querier answers over HTTP; remote
//! read exports the first from Prometheus alone.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::exporter::{
    as_strs, describe, export_args, exporter, files, read_json, scratch,
};
use crate::support::stack::stack;

fn export(
    source: &str,
    dir: &Path,
    from: i64,
    to: i64,
    store: &str,
    http: &str,
    extra: &[(&str, &str)],
) -> Output {
    let mut env = vec![
        ("STORE_ENDPOINT", store),
        ("PROMETHEUS_URL", http),
        ("S3_PREFIX", "k8s/prometheus"),
        ("CLUSTER_NAME", "home"),
        ("RETRIES", "1"),
    ];
    env.extend_from_slice(extra);
    let args = export_args(source, dir, from, to);
    exporter(&as_strs(&args, &[]), &env)
}

async fn export_async(
    source: &'static str,
    dir: PathBuf,
    from: i64,
    to: i64,
    store: String,
    http: String,
    extra: Vec<(&'static str, String)>,
) -> Output {
    tokio::task::spawn_blocking(move || {
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        export(source, &dir, from, to, &store, &http, &extra)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_11000_points_per_series_export_over_grpc_and_remote_read_only() {
    // One window over the whole data at a 15 s step: 172,800 / 15 = 11,520 points per series,
    // beyond the 11,000 Thanos Query (like Prometheus) answers over HTTP.
    let s = stack();
    let span = s.data_to - s.data_from;
    let step = 15;
    assert!(span / step > 11_000, "the stack's data spans {span} s");
    let dir = scratch("limits-resolution");
    let catalog = dir.join("catalog.yaml");
    std::fs::write(
        &catalog,
        "replace: true\nmetrics:\n  cpu_requests: 'max by ({{cluster_label}}, node, namespace, pod, container) (kube_pod_container_resource_requests{resource=\"cpu\", unit=\"core\"})'\n  cpu_usage: 'sum by ({{cluster_label}}, node, namespace, pod, container) (rate(container_cpu_usage_seconds_total{pod!=\"\", container!=\"\", container!=\"POD\"}[5m]))'\n",
    )
    .unwrap();
    let extra = vec![
        ("TIME_FRAME", span.to_string()),
        ("QUERY_STEP", step.to_string()),
        ("CATALOG_FILE", catalog.display().to_string()),
    ];
    let run = |source, out: &str| {
        export_async(
            source,
            dir.join(out),
            s.data_from,
            s.data_to,
            s.thanos_grpc.clone(),
            s.thanos_http.clone(),
            extra.clone(),
        )
    };

    let http = run("http", "http").await;
    assert_eq!(http.status.code(), Some(2), "{}", describe(&http));
    let err = String::from_utf8_lossy(&http.stderr);
    assert!(
        err.contains("exceeded maximum resolution of 11,000 points per timeseries"),
        "{err}"
    );
    assert!(err.contains("HTTP 400"), "{err}");
    assert!(files(&dir.join("http")).is_empty(), "no partial file");

    let grpc = run("grpc", "grpc").await;
    assert!(grpc.status.success(), "{}", describe(&grpc));
    let out = dir.join("grpc");
    let written = files(&out);
    assert_eq!(written.len(), 2 * 2, "2 metrics x 2 clusters: {written:?}");
    let mut longest = 0;
    for f in &written {
        let v = read_json(&out.join(f));
        for series in v["data"]["result"].as_array().unwrap() {
            let values = series["values"].as_array().unwrap();
            longest = longest.max(values.len());
            let t: Vec<i64> = values.iter().map(|p| p[0].as_i64().unwrap()).collect();
            assert!(
                t.windows(2)
                    .all(|w| (w[1] - w[0]) % step == 0 && w[1] > w[0])
            );
        }
    }
    // long-running pods have a point at every step but the first (no sample before the data)
    assert!(
        longest > 11_000 && longest as i64 <= span / step,
        "longest series has {longest} points"
    );

    // Without Thanos: Prometheus' own HTTP API refuses the window as well, its remote read
    // serves it, with the points the Querier's StoreAPI gave for that Prometheus' cluster
    // (from the first step whose lookback is all inside the data: the Querier also has the
    // day before, from object storage).
    let prometheus_b = s.prometheus("b").to_string();
    let mut http_b = extra.clone();
    http_b.push(("PROMETHEUS_URL", prometheus_b.clone()));
    let http = export_async(
        "http",
        dir.join("http-prometheus"),
        s.data_from,
        s.data_to,
        s.thanos_grpc.clone(),
        prometheus_b.clone(),
        http_b,
    )
    .await;
    assert_eq!(http.status.code(), Some(2), "{}", describe(&http));
    let err = String::from_utf8_lossy(&http.stderr);
    assert!(
        err.contains("exceeded maximum resolution of 11,000 points per timeseries"),
        "{err}"
    );
    let mut read_b = extra.clone();
    read_b.push(("REMOTE_READ_URL", format!("{prometheus_b}/api/v1/read")));
    let rr = export_async(
        "remote-read",
        dir.join("remote-read"),
        s.data_from,
        s.data_to,
        s.thanos_grpc.clone(),
        s.thanos_http.clone(),
        read_b,
    )
    .await;
    assert!(rr.status.success(), "{}", describe(&rr));
    let read = files(&dir.join("remote-read"));
    let of_b: Vec<String> = written
        .iter()
        .filter(|f| f.starts_with("k8s/prometheus/b/"))
        .cloned()
        .collect();
    assert_eq!(read, of_b, "2 metrics of cluster b");
    let settled = (s.data_from + 300) as f64;
    let points = |path: &Path| -> Vec<(String, Vec<serde_json::Value>)> {
        read_json(path)["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|series| {
                let values = series["values"].as_array().unwrap();
                let kept = values
                    .iter()
                    .filter(|p| p[0].as_f64().unwrap() >= settled)
                    .cloned()
                    .collect();
                (series["metric"].to_string(), kept)
            })
            .collect()
    };
    // the values of a gauge are the StoreAPI's; a rate's follow the server's own PromQL over
    // remote read, Thanos' over the StoreAPI (tests/integration/remote_read.rs), so only its
    // series and steps are compared
    let steps = |p: Vec<(String, Vec<serde_json::Value>)>| -> Vec<(String, Vec<f64>)> {
        p.into_iter()
            .map(|(k, v)| (k, v.iter().map(|x| x[0].as_f64().unwrap()).collect()))
            .collect()
    };
    let mut longest = 0;
    for f in &read {
        let ours = points(&dir.join("remote-read").join(f));
        let theirs = points(&out.join(f));
        longest = longest.max(ours.iter().map(|(_, v)| v.len()).max().unwrap_or(0));
        if f.ends_with("_cpu_usage.json.gz") {
            assert_eq!(
                steps(ours),
                steps(theirs),
                "{f}: the StoreAPI's series and steps"
            );
        } else {
            assert_eq!(ours, theirs, "{f}: the StoreAPI's points");
        }
    }
    assert!(longest > 11_000, "longest series has {longest} points");
}

/// Processes the test started, killed (by their own handles) when dropped.
pub(crate) struct Procs {
    children: Vec<(Child, PathBuf)>,
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (c, _) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Procs {
    pub(crate) fn new() -> Self {
        Procs {
            children: Vec::new(),
        }
    }

    /// Starts `program args`, its output in `log`.
    pub(crate) fn start(&mut self, program: &str, args: &[String], log: PathBuf) {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}"));
        self.children.push((child, log));
    }

    /// Waits until `ready` holds, failing early when a process exits.
    pub(crate) async fn wait_for<F, Fut>(&mut self, what: &str, mut ready: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(45);
        loop {
            if ready().await {
                return;
            }
            for (c, log) in &mut self.children {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "{what}: a process exited ({status}): {}",
                        std::fs::read_to_string(log).unwrap_or_default()
                    );
                }
            }
            assert!(Instant::now() < deadline, "{what}: not ready in 45 s");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn thanos_script() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("integration/stack/thanos.sh")
        .display()
        .to_string()
}

async fn get_ok(url: String) -> bool {
    matches!(reqwest::get(url).await, Ok(r) if r.status().is_success())
}

/// The StoreAPI endpoints (the sidecars) behind the stack's Querier.
async fn stack_store_endpoints(http: &str) -> Vec<String> {
    let v: serde_json::Value = reqwest::get(format!("{http}/api/v1/stores"))
        .await
        .expect("GET /api/v1/stores")
        .json()
        .await
        .expect("stores answer is JSON");
    let mut out: Vec<String> = v["data"]
        .as_object()
        .expect("stores by type")
        .values()
        .flat_map(|list| list.as_array().cloned().unwrap_or_default())
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

pub(crate) async fn stores_seen(http: String) -> usize {
    let Ok(r) = reqwest::get(format!("{http}/api/v1/stores")).await else {
        return 0;
    };
    let Ok(v) = r.json::<serde_json::Value>().await else {
        return 0;
    };
    v["data"].as_object().map_or(0, |m| {
        m.values().map(|l| l.as_array().map_or(0, Vec::len)).sum()
    })
}

/// Exports one window over HTTP from the stack's own Querier: the oracle.
async fn oracle(dir: PathBuf, from: i64, to: i64) -> Vec<String> {
    let s = stack();
    let out = export_async(
        "http",
        dir.clone(),
        from,
        to,
        s.thanos_grpc.clone(),
        s.thanos_http.clone(),
        vec![],
    )
    .await;
    assert!(out.status.success(), "{}", describe(&out));
    files(&dir)
}

fn assert_same_files(a: &Path, b: &Path, keys: &[String]) {
    for f in keys {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_max_samples_refuse_http_but_not_grpc() {
    // Cluster b's Prometheus again, over a hard-linked copy of its data, with a sample limit
    // far below what one window's queries load, and a Thanos sidecar: HTTP `query_range`
    // answers 422, while the sidecar's StoreAPI streams raw chunks (Prometheus' remote read of
    // streamed chunks has no sample limit).
    let s = stack();
    let dir = scratch("limits-max-samples");
    let data = dir.join("prom-b");
    let copied = Command::new("cp")
        .arg("-al")
        .arg(s.data_dir.join("tsdb/b"))
        .arg(&data)
        .status()
        .expect("cp -al");
    assert!(copied.success(), "copying cluster b's blocks");
    std::fs::write(
        dir.join("prometheus.yml"),
        "global:\n  external_labels:\n    cluster: b\n    replica: b\n",
    )
    .unwrap();
    let (pp, sg, sh) = (free_port(), free_port(), free_port());
    let mut procs = Procs::new();
    procs.start(
        "prometheus",
        &[
            format!("--config.file={}", dir.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", data.display()),
            "--storage.tsdb.retention.time=10y".into(),
            format!("--web.listen-address=127.0.0.1:{pp}"),
            "--query.max-samples=100".into(),
        ],
        dir.join("prometheus.log"),
    );
    procs.start(
        "bash",
        &[
            thanos_script(),
            "sidecar".into(),
            format!("--prometheus.url=http://127.0.0.1:{pp}"),
            format!("--tsdb.path={}", data.display()),
            format!("--grpc-address=127.0.0.1:{sg}"),
            format!("--http-address=127.0.0.1:{sh}"),
        ],
        dir.join("sidecar.log"),
    );
    let prom = format!("http://127.0.0.1:{pp}");
    let sidecar = format!("http://127.0.0.1:{sg}");
    procs
        .wait_for("prometheus and its sidecar", || {
            let (p, sc) = (prom.clone(), format!("http://127.0.0.1:{sh}"));
            async move { get_ok(format!("{p}/-/ready")).await && get_ok(format!("{sc}/-/ready")).await }
        })
        .await;

    let from = s.data_from + 3 * 3600;
    let to = from + 3600;
    let http = export_async(
        "http",
        dir.join("http"),
        from,
        to,
        sidecar.clone(),
        prom.clone(),
        vec![],
    )
    .await;
    assert_eq!(http.status.code(), Some(2), "{}", describe(&http));
    let err = String::from_utf8_lossy(&http.stderr);
    assert!(
        err.contains("query processing would load too many samples into memory"),
        "{err}"
    );
    assert!(err.contains("HTTP 422"), "{err}");
    assert!(files(&dir.join("http")).is_empty(), "no partial file");

    let grpc = export_async(
        "grpc",
        dir.join("grpc"),
        from,
        to,
        sidecar.clone(),
        prom.clone(),
        vec![],
    )
    .await;
    assert!(grpc.status.success(), "{}", describe(&grpc));
    let g = files(&dir.join("grpc"));
    assert_eq!(g.len(), 19, "19 metrics of cluster b: {g:?}");
    let o = oracle(dir.join("oracle"), from, to).await;
    let o_b: Vec<String> = o
        .into_iter()
        .filter(|f| f.starts_with("k8s/prometheus/b/"))
        .collect();
    assert_eq!(g, o_b);
    assert_same_files(&dir.join("grpc"), &dir.join("oracle"), &g);
    drop(procs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_query_timeout_refuses_http_but_not_grpc() {
    // A second Thanos Query over the stack's sidecars whose PromQL may run 1 ms: every HTTP
    // query times out; its StoreAPI proxy has no such deadline.
    let s = stack();
    let endpoints = stack_store_endpoints(&s.thanos_http).await;
    assert!(
        !endpoints.is_empty(),
        "the stack's Querier lists its stores"
    );
    let dir = scratch("limits-timeout");
    let (hp, gp) = (free_port(), free_port());
    let mut args = vec![
        thanos_script(),
        "query".into(),
        format!("--http-address=127.0.0.1:{hp}"),
        format!("--grpc-address=127.0.0.1:{gp}"),
        "--query.replica-label=replica".into(),
        "--query.timeout=1ms".into(),
    ];
    args.extend(endpoints.iter().map(|e| format!("--endpoint={e}")));
    let mut procs = Procs::new();
    procs.start("bash", &args, dir.join("thanos-query.log"));
    let (http_url, grpc_url) = (
        format!("http://127.0.0.1:{hp}"),
        format!("http://127.0.0.1:{gp}"),
    );
    let n = endpoints.len();
    procs
        .wait_for("thanos query to see the stack's stores", || {
            let u = http_url.clone();
            async move { stores_seen(u).await == n }
        })
        .await;

    let from = s.data_from + 3 * 3600;
    let to = from + 3600;
    let http = export_async(
        "http",
        dir.join("http"),
        from,
        to,
        grpc_url.clone(),
        http_url.clone(),
        vec![],
    )
    .await;
    // Thanos answers 503 when the engine's deadline passes, or 422 when it passes while the
    // query still fetches series (measured: "context deadline exceeded", and under load the
    // store fan-out's "code = DeadlineExceeded")
    assert!(
        matches!(http.status.code(), Some(2 | 3)),
        "{}",
        describe(&http)
    );
    let err = String::from_utf8_lossy(&http.stderr);
    assert!(
        err.contains("deadline exceeded")
            || err.contains("DeadlineExceeded")
            || err.contains("query timed out"),
        "{err}"
    );
    assert!(files(&dir.join("http")).is_empty(), "no partial file");

    let grpc = export_async(
        "grpc",
        dir.join("grpc"),
        from,
        to,
        grpc_url.clone(),
        http_url.clone(),
        vec![],
    )
    .await;
    assert!(grpc.status.success(), "{}", describe(&grpc));
    let g = files(&dir.join("grpc"));
    assert_eq!(g.len(), 19 * 2, "19 metrics x 2 clusters");
    let o = oracle(dir.join("oracle"), from, to).await;
    assert_eq!(g, o);
    assert_same_files(&dir.join("grpc"), &dir.join("oracle"), &g);
    drop(procs);
}

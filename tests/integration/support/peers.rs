//! Peers of a fault test's own: an S3 server, a Thanos Query over the stack's stores, a
//! Prometheus with its sidecar over a hard-linked copy of a cluster's data. The tests freeze
//! (SIGSTOP), kill and restart these, never the shared stack's processes, which the other
//! tests use at the same time. Every process is stopped when its `Peers` is dropped, pass or
//! fail.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use crate::support::stack::stack;

/// A loopback port of the range the fault tests may use (25000-25999), free when asked.
pub fn port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    loop {
        let p = 25_000 + NEXT.fetch_add(1, Ordering::SeqCst) % 1000;
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

fn script(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("integration/stack")
        .join(name)
        .display()
        .to_string()
}

/// One process a test started.
struct Proc {
    name: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

/// The processes of one test, by name.
pub struct Peers {
    dir: PathBuf,
    procs: Vec<Proc>,
}

impl Drop for Peers {
    fn drop(&mut self) {
        for p in &mut self.procs {
            if let Some(c) = &mut p.child {
                // a frozen process must run again to die of anything but SIGKILL; SIGKILL
                // works either way, the SIGCONT only spares it a stopped state
                let _ = signal(c.id(), "-CONT");
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

impl Peers {
    /// Peers logging under `dir`.
    pub fn new(dir: &Path) -> Self {
        Peers {
            dir: dir.to_path_buf(),
            procs: Vec::new(),
        }
    }

    fn proc(&mut self, name: &str) -> &mut Proc {
        self.procs
            .iter_mut()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no peer {name}"))
    }

    /// Starts `program args` as `name` (its output in `name.log`).
    pub fn start(&mut self, name: &str, args: &[String], env: &[(String, String)]) {
        self.procs.retain(|p| p.name != name || p.child.is_some());
        let log = self.dir.join(format!("{name}.log"));
        self.procs.push(Proc {
            name: name.to_string(),
            args: args.to_vec(),
            env: env.to_vec(),
            log,
            child: None,
        });
        self.restart(name);
    }

    /// Starts `name` again with the same arguments (after `kill`).
    pub fn restart(&mut self, name: &str) {
        let p = self.proc(name);
        assert!(p.child.is_none(), "{name} is running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p.log)
            .unwrap();
        let child = Command::new("bash")
            .args(&p.args)
            .envs(p.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        p.child = Some(child);
    }

    pub fn pid(&mut self, name: &str) -> u32 {
        self.proc(name).child.as_ref().expect("running").id()
    }

    /// SIGSTOP: the process keeps its sockets open and answers nothing.
    pub fn freeze(&mut self, name: &str) {
        let pid = self.pid(name);
        assert!(signal(pid, "-STOP"), "SIGSTOP {name}");
    }

    /// SIGCONT after `freeze`.
    pub fn thaw(&mut self, name: &str) {
        let pid = self.pid(name);
        assert!(signal(pid, "-CONT"), "SIGCONT {name}");
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(&mut self, name: &str) {
        let p = self.proc(name);
        let mut c = p.child.take().expect("running");
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Waits until `ready` holds, failing early when a peer exits.
    pub async fn wait_for<F, Fut>(&mut self, what: &str, mut ready: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if ready().await {
                return;
            }
            for p in &mut self.procs {
                if let Some(c) = &mut p.child
                    && let Ok(Some(status)) = c.try_wait()
                {
                    panic!(
                        "{what}: {} exited ({status}): {}",
                        p.name,
                        std::fs::read_to_string(&p.log).unwrap_or_default()
                    );
                }
            }
            assert!(Instant::now() < deadline, "{what}: not ready in 60 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// An S3 server of the stack's kind, as `name`, over `name/` in the test's directory, with
    /// the stack's credentials and bucket; returns its endpoint.
    pub async fn start_s3(&mut self, name: &str) -> String {
        let s = stack();
        let port = port();
        let data = self.dir.join(name);
        let env = vec![
            ("AWS_ACCESS_KEY_ID".to_string(), s.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY".to_string(), s.secret_key.clone()),
        ];
        self.start(
            name,
            &[
                script("s3.sh"),
                port.to_string(),
                data.display().to_string(),
            ],
            &env,
        );
        let url = format!("http://127.0.0.1:{port}");
        self.wait_for_s3(name, &url).await;
        url
    }

    /// Waits until the S3 server `name` at `url` answers, and creates the stack's bucket.
    pub async fn wait_for_s3(&mut self, name: &str, url: &str) {
        let s = stack();
        let admin = script("../tools/s3_admin.py");
        let run = |what: &'static str| {
            Command::new("python3")
                .args([admin.as_str(), what, s.bucket.as_str()])
                .env("S3_ENDPOINT", url)
                .env("AWS_ACCESS_KEY_ID", &s.access_key)
                .env("AWS_SECRET_ACCESS_KEY", &s.secret_key)
                .env("AWS_REGION", "us-east-1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|st| st.success())
        };
        self.wait_for(&format!("s3 server {name}"), || async { run("ready") })
            .await;
        assert!(run("mkbucket"), "creating the bucket on {name}");
    }

    /// A Thanos Query as `name` over `endpoints` (gRPC host:port); returns its gRPC and HTTP
    /// URLs once it sees every endpoint.
    pub async fn start_query(&mut self, name: &str, endpoints: &[String]) -> (String, String) {
        self.start_query_of(name, None, endpoints).await
    }

    /// The same, of Thanos `release` (one the stack built, `THANOS_OLDER`), else the pinned one.
    pub async fn start_query_of(
        &mut self,
        name: &str,
        release: Option<&str>,
        endpoints: &[String],
    ) -> (String, String) {
        let (gp, hp) = (port(), port());
        let mut args = vec![
            script("thanos.sh"),
            "query".into(),
            format!("--grpc-address=127.0.0.1:{gp}"),
            format!("--http-address=127.0.0.1:{hp}"),
            "--query.replica-label=replica".into(),
        ];
        args.extend(endpoints.iter().map(|e| format!("--endpoint={e}")));
        self.start(name, &args, &release_env(release));
        let http = format!("http://127.0.0.1:{hp}");
        self.wait_for_query(name, &http, endpoints.len()).await;
        (format!("http://127.0.0.1:{gp}"), http)
    }

    /// A Thanos sidecar of `release` as `name` in front of the Prometheus at `prometheus`
    /// (its URL, with its data in `data`); returns its gRPC address (host:port) once ready.
    pub async fn start_sidecar_of(
        &mut self,
        name: &str,
        release: &str,
        prometheus: &str,
        data: &Path,
    ) -> String {
        let (sg, sh) = (port(), port());
        self.start(
            name,
            &[
                script("thanos.sh"),
                "sidecar".into(),
                format!("--prometheus.url={prometheus}"),
                format!("--tsdb.path={}", data.display()),
                format!("--grpc-address=127.0.0.1:{sg}"),
                format!("--http-address=127.0.0.1:{sh}"),
            ],
            &release_env(Some(release)),
        );
        let ready = format!("http://127.0.0.1:{sh}/-/ready");
        self.wait_for(&format!("{name}: sidecar of {release}"), || {
            let ready = ready.clone();
            async move { get_ok(&ready).await }
        })
        .await;
        format!("127.0.0.1:{sg}")
    }

    /// Waits until the Thanos Query `name` at `http` sees `n` stores, every one healthy (a
    /// store that went away stays listed, with its last error, for minutes).
    pub async fn wait_for_query(&mut self, name: &str, http: &str, n: usize) {
        let what = format!("{name} to see its {n} stores healthy");
        self.wait_for(&what, || {
            let u = http.to_string();
            async move { stores_seen(&u).await == n }
        })
        .await;
    }

    /// Waits until the Thanos Query at `http` has excluded the store at `addr`: its
    /// `/api/v1/stores` entry shows the health check's error (it answers without it from then).
    pub async fn wait_for_store_error(&mut self, http: &str, addr: &str) {
        let what = format!("{http} to list {addr} with an error");
        self.wait_for(&what, || {
            let (url, addr) = (format!("{http}/api/v1/stores"), addr.to_string());
            async move {
                let Ok(r) = reqwest::get(&url).await else {
                    return false;
                };
                let Ok(v) = r.json::<serde_json::Value>().await else {
                    return false;
                };
                v["data"].as_object().is_some_and(|m| {
                    m.values()
                        .flat_map(|l| l.as_array().cloned().unwrap_or_default())
                        .any(|s| s["name"] == addr.as_str() && !s["lastError"].is_null())
                })
            }
        })
        .await;
    }

    /// Waits until the Thanos Query at `http` answers `query` at `at` (unix seconds) whole
    /// (`partial_response=false`): a store that was just killed stays listed as healthy until
    /// the Querier's next Info round, and a restarted one is dialled again only after the
    /// Querier's reconnect backoff, so a store count alone can pass too early.
    pub async fn wait_for_answer(&mut self, http: &str, query: &str, at: i64) {
        let what = format!("{http} to answer {query} without a partial response");
        let url = format!("{http}/api/v1/query");
        self.wait_for(&what, || {
            let url = url.clone();
            let form = [
                ("query", query.to_string()),
                ("time", at.to_string()),
                ("partial_response", "false".to_string()),
            ];
            async move {
                let Ok(r) = reqwest::Client::new().post(&url).form(&form).send().await else {
                    return false;
                };
                let Ok(v) = r.json::<serde_json::Value>().await else {
                    return false;
                };
                v["status"] == "success"
                    && v["data"]["result"]
                        .as_array()
                        .is_some_and(|a| !a.is_empty())
            }
        })
        .await;
    }

    /// Prometheus and a Thanos sidecar as `name` over a hard-linked copy of cluster `cluster`'s
    /// data (instance `instance` of the stack); returns the sidecar's gRPC address (host:port).
    pub async fn start_prometheus(&mut self, name: &str, instance: &str, cluster: &str) -> String {
        let s = stack();
        let dir = self.dir.join(name);
        let data = dir.join("data");
        std::fs::create_dir_all(&dir).unwrap();
        let copied = Command::new("cp")
            .arg("-al")
            .arg(s.data_dir.join("tsdb").join(instance))
            .arg(&data)
            .status()
            .expect("cp -al");
        assert!(copied.success(), "copying {instance}'s blocks");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  external_labels:\n    cluster: {cluster}\n    replica: {instance}\n"
            ),
        )
        .unwrap();
        let (pp, sg, sh) = (port(), port(), port());
        let prom = format!("{name}-prometheus");
        self.start(
            &prom,
            &[
                "-c".into(),
                format!(
                    "exec prometheus --config.file={} --storage.tsdb.path={} --storage.tsdb.retention.time=10y --web.listen-address=127.0.0.1:{pp}",
                    config.display(),
                    data.display()
                ),
            ],
            &[],
        );
        self.start(
            name,
            &[
                script("thanos.sh"),
                "sidecar".into(),
                format!("--prometheus.url=http://127.0.0.1:{pp}"),
                format!("--tsdb.path={}", data.display()),
                format!("--grpc-address=127.0.0.1:{sg}"),
                format!("--http-address=127.0.0.1:{sh}"),
            ],
            &[],
        );
        let (p, sc) = (
            format!("http://127.0.0.1:{pp}/-/ready"),
            format!("http://127.0.0.1:{sh}/-/ready"),
        );
        self.wait_for(&format!("{name}: prometheus and its sidecar"), || {
            let (p, sc) = (p.clone(), sc.clone());
            async move { get_ok(&p).await && get_ok(&sc).await }
        })
        .await;
        format!("127.0.0.1:{sg}")
    }
}

fn release_env(release: Option<&str>) -> Vec<(String, String)> {
    release
        .map(|r| vec![("THANOS_RELEASE".to_string(), r.to_string())])
        .unwrap_or_default()
}

async fn get_ok(url: &str) -> bool {
    matches!(reqwest::get(url).await, Ok(r) if r.status().is_success())
}

/// The healthy stores a Thanos Query lists (`/api/v1/stores`), each with its label sets
/// rendered.
pub async fn stores(http: &str) -> Vec<(String, String)> {
    let Ok(r) = reqwest::get(format!("{http}/api/v1/stores")).await else {
        return Vec::new();
    };
    let Ok(v) = r.json::<serde_json::Value>().await else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = v["data"]
        .as_object()
        .map(|m| {
            m.values()
                .flat_map(|l| l.as_array().cloned().unwrap_or_default())
                .filter(|s| s["lastError"].is_null())
                .filter_map(|s| {
                    let name = s["name"].as_str()?.to_string();
                    Some((name, s["labelSets"].to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

async fn stores_seen(http: &str) -> usize {
    stores(http).await.len()
}

//! Running the exporter binary as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `storeapi-exporter` with `args` and a clean environment (only PATH and `env`). The AWS
/// SDK is kept off instance metadata: tests talk to loopback addresses only.
pub fn exporter_command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_storeapi-exporter"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LOG_FORMAT", "json")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // a run exports whatever is due, as the tests' clocks make it; the batching of the
        // steady state has tests of its own (tests/integration/run.rs)
        .env("BATCH_DELAY", "0")
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs `storeapi-exporter` to the end (see `exporter_command`).
/// `export --from F --to T --source S --output-dir D`, for `exporter` (`as_strs`).
pub fn export_args(source: &str, dir: &std::path::Path, from: i64, to: i64) -> Vec<String> {
    let dir = dir.to_str().expect("a UTF-8 path");
    [
        "export",
        "--from",
        &from.to_string(),
        "--to",
        &to.to_string(),
    ]
    .into_iter()
    .map(str::to_string)
    .chain(["--source", source, "--output-dir", dir].map(str::to_string))
    .collect()
}

/// The arguments as `&str`, with `extra` after them.
pub fn as_strs<'a>(args: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    args.iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
        .collect()
}

/// The window start `T` of a key `…/<T>_<metric>.json.gz`.
pub fn window_of(key: &str) -> i64 {
    let name = key.rsplit('/').next().unwrap_or(key);
    let t = name.split('_').next().unwrap_or_default();
    t.parse()
        .unwrap_or_else(|_| panic!("no window start in {key}"))
}

pub fn exporter(args: &[&str], env: &[(&str, &str)]) -> Output {
    exporter_command(args, env)
        .output()
        .expect("run storeapi-exporter")
}

/// The fields of the JSON log event with this message (the last one).
pub fn log_event(out: &Output, message: &str) -> Option<serde_json::Value> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == message)
}

/// Describes a finished run for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A fresh empty directory under the target directory.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every file below `dir`, as paths relative to it, sorted.
pub fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

/// The windows of the data files (not the state) below `dir`, in order.
pub fn windows_of(dir: &Path) -> std::collections::BTreeSet<i64> {
    files(dir)
        .iter()
        .filter(|f| f.ends_with(".json.gz"))
        .map(|f| window_of(f))
        .collect()
}

/// The state object a `run` into the directory `dir` keeps, with `CLUSTER_NAME=home`.
pub fn state_of(dir: &Path, prefix: &str) -> serde_json::Value {
    let path = dir.join(prefix).join("home/storeapi-exporter-state.json");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).expect("the state is JSON")
}

/// A gzip file's JSON.
pub fn read_json(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap();
    let mut s = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut s).unwrap();
    serde_json::from_str(&s).unwrap()
}

/// The first window of the bad-input exports: 2025-10-31T00:00Z.
pub const BAD_INPUT_FROM: i64 = 1_761_868_800;

/// The settings every bad-input export shares, for a StoreAPI at `store`.
pub fn bad_input_env(store: &str) -> Vec<(&str, &str)> {
    vec![
        ("STORE_ENDPOINT", store),
        ("S3_PREFIX", "k8s/prometheus"),
        ("CLUSTER_NAME", "home"),
        ("RETRIES", "2"),
    ]
}

/// `export` of `windows` hourly windows from 2025-10-31T00:00Z into `dir`, run off the async
/// runtime (the fakes serve on it).
pub async fn export_blocking(
    store: String,
    dir: std::path::PathBuf,
    windows: i64,
    extra: Vec<(&'static str, String)>,
) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let mut env: Vec<(&str, &str)> = bad_input_env(&store);
        for (k, v) in &extra {
            env.push((k, v));
        }
        exporter(
            &[
                "export",
                "--from",
                &BAD_INPUT_FROM.to_string(),
                "--to",
                &(BAD_INPUT_FROM + windows * 3600).to_string(),
                "--output-dir",
                dir.to_str().unwrap(),
            ],
            &env,
        )
    })
    .await
    .unwrap()
}

/// `env` with `extra` set, each replacing a variable of the same name.
pub fn with(mut env: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    for (k, v) in extra {
        env.retain(|(x, _)| x != k);
        env.push((k.to_string(), v.to_string()));
    }
    env
}

/// Runs `storeapi-exporter` to the end off the async runtime (proxies and fakes serve on it).
pub async fn run(args: &[&str], env: Vec<(String, String)>) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        exporter(&args, &env)
    })
    .await
    .unwrap()
}

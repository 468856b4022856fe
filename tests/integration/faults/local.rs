//! The output directory full or read-only.

use super::*;

/// A tmpfs of `size` mounted on `dir` (the tests run as root), unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "mounting a tmpfs on {} (the fault tests run as root)",
            dir.display()
        );
        Mount(dir.to_path_buf())
    }

    fn remount(&self, options: &str) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {options}");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_output_dir_full_then_read_only_exit_3_and_2_then_rerun_is_whole() {
    let dir = scratch("fault-output-dir");
    let hours = 6;
    let reference = reference("output-dir", hours, "grpc").await;
    let window_bytes: usize = reference.values().map(Vec::len).sum::<usize>() / hours as usize;
    // room for about two windows
    let mount = Mount::tmpfs(
        &dir.join("fs"),
        &format!("{}k", 5 * window_bytes / 2 / 1024),
    );
    let dest = Dest::Dir {
        dir: dir.join("fs"),
        prefix: "faults".into(),
    };
    let store = stack().thanos_grpc.clone();
    // a window per batch: a batch of two would not fit (tmpfs counts a page per small file)
    let env = run_env(
        &dest,
        &store,
        hours,
        &[("RETRIES", "2"), ("WINDOWS_PER_REQUEST", "1")],
    );
    let out = run_to_end(env.clone()).await;
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("fault output dir full: exit {:?}", out.status.code());
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_logged(&err, &["No space left on device", "OUTPUT_DIR is full"]);
    let until = dest.state_until().await.unwrap();
    assert!(
        until > stack().data_from && until < stack().data_from + hours * HOUR,
        "stopped mid-run"
    );
    assert!(
        files(&dir.join("fs")).iter().all(|f| !f.contains(".tmp-")),
        "no temporary file left"
    );

    mount.remount("ro");
    let began = Instant::now();
    let out = run_to_end(env.clone()).await;
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "fault output dir read-only: exit {:?} after {:?}",
        out.status.code(),
        began.elapsed()
    );
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_logged(
        &err,
        &["Read-only file system", "OUTPUT_DIR must be writable"],
    );

    mount.remount("rw,size=64m");
    assert_rerun_completes(&dest, env, hours, &reference).await;
}

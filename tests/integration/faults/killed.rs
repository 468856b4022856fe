//! The exporter killed at seeded moments of a backfill, then rerun.

use super::*;

/// A small deterministic generator (xorshift64*), so the kill moments repeat run to run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_sigkill_at_20_seeded_moments_of_a_backfill_then_rerun() {
    let s = stack();
    let hours = 12;
    let reference = reference("sigkill", hours, "grpc").await;
    let dir = scratch("fault-sigkill");
    // S3, as in production: an upload cut by the kill leaves no object (a directory would keep
    // the killed writer's temporary file)
    let dest = Dest::S3 {
        endpoint: s.s3_endpoint.clone(),
        prefix: "faults/sigkill".into(),
    };
    let c = s3_client(&s.s3_endpoint);
    for k in dest.objects().await.unwrap_or_default().keys() {
        let _ = c
            .delete_object()
            .bucket(&s.bucket)
            .key(format!("faults/sigkill/{k}"))
            .send()
            .await;
    }
    let env = run_env(&dest, &s.thanos_grpc, hours, &[]);
    let mut rng = Rng(0x05EE_D0FF_A017);
    let mut last = None;
    for i in 0..20 {
        let at = Duration::from_millis(100 + rng.next() % 2400);
        let mut run = spawn(&env, &dir.join(format!("run-{i}.log")));
        tokio::time::sleep(at).await;
        let _ = run.child.kill();
        let _ = run.child.wait();
        // each interrupted run left whole windows only, and the state never goes back
        let until = dest.state_until().await;
        assert!(
            until >= last,
            "the state went back from {last:?} to {until:?}"
        );
        last = until;
        if let Some(objs) = dest.objects().await {
            for (k, v) in objs.iter().filter(|(k, _)| k.ends_with(".json.gz")) {
                assert_eq!(
                    reference.get(k),
                    Some(v),
                    "{k}: a whole file of the reference"
                );
            }
        }
    }
    eprintln!("fault sigkill x20: the state reached {last:?} before the last rerun");
    assert_rerun_completes(&dest, env, hours, &reference).await;
}

//! The stack's S3 server checks credentials and has the bucket: signed requests with the
//! stack's keys succeed, a wrong secret is refused.

use std::process::Command;

fn s3_admin(args: &[&str], secret: Option<&str>) -> std::process::Output {
    let env = crate::support::stack::stack();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/integration/tools/s3_admin.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).args(args);
    cmd.env("S3_ENDPOINT", &env.s3_endpoint)
        .env("AWS_ACCESS_KEY_ID", &env.access_key)
        .env("AWS_SECRET_ACCESS_KEY", secret.unwrap_or(&env.secret_key))
        .env("AWS_REGION", "us-east-1");
    cmd.output().expect("run integration/tools/s3_admin.py")
}

#[test]
fn bucket_exists_and_credentials_are_checked() {
    let env = crate::support::stack::stack();
    let ok = s3_admin(&["ls", &env.bucket], None);
    assert!(
        ok.status.success(),
        "listing with the stack's keys: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let denied = s3_admin(&["ls", &env.bucket], Some("not-the-secret"));
    assert!(!denied.status.success(), "a wrong secret must be refused");
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(err.contains("403"), "refused with 403: {err}");
}

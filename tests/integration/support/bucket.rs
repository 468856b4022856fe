//! The stack's bucket as the tests read it: objects under a prefix, with their bytes.

use std::collections::BTreeMap;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

use super::stack::stack;

/// A client for the stack's S3 server.
pub fn client() -> aws_sdk_s3::Client {
    let s = stack();
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&s.s3_endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            &s.access_key,
            &s.secret_key,
            None,
            None,
            "tests",
        ))
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Every object under `prefix/` with its bytes, keyed relative to the prefix.
pub async fn objects(prefix: &str) -> BTreeMap<String, Vec<u8>> {
    objects_in(&client(), prefix)
        .await
        .expect("the stack's bucket lists and reads")
}

/// Every object under `prefix/` of the stack's bucket, through `c` (any endpoint serving
/// it), keyed relative to the prefix; `None` if a listing or a read fails.
pub async fn objects_in(c: &aws_sdk_s3::Client, prefix: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    let bucket = &stack().bucket;
    let mut out = BTreeMap::new();
    let mut pages = c
        .list_objects_v2()
        .bucket(bucket)
        .prefix(format!("{prefix}/"))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for o in page.ok()?.contents() {
            let key = o.key()?.to_string();
            let body = c.get_object().bucket(bucket).key(&key).send().await.ok()?;
            let bytes = body.body.collect().await.ok()?.into_bytes().to_vec();
            out.insert(key[prefix.len() + 1..].to_string(), bytes);
        }
    }
    Some(out)
}

pub async fn clear(prefix: &str) {
    let c = client();
    for key in objects(prefix).await.keys() {
        c.delete_object()
            .bucket(&stack().bucket)
            .key(format!("{prefix}/{key}"))
            .send()
            .await
            .unwrap();
    }
}

pub async fn put(key: &str, body: &[u8]) {
    client()
        .put_object()
        .bucket(&stack().bucket)
        .key(key)
        .body(body.to_vec().into())
        .send()
        .await
        .unwrap();
}

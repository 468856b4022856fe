//! The S3 sink on aws-sdk-s3: the default credential chain (environment, web identity/IRSA,
//! container and instance credentials), optional AssumeRole, path-style addressing for
//! S3-compatible endpoints, the SDK's retries for throttling and 5xx, and errors turned into
//! messages that name the fix.

use std::time::Duration;

use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use tracing::debug;

use super::{Listing, SinkError, SinkErrorKind};
use crate::inflight;
use crate::observe::{Secret, error_chain};

/// How to reach the bucket.
#[derive(Debug, Clone)]
pub struct S3Config {
    pub bucket: String,
    /// Region to sign for; the SDK's chain (AWS_REGION, profile, IMDS) when unset.
    pub region: Option<String>,
    /// S3-compatible endpoint URL.
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most S3-compatible servers.
    pub path_style: bool,
    /// Role to assume for the writes, and its external ID.
    pub role_arn: Option<String>,
    pub external_id: Option<Secret>,
    /// STS endpoint for the AssumeRole call, when not AWS' own.
    pub sts_endpoint: Option<String>,
    /// Attempts per request (first try included) for throttling, 5xx and network errors.
    pub max_attempts: u32,
    /// Deadline of the TCP (and TLS) connection, for S3 and STS alike.
    pub connect_timeout: Duration,
    /// Deadline of one attempt, body included.
    pub attempt_timeout: Duration,
    /// Deadline of one operation: every attempt and the SDK's pauses between them.
    pub operation_timeout: Duration,
}

/// An S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Sink {
    client: aws_sdk_s3::Client,
    bucket: String,
    region: String,
    endpoint: Option<String>,
    role_arn: Option<String>,
    max_attempts: u32,
    attempt_timeout: Duration,
    operation_timeout: Duration,
}

/// The SDK's longest pause between two attempts of one request.
pub const MAX_BACKOFF: Duration = Duration::from_secs(20);

/// DeleteObjects takes at most this many keys.
const DELETE_BATCH: usize = 1000;

impl S3Sink {
    /// Builds the client. Credentials are resolved lazily, on the first request.
    pub async fn new(cfg: S3Config) -> Self {
        let retry = RetryConfig::standard()
            .with_max_attempts(cfg.max_attempts.max(1))
            .with_initial_backoff(Duration::from_millis(200))
            .with_max_backoff(MAX_BACKOFF);
        // the SDK sets no read or attempt deadline of its own: without these a frozen server
        // (connections open, no answer) holds a request forever. The STS client for ROLE_ARN
        // is configured from the same shared config, so it gets them too.
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(cfg.connect_timeout)
            .operation_attempt_timeout(cfg.attempt_timeout)
            .operation_timeout(cfg.operation_timeout)
            .build();
        // S3_REGION, else the SDK's chain, else us-east-1: a wrong region is then reported
        // with the bucket's real one (see `classify`)
        let regions = RegionProviderChain::first_try(cfg.region.clone().map(Region::new))
            .or_default_provider()
            .or_else(Region::from_static("us-east-1"));
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(retry)
            .timeout_config(timeouts)
            .region(regions)
            .load()
            .await;
        let region = shared
            .region()
            .expect("the region chain ends in a fixed region")
            .to_string();
        let mut s3 = aws_sdk_s3::config::Builder::from(&shared);
        if let Some(arn) = &cfg.role_arn {
            let sts_config = match &cfg.sts_endpoint {
                Some(url) => shared.to_builder().endpoint_url(url.clone()).build(),
                None => shared.clone(),
            };
            let mut role = aws_config::sts::AssumeRoleProvider::builder(arn.clone())
                .session_name("storeapi-exporter")
                .configure(&sts_config);
            if let Some(id) = &cfg.external_id {
                role = role.external_id(id.expose());
            }
            s3 = s3.credentials_provider(role.build().await);
        }
        if let Some(url) = &cfg.endpoint {
            s3 = s3.endpoint_url(url.clone());
        }
        s3 = s3.force_path_style(cfg.path_style);
        S3Sink {
            client: aws_sdk_s3::Client::from_conf(s3.build()),
            bucket: cfg.bucket,
            region,
            endpoint: cfg.endpoint,
            role_arn: cfg.role_arn,
            max_attempts: cfg.max_attempts.max(1),
            attempt_timeout: cfg.attempt_timeout,
            operation_timeout: cfg.operation_timeout,
        }
    }

    /// The endpoint, for logs and messages: the configured URL, or AWS' own for the region.
    fn endpoint(&self) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", self.region))
    }

    fn call(&self, what: String) -> inflight::Call {
        inflight::start("s3", &self.endpoint(), what)
    }

    /// The bucket, region and endpoint, for logs.
    pub fn describe(&self) -> String {
        match &self.endpoint {
            Some(e) => format!("s3://{} at {e} (region {})", self.bucket, self.region),
            None => format!("s3://{} (region {})", self.bucket, self.region),
        }
    }

    fn target(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// PutObject. S3 makes an object visible only once its whole body arrived, so a failed
    /// upload never leaves a partial object under the key. No Content-Encoding is set: S3
    /// clients then hand back the gzip bytes unchanged instead of inflating them.
    pub async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), SinkError> {
        let _call = self.call(format!(
            "PutObject {} ({} bytes)",
            self.target(key),
            body.len()
        ));
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.classify("put", &self.target(key), "s3:PutObject", e))?;
        Ok(())
    }

    /// GetObject; `None` for a missing key.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, SinkError> {
        let _call = self.call(format!("GetObject {}", self.target(key)));
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                // the attempt and operation deadlines end with the answer's headers: the body
                // gets what is left of the operation's
                let body = tokio::time::timeout(self.operation_timeout, out.body.collect());
                let bytes = body
                    .await
                    .map_err(|_| {
                        format!(
                            "the body did not arrive within {}s",
                            self.operation_timeout.as_secs()
                        )
                    })
                    .and_then(|r| r.map_err(|e| format!("reading the body failed: {e}")))
                    .map_err(|what| SinkError::S3 {
                        op: "get",
                        target: self.target(key),
                        kind: SinkErrorKind::Unavailable,
                        message: self.hint(SinkErrorKind::Unavailable, "s3:GetObject", &what, None),
                    })?;
                Ok(Some(bytes.into_bytes().to_vec()))
            }
            Err(SdkError::ServiceError(e)) if e.err().is_no_such_key() => Ok(None),
            Err(e) => Err(self.classify("get", &self.target(key), "s3:GetObject", e)),
        }
    }

    /// ListObjectsV2 with delimiter `/` (Finout's IAM policy only allows listing with it).
    pub async fn list(&self, prefix: &str) -> Result<Listing, SinkError> {
        let _call = self.call(format!("ListObjectsV2 {}", self.target(prefix)));
        let mut out = Listing::default();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .delimiter("/")
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.classify("list", &self.target(prefix), "s3:ListBucket", e))?;
            out.prefixes.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_string)),
            );
            out.keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// DeleteObjects in batches; a key the server refused fails the call (S3 reports those
    /// inside a 200 answer, so they are checked one by one).
    pub async fn delete(&self, keys: &[String]) -> Result<u64, SinkError> {
        let mut deleted = 0u64;
        for batch in keys.chunks(DELETE_BATCH) {
            let _call = self.call(format!(
                "DeleteObjects {} ({} keys)",
                self.target(&batch[0]),
                batch.len()
            ));
            let invalid = |e: aws_sdk_s3::error::BuildError| SinkError::S3 {
                op: "delete",
                target: self.target(&batch[0]),
                kind: SinkErrorKind::Refused,
                message: e.to_string(),
            };
            let objects = batch
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(invalid)?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(invalid)?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| {
                    self.classify("delete", &self.target(&batch[0]), "s3:DeleteObject", e)
                })?;
            if let Some(err) = out.errors().first() {
                let code = err.code().unwrap_or("unknown");
                let key = err.key().unwrap_or(&batch[0]);
                let kind = match code {
                    "AccessDenied" => SinkErrorKind::AccessDenied,
                    "SlowDown" | "InternalError" | "ServiceUnavailable" => {
                        SinkErrorKind::Unavailable
                    }
                    _ => SinkErrorKind::Refused,
                };
                return Err(SinkError::S3 {
                    op: "delete",
                    target: self.target(key),
                    kind,
                    message: self.hint(
                        kind,
                        "s3:DeleteObject",
                        &format!(
                            "{code}: {} ({} of {} keys refused)",
                            err.message().unwrap_or(""),
                            out.errors().len(),
                            batch.len()
                        ),
                        None,
                    ),
                });
            }
            deleted += batch.len() as u64;
        }
        Ok(deleted)
    }

    fn classify<E>(
        &self,
        op: &'static str,
        target: &str,
        action: &str,
        err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> SinkError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let bucket_region = err
            .raw_response()
            .and_then(|r| r.headers().get("x-amz-bucket-region"))
            .map(str::to_string);
        let (code, server_message) = match &err {
            SdkError::ServiceError(se) => (
                se.err().code().map(str::to_string),
                se.err().message().map(str::to_string),
            ),
            _ => (None, None),
        };
        let detail = DisplayErrorContext(&err).to_string();
        debug!(op, target, ?status, ?code, detail, "s3 request failed");
        let transport = matches!(
            err,
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        );
        let kind = error_kind(code.as_deref(), status, &detail, transport);
        // the chain reads better than the SDK's context, which ends in a Debug dump
        let detail = if transport { error_chain(&err) } else { detail };
        let what = match (&code, &server_message) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c.clone(),
            _ => match status {
                Some(s) => format!("HTTP {s}: {detail}"),
                None => detail,
            },
        };
        SinkError::S3 {
            op,
            target: target.to_string(),
            kind,
            message: self.hint(kind, action, &what, bucket_region.as_deref()),
        }
    }

    /// The server's words plus what to do about them.
    fn hint(
        &self,
        kind: SinkErrorKind,
        action: &str,
        what: &str,
        bucket_region: Option<&str>,
    ) -> String {
        let b = &self.bucket;
        match kind {
            SinkErrorKind::NoSuchBucket => format!(
                "{what}: bucket {b:?} does not exist{}: check S3_BUCKET (the bucket name only, no s3:// and no path) and S3_REGION",
                self.endpoint
                    .as_ref()
                    .map(|e| format!(" at {e}"))
                    .unwrap_or_default()
            ),
            SinkErrorKind::AccessDenied => format!(
                "{what}: access denied: the IAM policy of the exporter's role must allow {action} on this bucket and prefix (see deploy/iam-policy.json)"
            ),
            SinkErrorKind::BadCredentials => format!(
                "{what}: the credentials were refused: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, the IRSA role annotation of the ServiceAccount, or ROLE_ARN"
            ),
            SinkErrorKind::NoCredentials if self.role_arn.is_some() => format!(
                "{what}: no AWS credentials from assuming ROLE_ARN: check the role ARN, its trust policy, ROLE_EXTERNAL_ID and STS_ENDPOINT, and the base credentials (IRSA or AWS_ACCESS_KEY_ID) allowed to assume it"
            ),
            SinkErrorKind::NoCredentials => format!(
                "{what}: no AWS credentials: use IRSA (a ServiceAccount annotated with eks.amazonaws.com/role-arn), set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or ROLE_ARN"
            ),
            SinkErrorKind::WrongRegion => match bucket_region {
                Some(r) => format!(
                    "{what}: bucket {b:?} is in region {r}, not {}: set S3_REGION={r}",
                    self.region
                ),
                None => format!(
                    "{what}: bucket {b:?} is not in region {}: set S3_REGION to the bucket's region",
                    self.region
                ),
            },
            SinkErrorKind::Unavailable => format!(
                "{what}: the S3 endpoint {} kept failing through {} attempt(s) (S3_MAX_ATTEMPTS; each attempt {}s at most, S3_ATTEMPT_TIMEOUT; the operation {}s, S3_OPERATION_TIMEOUT); a later run resumes where this one stopped",
                self.endpoint(),
                self.max_attempts,
                self.attempt_timeout.as_secs(),
                self.operation_timeout.as_secs()
            ),
            SinkErrorKind::Refused => what.to_string(),
        }
    }
}

/// The class of a failed S3 request, from the error code S3 answered (if any), the HTTP status,
/// the SDK's description, and whether the request failed in transport (timeout, connection,
/// unreadable answer). The class decides the exit code and the hint.
fn error_kind(
    code: Option<&str>,
    status: Option<u16>,
    detail: &str,
    transport: bool,
) -> SinkErrorKind {
    match (code, status) {
        (Some("NoSuchBucket"), _) => SinkErrorKind::NoSuchBucket,
        (
            Some(
                "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "ExpiredToken"
                | "InvalidToken"
                | "TokenRefreshRequired",
            ),
            _,
        ) => SinkErrorKind::BadCredentials,
        (Some("PermanentRedirect" | "AuthorizationHeaderMalformed"), _) | (_, Some(301)) => {
            SinkErrorKind::WrongRegion
        }
        (Some("AccessDenied" | "AllAccessDisabled" | "AccountProblem"), _) => {
            SinkErrorKind::AccessDenied
        }
        (_, Some(403)) => SinkErrorKind::AccessDenied,
        (_, Some(s)) if s >= 500 || s == 429 => SinkErrorKind::Unavailable,
        (Some("SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable"), _) => {
            SinkErrorKind::Unavailable
        }
        (Some(_), _) => SinkErrorKind::Refused,
        (None, _) => {
            if detail.to_lowercase().contains("credential") {
                SinkErrorKind::NoCredentials
            } else if transport {
                SinkErrorKind::Unavailable
            } else {
                SinkErrorKind::Refused
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_code_then_status() {
        use SinkErrorKind::*;
        let k = |code, status, detail, transport| error_kind(code, status, detail, transport);
        assert_eq!(k(Some("NoSuchBucket"), Some(404), "", false), NoSuchBucket);
        assert_eq!(
            k(Some("SignatureDoesNotMatch"), Some(403), "", false),
            BadCredentials
        );
        assert_eq!(
            k(Some("InvalidAccessKeyId"), Some(403), "", false),
            BadCredentials
        );
        assert_eq!(
            k(Some("ExpiredToken"), Some(400), "", false),
            BadCredentials
        );
        assert_eq!(k(Some("AccessDenied"), Some(403), "", false), AccessDenied);
        // a 403 without a code (HEAD requests have no body) is a policy refusal
        assert_eq!(k(None, Some(403), "", false), AccessDenied);
        assert_eq!(
            k(Some("PermanentRedirect"), Some(301), "", false),
            WrongRegion
        );
        assert_eq!(k(None, Some(301), "", false), WrongRegion);
        assert_eq!(
            k(Some("AuthorizationHeaderMalformed"), Some(400), "", false),
            WrongRegion
        );
        assert_eq!(k(Some("SlowDown"), Some(503), "", false), Unavailable);
        assert_eq!(k(None, Some(500), "", false), Unavailable);
        assert_eq!(k(None, Some(429), "", false), Unavailable);
        assert_eq!(k(Some("RequestTimeout"), Some(400), "", false), Unavailable);
        assert_eq!(k(Some("InvalidArgument"), Some(400), "", false), Refused);
        assert_eq!(
            k(
                None,
                None,
                "failed to load credentials from the chain",
                false
            ),
            NoCredentials
        );
        assert_eq!(k(None, None, "connection refused", true), Unavailable);
        assert_eq!(k(None, None, "construction failure", false), Refused);
    }
}

//! Where the peers are and how to authenticate to them, from Finout's variables: the StoreAPI
//! endpoint and the HTTP API's address (HOSTNAME as Kubernetes sets it is the pod's own name,
//! not the Thanos host), and the auth and tenant headers sent to both.

use super::args::{ConnectionArgs, SourceArgs};
use super::settings::ConfigError;
use crate::observe::Secret;

fn machine_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The HOSTNAME environment value, unless it is this machine's own name (Kubernetes sets
/// HOSTNAME to the pod name in every container).
pub(super) fn env_hostname() -> Option<String> {
    let h = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty())?;
    match machine_hostname() {
        Some(own) if own == h => None,
        _ => Some(h),
    }
}

/// The StoreAPI endpoint: `--store`, else `HOSTNAME:10901` when HOSTNAME names another host.
pub fn store_endpoint(src: &SourceArgs) -> Result<String, ConfigError> {
    store_endpoint_with(src, env_hostname().as_deref())
}

pub(super) fn store_endpoint_with(
    src: &SourceArgs,
    env_host: Option<&str>,
) -> Result<String, ConfigError> {
    if let Some(s) = &src.store {
        return Ok(s.clone());
    }
    src.hostname
        .as_deref()
        .or(env_host)
        .map(|h| format!("http://{h}:10901"))
        .ok_or(ConfigError::NoStore)
}

/// The HTTP API base URL: `--prometheus-url`, else `SCHEME://HOSTNAME:PORT/PATH_PREFIX`.
pub fn http_base(src: &SourceArgs) -> String {
    http_base_with(src, env_hostname().as_deref())
}

pub(super) fn http_base_with(src: &SourceArgs, env_host: Option<&str>) -> String {
    if let Some(u) = &src.prometheus_url {
        return u.trim_end_matches('/').to_string();
    }
    let host = src.hostname.as_deref().or(env_host).unwrap_or("localhost");
    let mut base = format!("{}://{}:{}", src.scheme, host, src.port);
    if let Some(p) = src.path_prefix.as_deref().map(|p| p.trim_matches('/'))
        && !p.is_empty()
    {
        base.push('/');
        base.push_str(p);
    }
    base
}

/// Auth and tenant headers, the same for gRPC metadata (lowercase) and HTTP.
pub(super) fn auth_headers(conn: &ConnectionArgs) -> Vec<(String, Secret)> {
    let mut h = Vec::new();
    if let Some(t) = &conn.bearer_token {
        h.push((
            "authorization".to_string(),
            Secret::new(format!("Bearer {}", t.expose())),
        ));
    } else if let (Some(u), Some(p)) = (&conn.username, &conn.password) {
        let pair = format!("{u}:{}", p.expose());
        h.push((
            "authorization".to_string(),
            Secret::new(format!("Basic {}", base64_lite::encode(pair.as_bytes()))),
        ));
    }
    if let Some(t) = &conn.auth_token {
        h.push(("token".to_string(), t.clone()));
    }
    // the tenant is no secret, but it travels with the credentials
    if let Some(t) = &conn.tenant {
        h.push(("x-scope-orgid".to_string(), Secret::new(t.clone())));
        h.push(("thanos-tenant".to_string(), Secret::new(t.clone())));
    }
    h
}

/// Base64 for basic auth, so no crate is needed for eight lines.
mod base64_lite {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(input: &[u8]) -> String {
        let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::settings::opts;

    #[test]
    fn basic_auth_encoding() {
        assert_eq!(base64_lite::encode(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64_lite::encode(b"a"), "YQ==");
        assert_eq!(base64_lite::encode(b"ab"), "YWI=");
    }

    #[test]
    fn hostname_equal_to_the_machine_is_not_the_thanos_host() {
        let o = opts(&["--s3-prefix", "p"]);
        if let Some(own) = machine_hostname() {
            assert!(matches!(
                store_endpoint_with(&o.source, None),
                Err(ConfigError::NoStore)
            ));
            assert_eq!(http_base_with(&o.source, None), "http://localhost:9090");
            // what env_hostname() makes of Kubernetes' HOSTNAME=<pod name>
            assert!(own != "thanos-query.monitoring");
        }
        let host = Some("thanos-query.monitoring");
        assert_eq!(
            store_endpoint_with(&o.source, host).unwrap(),
            "http://thanos-query.monitoring:10901"
        );
        assert_eq!(
            http_base_with(&o.source, host),
            "http://thanos-query.monitoring:9090"
        );
    }
}

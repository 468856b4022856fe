//! TLS for every endpoint the exporter reads from (StoreAPI, remote read, HTTP API): the files
//! are read in one place, and a TLS failure is told apart from an outage with a hint that
//! names the setting to change.

use std::path::PathBuf;

use thiserror::Error;

/// An endpoint's TLS files, read once when its client is built.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA bundle to verify the server with, instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for mTLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// The PEM contents of [`TlsFiles`].
pub struct TlsPem {
    pub ca: Option<Vec<u8>>,
    /// Certificate and key.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

/// A TLS file that cannot be read.
#[derive(Debug, Error)]
#[error("reading {what} {path:?}: {source}")]
pub struct TlsFileError {
    pub what: &'static str,
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl TlsFiles {
    /// Reads every file that is set.
    pub fn read(&self) -> Result<TlsPem, TlsFileError> {
        let read = |what, path: &PathBuf| {
            std::fs::read(path).map_err(|source| TlsFileError {
                what,
                path: path.clone(),
                source,
            })
        };
        let ca = self
            .ca_file
            .as_ref()
            .map(|p| read("CA file", p))
            .transpose()?;
        let client = match &self.client_cert {
            Some((cert, key)) => {
                Some((read("client certificate", cert)?, read("client key", key)?))
            }
            None => None,
        };
        Ok(TlsPem { ca, client })
    }
}

/// A TLS failure is a configuration problem, not an outage: says what to change.
pub fn tls_hint(endpoint: &str, detail: &str) -> Option<&'static str> {
    let d = detail.to_ascii_lowercase();
    if !endpoint.starts_with("https://") {
        return None;
    }
    if d.contains("invalidcontenttype") || d.contains("corrupt message") {
        Some("the endpoint does not speak TLS: use http:// instead of https://")
    } else if d.contains("certificaterequired") || d.contains("certificate required") {
        Some("the server requires a client certificate (mTLS): set TLS_CERT_FILE and TLS_KEY_FILE")
    } else if d.contains("alert: badcertificate")
        || d.contains("alert: unknownca")
        || d.contains("alert: decrypterror")
        || d.contains("alert: accessdenied")
    {
        Some(
            "the server refused the client certificate: set TLS_CERT_FILE and TLS_KEY_FILE to a certificate signed by a CA the server trusts",
        )
    } else if d.contains("certificate") || d.contains("unknownissuer") || d.contains("tls") {
        Some(
            "the server's certificate was not accepted: set TLS_CA_FILE to its CA, or TLS_SERVER_NAME to the name in its certificate",
        )
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_failures_name_the_setting_to_change() {
        let plain = tls_hint("https://q:10901", "InvalidContentType: corrupt message").unwrap();
        assert!(plain.contains("use http:// instead of https://"), "{plain}");
        let ca = tls_hint("https://q:10901", "invalid peer certificate: UnknownIssuer").unwrap();
        assert!(
            ca.contains("TLS_CA_FILE") && ca.contains("TLS_SERVER_NAME"),
            "{ca}"
        );
        let mtls = tls_hint(
            "https://q:10901",
            "transport error: received fatal alert: CertificateRequired",
        )
        .unwrap();
        assert!(
            mtls.contains("TLS_CERT_FILE") && mtls.contains("TLS_KEY_FILE"),
            "{mtls}"
        );
        let refused = tls_hint("https://q:10901", "received fatal alert: UnknownCA").unwrap();
        assert!(refused.contains("client certificate"), "{refused}");
        // not TLS at all: no hint, and nothing for a plaintext endpoint
        assert_eq!(tls_hint("https://q:10901", "connection refused"), None);
        assert_eq!(tls_hint("http://q:10901", "certificate"), None);
    }

    #[test]
    fn a_missing_file_is_named() {
        let files = TlsFiles {
            ca_file: Some("/nonexistent/ca.pem".into()),
            client_cert: None,
        };
        let e = files.read().err().unwrap();
        assert!(
            e.to_string()
                .starts_with("reading CA file \"/nonexistent/ca.pem\""),
            "{e}"
        );
        assert!(
            TlsFiles::default()
                .read()
                .is_ok_and(|p| p.ca.is_none() && p.client.is_none())
        );
    }
}

//! Where files go: a local directory or an S3 bucket. A file is written whole or not at all:
//! never a partial object under its final key.

pub mod s3;

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::exit;

pub use s3::{S3Config, S3Sink};

/// What went wrong with the destination, for the exit code and the hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkErrorKind {
    /// The bucket does not exist (or not in this account/endpoint).
    NoSuchBucket,
    /// The credentials are valid but the policy does not allow the action.
    AccessDenied,
    /// The credentials were refused (unknown key, wrong secret, expired token).
    BadCredentials,
    /// No credentials could be found in the default chain.
    NoCredentials,
    /// The bucket lives in another region than the client signs for.
    WrongRegion,
    /// The destination did not answer, or kept failing, through the retries.
    Unavailable,
    /// Anything else the destination refused.
    Refused,
}

/// A failed operation on the destination.
#[derive(Debug, Error)]
pub enum SinkError {
    #[error("writing {path}: {source}{}", io_hint(source.kind()))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("s3 {op} {target}: {message}")]
    S3 {
        op: &'static str,
        target: String,
        kind: SinkErrorKind,
        message: String,
    },
}

/// What to do about a local write that failed.
fn io_hint(kind: std::io::ErrorKind) -> &'static str {
    match kind {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            ": the filesystem of OUTPUT_DIR is full: free space or point OUTPUT_DIR elsewhere (a later run resumes where this one stopped)"
        }
        std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied => {
            ": OUTPUT_DIR must be writable by the exporter (in a pod, mount a volume there: the root filesystem is read-only)"
        }
        _ => "",
    }
}

impl SinkError {
    /// The process exit code for this failure: a destination that refuses for a reason the
    /// user must fix is a configuration error, one that stays unavailable is worth a retry.
    pub fn exit_code(&self) -> u8 {
        match self.kind() {
            SinkErrorKind::Unavailable | SinkErrorKind::Refused => exit::UNAVAILABLE,
            SinkErrorKind::NoSuchBucket
            | SinkErrorKind::AccessDenied
            | SinkErrorKind::BadCredentials
            | SinkErrorKind::NoCredentials
            | SinkErrorKind::WrongRegion => exit::CONFIG,
        }
    }

    /// The class of the failure.
    pub fn kind(&self) -> SinkErrorKind {
        match self {
            SinkError::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                    SinkErrorKind::AccessDenied
                }
                _ => SinkErrorKind::Unavailable,
            },
            SinkError::S3 { kind, .. } => *kind,
        }
    }

    /// Whether a later run may succeed without a change of configuration.
    pub fn is_transient(&self) -> bool {
        self.kind() == SinkErrorKind::Unavailable
    }
}

/// One level of a listing: the "folders" (common prefixes, ending in `/`) and the keys
/// directly under a prefix.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Listing {
    pub prefixes: Vec<String>,
    pub keys: Vec<String>,
}

/// The destination of an export.
#[derive(Debug, Clone)]
pub enum Sink {
    Local(LocalDir),
    S3(Box<S3Sink>),
}

impl Sink {
    /// Writes `body` under `key` atomically.
    pub async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), SinkError> {
        match self {
            Sink::Local(d) => d.put(key, body).await,
            Sink::S3(s) => s.put(key, body, content_type).await,
        }
    }

    /// Reads `key`; `None` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, SinkError> {
        match self {
            Sink::Local(d) => d.get(key).await,
            Sink::S3(s) => s.get(key).await,
        }
    }

    /// Lists one level below `prefix` (which ends in `/`), as S3 does with delimiter `/`.
    pub async fn list(&self, prefix: &str) -> Result<Listing, SinkError> {
        match self {
            Sink::Local(d) => d.list(prefix).await,
            Sink::S3(s) => s.list(prefix).await,
        }
    }

    /// Deletes `keys`; returns how many were deleted.
    pub async fn delete(&self, keys: &[String]) -> Result<u64, SinkError> {
        match self {
            Sink::Local(d) => d.delete(keys).await,
            Sink::S3(s) => s.delete(keys).await,
        }
    }

    /// Where files go, for logs.
    pub fn describe(&self) -> String {
        match self {
            Sink::Local(d) => format!("directory {}", d.root().display()),
            Sink::S3(s) => s.describe(),
        }
    }
}

/// A local directory: `DIR/<key>`, written to a temporary file in the same directory and
/// renamed into place, so a reader never sees a partial file.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
}

fn write_atomically(root: &Path, path: &Path, body: &[u8]) -> Result<(), SinkError> {
    let dir = path.parent().unwrap_or(root);
    std::fs::create_dir_all(dir).map_err(|e| io_error(e, dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = std::fs::write(&tmp, body)
        .map_err(|e| io_error(e, &tmp))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| io_error(e, path)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn io_error(source: std::io::Error, path: &Path) -> SinkError {
    SinkError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl LocalDir {
    /// A sink writing under `root` (created when missing).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalDir { root: root.into() }
    }

    /// The directory files go under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes `body` under `key` atomically. The write, the rename and the clean-up of a
    /// failed write run as one blocking task: a cancelled upload (a failed window, a shutdown)
    /// then never leaves a temporary file behind, and a full disk keeps no partial one.
    pub async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), SinkError> {
        let path = self.root.join(key);
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || write_atomically(&root, &path, &body))
            .await
            .map_err(|e| SinkError::Io {
                path: self.root.join(key),
                source: std::io::Error::other(e.to_string()),
            })?
    }

    /// Reads `key`; `None` when the file does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, SinkError> {
        let path = self.root.join(key);
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(e, &path)),
        }
    }

    /// Subdirectories (as `prefix/name/`) and files (as `prefix/name`) of `prefix`;
    /// temporary files of writes in progress are not listed.
    pub async fn list(&self, prefix: &str) -> Result<Listing, SinkError> {
        let dir = self.root.join(prefix);
        let mut out = Listing::default();
        let mut rd = match tokio::fs::read_dir(&dir).await {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_error(e, &dir)),
        };
        while let Some(e) = rd.next_entry().await.map_err(|e| io_error(e, &dir))? {
            let name = e.file_name().to_string_lossy().into_owned();
            let ft = e
                .file_type()
                .await
                .map_err(|err| io_error(err, &e.path()))?;
            if ft.is_dir() {
                out.prefixes.push(format!("{prefix}{name}/"));
            } else if !(name.starts_with('.') && name.contains(".tmp-")) {
                out.keys.push(format!("{prefix}{name}"));
            }
        }
        out.prefixes.sort();
        out.keys.sort();
        Ok(out)
    }

    /// Deletes files, then the directories the deletions left empty (S3 has no directories,
    /// so an emptied partition disappears there too).
    pub async fn delete(&self, keys: &[String]) -> Result<u64, SinkError> {
        let mut n = 0;
        for key in keys {
            let path = self.root.join(key);
            match tokio::fs::remove_file(&path).await {
                Ok(()) => n += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(e, &path)),
            }
            let mut dir = path.parent();
            while let Some(d) = dir {
                if d == self.root || tokio::fs::remove_dir(d).await.is_err() {
                    break;
                }
                dir = d.parent();
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_dir_lists_one_level_and_prunes_emptied_directories() {
        let root = std::env::temp_dir().join(format!("sink-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let d = LocalDir::new(&root);
        d.put("p/a/x.json.gz", b"1".to_vec()).await.unwrap();
        d.put("p/a/y/z.json.gz", b"2".to_vec()).await.unwrap();
        d.put("p/state.json", b"3".to_vec()).await.unwrap();
        let l = d.list("p/").await.unwrap();
        assert_eq!(l.prefixes, vec!["p/a/"]);
        assert_eq!(l.keys, vec!["p/state.json"]);
        let l = d.list("p/a/").await.unwrap();
        assert_eq!(l.prefixes, vec!["p/a/y/"]);
        assert_eq!(l.keys, vec!["p/a/x.json.gz"]);
        assert_eq!(d.get("p/a/y/z.json.gz").await.unwrap(), Some(b"2".to_vec()));
        assert_eq!(d.get("p/none").await.unwrap(), None);
        assert_eq!(d.list("nothing/").await.unwrap(), Listing::default());
        let n = d
            .delete(&["p/a/y/z.json.gz".into(), "p/a/gone".into()])
            .await
            .unwrap();
        assert_eq!(n, 1);
        assert!(!root.join("p/a/y").exists(), "emptied directory removed");
        assert!(root.join("p/a/x.json.gz").exists());
        let _ = std::fs::remove_dir_all(&root);
    }
}

//! Where files go. A file is written whole or not at all: never a partial object under its
//! final key.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// A failed write.
#[derive(Debug, Error)]
pub enum SinkError {
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A local directory: `DIR/<key>`, written to a temporary file in the same directory and
/// renamed into place, so a reader never sees a partial file.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
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

    /// Writes `body` under `key` atomically.
    pub async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), SinkError> {
        let path = self.root.join(key);
        let io = |source, path: &Path| SinkError::Io {
            path: path.to_path_buf(),
            source,
        };
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io(e, &dir))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        tokio::fs::write(&tmp, &body)
            .await
            .map_err(|e| io(e, &tmp))?;
        if let Err(e) = tokio::fs::rename(&tmp, &path).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(io(e, &path));
        }
        Ok(())
    }
}

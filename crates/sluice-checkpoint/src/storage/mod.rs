//! Where checkpoints are kept: a local directory, written through `sluice-fs` with
//! every write synced, or object storage by URL, through the `object_store` crate.
//!
//! The coordinator is the only writer, from its own thread; object storage is async, so
//! an object store location owns a small single-threaded tokio runtime and blocks on it.

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use sluice_fs::FileSystem;
use sluice_types::{Error, Result};
use std::path::PathBuf;
use std::sync::Arc;

/// A checkpoint location: a local directory, or a root in an object store.
pub struct Storage {
    backend: Backend,
    display: String,
}

enum Backend {
    /// A directory, written through a [`FileSystem`] with every write synced: a file
    /// written by [`Storage::put`] is durable, name and contents, once `put` returns.
    Local { fs: Arc<dyn FileSystem>, root: PathBuf },
    /// An object store, whose writes are durable once acknowledged.
    Object { store: Arc<dyn ObjectStore>, root: Path, runtime: tokio::runtime::Runtime },
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

fn storage_error(location: &str, e: impl std::fmt::Display) -> Error {
    Error::checkpoint(location, e.to_string())
}

impl Storage {
    /// Opens `location`: a local path (created if missing), or a URL: `file://`,
    /// `memory://`, `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`
    /// (credentials and endpoints from the usual environment variables).
    pub fn open(location: &str) -> Result<Self> {
        if !location.contains("://") {
            return Self::local(location, location, sluice_fs::local());
        }
        let url = url::Url::parse(location).map_err(|e| storage_error(location, format!("not a valid URL: {e}")))?;
        if url.scheme() == "file" {
            let path = url.to_file_path().map_err(|()| storage_error(location, "not a local file URL"))?;
            return Self::local(&path.to_string_lossy(), location, sluice_fs::local());
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("checkpoint storage runtime", e))?;
        let root = Path::from_url_path(url.path()).map_err(|e| storage_error(location, e))?;
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            // Credentials, region and endpoint come from the environment, as the
            // clouds' own tools read them (AWS_ACCESS_KEY_ID, AWS_ENDPOINT, ...).
            "s3" | "s3a" => Arc::new(
                object_store::aws::AmazonS3Builder::from_env()
                    .with_url(location)
                    .build()
                    .map_err(|e| storage_error(location, e))?,
            ),
            "gs" => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(location)
                    .build()
                    .map_err(|e| storage_error(location, e))?,
            ),
            "az" | "abfs" | "abfss" | "azure" => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(location)
                    .build()
                    .map_err(|e| storage_error(location, e))?,
            ),
            _ => Arc::from(object_store::parse_url(&url).map_err(|e| storage_error(location, e))?.0),
        };
        Ok(Storage { backend: Backend::Object { store, root, runtime }, display: location.to_string() })
    }

    /// The local directory `path`, written through `fs` (tests pass a
    /// [`sluice_fs::SimulatedFs`]).
    pub fn on_file_system(path: &str, fs: Arc<dyn FileSystem>) -> Result<Self> {
        Self::local(path, path, fs)
    }

    fn local(path: &str, display: &str, fs: Arc<dyn FileSystem>) -> Result<Self> {
        let root = PathBuf::from(path);
        sluice_fs::create_dir_all_durably(fs.as_ref(), &root).map_err(|e| Error::io(path, e))?;
        Ok(Storage { backend: Backend::Local { fs, root }, display: display.to_string() })
    }

    /// The location, as given.
    pub fn location(&self) -> &str {
        &self.display
    }

    fn object_path(root: &Path, relative: &str) -> Path {
        let mut path = root.clone();
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            path = path.child(part);
        }
        path
    }

    fn local_path(root: &std::path::Path, relative: &str) -> PathBuf {
        let mut path = root.to_path_buf();
        path.extend(relative.split('/').filter(|p| !p.is_empty()));
        path
    }

    fn error_at(&self, relative: &str, e: impl std::fmt::Display) -> Error {
        storage_error(&format!("{}/{relative}", self.display), e)
    }

    /// Writes a whole object, durably: readers see all of it or nothing, and once this
    /// returns it survives a crash or power cut (a local file is written beside, synced,
    /// renamed into place and its directory synced).
    pub fn put(&self, relative: &str, data: Vec<u8>) -> Result<()> {
        match &self.backend {
            Backend::Local { fs, root } => {
                sluice_fs::write_durably(fs.as_ref(), &Self::local_path(root, relative), &data)
                    .map_err(|e| self.error_at(relative, e))
            }
            Backend::Object { store, root, runtime } => {
                let payload = PutPayload::from(Bytes::from(data));
                runtime
                    .block_on(store.put(&Self::object_path(root, relative), payload))
                    .map_err(|e| self.error_at(relative, e))?;
                Ok(())
            }
        }
    }

    /// Reads a whole object; `None` if it does not exist.
    pub fn get(&self, relative: &str) -> Result<Option<Bytes>> {
        match &self.backend {
            Backend::Local { fs, root } => match fs.read(&Self::local_path(root, relative)) {
                Ok(bytes) => Ok(Some(Bytes::from(bytes))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(self.error_at(relative, e)),
            },
            Backend::Object { store, root, runtime } => {
                let path = Self::object_path(root, relative);
                match runtime.block_on(async { store.get(&path).await?.bytes().await }) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(self.error_at(relative, e)),
                }
            }
        }
    }

    /// Deletes one object, if it exists.
    pub fn delete(&self, relative: &str) -> Result<()> {
        match &self.backend {
            Backend::Local { fs, root } => match fs.remove_file(&Self::local_path(root, relative)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.error_at(relative, e)),
                _ => Ok(()),
            },
            Backend::Object { store, root, runtime } => {
                match runtime.block_on(store.delete(&Self::object_path(root, relative))) {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(self.error_at(relative, e)),
                }
            }
        }
    }

    /// The names of the directories directly under `relative`.
    pub fn list_dirs(&self, relative: &str) -> Result<Vec<String>> {
        match &self.backend {
            Backend::Local { fs, root } => match fs.list(&Self::local_path(root, relative)) {
                Ok(entries) => Ok(entries.into_iter().filter(|e| e.is_dir).map(|e| e.name).collect()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(self.error_at(relative, e)),
            },
            Backend::Object { store, root, runtime } => {
                let prefix = Self::object_path(root, relative);
                let listing = runtime
                    .block_on(store.list_with_delimiter(Some(&prefix)))
                    .map_err(|e| storage_error(&self.display, e))?;
                Ok(listing.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_string)).collect())
            }
        }
    }

    /// Deletes everything under `relative`.
    pub fn delete_dir(&self, relative: &str) -> Result<()> {
        use futures_util::StreamExt;
        match &self.backend {
            Backend::Local { fs, root } => match fs.remove_dir_all(&Self::local_path(root, relative)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.error_at(relative, e)),
                _ => Ok(()),
            },
            Backend::Object { store, root, runtime } => {
                let prefix = Self::object_path(root, relative);
                runtime.block_on(async {
                    let mut objects = store.list(Some(&prefix));
                    while let Some(meta) = objects.next().await {
                        let meta = meta.map_err(|e| self.error_at(relative, e))?;
                        match store.delete(&meta.location).await {
                            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                            Err(e) => return Err(self.error_at(relative, e)),
                        }
                    }
                    Ok(())
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_directory_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path().to_str().unwrap()).unwrap();
        storage.put("chk-1/a.state", b"hello".to_vec()).unwrap();
        storage.put("chk-2/manifest.json", b"{}".to_vec()).unwrap();
        assert_eq!(storage.get("chk-1/a.state").unwrap().unwrap().as_ref(), b"hello");
        assert!(storage.get("chk-1/missing").unwrap().is_none());
        let mut dirs = storage.list_dirs("").unwrap();
        dirs.sort();
        assert_eq!(dirs, vec!["chk-1", "chk-2"]);
        storage.delete_dir("chk-1").unwrap();
        assert_eq!(storage.list_dirs("").unwrap(), vec!["chk-2"]);
    }

    #[test]
    fn memory_url() {
        let storage = Storage::open("memory://").unwrap();
        storage.put("x/y", vec![1, 2]).unwrap();
        assert_eq!(storage.get("x/y").unwrap().unwrap().as_ref(), &[1, 2]);
    }
}

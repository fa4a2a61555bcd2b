//! Where checkpoints are kept: a local directory, or object storage by URL, both
//! through the `object_store` crate.
//!
//! The coordinator is the only writer, from its own thread; object storage is async, so
//! the storage owns a small single-threaded tokio runtime and blocks on it.

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use sluice_types::{Error, Result};
use std::sync::Arc;

/// A checkpoint location: a root in some object store.
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    root: Path,
    display: String,
    runtime: tokio::runtime::Runtime,
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
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("checkpoint storage runtime", e))?;
        let (store, root): (Arc<dyn ObjectStore>, Path) = if location.contains("://") {
            let url =
                url::Url::parse(location).map_err(|e| storage_error(location, format!("not a valid URL: {e}")))?;
            if url.scheme() == "file" {
                let path = url.to_file_path().map_err(|()| storage_error(location, "not a local file URL"))?;
                return Self::local(&path.to_string_lossy(), location, runtime);
            }
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
            (store, root)
        } else {
            return Self::local(location, location, runtime);
        };
        Ok(Storage { store, root, display: location.to_string(), runtime })
    }

    fn local(path: &str, display: &str, runtime: tokio::runtime::Runtime) -> Result<Self> {
        std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(path)
            .map_err(|e| storage_error(display, e))?
            .with_automatic_cleanup(true);
        Ok(Storage { store: Arc::new(store), root: Path::default(), display: display.to_string(), runtime })
    }

    /// The location, as given.
    pub fn location(&self) -> &str {
        &self.display
    }

    fn path(&self, relative: &str) -> Path {
        let mut path = self.root.clone();
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            path = path.child(part);
        }
        path
    }

    /// Writes a whole object. Object stores make it visible all at once (the local
    /// store writes a temporary file and renames it).
    pub fn put(&self, relative: &str, data: Vec<u8>) -> Result<()> {
        let path = self.path(relative);
        let payload = PutPayload::from(Bytes::from(data));
        self.runtime
            .block_on(self.store.put(&path, payload))
            .map_err(|e| storage_error(&format!("{}/{relative}", self.display), e))?;
        Ok(())
    }

    /// Reads a whole object; `None` if it does not exist.
    pub fn get(&self, relative: &str) -> Result<Option<Bytes>> {
        let path = self.path(relative);
        let location = format!("{}/{relative}", self.display);
        match self.runtime.block_on(async { self.store.get(&path).await?.bytes().await }) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage_error(&location, e)),
        }
    }

    /// Deletes one object, if it exists.
    pub fn delete(&self, relative: &str) -> Result<()> {
        let path = self.path(relative);
        match self.runtime.block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage_error(&format!("{}/{relative}", self.display), e)),
        }
    }

    /// The names of the directories directly under `relative`.
    pub fn list_dirs(&self, relative: &str) -> Result<Vec<String>> {
        let prefix = self.path(relative);
        let listing = self
            .runtime
            .block_on(self.store.list_with_delimiter(Some(&prefix)))
            .map_err(|e| storage_error(&self.display, e))?;
        Ok(listing.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_string)).collect())
    }

    /// Deletes everything under `relative`.
    pub fn delete_dir(&self, relative: &str) -> Result<()> {
        use futures_util::StreamExt;
        let prefix = self.path(relative);
        let location = format!("{}/{relative}", self.display);
        self.runtime.block_on(async {
            let mut objects = self.store.list(Some(&prefix));
            while let Some(meta) = objects.next().await {
                let meta = meta.map_err(|e| storage_error(&location, e))?;
                match self.store.delete(&meta.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(storage_error(&location, e)),
                }
            }
            Ok(())
        })
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

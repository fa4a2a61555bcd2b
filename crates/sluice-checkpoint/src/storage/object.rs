//! Checkpoints in object storage, through the `object_store` crate: `memory://`, and
//! S3, GCS and Azure when their cargo features are on.
//!
//! Object storage is async; the coordinator is the only writer, from its own thread, so
//! a location owns a small single-threaded tokio runtime and blocks on it.

use super::storage_error;
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use sluice_types::{Error, Result};
use std::sync::Arc;

/// A root in an object store, whose writes are durable once acknowledged.
pub(super) struct ObjectLocation {
    store: Arc<dyn ObjectStore>,
    root: Path,
    runtime: tokio::runtime::Runtime,
}

impl ObjectLocation {
    /// Opens the store `url` names.
    pub fn open(location: &str, url: &url::Url) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("checkpoint storage runtime", e))?;
        let root = Path::from_url_path(url.path()).map_err(|e| storage_error(location, e))?;
        Ok(ObjectLocation { store: store_for(location, url)?, root, runtime })
    }

    fn path(&self, relative: &str) -> Path {
        let mut path = self.root.clone();
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            path = path.child(part);
        }
        path
    }

    pub fn put(&self, relative: &str, data: Vec<u8>) -> std::result::Result<(), object_store::Error> {
        let payload = PutPayload::from(Bytes::from(data));
        self.runtime.block_on(self.store.put(&self.path(relative), payload)).map(|_| ())
    }

    pub fn get(&self, relative: &str) -> std::result::Result<Option<Bytes>, object_store::Error> {
        let path = self.path(relative);
        match self.runtime.block_on(async { self.store.get(&path).await?.bytes().await }) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn get_range(
        &self,
        relative: &str,
        range: std::ops::Range<u64>,
    ) -> std::result::Result<Bytes, object_store::Error> {
        self.runtime.block_on(self.store.get_range(&self.path(relative), range))
    }

    pub fn size(&self, relative: &str) -> std::result::Result<Option<u64>, object_store::Error> {
        match self.runtime.block_on(self.store.head(&self.path(relative))) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn writer(&self, relative: &str) -> std::result::Result<Upload, object_store::Error> {
        let upload = self.runtime.block_on(self.store.put_multipart(&self.path(relative)))?;
        Ok(Upload(WriteMultipart::new_with_chunk_size(upload, PART_SIZE)))
    }

    pub fn write(&self, upload: &mut Upload, bytes: &[u8]) -> std::result::Result<(), object_store::Error> {
        // A full part is uploaded by a task of the location's runtime, which runs only
        // while this thread blocks on the runtime.
        self.runtime.block_on(upload.0.wait_for_capacity(PARTS_IN_FLIGHT))?;
        let _entered = self.runtime.enter();
        upload.0.write(bytes);
        Ok(())
    }

    pub fn finish(&self, upload: Upload) -> std::result::Result<(), object_store::Error> {
        self.runtime.block_on(upload.0.finish()).map(|_| ())
    }

    pub fn abort(&self, upload: Upload) {
        if let Err(error) = self.runtime.block_on(upload.0.abort()) {
            tracing::debug!("cannot abort an upload: {error}");
        }
    }

    pub fn delete(&self, relative: &str) -> std::result::Result<(), object_store::Error> {
        match self.runtime.block_on(self.store.delete(&self.path(relative))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub fn list_dirs(&self, relative: &str) -> std::result::Result<Vec<String>, object_store::Error> {
        let prefix = self.path(relative);
        let listing = self.runtime.block_on(self.store.list_with_delimiter(Some(&prefix)))?;
        Ok(listing.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_string)).collect())
    }

    pub fn delete_dir(&self, relative: &str) -> std::result::Result<(), object_store::Error> {
        let prefix = self.path(relative);
        self.runtime.block_on(async {
            let mut objects = self.store.list(Some(&prefix));
            while let Some(meta) = objects.next().await {
                match self.store.delete(&meta?.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
    }
}

/// The size of the parts of a multipart upload (S3's minimum is 5 MiB).
const PART_SIZE: usize = 8 << 20;
/// How many parts of one upload are in flight at most.
const PARTS_IN_FLIGHT: usize = 2;

/// An object uploaded in parts, invisible until finished.
pub(super) struct Upload(WriteMultipart);

/// The store for `url`'s scheme. Credentials, region and endpoint come from the
/// environment, as the clouds' own tools read them (AWS_ACCESS_KEY_ID, AWS_ENDPOINT,
/// ...). A cloud whose cargo feature is off is refused with the feature to turn on.
fn store_for(location: &str, url: &url::Url) -> Result<Arc<dyn ObjectStore>> {
    let scheme = url.scheme();
    match scheme {
        #[cfg(feature = "s3")]
        "s3" | "s3a" => Ok(Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(location)
                .build()
                .map_err(|e| storage_error(location, e))?,
        )),
        #[cfg(feature = "gcs")]
        "gs" => Ok(Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(location)
                .build()
                .map_err(|e| storage_error(location, e))?,
        )),
        #[cfg(feature = "azure")]
        "az" | "abfs" | "abfss" | "azure" => Ok(Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(location)
                .build()
                .map_err(|e| storage_error(location, e))?,
        )),
        "memory" => Ok(Arc::new(object_store::memory::InMemory::new())),
        _ => Err(super::unsupported_scheme(location, scheme)),
    }
}

//! Where checkpoints are kept: a local directory, written through `sluice-fs` with
//! every write synced, or object storage by URL (`object.rs`, with the `object-store`
//! cargo feature; S3, GCS and Azure each behind a feature of its own).

#[cfg(feature = "object-store")]
mod object;

use bytes::Bytes;
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
    #[cfg(feature = "object-store")]
    Object(object::ObjectLocation),
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

fn storage_error(location: &str, e: impl std::fmt::Display) -> Error {
    Error::checkpoint(location, e.to_string())
}

/// The error for a URL whose scheme this build cannot open.
fn unsupported_scheme(location: &str, scheme: &str) -> Error {
    let feature = match scheme {
        "s3" | "s3a" => Some("s3"),
        "gs" => Some("gcs"),
        "az" | "abfs" | "abfss" | "azure" => Some("azure"),
        "memory" => Some("object-store"),
        _ => None,
    };
    Error::InvalidOption {
        connector: "checkpoints".to_string(),
        key: "location".to_string(),
        message: match feature {
            Some(feature) => format!(
                "{location}: this build of Sluice has no {scheme}:// storage; build the sluice crate with its \
                 `{feature}` feature (the sluice binary has it)"
            ),
            None => format!(
                "{location}: unknown storage scheme {scheme}:// (a local path, file://, memory://, s3://, gs:// or \
                 az://)"
            ),
        },
    }
}

impl Storage {
    /// Opens `location`: a local path (created if missing), or a URL: `file://`,
    /// `memory://`, `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`
    /// (credentials and endpoints from the usual environment variables). Object
    /// storage needs the `object-store` feature, each cloud its own (`s3`, `gcs`,
    /// `azure`).
    pub fn open(location: &str) -> Result<Self> {
        let Some((scheme, rest)) = location.split_once("://") else {
            return Self::local(location, location, sluice_fs::local());
        };
        if scheme == "file" {
            if !rest.starts_with('/') {
                return Err(storage_error(location, "not a local file URL: file:///absolute/path"));
            }
            return Self::local(rest, location, sluice_fs::local());
        }
        Self::object(location)
    }

    #[cfg(feature = "object-store")]
    fn object(location: &str) -> Result<Self> {
        let url = url::Url::parse(location).map_err(|e| storage_error(location, format!("not a valid URL: {e}")))?;
        let store = object::ObjectLocation::open(location, &url)?;
        Ok(Storage { backend: Backend::Object(store), display: location.to_string() })
    }

    #[cfg(not(feature = "object-store"))]
    fn object(location: &str) -> Result<Self> {
        let scheme = location.split_once("://").map_or("", |(scheme, _)| scheme);
        Err(unsupported_scheme(location, scheme))
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
            #[cfg(feature = "object-store")]
            Backend::Object(store) => store.put(relative, data).map_err(|e| self.error_at(relative, e)),
        }
    }

    /// Starts writing the object `relative` piece by piece: readers see none of it
    /// until [`ObjectWriter::finish`], then all of it, durably.
    pub fn writer(self: &Arc<Self>, relative: &str) -> Result<ObjectWriter> {
        let target = match &self.backend {
            Backend::Local { fs, root } => Target::Local(
                sluice_fs::DurableFile::create(fs.as_ref(), &Self::local_path(root, relative))
                    .map_err(|e| self.error_at(relative, e))?,
            ),
            #[cfg(feature = "object-store")]
            Backend::Object(store) => Target::Object(store.writer(relative).map_err(|e| self.error_at(relative, e))?),
        };
        Ok(ObjectWriter { storage: self.clone(), relative: relative.to_string(), target: Some(target) })
    }

    /// `len` bytes of an object from `offset`; an error if it is missing or shorter.
    pub fn get_range(&self, relative: &str, offset: u64, len: usize) -> Result<Bytes> {
        match &self.backend {
            Backend::Local { fs, root } => fs
                .read_range(&Self::local_path(root, relative), offset, len)
                .map(Bytes::from)
                .map_err(|e| self.error_at(relative, e)),
            #[cfg(feature = "object-store")]
            Backend::Object(store) => {
                let end = offset.saturating_add(len as u64);
                let bytes = store.get_range(relative, offset..end).map_err(|e| self.error_at(relative, e))?;
                match bytes.len() == len {
                    true => Ok(bytes),
                    false => Err(self.error_at(relative, format!("{} bytes where {len} were asked for", bytes.len()))),
                }
            }
        }
    }

    /// The size of an object in bytes; `None` if it does not exist.
    pub fn size(&self, relative: &str) -> Result<Option<u64>> {
        match &self.backend {
            Backend::Local { fs, root } => match fs.size(&Self::local_path(root, relative)) {
                Ok(size) => Ok(Some(size)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(self.error_at(relative, e)),
            },
            #[cfg(feature = "object-store")]
            Backend::Object(store) => store.size(relative).map_err(|e| self.error_at(relative, e)),
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
            #[cfg(feature = "object-store")]
            Backend::Object(store) => store.get(relative).map_err(|e| self.error_at(relative, e)),
        }
    }

    /// Deletes one object, if it exists.
    pub fn delete(&self, relative: &str) -> Result<()> {
        match &self.backend {
            Backend::Local { fs, root } => match fs.remove_file(&Self::local_path(root, relative)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.error_at(relative, e)),
                _ => Ok(()),
            },
            #[cfg(feature = "object-store")]
            Backend::Object(store) => store.delete(relative).map_err(|e| self.error_at(relative, e)),
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
            #[cfg(feature = "object-store")]
            Backend::Object(store) => store.list_dirs(relative).map_err(|e| storage_error(&self.display, e)),
        }
    }

    /// Deletes everything under `relative`.
    pub fn delete_dir(&self, relative: &str) -> Result<()> {
        match &self.backend {
            Backend::Local { fs, root } => match fs.remove_dir_all(&Self::local_path(root, relative)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.error_at(relative, e)),
                _ => Ok(()),
            },
            #[cfg(feature = "object-store")]
            Backend::Object(store) => store.delete_dir(relative).map_err(|e| self.error_at(relative, e)),
        }
    }
}

/// An object being written: see [`Storage::writer`]. Dropped before it is finished,
/// it is left unseen (an object store's upload is aborted).
pub struct ObjectWriter {
    storage: Arc<Storage>,
    relative: String,
    /// `None` once finished.
    target: Option<Target>,
}

enum Target {
    Local(sluice_fs::DurableFile),
    #[cfg(feature = "object-store")]
    Object(object::Upload),
}

impl ObjectWriter {
    /// Appends `bytes`.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let written = match (self.target.as_mut(), &self.storage.backend) {
            (Some(Target::Local(file)), _) => file.write(bytes).map_err(|e| e.to_string()),
            #[cfg(feature = "object-store")]
            (Some(Target::Object(upload)), Backend::Object(store)) => {
                store.write(upload, bytes).map_err(|e| e.to_string())
            }
            _ => Err("written after it was finished, or to another kind of storage".to_string()),
        };
        written.map_err(|e| self.storage.error_at(&self.relative, e))
    }

    /// Makes the object whole and durable under its name.
    pub fn finish(mut self) -> Result<()> {
        let finished = match (self.target.take(), &self.storage.backend) {
            (Some(Target::Local(file)), Backend::Local { fs, .. }) => {
                file.commit(fs.as_ref()).map_err(|e| e.to_string())
            }
            #[cfg(feature = "object-store")]
            (Some(Target::Object(upload)), Backend::Object(store)) => store.finish(upload).map_err(|e| e.to_string()),
            _ => Err("finished twice, or on another kind of storage".to_string()),
        };
        finished.map_err(|e| self.storage.error_at(&self.relative, e))
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        #[cfg(feature = "object-store")]
        if let (Some(Target::Object(upload)), Backend::Object(store)) = (self.target.take(), &self.storage.backend) {
            store.abort(upload);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_directory_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(Storage::open(dir.path().to_str().unwrap()).unwrap());
        storage.put("chk-1/a.state", b"hello".to_vec()).unwrap();
        storage.put("chk-2/manifest.json", b"{}".to_vec()).unwrap();
        assert_eq!(storage.get("chk-1/a.state").unwrap().unwrap().as_ref(), b"hello");
        assert_eq!(storage.get_range("chk-1/a.state", 1, 3).unwrap().as_ref(), b"ell");
        assert!(storage.get_range("chk-1/a.state", 3, 3).is_err(), "past the end");
        assert_eq!(storage.size("chk-1/a.state").unwrap(), Some(5));
        assert_eq!(storage.size("chk-1/missing").unwrap(), None);
        assert!(storage.get("chk-1/missing").unwrap().is_none());
        let mut dirs = storage.list_dirs("").unwrap();
        dirs.sort();
        assert_eq!(dirs, vec!["chk-1", "chk-2"]);
        storage.delete_dir("chk-1").unwrap();
        assert_eq!(storage.list_dirs("").unwrap(), vec!["chk-2"]);
        writes_piece_by_piece(&storage);
    }

    /// An object written in pieces is invisible until finished, then whole.
    fn writes_piece_by_piece(storage: &Arc<Storage>) {
        let mut writer = storage.writer("chk-3/big.state").unwrap();
        let piece = vec![7u8; 3 << 20];
        for _ in 0..4 {
            writer.write(&piece).unwrap();
        }
        assert_eq!(storage.size("chk-3/big.state").unwrap(), None, "not visible before it is finished");
        writer.finish().unwrap();
        assert_eq!(storage.size("chk-3/big.state").unwrap(), Some(12 << 20));
        assert_eq!(storage.get_range("chk-3/big.state", (12 << 20) - 2, 2).unwrap().as_ref(), &[7, 7]);
    }

    #[test]
    #[cfg(feature = "object-store")]
    fn memory_url() {
        let storage = Arc::new(Storage::open("memory://").unwrap());
        storage.put("x/y", vec![1, 2]).unwrap();
        assert_eq!(storage.get("x/y").unwrap().unwrap().as_ref(), &[1, 2]);
        assert_eq!(storage.get_range("x/y", 1, 1).unwrap().as_ref(), &[2]);
        assert!(storage.get_range("x/y", 1, 2).is_err(), "past the end");
        assert_eq!(storage.size("x/y").unwrap(), Some(2));
        assert_eq!(storage.size("x/z").unwrap(), None);
        writes_piece_by_piece(&storage);
    }

    #[test]
    fn a_url_this_build_cannot_open_names_the_feature_or_the_schemes() {
        let unknown = Storage::open("ftp://host/dir").unwrap_err().to_string();
        assert!(unknown.contains("unknown storage scheme ftp://"), "{unknown}");
        #[cfg(not(feature = "s3"))]
        {
            let s3 = Storage::open("s3://bucket/dir").unwrap_err().to_string();
            assert!(s3.contains("`s3` feature"), "{s3}");
        }
    }

    #[test]
    fn file_urls_are_local_directories() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let storage = Storage::open(&url).unwrap();
        storage.put("chk-1/a.state", b"x".to_vec()).unwrap();
        assert!(dir.path().join("chk-1/a.state").exists());
    }
}

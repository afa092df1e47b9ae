//! Object storage ("ost", spec 40 §1): the long-term store of the datamanager's data files,
//! logs, archives and caches, behind one async trait, [`ObjectStorage`], with two backends:
//! [`Posix`] (a directory tree, the default) and [`S3`] (any S3-compatible server).
//!
//! The contract every backend keeps: paths are `/`-separated keys checked by one shared
//! function ([`normalize_path`]); writes are atomic (a reader sees the old or the new object,
//! never a torn one, even after a crash); a known-size write consumes exactly that many bytes
//! or creates nothing; listings come back in byte-lexicographic key order with an exclusive
//! `start_after`, which the datamanager relies on for paging; absence is always the typed
//! [`Error::NotExist`]. Neither backend is a flat namespace: `a/b` and `a/b/c` cannot both be
//! objects, and callers never need them to.

#![forbid(unsafe_code)]

mod error;
mod path;
mod posix;
mod s3;

#[cfg(feature = "testing")]
pub mod conformance;

use std::time::SystemTime;

use async_trait::async_trait;
use futures::stream::BoxStream;
use tokio::io::{AsyncRead, AsyncReadExt};

pub use error::{Error, Result};
pub use path::{MAX_PATH_LEN, normalize_path};
pub use posix::Posix;
pub use s3::{MAX_PART_SIZE, MIN_PART_SIZE, S3, S3Config};

/// What a stat or a listing knows about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The normalized key (no leading `/`).
    pub path: String,
    pub last_modified: SystemTime,
    /// Size in bytes.
    pub size: u64,
}

/// A stream of an object's bytes (or of a range of them).
pub type ObjectReader = Box<dyn AsyncRead + Send + Unpin>;

/// The byte source of a write. A borrowed trait object keeps the trait object-safe and lets the
/// caller pass anything from a byte slice to a network stream.
pub type WriteSource<'a> = &'a mut (dyn AsyncRead + Send + Unpin);

/// A key/value store of byte objects. Use it as `Arc<dyn ObjectStorage>`.
#[async_trait]
pub trait ObjectStorage: Send + Sync {
    /// The object's metadata, or [`Error::NotExist`].
    async fn stat(&self, path: &str) -> Result<ObjectInfo>;

    /// The whole object, or [`Error::NotExist`].
    async fn read(&self, path: &str) -> Result<ObjectReader> {
        self.read_range(path, 0, None).await
    }

    /// `len` bytes (all remaining bytes when `None`) starting at `offset`, or
    /// [`Error::NotExist`]. A range reaching past the end is cut at the end; an offset at or
    /// past the end gives an empty reader.
    async fn read_range(&self, path: &str, offset: u64, len: Option<u64>) -> Result<ObjectReader>;

    /// Creates or replaces the object atomically with the bytes of `reader`.
    ///
    /// With `size` known, exactly `size` bytes are consumed: a shorter or a longer stream fails
    /// with [`Error::InvalidInput`] and leaves the previous object (or its absence) untouched.
    /// With `size` unknown the reader is consumed to EOF (the S3 backend caps it at
    /// [`S3Config::max_unknown_size`]). `persist` asks for durability on return; the posix
    /// backend skips every fsync without it.
    async fn write(
        &self,
        path: &str,
        reader: WriteSource<'_>,
        size: Option<u64>,
        persist: bool,
    ) -> Result<()>;

    /// Removes the object, or answers [`Error::NotExist`].
    async fn delete(&self, path: &str) -> Result<()>;

    /// The objects whose key starts with `prefix` (a plain string prefix, not a directory) and
    /// sorts strictly after `start_after`, in byte-lexicographic order. When `recursive` is
    /// false only the objects directly under the prefix are returned (no `/` in the key after
    /// the prefix); the "directories" themselves are never returned. Errors arrive as items and
    /// end the stream; dropping the stream stops the listing.
    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        recursive: bool,
    ) -> BoxStream<'static, Result<ObjectInfo>>;

    /// Writes a byte slice (a known-size write).
    async fn write_bytes(&self, path: &str, data: &[u8], persist: bool) -> Result<()> {
        let mut reader = data;
        self.write(path, &mut reader, Some(data.len() as u64), persist)
            .await
    }

    /// Reads a whole object into memory; meant for small objects.
    async fn read_to_vec(&self, path: &str) -> Result<Vec<u8>> {
        let mut reader = self.read(path).await?;
        let mut out = Vec::new();
        reader
            .read_to_end(&mut out)
            .await
            .map_err(|e| Error::Unavailable(format!("reading object {path:?}: {e}")))?;
        Ok(out)
    }
}

/// Opens the object storage a config selects: posix under `<path or dataDir/ost>`, or S3.
pub async fn open(
    config: &agola_common::config::ObjectStorageConfig,
    data_dir: &std::path::Path,
) -> Result<std::sync::Arc<dyn ObjectStorage>> {
    use agola_common::config::ObjectStorageConfig;
    Ok(match config {
        ObjectStorageConfig::Posix { path } => std::sync::Arc::new(Posix::new(
            path.clone().unwrap_or_else(|| data_dir.join("ost")),
        )?),
        ObjectStorageConfig::S3 {
            endpoint,
            bucket,
            location,
            access_key,
            secret_access_key,
            disable_tls,
            path_style,
        } => std::sync::Arc::new(
            S3::new(S3Config {
                endpoint: endpoint.clone(),
                bucket: bucket.clone(),
                region: if location.is_empty() {
                    "us-east-1".to_owned()
                } else {
                    location.clone()
                },
                access_key: access_key.clone(),
                secret_access_key: secret_access_key.clone(),
                path_style: *path_style,
                disable_tls: *disable_tls,
                ..S3Config::default()
            })
            .await?,
        ),
    })
}

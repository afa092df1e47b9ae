//! A key-value store with etcd semantics, the foundation the datamanager, the runservice and
//! the configstore build on (spec 40 §2-§5).
//!
//! [`Kv`] offers revisions (store-wide, and per key create/mod revision and version), ranges
//! with paging, transactions with compares, watches from a revision (with a
//! [`Error::Compacted`] error when history is gone), leases and compaction. Two backends:
//! [`etcd::EtcdKv`] for clusters and [`embedded::EmbeddedKv`], a single-process on-disk store
//! (redb) that is the default so nothing needs installing. [`Prefixed`] gives each service its
//! own namespace. On top of the trait: [`sequence`] (epoch-sortable ids), [`lock`] (try-locks
//! on leases) and [`changegroup`] (named optimistic-concurrency tokens).

pub mod changegroup;
pub mod compactor;
pub mod embedded;
mod error;
pub mod etcd;
pub mod lock;
mod prefixed;
pub mod sequence;
mod types;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;

pub use error::{Error, Result};
pub use prefixed::Prefixed;
pub use types::*;

/// Longest key accepted (bytes).
pub const MAX_KEY_LEN: usize = 1024;
/// Largest value accepted (bytes); etcd's own limit is about 1.5 MiB, bulk goes to object storage.
pub const MAX_VALUE_LEN: usize = 1024 * 1024;

/// A stream of watch responses; ends only on error or when dropped.
pub type WatchStream = BoxStream<'static, Result<WatchResponse>>;

/// A store with etcd semantics. Cheap to share as `Arc<dyn Kv>`.
#[async_trait]
pub trait Kv: Send + Sync + std::fmt::Debug {
    /// Reads keys in ascending key order.
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse>;

    /// Applies `then` if every compare holds, else `otherwise`, atomically.
    async fn txn(&self, txn: Txn) -> Result<TxnResponse>;

    /// Streams the changes of keys in `range` from `from_revision` (inclusive; 0 = from the
    /// next revision on). Fails with [`Error::Compacted`] when that history is gone.
    async fn watch(&self, range: KeyRange, from_revision: i64) -> Result<WatchStream>;

    /// Grants a lease of `ttl` (whole seconds, at least 1).
    async fn grant(&self, ttl: Duration) -> Result<Lease>;

    /// Renews a lease for its full TTL; [`Error::LeaseNotFound`] when it already expired.
    async fn keep_alive(&self, id: LeaseId) -> Result<Duration>;

    /// Revokes a lease, deleting its keys.
    async fn revoke(&self, id: LeaseId) -> Result<()>;

    /// Forgets history before `revision`: later watches and reads below it fail with
    /// [`Error::Compacted`].
    async fn compact(&self, revision: i64) -> Result<()>;
}

/// Conveniences over [`Kv`].
#[async_trait]
pub trait KvExt: Kv {
    /// One key, if present.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.range(RangeRequest::key(key)).await?.kvs.pop())
    }

    /// Puts one key, returning the new store revision.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<i64> {
        Ok(self
            .txn(Txn::new().and_then([Op::put(key, value)]))
            .await?
            .revision)
    }

    /// Deletes one key, returning whether it existed.
    async fn delete(&self, key: &str) -> Result<bool> {
        let resp = self.txn(Txn::new().and_then([Op::delete(key)])).await?;
        Ok(matches!(resp.responses.first(), Some(OpResponse::Delete { deleted }) if *deleted > 0))
    }

    /// The current store revision.
    async fn current_revision(&self) -> Result<i64> {
        // A range on a key nobody uses returns the store revision without data.
        Ok(self
            .range(RangeRequest::key("\u{1}revision-probe"))
            .await?
            .revision)
    }

    /// Every key with `prefix`, read page by page at one revision.
    async fn get_prefix(&self, prefix: &str, page: usize) -> Result<RangeResponse> {
        let first = self
            .range(RangeRequest::prefix(prefix).with_limit(page))
            .await?;
        let revision = first.revision;
        let mut out = first;
        while out.more {
            let Some(last) = out.kvs.last() else { break };
            let start = format!("{}\0", last.key);
            let end = prefix_end(prefix);
            let next = self
                .range(
                    RangeRequest::between(start, end)
                        .with_limit(page)
                        .at_revision(revision),
                )
                .await?;
            out.more = next.more;
            out.kvs.extend(next.kvs);
        }
        out.revision = revision;
        Ok(out)
    }
}

impl<T: Kv + ?Sized> KvExt for T {}

#[async_trait]
impl<T: Kv + ?Sized> Kv for Arc<T> {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        (**self).range(req).await
    }
    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        (**self).txn(txn).await
    }
    async fn watch(&self, range: KeyRange, from_revision: i64) -> Result<WatchStream> {
        (**self).watch(range, from_revision).await
    }
    async fn grant(&self, ttl: Duration) -> Result<Lease> {
        (**self).grant(ttl).await
    }
    async fn keep_alive(&self, id: LeaseId) -> Result<Duration> {
        (**self).keep_alive(id).await
    }
    async fn revoke(&self, id: LeaseId) -> Result<()> {
        (**self).revoke(id).await
    }
    async fn compact(&self, revision: i64) -> Result<()> {
        (**self).compact(revision).await
    }
}

/// The smallest key greater than every key with `prefix` (etcd's range end for a prefix).
/// Keys are UTF-8 here, so appending U+10FFFF's successor is not possible; instead bump the
/// last byte below 0xff, which on UTF-8 input always yields a valid upper bound as a string
/// compared byte-wise.
pub fn prefix_end(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0x7f {
            bytes.push(last + 1);
            return String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    // Only non-ASCII-bounded input reaches here; an end above every valid key.
    "\u{10FFFF}".to_owned()
}

fn check_key_text(key: &str, what: &'static str) -> Result<()> {
    let invalid = |reason| Error::InvalidKey {
        key: key.chars().take(100).collect(),
        reason,
    };
    if key.is_empty() {
        return Err(invalid(if what == "prefix" {
            "empty prefix"
        } else {
            "empty key"
        }));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(invalid("longer than 1024 bytes"));
    }
    if key.contains('\0') {
        return Err(invalid("contains a NUL byte"));
    }
    if key.split('/').any(|seg| seg == "..") {
        return Err(invalid("contains a '..' segment"));
    }
    Ok(())
}

/// Rejects empty keys, keys over [`MAX_KEY_LEN`], with a NUL or a `..` segment.
pub fn validate_key(key: &str) -> Result<()> {
    check_key_text(key, "key")
}

/// Validates every key a range names.
pub fn validate_range(range: &KeyRange) -> Result<()> {
    match range {
        KeyRange::Key(k) => check_key_text(k, "key"),
        KeyRange::Prefix(p) => check_key_text(p, "prefix"),
        KeyRange::Between { start, end } => {
            // Range bounds are computed (e.g. `key\0` for paging), so only sizes are checked.
            if start.len() > MAX_KEY_LEN + 1 || end.len() > MAX_KEY_LEN + 1 {
                return Err(Error::InvalidKey {
                    key: start.chars().take(100).collect(),
                    reason: "range bound longer than 1024 bytes",
                });
            }
            Ok(())
        }
    }
}

/// Validates the keys and values of a txn before it reaches a backend.
pub fn validate_txn(txn: &Txn) -> Result<()> {
    for c in &txn.compares {
        validate_key(&c.key)?;
    }
    for op in txn.then.iter().chain(&txn.otherwise) {
        match op {
            Op::Put { key, value, .. } => {
                validate_key(key)?;
                if value.len() > MAX_VALUE_LEN {
                    return Err(Error::ValueTooLarge {
                        key: key.clone(),
                        size: value.len(),
                        limit: MAX_VALUE_LEN,
                    });
                }
            }
            Op::Delete { range } => validate_range(range)?,
            Op::Range(r) => validate_range(&r.range)?,
        }
    }
    Ok(())
}

/// Whole seconds of a TTL, at least 1.
pub(crate) fn ttl_secs(ttl: Duration) -> Result<i64> {
    let secs = ttl.as_secs();
    if secs == 0 {
        return Err(Error::InvalidArgument(
            "lease ttl must be at least 1 second".to_owned(),
        ));
    }
    i64::try_from(secs).map_err(|_| Error::InvalidArgument("lease ttl too large".to_owned()))
}

/// Opens the KV store a service's config selects, inside the service's namespace: the
/// embedded store at `<path or dataDir/kv>/<service>.redb` (one file per service, since the
/// embedded store is single-process), or etcd under `<prefix><service>/`.
pub async fn open(
    config: &agola_common::config::KvConfig,
    data_dir: &std::path::Path,
    service: &str,
) -> Result<Arc<dyn Kv>> {
    use agola_common::config::KvConfig;
    match config {
        KvConfig::Embedded { path } => {
            let dir = path.clone().unwrap_or_else(|| data_dir.join("kv"));
            let kv = embedded::EmbeddedKv::open(dir.join(format!("{service}.redb"))).await?;
            Ok(Arc::new(kv))
        }
        KvConfig::Etcd { endpoints, prefix } => {
            let kv = etcd::EtcdKv::connect(endpoints).await?;
            Ok(Arc::new(Prefixed::new(
                Arc::new(kv),
                format!("{prefix}{service}/"),
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_validation() {
        assert!(validate_key("a/b/c").is_ok());
        assert!(validate_key("a/..b/c").is_ok());
        for bad in ["", "a/../b", "..", "a\0b"] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
        assert!(validate_key(&"k".repeat(1025)).is_err());
        assert!(validate_key(&"k".repeat(1024)).is_ok());
    }

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end("a/"), "a0");
        assert_eq!(prefix_end("abc"), "abd");
        let end = prefix_end("runs/");
        assert!("runs/zzz" < end.as_str());
        assert!("runs0" >= end.as_str());
    }
}

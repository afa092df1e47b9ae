//! The datamanager: a database made of a WAL in the KV store plus sorted, size-split data
//! files in object storage (spec 40 §6). It stores the configstore's data and the runservice's
//! run configs, archived runs and counters. See `OVERVIEW.md` for the mental model (key
//! layout, WAL state machine, checkpoints, CAS rules).
//!
//! Writes ([`DataManager::write_wal`]) put the payload in object storage and a small record in
//! KV in one guarded transaction; background loops sync records to object storage,
//! checkpoint them into data files and clean up. Reads ([`DataManager::read`],
//! [`DataManager::list`]) overlay the WALs still in KV (kept in memory by a watcher) on the
//! data files of the latest checkpoint, and return a change-group token taken at the same
//! point.

mod checkpoint;
mod cleaner;
mod error;
pub mod follower;
mod init;
pub mod model;
mod paths;
mod read;
mod write;

use std::sync::Arc;
use std::time::Duration;

use agola_kv::Kv;
use agola_kv::changegroup::ChangeGroups;
use agola_objectstorage::ObjectStorage;
use tokio::sync::{Notify, RwLock, watch};

pub use agola_kv::changegroup::{ChangeGroupsUpdateToken, group_name};
pub use checkpoint::CheckpointReport;
pub use error::{Error, Result};
pub use model::{Action, ActionType};

/// Tunables; every default is the spec's, tests shorten them.
#[derive(Debug, Clone)]
pub struct Config {
    /// Object storage prefix of this datamanager (`configdata`, `rundata`).
    pub base_path: String,
    /// Data files are split when they exceed this size (default 10 MiB).
    pub max_data_file_size: usize,
    /// A checkpoint waits for this many synced WALs unless forced (default 100).
    pub min_checkpoint_wals: usize,
    /// At most this many WALs, or `max_checkpoint_bytes` of payload, per checkpoint.
    pub max_checkpoint_wals: usize,
    pub max_checkpoint_bytes: u64,
    /// WAL records kept in KV after checkpointing (default 100).
    pub kv_wals_keep: usize,
    /// Checkpoint statuses kept (default 3).
    pub statuses_keep: usize,
    pub sync_interval: Duration,
    pub checkpoint_interval: Duration,
    pub wal_cleaner_interval: Duration,
    pub checkpoint_clean_interval: Duration,
    pub storage_wal_cleaner_interval: Duration,
    pub compact_change_groups_interval: Duration,
    pub ping_interval: Duration,
    /// Change-group window (default 1000 revisions).
    pub change_group_window: i64,
    /// Orphan WAL payloads older than this are deleted (default 1 h).
    pub orphan_payload_age: Duration,
}

impl Config {
    pub fn new(base_path: impl Into<String>) -> Self {
        Config {
            base_path: base_path.into(),
            max_data_file_size: 10 * 1024 * 1024,
            min_checkpoint_wals: 100,
            max_checkpoint_wals: 1000,
            max_checkpoint_bytes: 64 * 1024 * 1024,
            kv_wals_keep: 100,
            statuses_keep: 3,
            sync_interval: Duration::from_secs(5),
            checkpoint_interval: Duration::from_secs(10),
            wal_cleaner_interval: Duration::from_secs(2),
            checkpoint_clean_interval: Duration::from_secs(300),
            storage_wal_cleaner_interval: Duration::from_secs(300),
            compact_change_groups_interval: Duration::from_secs(1),
            ping_interval: Duration::from_secs(1),
            change_group_window: 1000,
            orphan_payload_age: Duration::from_secs(3600),
        }
    }
}

/// A datamanager instance. Any number of instances may share one KV namespace and one
/// object storage prefix; clones share one instance.
#[derive(Clone)]
pub struct DataManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DataManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataManager")
            .field("base_path", &self.inner.cfg.base_path)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) cfg: Config,
    pub(crate) kv: Arc<dyn Kv>,
    pub(crate) ost: Arc<dyn ObjectStorage>,
    pub(crate) paths: paths::Paths,
    pub(crate) cg: ChangeGroups,
    /// WALs still in KV, applied in memory (spec 40 §6.7).
    pub(crate) changes: RwLock<read::WalChanges>,
    /// KV revision the in-memory WAL changes reached; writers wait on it (read-your-writes).
    pub(crate) applied: watch::Sender<i64>,
    /// Wakes the sync loop after a write.
    pub(crate) sync_now: Notify,
    pub(crate) index_cache: std::sync::Mutex<read::IndexCache>,
    /// Mirrors the `maintenance` key, kept by a watch (see `init`).
    pub(crate) maintenance: std::sync::atomic::AtomicBool,
    /// Writers waiting for the commit leader (see `write::commit_wal`).
    pub(crate) commit_queue: std::sync::Mutex<Vec<write::CommitRequest>>,
    /// Serializes this instance's commits (see `write::commit_wal`).
    pub(crate) commit_lock: tokio::sync::Mutex<()>,
}

impl DataManager {
    /// Builds an instance over `kv` (the service's namespace) and `ost`. Call [`Self::init`]
    /// before anything else.
    pub fn new(cfg: Config, kv: Arc<dyn Kv>, ost: Arc<dyn ObjectStorage>) -> Self {
        let paths = paths::Paths::new(&cfg.base_path);
        let cg = ChangeGroups::new(paths::KV_PREFIX, cfg.change_group_window);
        let (applied, _) = watch::channel(0);
        DataManager {
            inner: Arc::new(Inner {
                cfg,
                kv,
                ost,
                paths,
                cg,
                changes: RwLock::new(read::WalChanges::default()),
                applied,
                sync_now: Notify::new(),
                index_cache: std::sync::Mutex::new(read::IndexCache::new(64)),
                commit_lock: tokio::sync::Mutex::new(()),
                commit_queue: std::sync::Mutex::new(Vec::new()),
                maintenance: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.inner.cfg
    }
}

//! Start-up and recovery (spec 40 §6.8), background loops, maintenance, export and import
//! (§6.9).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agola_common::Shutdown;
use agola_kv::sequence::{Sequence, increment};
use agola_kv::{Compare, KvExt, Op, Txn};
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use crate::model::{
    self, DataEntry, DataStatus, WalHeader, WalStatus, WalStatusFile, WalsData, from_json, to_json,
};
use crate::paths;
use crate::{DataManager, Error, Result};

/// How long start-up and export wait for a lock another instance holds.
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// Seeds a sequence key so the next value sorts after `after`: a fresh epoch strictly greater
/// than the previous one even when the store was reset within the same second.
async fn seed_sequence(dm: &DataManager, key: &str, after: Option<&str>) -> Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let last_epoch = after
        .and_then(|s| s.parse::<Sequence>().ok())
        .map_or(0, |s| s.epoch);
    let seed = Sequence {
        epoch: now.max(last_epoch + 1),
        counter: 0,
    };
    dm.inner
        .kv
        .txn(
            Txn::new()
                .when([Compare::absent(key)])
                .and_then([Op::put(key, seed.to_string().into_bytes())]),
        )
        .await?;
    Ok(())
}

impl DataManager {
    /// Initializes the store (recovering it after a KV wipe), loads the WAL changes and
    /// starts the watcher. Call once per instance, before any read or write.
    pub async fn init(&self, shutdown: Shutdown) -> Result<()> {
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match agola_kv::lock::try_lock(self.inner.kv.clone(), paths::KV_PREFIX, "initetcd")
                .await?
            {
                Some(lock) => {
                    let res = self.init_locked().await;
                    let _ = lock.unlock().await;
                    res?;
                    break;
                }
                None => {
                    // Another instance is initializing: wait for it, within a bound (a lock
                    // left by a crashed holder expires with its lease well before).
                    if std::time::Instant::now() >= deadline {
                        return Err(Error::Unavailable(
                            "another instance held the init lock for too long".to_owned(),
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let revision = self.init_changes().await?;
        self.check_not_in_maintenance().await.ok();
        let this = self.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move { this.maintenance_watch(stop).await });
        let this = self.clone();
        tokio::spawn(async move { this.watch_loop(revision, shutdown).await });
        Ok(())
    }

    /// Keeps the maintenance flag in step with the `maintenance` key.
    async fn maintenance_watch(&self, shutdown: Shutdown) {
        let mut stop = Box::pin(shutdown.wait());
        loop {
            let stream = self
                .inner
                .kv
                .watch(agola_kv::KeyRange::Key(paths::MAINTENANCE.to_owned()), 0)
                .await;
            // Re-read after (re)subscribing so a change between two watches is not missed.
            let _ = self.check_not_in_maintenance().await;
            if let Ok(mut stream) = stream {
                loop {
                    tokio::select! {
                        _ = &mut stop => return,
                        ev = stream.next() => match ev {
                            Some(Ok(_)) => { let _ = self.check_not_in_maintenance().await; }
                            _ => break,
                        },
                    }
                }
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    async fn init_locked(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.kv.get(paths::WALS_DATA).await?.is_some() {
            return Ok(());
        }
        // New cluster or lost KV: start from what object storage holds.
        tracing::info!(base = %inner.cfg.base_path, "datamanager: initializing the kv state");
        let keys = inner.kv.get_prefix(paths::KV_PREFIX, 500).await?;
        for kv in keys.kvs {
            if !kv.key.starts_with(paths::LOCKS) {
                inner.kv.delete(&kv.key).await?;
            }
        }
        inner.cg.init(inner.kv.as_ref()).await?;
        let status_seq = self.latest_status_seq_in_storage().await?;
        let status = match &status_seq {
            Some(seq) => Some(self.load_status(seq).await?),
            None => None,
        };
        // WALs in object storage (status files, in sequence order).
        let mut wal_seqs = Vec::new();
        let mut list = inner.ost.list(&inner.paths.wal_status_dir(), None, false);
        while let Some(obj) = list.next().await {
            if let Some(seq) = paths::seq_of_wal_status(&obj?.path) {
                wal_seqs.push(seq.to_owned());
            }
        }
        drop(list);
        if status.is_none() && !wal_seqs.is_empty() {
            return Err(Error::Corrupted(
                "wals exist in object storage but no checkpoint status: cannot recover".into(),
            ));
        }
        let from = status
            .as_ref()
            .map(|s| s.wal_sequence.clone())
            .unwrap_or_default();
        let mut prev: Option<String> = None;
        let mut last_seq = from.clone();
        for seq in wal_seqs.iter().filter(|s| from.is_empty() || **s >= from) {
            let bytes = inner.ost.read_to_vec(&inner.paths.wal_status(seq)).await?;
            let st: WalStatusFile = from_json("wal status", &bytes)?;
            // The chain must have no gap: each WAL names the previous one.
            let expected = prev.clone().unwrap_or_else(|| {
                if seq == &from {
                    st.previous_wal_sequence.clone()
                } else {
                    from.clone()
                }
            });
            if st.previous_wal_sequence != expected {
                return Err(Error::Corrupted(format!(
                    "broken wal chain: wal {seq} follows {:?} but the previous wal is {expected:?}",
                    st.previous_wal_sequence
                )));
            }
            let header = WalHeader {
                wal_data_file_id: st.wal_data_file_id,
                wal_status: WalStatus::CommittedStorage,
                wal_sequence: seq.clone(),
                previous_wal_sequence: st.previous_wal_sequence,
            };
            inner
                .kv
                .put(&paths::wal_key(seq), to_json(&header)?)
                .await?;
            prev = Some(seq.clone());
            last_seq.clone_from(seq);
        }
        // A new empty WAL with a new epoch marks the reset; readers see it and resync.
        seed_sequence(self, paths::WAL_SEQ, Some(&last_seq)).await?;
        seed_sequence(self, paths::CHECKPOINT_SEQ, status_seq.as_deref()).await?;
        let seq = increment(inner.kv.as_ref(), paths::WAL_SEQ)
            .await?
            .to_string();
        let data_id = uuid::Uuid::new_v4().to_string();
        inner
            .ost
            .write_bytes(&inner.paths.wal_data(&data_id), b"", true)
            .await?;
        let st = WalStatusFile {
            wal_data_file_id: data_id.clone(),
            previous_wal_sequence: last_seq.clone(),
        };
        inner
            .ost
            .write_bytes(&inner.paths.wal_status(&seq), &to_json(&st)?, true)
            .await?;
        let header = WalHeader {
            wal_data_file_id: data_id,
            wal_status: WalStatus::CommittedStorage,
            wal_sequence: seq.clone(),
            previous_wal_sequence: last_seq,
        };
        let resp = inner
            .kv
            .txn(
                Txn::new()
                    .when([Compare::absent(paths::WALS_DATA)])
                    .and_then([
                        Op::put(paths::wal_key(&seq), to_json(&header)?),
                        Op::put(
                            paths::WALS_DATA,
                            to_json(&WalsData {
                                last_committed_wal_sequence: seq.clone(),
                            })?,
                        ),
                        Op::put(paths::LAST_COMMITTED_STORAGE_WAL_SEQ, seq.into_bytes()),
                    ]),
            )
            .await?;
        if !resp.succeeded {
            return Err(Error::Concurrency(
                "another instance initialized the store".into(),
            ));
        }
        // A data status always exists to resync from.
        self.checkpoint_locked(true).await?;
        Ok(())
    }

    /// Runs the periodic loops (sync, checkpoint, cleaners, pinger) until `shutdown`. In
    /// maintenance mode the loops pause.
    pub fn start_loops(&self, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let cfg = this.inner.cfg.clone();
            let mut sync = tokio::time::interval(cfg.sync_interval);
            let mut checkpoint = tokio::time::interval(cfg.checkpoint_interval);
            let mut wal_cleaner = tokio::time::interval(cfg.wal_cleaner_interval);
            let mut checkpoint_clean = tokio::time::interval(cfg.checkpoint_clean_interval);
            let mut storage_clean = tokio::time::interval(cfg.storage_wal_cleaner_interval);
            let mut compact = tokio::time::interval(cfg.compact_change_groups_interval);
            let mut ping = tokio::time::interval(cfg.ping_interval);
            for t in [
                &mut sync,
                &mut checkpoint,
                &mut wal_cleaner,
                &mut checkpoint_clean,
                &mut storage_clean,
                &mut compact,
                &mut ping,
            ] {
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            }
            let stop = shutdown.wait();
            tokio::pin!(stop);
            loop {
                let what = tokio::select! {
                    _ = &mut stop => return,
                    _ = sync.tick() => "sync",
                    _ = this.inner.sync_now.notified() => "sync",
                    _ = checkpoint.tick() => "checkpoint",
                    _ = wal_cleaner.tick() => "walcleaner",
                    _ = checkpoint_clean.tick() => "checkpointclean",
                    _ = storage_clean.tick() => "storagewalcleaner",
                    _ = compact.tick() => "compactchangegroups",
                    _ = ping.tick() => "pinger",
                };
                if matches!(
                    this.check_not_in_maintenance().await,
                    Err(Error::Unavailable(_))
                ) {
                    continue;
                }
                let res = match what {
                    "sync" => this.sync().await,
                    "checkpoint" => this.checkpoint(false).await.map(|_| ()),
                    "walcleaner" => this.clean_kv_wals().await.map(|_| ()),
                    "checkpointclean" => this.clean_checkpoints().await.map(|_| ()),
                    "storagewalcleaner" => this.clean_storage_wals(None).await.map(|_| ()),
                    "compactchangegroups" => this.compact_change_groups().await,
                    _ => this.ping().await,
                };
                if let Err(e) = res {
                    tracing::warn!(task = what, error = %e, "datamanager loop failed");
                }
            }
        })
    }

    /// Whether this instance sees the store in maintenance mode.
    pub fn in_maintenance(&self) -> bool {
        self.inner
            .maintenance
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Enters maintenance mode (BadRequest when already in it).
    pub async fn enter_maintenance(&self) -> Result<()> {
        let resp = self
            .inner
            .kv
            .txn(
                Txn::new()
                    .when([Compare::absent(paths::MAINTENANCE)])
                    .and_then([Op::put(paths::MAINTENANCE, Vec::new())]),
            )
            .await?;
        if !resp.succeeded {
            return Err(Error::BadRequest("already in maintenance mode".to_owned()));
        }
        Ok(())
    }

    /// Leaves maintenance mode (BadRequest when not in it).
    pub async fn exit_maintenance(&self) -> Result<()> {
        if !self.inner.kv.delete(paths::MAINTENANCE).await? {
            return Err(Error::BadRequest("not in maintenance mode".to_owned()));
        }
        Ok(())
    }

    /// Streams every entry (DataEntry JSON lines, types and ids in order) after syncing and
    /// forcing a checkpoint, so the export holds every committed write.
    pub async fn export(&self, out: &mut (dyn AsyncWrite + Send + Unpin)) -> Result<u64> {
        self.sync().await?;
        // Wait for a checkpoint that covers everything synced (another instance may hold
        // the checkpoint lock for a while), within a bound.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        while self.checkpoint(true).await?.is_none() {
            if std::time::Instant::now() >= deadline {
                return Err(Error::Unavailable(
                    "the checkpoint lock stayed busy: export not started".to_owned(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let status = self.latest_status().await?.unwrap_or_default();
        let mut count = 0;
        for (data_type, files) in &status.files {
            for f in files {
                let path = self.inner.paths.data_file(data_type, &f.id);
                let mut reader = self.inner.ost.read(&path).await?;
                count += tokio::io::copy(&mut reader, out)
                    .await
                    .map_err(|e| Error::Unavailable(format!("export of {path}: {e}")))?;
            }
        }
        out.flush()
            .await
            .map_err(|e| Error::Unavailable(format!("export: {e}")))?;
        Ok(count)
    }

    /// Imports an export into a store in maintenance mode: entries must be grouped by type,
    /// sorted by id, each type once. Wipes the datamanager's KV state, writes fresh split data
    /// files and a status, then re-initializes.
    pub async fn import(&self, input: &mut (dyn AsyncRead + Send + Unpin)) -> Result<()> {
        let inner = &self.inner;
        if inner.kv.get(paths::MAINTENANCE).await?.is_none() {
            return Err(Error::BadRequest(
                "import needs maintenance mode".to_owned(),
            ));
        }
        // A data sequence sorting after every existing status, so the import is the latest.
        let existing = self.latest_status_seq_in_storage().await?;
        inner.kv.delete(paths::CHECKPOINT_SEQ).await?;
        seed_sequence(self, paths::CHECKPOINT_SEQ, existing.as_deref()).await?;
        let data_seq = increment(inner.kv.as_ref(), paths::CHECKPOINT_SEQ)
            .await?
            .to_string();
        let mut status = DataStatus {
            data_sequence: data_seq.clone(),
            wal_sequence: String::new(),
            files: Default::default(),
        };
        let mut lines = BufReader::new(input).lines();
        let mut current: Option<(String, Vec<model::DataEntry>, usize)> = None;
        let mut last_id: Option<String> = None;
        let mut lineno = 0u64;
        while let Some(line) = lines
            .next_line()
            .await
            .map_err(|e| Error::BadRequest(format!("import: {e}")))?
        {
            lineno += 1;
            if line.trim().is_empty() {
                continue;
            }
            let entry: DataEntry = serde_json::from_str(&line)
                .map_err(|e| Error::BadRequest(format!("import line {lineno}: {e}")))?;
            model::validate_action(&model::Action::put(
                entry.data_type.clone(),
                entry.id.clone(),
                Vec::new(),
            ))
            .map_err(|e| Error::BadRequest(format!("import line {lineno}: {e}")))?;
            let same_type = current
                .as_ref()
                .is_some_and(|(t, _, _)| *t == entry.data_type);
            if !same_type {
                if let Some((t, entries, _)) = current.take() {
                    self.flush_import(&mut status, &t, entries).await?;
                }
                if status.files.contains_key(&entry.data_type) {
                    return Err(Error::BadRequest(format!(
                        "import line {lineno}: type {:?} appears twice",
                        entry.data_type
                    )));
                }
                last_id = None;
                current = Some((entry.data_type.clone(), Vec::new(), 0));
            }
            if last_id.as_ref().is_some_and(|l| *l >= entry.id) {
                return Err(Error::BadRequest(format!(
                    "import line {lineno}: {} ids are not sorted (or duplicated) at {:?}",
                    entry.data_type, entry.id
                )));
            }
            last_id = Some(entry.id.clone());
            if let Some((t, entries, size)) = current.as_mut() {
                *size += line.len() + 1;
                entries.push(entry);
                // Flush in bounded chunks: each chunk becomes one or more files.
                if *size >= inner.cfg.max_data_file_size {
                    let t = t.clone();
                    let full = std::mem::take(entries);
                    *size = 0;
                    self.flush_import(&mut status, &t, full).await?;
                }
            }
        }
        if let Some((t, entries, _)) = current.take() {
            self.flush_import(&mut status, &t, entries).await?;
        }
        inner
            .ost
            .write_bytes(
                &inner.paths.data_status(&data_seq),
                &to_json(&status)?,
                true,
            )
            .await?;
        // Wipe the datamanager KV state (keeping locks and the maintenance key) and re-init.
        inner.kv.delete(paths::WALS_DATA).await?;
        self.init_locked_after_import(&data_seq).await
    }

    async fn flush_import(
        &self,
        status: &mut DataStatus,
        data_type: &str,
        entries: Vec<DataEntry>,
    ) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut report = crate::checkpoint::CheckpointReport::default();
        let actions = entries.into_iter().map(|e| (e.id, Some(e.data))).collect();
        let files = self
            .rewrite(data_type, &status.data_sequence, None, actions, &mut report)
            .await?;
        status
            .files
            .entry(data_type.to_owned())
            .or_default()
            .extend(files);
        Ok(())
    }

    async fn init_locked_after_import(&self, data_seq: &str) -> Result<()> {
        let inner = &self.inner;
        let keys = inner.kv.get_prefix(paths::KV_PREFIX, 500).await?;
        for kv in keys.kvs {
            if !kv.key.starts_with(paths::LOCKS) {
                inner.kv.delete(&kv.key).await?;
            }
        }
        // Old WAL status files must not be replayed over the import.
        let mut list = inner.ost.list(&inner.paths.wal_status_dir(), None, false);
        let mut old = Vec::new();
        while let Some(obj) = list.next().await {
            old.push(obj?.path);
        }
        drop(list);
        for p in old {
            inner.ost.delete(&p).await?;
        }
        tracing::info!(data_seq, "datamanager: imported");
        self.init_locked().await?;
        self.init_changes().await?;
        Ok(())
    }
}

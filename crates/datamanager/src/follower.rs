//! The read-model follower (spec 40 §7): feeds a service's disposable local read model
//! (SQLite or similar) with every WAL in commit order, so lists and lookups are served
//! locally.
//!
//! The model stores the last WAL sequence it applied. On start the follower either resumes
//! from it (applying the WALs after it from object storage, then from KV), or, when the model
//! is empty, its WAL is gone, or the WAL epoch changed (the KV store was reset), resets the
//! model and loads the latest checkpoint's data files. Then it follows KV and applies each WAL
//! as soon as it is committed; a compacted watch or a new epoch triggers a resync.

use std::collections::BTreeMap;

use agola_common::Shutdown;
use agola_kv::sequence::Sequence;
use agola_kv::{EventKind, KeyRange, KvExt};
use async_trait::async_trait;
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::model::{Action, DataEntry, WalHeader, WalStatusFile, from_json};
use crate::paths;
use crate::{DataManager, Error, Result};

/// One batch to apply in one read-model transaction, together with the position reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Actions in order (puts replace, deletes remove).
    pub actions: Vec<Action>,
    /// The WAL sequence reached (store it in the same transaction).
    pub wal_sequence: String,
    /// Change groups seen moving, name → revision.
    pub change_groups: BTreeMap<String, i64>,
    /// KV revision reached (0 when applying from object storage).
    pub revision: i64,
}

/// A local read model fed by [`follow`].
#[async_trait]
pub trait ReadModel: Send {
    /// The last WAL sequence applied, `None` when empty.
    async fn position(&mut self) -> Result<Option<String>>;
    /// Drops everything (a full resync follows).
    async fn reset(&mut self) -> Result<()>;
    /// Applies a batch atomically with its position.
    async fn apply(&mut self, batch: Batch) -> Result<()>;
}

fn epoch(seq: &str) -> Option<u64> {
    seq.parse::<Sequence>().ok().map(|s| s.epoch)
}

impl DataManager {
    /// Brings `model` up to date, then follows every commit until `shutdown`.
    pub async fn follow(&self, model: &mut dyn ReadModel, shutdown: Shutdown) -> Result<()> {
        let mut stop = Box::pin(shutdown.wait());
        loop {
            let revision = match self.catch_up(model).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "read model sync failed, retrying");
                    tokio::select! {
                        _ = &mut stop => return Ok(()),
                        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                    }
                }
            };
            let mut stream = match self
                .inner
                .kv
                .watch(KeyRange::Prefix(paths::KV_PREFIX.to_owned()), revision + 1)
                .await
            {
                Ok(s) => s,
                Err(_) => continue,
            };
            loop {
                let next = tokio::select! {
                    _ = &mut stop => return Ok(()),
                    n = stream.next() => n,
                };
                let Some(Ok(resp)) = next else { break };
                let mut batch = Batch {
                    actions: Vec::new(),
                    wal_sequence: String::new(),
                    change_groups: BTreeMap::new(),
                    revision: 0,
                };
                let mut resync = false;
                for ev in resp.events {
                    batch.revision = batch.revision.max(ev.kv.mod_revision);
                    if let Some(seq) = ev.kv.key.strip_prefix(paths::WALS) {
                        // Applied once: on creation (`version` 1), i.e. when first committed.
                        if ev.kind != EventKind::Put || ev.kv.version != 1 {
                            continue;
                        }
                        let current = model.position().await?;
                        let epoch_changed = current
                            .as_deref()
                            .filter(|c| !c.is_empty())
                            .is_some_and(|c| epoch(c) != epoch(seq));
                        if epoch_changed {
                            resync = true;
                            break;
                        }
                        let header: WalHeader = from_json("wal header", &ev.kv.value)?;
                        batch
                            .actions
                            .extend(self.read_payload(&header.wal_data_file_id).await?);
                        batch.wal_sequence = seq.to_owned();
                    } else if let Some(name) = ev.kv.key.strip_prefix(paths::CHANGE_GROUPS)
                        && ev.kind == EventKind::Put
                    {
                        batch
                            .change_groups
                            .insert(name.to_owned(), ev.kv.mod_revision);
                    } else if ev.kv.key == paths::WALS_DATA && ev.kind == EventKind::Delete {
                        resync = true;
                        break;
                    }
                }
                if resync {
                    break;
                }
                if !batch.wal_sequence.is_empty() || !batch.change_groups.is_empty() {
                    if batch.wal_sequence.is_empty() {
                        batch.wal_sequence = model.position().await?.unwrap_or_default();
                    }
                    model.apply(batch).await?;
                }
            }
        }
    }

    /// Full or incremental sync; returns the KV revision reached.
    async fn catch_up(&self, model: &mut dyn ReadModel) -> Result<i64> {
        let inner = &self.inner;
        let position = model.position().await?;
        let last_storage = inner
            .kv
            .get(paths::LAST_COMMITTED_STORAGE_WAL_SEQ)
            .await?
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
            .ok_or_else(|| Error::Unavailable("the datamanager is not initialized".into()))?;
        let resumable = match &position {
            Some(p) if !p.is_empty() => {
                epoch(p) == epoch(&last_storage)
                    && (inner.kv.get(&paths::wal_key(p)).await?.is_some()
                        || inner.ost.stat(&inner.paths.wal_status(p)).await.is_ok())
            }
            _ => false,
        };
        let mut applied = position.clone().filter(|_| resumable).unwrap_or_default();
        if !resumable {
            model.reset().await?;
            let status = self.latest_status().await?.unwrap_or_default();
            for (data_type, files) in &status.files {
                for f in files {
                    let path = inner.paths.data_file(data_type, &f.id);
                    let mut lines = BufReader::new(inner.ost.read(&path).await?).lines();
                    let mut actions = Vec::new();
                    while let Some(line) = lines
                        .next_line()
                        .await
                        .map_err(|e| Error::Unavailable(format!("reading {path}: {e}")))?
                    {
                        let e: DataEntry = from_json("data entry", line.as_bytes())?;
                        actions.push(Action::put(e.data_type, e.id, e.data));
                    }
                    model
                        .apply(Batch {
                            actions,
                            wal_sequence: status.wal_sequence.clone(),
                            change_groups: BTreeMap::new(),
                            revision: 0,
                        })
                        .await?;
                }
            }
            applied.clone_from(&status.wal_sequence);
        }
        // WALs in object storage after the position, up to the last synced one.
        let start = (!applied.is_empty()).then(|| inner.paths.wal_status(&applied));
        let mut list = inner
            .ost
            .list(&inner.paths.wal_status_dir(), start.as_deref(), false);
        let mut seqs = Vec::new();
        while let Some(obj) = list.next().await {
            if let Some(seq) = paths::seq_of_wal_status(&obj?.path)
                && seq <= last_storage.as_str()
            {
                seqs.push(seq.to_owned());
            }
        }
        drop(list);
        for seq in seqs {
            let bytes = inner.ost.read_to_vec(&inner.paths.wal_status(&seq)).await?;
            let st: WalStatusFile = from_json("wal status", &bytes)?;
            let actions = self.read_payload(&st.wal_data_file_id).await?;
            model
                .apply(Batch {
                    actions,
                    wal_sequence: seq.clone(),
                    change_groups: BTreeMap::new(),
                    revision: 0,
                })
                .await?;
            applied = seq;
        }
        // Then, at one revision, the KV WALs after it and the change groups.
        let wals = inner.kv.get_prefix(paths::WALS, 500).await?;
        let revision = wals.revision;
        if let Some(first) = wals.kvs.first()
            && let Some(seq) = first.key.strip_prefix(paths::WALS)
            && !applied.is_empty()
            && seq > applied.as_str()
        {
            let header: WalHeader = from_json("wal header", &first.value)?;
            if header.previous_wal_sequence > applied {
                return Err(Error::Unavailable(format!(
                    "the first wal in kv ({seq}) is newer than the last applied ({applied}): retrying"
                )));
            }
        }
        let groups = inner
            .kv
            .range(agola_kv::RangeRequest::prefix(paths::CHANGE_GROUPS).at_revision(revision))
            .await?;
        let mut batch = Batch {
            actions: Vec::new(),
            wal_sequence: applied.clone(),
            change_groups: groups
                .kvs
                .iter()
                .filter_map(|kv| {
                    kv.key
                        .strip_prefix(paths::CHANGE_GROUPS)
                        .map(|n| (n.to_owned(), kv.mod_revision))
                })
                .collect(),
            revision,
        };
        for kv in &wals.kvs {
            let Some(seq) = kv.key.strip_prefix(paths::WALS) else {
                continue;
            };
            if !applied.is_empty() && seq <= applied.as_str() {
                continue;
            }
            let header: WalHeader = from_json("wal header", &kv.value)?;
            batch
                .actions
                .extend(self.read_payload(&header.wal_data_file_id).await?);
            batch.wal_sequence = seq.to_owned();
        }
        model.apply(batch).await?;
        Ok(revision)
    }
}

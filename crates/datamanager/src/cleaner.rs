//! Cleaners (spec 40 §6.6): KV WALs, checkpoint statuses and data files, storage WALs and
//! orphan payloads, change groups.

use std::collections::HashSet;
use std::time::SystemTime;

use agola_kv::{Compare, CompareOp, Op, Txn};
use futures::StreamExt;

use crate::model::{WalStatus, WalStatusFile, from_json};
use crate::paths;
use crate::{DataManager, Result};

impl DataManager {
    /// Deletes the oldest checkpointed WAL records while KV holds more than `kv_wals_keep`,
    /// always keeping at least one (readers need it to resync).
    pub async fn clean_kv_wals(&self) -> Result<usize> {
        let Some(lock) =
            agola_kv::lock::try_lock(self.inner.kv.clone(), paths::KV_PREFIX, "walcleanerlock")
                .await?
        else {
            return Ok(0);
        };
        let res = self.clean_kv_wals_locked().await;
        let _ = lock.unlock().await;
        res
    }

    async fn clean_kv_wals_locked(&self) -> Result<usize> {
        let wals = self.kv_wals().await?;
        let keep = self.inner.cfg.kv_wals_keep.max(1);
        let mut deleted = 0;
        let excess = wals.len().saturating_sub(keep);
        for (header, mod_rev) in wals.into_iter().take(excess) {
            if header.wal_status != WalStatus::Checkpointed {
                break;
            }
            let key = paths::wal_key(&header.wal_sequence);
            let resp = self
                .inner
                .kv
                .txn(
                    Txn::new()
                        .when([Compare::mod_revision(
                            key.as_str(),
                            CompareOp::Equal,
                            mod_rev,
                        )])
                        .and_then([Op::delete(key.as_str())]),
                )
                .await?;
            if !resp.succeeded {
                break;
            }
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Keeps the last `statuses_keep` statuses and deletes older ones, then deletes the data
    /// files no kept status references (except ones newer than the newest status: a
    /// checkpoint may be writing them). Holds `checkpointlock`.
    pub async fn clean_checkpoints(&self) -> Result<usize> {
        let Some(lock) =
            agola_kv::lock::try_lock(self.inner.kv.clone(), paths::KV_PREFIX, "checkpointlock")
                .await?
        else {
            return Ok(0);
        };
        let res = self.clean_checkpoints_locked().await;
        let _ = lock.unlock().await;
        res
    }

    async fn clean_checkpoints_locked(&self) -> Result<usize> {
        let inner = &self.inner;
        let mut statuses = Vec::new();
        let mut list = inner.ost.list(&inner.paths.data_dir(), None, false);
        while let Some(obj) = list.next().await {
            let obj = obj?;
            if let Some(seq) = paths::seq_of_data_status(&obj.path) {
                statuses.push(seq.to_owned());
            }
        }
        drop(list);
        let keep = inner.cfg.statuses_keep.max(1);
        if statuses.is_empty() {
            return Ok(0);
        }
        let Some(newest) = statuses.last().cloned() else {
            return Ok(0);
        };
        let split = statuses.len().saturating_sub(keep);
        let (old, kept) = statuses.split_at(split);
        let mut referenced: HashSet<String> = HashSet::new();
        for seq in kept {
            let status = self.load_status(seq).await?;
            for (t, files) in status.files {
                for f in files {
                    referenced.insert(format!("{t}/{}", f.id));
                }
            }
        }
        let mut deleted = 0;
        for seq in old {
            inner.ost.delete(&inner.paths.data_status(seq)).await?;
            deleted += 1;
        }
        // Data files: `<base>/data/<type>/<dataSeq>-<uuid>.(data|index)`.
        let data_dir = inner.paths.data_dir();
        let mut list = inner.ost.list(&data_dir, None, true);
        let mut doomed = Vec::new();
        while let Some(obj) = list.next().await {
            let obj = obj?;
            let Some(rel) = obj.path.strip_prefix(&data_dir) else {
                continue;
            };
            let Some((data_type, name)) = rel.split_once('/') else {
                continue;
            };
            let Some(file_id) = name
                .strip_suffix(".data")
                .or_else(|| name.strip_suffix(".index"))
            else {
                continue;
            };
            let file_seq = file_id.split('-').take(2).collect::<Vec<_>>().join("-");
            if file_seq.as_str() > newest.as_str() {
                continue;
            }
            if !referenced.contains(&format!("{data_type}/{file_id}")) {
                doomed.push(obj.path);
            }
        }
        drop(list);
        for path in doomed {
            inner.ost.delete(&path).await?;
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Deletes WAL status files and payloads older than both the first kept checkpoint's WAL
    /// and the first WAL in KV, and payloads referenced by nothing older than
    /// `orphan_payload_age`. `keep_from` lets a service keep more (runservice: the runs-index
    /// dump's WAL).
    pub async fn clean_storage_wals(&self, keep_from: Option<&str>) -> Result<usize> {
        let Some(lock) = agola_kv::lock::try_lock(
            self.inner.kv.clone(),
            paths::KV_PREFIX,
            "storagewalcleanerlock",
        )
        .await?
        else {
            return Ok(0);
        };
        let res = self.clean_storage_wals_locked(keep_from).await;
        let _ = lock.unlock().await;
        res
    }

    async fn clean_storage_wals_locked(&self, keep_from: Option<&str>) -> Result<usize> {
        let inner = &self.inner;
        let kv_wals = self.kv_wals().await?;
        let Some(first_kv) = kv_wals.first().map(|(h, _)| h.wal_sequence.clone()) else {
            return Ok(0);
        };
        // The oldest kept status's WAL: statuses are listed oldest first.
        let mut statuses = Vec::new();
        let mut list = inner.ost.list(&inner.paths.data_dir(), None, false);
        while let Some(obj) = list.next().await {
            if let Some(seq) = paths::seq_of_data_status(&obj?.path) {
                statuses.push(seq.to_owned());
            }
        }
        drop(list);
        let Some(first_status) = statuses.first() else {
            return Ok(0);
        };
        let first_status_wal = self.load_status(first_status).await?.wal_sequence;
        let mut limit = first_kv.clone();
        if !first_status_wal.is_empty() && first_status_wal < limit {
            limit = first_status_wal;
        }
        if let Some(k) = keep_from
            && k < limit.as_str()
        {
            limit = k.to_owned();
        }
        let mut referenced: HashSet<String> = kv_wals
            .iter()
            .map(|(h, _)| h.wal_data_file_id.clone())
            .collect();
        let mut deleted = 0;
        let status_dir = inner.paths.wal_status_dir();
        let mut list = inner.ost.list(&status_dir, None, false);
        let mut doomed = Vec::new();
        while let Some(obj) = list.next().await {
            let obj = obj?;
            let Some(seq) = paths::seq_of_wal_status(&obj.path) else {
                // Legacy `.checkpointed` files and anything else unexpected go.
                doomed.push((obj.path, None));
                continue;
            };
            if seq < limit.as_str() {
                doomed.push((obj.path.clone(), Some(seq.to_owned())));
            } else {
                let bytes = inner.ost.read_to_vec(&obj.path).await?;
                let status: WalStatusFile = from_json("wal status", &bytes)?;
                referenced.insert(status.wal_data_file_id);
            }
        }
        drop(list);
        for (path, seq) in doomed {
            if seq.is_some() {
                let bytes = inner.ost.read_to_vec(&path).await?;
                let status: WalStatusFile = from_json("wal status", &bytes)?;
                match inner
                    .ost
                    .delete(&inner.paths.wal_data(&status.wal_data_file_id))
                    .await
                {
                    Ok(()) => deleted += 1,
                    Err(e) if e.is_not_exist() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            inner.ost.delete(&path).await?;
            deleted += 1;
        }
        // Orphan payloads: written by writers whose commit failed and whose own cleanup
        // failed too. Only old ones: a young one may belong to a write in flight.
        let data_dir = inner.paths.wal_data_dir();
        let mut list = inner.ost.list(&data_dir, None, false);
        let now = SystemTime::now();
        let mut orphans = Vec::new();
        while let Some(obj) = list.next().await {
            let obj = obj?;
            let id = obj.path.strip_prefix(&data_dir).unwrap_or_default();
            let old = now
                .duration_since(obj.last_modified)
                .is_ok_and(|age| age >= inner.cfg.orphan_payload_age);
            if old && !referenced.contains(id) {
                orphans.push(obj.path);
            }
        }
        drop(list);
        for path in orphans {
            match inner.ost.delete(&path).await {
                Ok(()) => deleted += 1,
                Err(e) if e.is_not_exist() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(deleted)
    }

    /// Moves the change-group window forward (holds `compactchangegroupslock`).
    pub async fn compact_change_groups(&self) -> Result<()> {
        let Some(lock) = agola_kv::lock::try_lock(
            self.inner.kv.clone(),
            paths::KV_PREFIX,
            "compactchangegroupslock",
        )
        .await?
        else {
            return Ok(());
        };
        let res = self.inner.cg.compact(self.inner.kv.as_ref()).await;
        let _ = lock.unlock().await;
        Ok(res?)
    }
}

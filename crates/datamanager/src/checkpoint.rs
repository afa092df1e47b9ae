//! Checkpoints (spec 40 §6.5): merge the last action per id of synced WALs into sorted data
//! files per type, split at a maximum size, rewriting only the files that receive actions.

use std::collections::BTreeMap;

use agola_kv::sequence::increment;
use agola_kv::{Compare, CompareOp, KvExt, Op, Txn};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::model::{
    ActionType, DataEntry, DataFileIndex, DataStatus, DataStatusFile, WalHeader, WalStatus,
    from_json, to_json,
};
use crate::paths;
use crate::{DataManager, Error, Result};

/// What a checkpoint did, for logs, metrics and the benchmark.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointReport {
    /// WALs included.
    pub wals: usize,
    /// Data files written (new or rewritten).
    pub files_written: usize,
    /// Data files reused unchanged.
    pub files_reused: usize,
    pub bytes_written: u64,
    /// The new data sequence, if a checkpoint was written.
    pub data_sequence: Option<String>,
}

/// One output data file being filled.
struct OutFile {
    buf: Vec<u8>,
    index: DataFileIndex,
    last_id: String,
}

impl OutFile {
    fn new() -> Self {
        OutFile {
            buf: Vec::new(),
            index: DataFileIndex::default(),
            last_id: String::new(),
        }
    }
}

/// Streams entries into size-split output files.
struct Splitter {
    max: usize,
    done: Vec<OutFile>,
    cur: OutFile,
}

impl Splitter {
    fn push(&mut self, entry: &DataEntry) -> Result<()> {
        let line = to_json(entry)?;
        // Start a new file when this one is already over the limit: split on entry boundaries.
        if !self.cur.buf.is_empty() && self.cur.buf.len() >= self.max {
            self.done
                .push(std::mem::replace(&mut self.cur, OutFile::new()));
        }
        self.cur
            .index
            .index
            .insert(entry.id.clone(), self.cur.buf.len() as u64);
        self.cur.buf.extend_from_slice(&line);
        self.cur.buf.push(b'\n');
        self.cur.last_id.clone_from(&entry.id);
        Ok(())
    }

    fn finish(mut self) -> Vec<OutFile> {
        if !self.cur.buf.is_empty() {
            self.done.push(self.cur);
        }
        self.done
    }
}

impl DataManager {
    /// Checkpoints synced WALs when at least `min_checkpoint_wals` are pending, or always
    /// when `force`. Holds `checkpointlock`; returns `None` when another instance holds it.
    pub async fn checkpoint(&self, force: bool) -> Result<Option<CheckpointReport>> {
        let Some(lock) =
            agola_kv::lock::try_lock(self.inner.kv.clone(), paths::KV_PREFIX, "checkpointlock")
                .await?
        else {
            return Ok(None);
        };
        let res = self.checkpoint_locked(force).await;
        let _ = lock.unlock().await;
        res.map(Some)
    }

    pub(crate) async fn checkpoint_locked(&self, force: bool) -> Result<CheckpointReport> {
        let inner = &self.inner;
        let status = self.latest_status().await?.unwrap_or_default();
        // WALs in order, stopping at the first still `committed` (not yet in storage).
        let mut pending: Vec<(WalHeader, i64)> = Vec::new();
        let mut payload_bytes = 0u64;
        for (header, mod_rev) in self.kv_wals().await? {
            match header.wal_status {
                WalStatus::Committed => break,
                WalStatus::Checkpointed => continue,
                WalStatus::CommittedStorage => {}
            }
            if pending.len() >= inner.cfg.max_checkpoint_wals
                || payload_bytes >= inner.cfg.max_checkpoint_bytes
            {
                break;
            }
            if let Ok(info) = inner
                .ost
                .stat(&inner.paths.wal_data(&header.wal_data_file_id))
                .await
            {
                payload_bytes += info.size;
            }
            pending.push((header, mod_rev));
        }
        if pending.is_empty() && !force {
            return Ok(CheckpointReport::default());
        }
        if pending.len() < inner.cfg.min_checkpoint_wals && !force {
            return Ok(CheckpointReport::default());
        }
        // Last action per id, per type, sorted by id; WALs already covered are skipped.
        let mut actions: BTreeMap<String, BTreeMap<String, Option<Vec<u8>>>> = BTreeMap::new();
        let mut last_wal = status.wal_sequence.clone();
        for (header, _) in &pending {
            if !status.wal_sequence.is_empty() && header.wal_sequence <= status.wal_sequence {
                continue;
            }
            for a in self.read_payload(&header.wal_data_file_id).await? {
                let data = match a.action_type {
                    ActionType::Put => Some(a.data),
                    ActionType::Delete => None,
                };
                actions.entry(a.data_type).or_default().insert(a.id, data);
            }
            last_wal.clone_from(&header.wal_sequence);
        }
        let data_seq = increment(inner.kv.as_ref(), paths::CHECKPOINT_SEQ)
            .await?
            .to_string();
        let mut report = CheckpointReport {
            wals: pending.len(),
            data_sequence: Some(data_seq.clone()),
            ..Default::default()
        };
        let mut new_status = DataStatus {
            data_sequence: data_seq.clone(),
            wal_sequence: last_wal,
            files: BTreeMap::new(),
        };
        let mut types: Vec<String> = status.files.keys().cloned().collect();
        for t in actions.keys() {
            if !types.contains(t) {
                types.push(t.clone());
            }
        }
        types.sort();
        for data_type in types {
            let old_files = status.files.get(&data_type).cloned().unwrap_or_default();
            let type_actions = actions.remove(&data_type).unwrap_or_default();
            let files = self
                .merge_type(&data_type, &data_seq, old_files, type_actions, &mut report)
                .await?;
            if !files.is_empty() {
                new_status.files.insert(data_type, files);
            }
        }
        inner
            .ost
            .write_bytes(
                &inner.paths.data_status(&data_seq),
                &to_json(&new_status)?,
                true,
            )
            .await?;
        // Publish the new status, then mark the WALs checkpointed.
        inner
            .kv
            .put(paths::LAST_DATA_STATUS, data_seq.clone().into_bytes())
            .await?;
        for (mut header, mod_rev) in pending {
            header.wal_status = WalStatus::Checkpointed;
            let key = paths::wal_key(&header.wal_sequence);
            inner
                .kv
                .txn(
                    Txn::new()
                        .when([Compare::mod_revision(
                            key.as_str(),
                            CompareOp::Equal,
                            mod_rev,
                        )])
                        .and_then([Op::put(key.as_str(), to_json(&header)?)]),
                )
                .await?;
        }
        tracing::debug!(?report, "checkpoint written");
        Ok(report)
    }

    /// Maps the actions of one type onto its files and rewrites only the files receiving some.
    async fn merge_type(
        &self,
        data_type: &str,
        data_seq: &str,
        old_files: Vec<DataStatusFile>,
        actions: BTreeMap<String, Option<Vec<u8>>>,
        report: &mut CheckpointReport,
    ) -> Result<Vec<DataStatusFile>> {
        // Bucket each action into the first file whose last entry id is >= its id; past the
        // last file → the last file; no files → one new file.
        let n = old_files.len().max(1);
        let mut buckets: Vec<BTreeMap<String, Option<Vec<u8>>>> = vec![BTreeMap::new(); n];
        for (id, data) in actions {
            let i = old_files
                .iter()
                .position(|f| f.last_entry_id >= id)
                .unwrap_or(n - 1);
            buckets[i].insert(id, data);
        }
        let mut out = Vec::new();
        if old_files.is_empty() {
            let bucket = buckets.pop().unwrap_or_default();
            out.extend(
                self.rewrite(data_type, data_seq, None, bucket, report)
                    .await?,
            );
            return Ok(out);
        }
        for (file, bucket) in old_files.into_iter().zip(buckets) {
            if bucket.is_empty() {
                report.files_reused += 1;
                out.push(file);
            } else {
                out.extend(
                    self.rewrite(data_type, data_seq, Some(&file.id), bucket, report)
                        .await?,
                );
            }
        }
        Ok(out)
    }

    /// Streams an old file's entries merge-joined with `actions` into new size-split files.
    pub(crate) async fn rewrite(
        &self,
        data_type: &str,
        data_seq: &str,
        old_file: Option<&str>,
        actions: BTreeMap<String, Option<Vec<u8>>>,
        report: &mut CheckpointReport,
    ) -> Result<Vec<DataStatusFile>> {
        let inner = &self.inner;
        let mut splitter = Splitter {
            max: inner.cfg.max_data_file_size.max(1),
            done: Vec::new(),
            cur: OutFile::new(),
        };
        let mut pending = actions.into_iter().peekable();
        let emit = |splitter: &mut Splitter, id: String, data: Option<Vec<u8>>| -> Result<()> {
            if let Some(data) = data {
                splitter.push(&DataEntry {
                    id,
                    data_type: data_type.to_owned(),
                    data,
                })?;
            }
            Ok(())
        };
        if let Some(old) = old_file {
            let path = inner.paths.data_file(data_type, old);
            let mut lines = BufReader::new(inner.ost.read(&path).await?).lines();
            while let Some(line) = lines
                .next_line()
                .await
                .map_err(|e| Error::Unavailable(format!("reading {path}: {e}")))?
            {
                let entry: DataEntry = from_json("data entry", line.as_bytes())?;
                while pending.peek().is_some_and(|(id, _)| *id < entry.id) {
                    if let Some((id, data)) = pending.next() {
                        emit(&mut splitter, id, data)?;
                    }
                }
                if pending.peek().is_some_and(|(id, _)| *id == entry.id) {
                    if let Some((id, data)) = pending.next() {
                        emit(&mut splitter, id, data)?;
                    }
                } else {
                    splitter.push(&entry)?;
                }
            }
        }
        for (id, data) in pending {
            emit(&mut splitter, id, data)?;
        }
        let mut files = Vec::new();
        for out in splitter.finish() {
            let id = format!("{data_seq}-{}", uuid::Uuid::new_v4());
            inner
                .ost
                .write_bytes(&inner.paths.data_file(data_type, &id), &out.buf, true)
                .await?;
            inner
                .ost
                .write_bytes(
                    &inner.paths.data_index(data_type, &id),
                    &to_json(&out.index)?,
                    true,
                )
                .await?;
            report.files_written += 1;
            report.bytes_written += out.buf.len() as u64;
            files.push(DataStatusFile {
                id,
                last_entry_id: out.last_id,
            });
        }
        Ok(files)
    }
}

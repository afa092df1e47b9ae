//! The write path (spec 40 §6.4) and the sync of WAL records to object storage (§6.5).

use std::time::Duration;

use std::time::{SystemTime, UNIX_EPOCH};

use agola_kv::sequence::{Backoff, Sequence};
use agola_kv::{Compare, CompareOp, KvExt, Op, RangeRequest, Txn};

use crate::model::{
    self, Action, WalHeader, WalStatus, WalStatusFile, WalsData, from_json, to_json,
};
use crate::paths;
use crate::{ChangeGroupsUpdateToken, DataManager, Error, Result};

/// How long a writer retries when only unrelated writers moved `walsdata`.
const WRITE_RETRY_FOR: Duration = Duration::from_secs(10);
/// How long a writer waits for its own WAL to be visible to this instance's reads.
const READ_YOUR_WRITES_WAIT: Duration = Duration::from_secs(5);

impl DataManager {
    /// Writes `actions` atomically, guarded by `token`'s change groups (if any). Returns the
    /// token after the write. Fails with Concurrency when a change group moved since the token
    /// was taken; writers of unrelated data never fail each other.
    pub async fn write_wal(
        &self,
        actions: Vec<Action>,
        token: Option<&ChangeGroupsUpdateToken>,
    ) -> Result<ChangeGroupsUpdateToken> {
        self.write_wal_with(actions, token, Vec::new(), Vec::new())
            .await
    }

    /// [`Self::write_wal`] with extra compares and ops in the same KV txn (e.g. the
    /// runservice's run key). A failing extra compare is a Concurrency error.
    pub async fn write_wal_with(
        &self,
        actions: Vec<Action>,
        token: Option<&ChangeGroupsUpdateToken>,
        extra_compares: Vec<Compare>,
        extra_ops: Vec<Op>,
    ) -> Result<ChangeGroupsUpdateToken> {
        if actions.is_empty() {
            return Err(Error::BadRequest(
                "a wal needs at least one action".to_owned(),
            ));
        }
        for a in &actions {
            model::validate_action(a)?;
        }
        let token = token.cloned().unwrap_or_default();
        for name in token.change_groups_revisions.keys() {
            agola_kv::changegroup::validate_name(name)?;
        }
        self.check_not_in_maintenance().await?;

        let inner = &self.inner;
        let payload = model::encode_payload(&actions)?;
        let data_id = uuid::Uuid::new_v4().to_string();
        let data_path = inner.paths.wal_data(&data_id);
        inner.ost.write_bytes(&data_path, &payload, true).await?;

        match self
            .commit_wal(&data_id, &token, &extra_compares, &extra_ops)
            .await
        {
            Ok((new_token, revision)) => {
                inner.sync_now.notify_one();
                self.wait_applied(revision).await;
                Ok(new_token)
            }
            Err(e) => {
                // The payload is referenced by nothing: remove it now (best effort; the
                // storage WAL cleaner catches what this misses).
                if let Err(de) = inner.ost.delete(&data_path).await {
                    tracing::warn!(path = %data_path, error = %de, "cannot delete orphan wal payload");
                }
                Err(e)
            }
        }
    }

    async fn commit_wal(
        &self,
        data_id: &str,
        token: &ChangeGroupsUpdateToken,
        extra_compares: &[Compare],
        extra_ops: &[Op],
    ) -> Result<(ChangeGroupsUpdateToken, i64)> {
        let inner = &self.inner;
        let kv = inner.kv.as_ref();
        let (guard_compares, guard_ops) = inner.cg.guard(token);
        let mut backoff = Backoff::new(WRITE_RETRY_FOR);
        // Writers of this instance take turns: they would only make each other's CAS on
        // `walsdata` fail and back off. Writers of other instances still race, and retry.
        let _turn = inner.commit_lock.lock().await;
        loop {
            // The sequence increment rides in the commit txn itself (compare-and-put of
            // `walseq`), so a write costs one KV commit instead of two.
            let snapshot = kv
                .txn(Txn::new().and_then([Op::get(paths::WAL_SEQ), Op::get(paths::WALS_DATA)]))
                .await?;
            let walseq = snapshot.range(0).and_then(|r| r.kvs.first()).cloned();
            let walsdata = snapshot
                .range(1)
                .and_then(|r| r.kvs.first())
                .cloned()
                .ok_or_else(|| {
                    Error::Unavailable(
                        "the datamanager is not initialized (walsdata missing)".into(),
                    )
                })?;
            let data: WalsData = from_json("walsdata", &walsdata.value)?;
            let (seq, walseq_compare) = match &walseq {
                Some(cur) => {
                    let cur_seq: Sequence = std::str::from_utf8(&cur.value)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| Error::Corrupted("walseq is not a sequence".into()))?;
                    (
                        Sequence {
                            epoch: cur_seq.epoch,
                            counter: cur_seq.counter + 1,
                        },
                        Compare::mod_revision(paths::WAL_SEQ, CompareOp::Equal, cur.mod_revision),
                    )
                }
                None => (
                    Sequence {
                        epoch: SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map(|d| d.as_secs())
                            .unwrap_or(0),
                        counter: 1,
                    },
                    Compare::absent(paths::WAL_SEQ),
                ),
            };
            let seq = seq.to_string();
            if seq <= data.last_committed_wal_sequence {
                // Committed sequences must strictly increase in commit order; a sequence key
                // behind the last commit (never expected) is a corruption, not a retry.
                return Err(Error::Corrupted(format!(
                    "walseq {seq} is not after the last committed wal {}",
                    data.last_committed_wal_sequence
                )));
            }
            let header = WalHeader {
                wal_data_file_id: data_id.to_owned(),
                wal_status: WalStatus::Committed,
                wal_sequence: seq.clone(),
                previous_wal_sequence: data.last_committed_wal_sequence.clone(),
            };
            let mut compares = guard_compares.clone();
            compares.extend(extra_compares.iter().cloned());
            compares.push(walseq_compare);
            compares.push(Compare::mod_revision(
                paths::WALS_DATA,
                CompareOp::Equal,
                walsdata.mod_revision,
            ));
            compares.push(Compare::absent(paths::wal_key(&seq)));
            let mut ops = guard_ops.clone();
            ops.push(Op::put(paths::WAL_SEQ, seq.clone().into_bytes()));
            ops.push(Op::put(
                paths::WALS_DATA,
                to_json(&WalsData {
                    last_committed_wal_sequence: seq.clone(),
                })?,
            ));
            ops.push(Op::put(paths::wal_key(&seq), to_json(&header)?));
            ops.extend(extra_ops.iter().cloned());
            // On failure, read back what the guard compared so the cause is classified
            // without another round trip.
            let else_ops = guard_compares
                .iter()
                .chain(extra_compares)
                .map(|c| Op::Range(RangeRequest::key(c.key.clone())));
            let resp = kv
                .txn(Txn::new().when(compares).and_then(ops).or_else(else_ops))
                .await?;
            if resp.succeeded {
                return Ok((inner.cg.next_token(token, &resp), resp.revision));
            }
            let guard_failed = guard_compares
                .iter()
                .chain(extra_compares)
                .enumerate()
                .any(|(i, c)| !c.matches(resp.range(i).and_then(|r| r.kvs.first())));
            if guard_failed {
                return Err(Error::Concurrency(
                    "the data changed since it was read (change group or compare failed)"
                        .to_owned(),
                ));
            }
            // Only the sequence or walsdata moved: another instance committed first. Retry.
            if !backoff.wait().await {
                return Err(Error::Concurrency(
                    "too many concurrent writers: gave up after 10 s".to_owned(),
                ));
            }
        }
    }

    /// Waits until this instance's in-memory WAL changes reached `revision`, so the writer
    /// reads its own write. After the wait limit it returns anyway and logs a warning.
    pub(crate) async fn wait_applied(&self, revision: i64) {
        let mut rx = self.inner.applied.subscribe();
        let reached =
            tokio::time::timeout(READ_YOUR_WRITES_WAIT, rx.wait_for(|r| *r >= revision)).await;
        if !matches!(reached, Ok(Ok(_))) {
            tracing::warn!(
                revision,
                "wal not applied locally in time: reads may lag the write"
            );
        }
    }

    /// Unavailable while the store is in maintenance mode (only maintenance, export and import
    /// are served then). Reads the key itself, so it is right even before the watch started.
    pub(crate) async fn check_not_in_maintenance(&self) -> Result<()> {
        let on = self.inner.kv.get(paths::MAINTENANCE).await?.is_some();
        self.inner
            .maintenance
            .store(on, std::sync::atomic::Ordering::SeqCst);
        if on {
            return Err(Error::Unavailable(
                "the store is in maintenance mode".to_owned(),
            ));
        }
        Ok(())
    }

    /// The cheap check of the read path: the flag kept by the maintenance watch.
    pub(crate) fn check_not_in_maintenance_cached(&self) -> Result<()> {
        if self
            .inner
            .maintenance
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(Error::Unavailable(
                "the store is in maintenance mode".to_owned(),
            ));
        }
        Ok(())
    }

    /// Reads every WAL record in KV, in sequence order.
    pub(crate) async fn kv_wals(&self) -> Result<Vec<(WalHeader, i64)>> {
        let resp = self.inner.kv.get_prefix(paths::WALS, 500).await?;
        resp.kvs
            .iter()
            .map(|kv| {
                Ok((
                    from_json::<WalHeader>("wal header", &kv.value)?,
                    kv.mod_revision,
                ))
            })
            .collect()
    }

    /// Moves every `committed` WAL to `committed_storage`: writes its status file, then CASes
    /// its record and `lastcommittedstoragewalseq`. Stops at the first failure to keep order.
    pub async fn sync(&self) -> Result<()> {
        let Some(lock) =
            agola_kv::lock::try_lock(self.inner.kv.clone(), paths::KV_PREFIX, "synclock").await?
        else {
            return Ok(());
        };
        let res = self.sync_locked().await;
        let _ = lock.unlock().await;
        res
    }

    async fn sync_locked(&self) -> Result<()> {
        let inner = &self.inner;
        for (mut header, mod_rev) in self.kv_wals().await? {
            if header.wal_status != WalStatus::Committed {
                continue;
            }
            let status = WalStatusFile {
                wal_data_file_id: header.wal_data_file_id.clone(),
                previous_wal_sequence: header.previous_wal_sequence.clone(),
            };
            inner
                .ost
                .write_bytes(
                    &inner.paths.wal_status(&header.wal_sequence),
                    &to_json(&status)?,
                    true,
                )
                .await?;
            header.wal_status = WalStatus::CommittedStorage;
            let key = paths::wal_key(&header.wal_sequence);
            let resp = inner
                .kv
                .txn(
                    Txn::new()
                        .when([Compare::mod_revision(
                            key.as_str(),
                            CompareOp::Equal,
                            mod_rev,
                        )])
                        .and_then([
                            Op::put(key.as_str(), to_json(&header)?),
                            Op::put(
                                paths::LAST_COMMITTED_STORAGE_WAL_SEQ,
                                header.wal_sequence.clone().into_bytes(),
                            ),
                        ]),
                )
                .await?;
            if !resp.succeeded {
                break;
            }
        }
        Ok(())
    }

    /// Puts `datamanager/ping` so watchers and tokens see the revision move when nothing else
    /// changes.
    pub async fn ping(&self) -> Result<()> {
        self.inner.kv.put(paths::PING, Vec::new()).await?;
        Ok(())
    }
}

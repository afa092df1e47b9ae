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

/// A writer's WAL record waiting for the commit leader.
pub(crate) struct CommitRequest {
    data_id: String,
    token: ChangeGroupsUpdateToken,
    extra_compares: Vec<Compare>,
    extra_ops: Vec<Op>,
    reply: tokio::sync::oneshot::Sender<Result<(ChangeGroupsUpdateToken, i64)>>,
}

/// Why a batch did not commit.
enum BatchError {
    /// A change-group or extra compare failed.
    Guard,
    Other(Error),
}

impl From<Error> for BatchError {
    fn from(e: Error) -> Self {
        BatchError::Other(e)
    }
}

impl From<agola_kv::Error> for BatchError {
    fn from(e: agola_kv::Error) -> Self {
        BatchError::Other(e.into())
    }
}

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

    /// Commits one WAL record. Writers of this instance take turns through a leader: the
    /// writer holding the commit lock drains every waiting request and commits the ones that
    /// can share a KV txn (no extra compares, disjoint change groups) as one **group commit**;
    /// the others, or a group whose txn failed on a guard, are committed one by one so each
    /// writer gets its own answer. Writers of other instances still race, and retry.
    async fn commit_wal(
        &self,
        data_id: &str,
        token: &ChangeGroupsUpdateToken,
        extra_compares: &[Compare],
        extra_ops: &[Op],
    ) -> Result<(ChangeGroupsUpdateToken, i64)> {
        let inner = &self.inner;
        let (reply_tx, mut reply_rx) = tokio::sync::oneshot::channel();
        let request = CommitRequest {
            data_id: data_id.to_owned(),
            token: token.clone(),
            extra_compares: extra_compares.to_vec(),
            extra_ops: extra_ops.to_vec(),
            reply: reply_tx,
        };
        if let Ok(mut q) = inner.commit_queue.lock() {
            q.push(request);
        } else {
            return Err(Error::Unavailable("commit queue poisoned".to_owned()));
        }
        let turn = tokio::select! {
            r = &mut reply_rx => {
                return r.unwrap_or_else(|_| Err(Error::Unavailable("commit leader vanished".into())));
            }
            t = inner.commit_lock.lock() => t,
        };
        // A previous leader may have committed this request while we waited for the lock.
        if let Ok(r) = reply_rx.try_recv() {
            return r;
        }
        let requests = inner
            .commit_queue
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .map_err(|_| Error::Unavailable("commit queue poisoned".to_owned()))?;
        self.lead_commits(requests).await;
        drop(turn);
        reply_rx
            .await
            .unwrap_or_else(|_| Err(Error::Unavailable("commit reply lost".to_owned())))
    }

    /// Commits `requests` (the leader's turn) and answers each of them.
    async fn lead_commits(&self, requests: Vec<CommitRequest>) {
        // etcd refuses txns with more than 128 compares or ops (--max-txn-ops): groups stay
        // under that, with room for the sequence keys.
        const MAX_OPS: usize = 120;
        // Partition into groups of requests without extras, with disjoint change groups, each
        // small enough for one txn; the others go alone.
        let mut groups: Vec<Vec<CommitRequest>> = Vec::new();
        let mut alone = Vec::new();
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut current: Vec<CommitRequest> = Vec::new();
        let mut ops = 0;
        for r in requests {
            let names: Vec<&String> = r.token.change_groups_revisions.keys().collect();
            let cost = 2 + 2 * names.len();
            if !r.extra_compares.is_empty() || !r.extra_ops.is_empty() || cost > MAX_OPS {
                alone.push(r);
                continue;
            }
            if names.iter().any(|n| seen.contains(*n)) {
                alone.push(r);
                continue;
            }
            if ops + cost > MAX_OPS {
                groups.push(std::mem::take(&mut current));
                ops = 0;
            }
            seen.extend(names.into_iter().cloned());
            ops += cost;
            current.push(r);
        }
        if !current.is_empty() {
            groups.push(current);
        }
        for group in groups {
            if group.len() == 1 {
                alone.extend(group);
                continue;
            }
            match self.commit_batch(&group).await {
                Ok(results) => {
                    for (r, res) in group.into_iter().zip(results) {
                        let _ = r.reply.send(Ok(res));
                    }
                }
                // A guard of one of them failed: find out which, one by one.
                Err(BatchError::Guard) => alone.extend(group),
                Err(BatchError::Other(e)) => {
                    let msg = e.to_string();
                    for r in group {
                        let _ = r.reply.send(Err(Error::Unavailable(msg.clone())));
                    }
                }
            }
        }
        for r in alone {
            let res = match self.commit_batch(std::slice::from_ref(&r)).await {
                Ok(mut v) => v
                    .pop()
                    .ok_or_else(|| Error::Unavailable("empty commit".into())),
                Err(BatchError::Guard) => Err(Error::Concurrency(
                    "the data changed since it was read (change group or compare failed)"
                        .to_owned(),
                )),
                Err(BatchError::Other(e)) => Err(e),
            };
            let _ = r.reply.send(res);
        }
    }

    /// One KV txn committing a WAL record per request, in order, each naming the previous one.
    async fn commit_batch(
        &self,
        requests: &[CommitRequest],
    ) -> Result<Vec<(ChangeGroupsUpdateToken, i64)>, BatchError> {
        let inner = &self.inner;
        let kv = inner.kv.as_ref();
        let mut guard_compares = Vec::new();
        let mut guard_ops = Vec::new();
        for r in requests {
            let (c, o) = inner.cg.guard(&r.token);
            guard_compares.extend(c);
            guard_compares.extend(r.extra_compares.iter().cloned());
            guard_ops.extend(o);
        }
        let mut backoff = Backoff::new(WRITE_RETRY_FOR);
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
            let (mut seq, walseq_compare) = match &walseq {
                Some(cur) => {
                    let cur_seq: Sequence = std::str::from_utf8(&cur.value)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| Error::Corrupted("walseq is not a sequence".into()))?;
                    (
                        cur_seq,
                        Compare::mod_revision(paths::WAL_SEQ, CompareOp::Equal, cur.mod_revision),
                    )
                }
                None => (
                    Sequence {
                        epoch: SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map(|d| d.as_secs())
                            .unwrap_or(0),
                        counter: 0,
                    },
                    Compare::absent(paths::WAL_SEQ),
                ),
            };
            let mut compares = guard_compares.clone();
            compares.push(walseq_compare);
            compares.push(Compare::mod_revision(
                paths::WALS_DATA,
                CompareOp::Equal,
                walsdata.mod_revision,
            ));
            let mut ops = guard_ops.clone();
            let mut prev = data.last_committed_wal_sequence.clone();
            for r in requests {
                seq.counter += 1;
                let seq_str = seq.to_string();
                if seq_str <= prev {
                    // Committed sequences must strictly increase in commit order; a sequence
                    // key behind the last commit (never expected) is corruption, not a retry.
                    return Err(Error::Corrupted(format!(
                        "walseq {seq_str} is not after the last committed wal {prev}"
                    ))
                    .into());
                }
                let header = WalHeader {
                    wal_data_file_id: r.data_id.clone(),
                    wal_status: WalStatus::Committed,
                    wal_sequence: seq_str.clone(),
                    previous_wal_sequence: prev.clone(),
                };
                compares.push(Compare::absent(paths::wal_key(&seq_str)));
                ops.push(Op::put(paths::wal_key(&seq_str), to_json(&header)?));
                ops.extend(r.extra_ops.iter().cloned());
                prev = seq_str;
            }
            ops.push(Op::put(paths::WAL_SEQ, prev.clone().into_bytes()));
            ops.push(Op::put(
                paths::WALS_DATA,
                to_json(&WalsData {
                    last_committed_wal_sequence: prev.clone(),
                })?,
            ));
            // On failure, read back what the guards compared so the cause is classified
            // without another round trip.
            let else_ops = guard_compares
                .iter()
                .map(|c| Op::Range(RangeRequest::key(c.key.clone())));
            let resp = kv
                .txn(Txn::new().when(compares).and_then(ops).or_else(else_ops))
                .await?;
            if resp.succeeded {
                return Ok(requests
                    .iter()
                    .map(|r| (inner.cg.next_token(&r.token, &resp), resp.revision))
                    .collect());
            }
            let guard_failed = guard_compares
                .iter()
                .enumerate()
                .any(|(i, c)| !c.matches(resp.range(i).and_then(|r| r.kvs.first())));
            if guard_failed {
                return Err(BatchError::Guard);
            }
            // Only the sequence or walsdata moved: another instance committed first. Retry.
            if !backoff.wait().await {
                return Err(Error::Concurrency(
                    "too many concurrent writers: gave up after 10 s".to_owned(),
                )
                .into());
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

    /// Syncs in batches: the status files of a run of consecutive `committed` WALs are
    /// written concurrently, then one txn marks them all `committed_storage` (each guarded by
    /// its mod revision) and advances `lastcommittedstoragewalseq`. Order is kept: a batch
    /// stops at the first WAL not `committed`, and a failed txn changes nothing.
    async fn sync_locked(&self) -> Result<()> {
        // etcd refuses txns with more than 128 compares or ops (--max-txn-ops).
        const BATCH: usize = 100;
        let inner = &self.inner;
        let wals = self.kv_wals().await?;
        let pending: Vec<(WalHeader, i64)> = wals
            .into_iter()
            .skip_while(|(h, _)| h.wal_status != WalStatus::Committed)
            .take_while(|(h, _)| h.wal_status == WalStatus::Committed)
            .collect();
        for batch in pending.chunks(BATCH) {
            let writes = batch.iter().map(|(header, _)| async move {
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
                    .await
                    .map_err(Error::from)
            });
            for res in futures::future::join_all(writes).await {
                res?;
            }
            let mut txn = Txn::new();
            let mut last = String::new();
            for (header, mod_rev) in batch {
                let key = paths::wal_key(&header.wal_sequence);
                let mut done = header.clone();
                done.wal_status = WalStatus::CommittedStorage;
                txn = txn
                    .when([Compare::mod_revision(
                        key.as_str(),
                        CompareOp::Equal,
                        *mod_rev,
                    )])
                    .and_then([Op::put(key.as_str(), to_json(&done)?)]);
                last.clone_from(&header.wal_sequence);
            }
            txn = txn.and_then([Op::put(
                paths::LAST_COMMITTED_STORAGE_WAL_SEQ,
                last.into_bytes(),
            )]);
            if !inner.kv.txn(txn).await?.succeeded {
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

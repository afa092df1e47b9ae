//! Reads (spec 40 §6.7): the in-memory WAL changes kept by a watcher, overlaid on the data
//! files of the latest checkpoint.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use agola_kv::{EventKind, KeyRange, KvExt, RangeRequest};
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::model::{self, DataEntry, DataFileIndex, DataStatus, WalHeader, from_json};
use crate::paths;
use crate::{ChangeGroupsUpdateToken, DataManager, Error, Result};

/// The latest action of an entry among the WALs still in KV.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub wal_seq: String,
    /// `None` = deleted.
    pub data: Option<Vec<u8>>,
}

/// WALs still in KV, applied in memory.
#[derive(Debug, Default)]
pub(crate) struct WalChanges {
    pub initialized: bool,
    /// KV revision applied.
    pub revision: i64,
    /// Applied WALs: sequence → (type, id) pairs they touched.
    pub wals: BTreeMap<String, Vec<(String, String)>>,
    /// type → id → latest change.
    pub entries: HashMap<String, BTreeMap<String, Change>>,
    pub change_groups: HashMap<String, i64>,
    /// The latest checkpoint status, found through `lastdatastatus`.
    pub status: Option<Arc<DataStatus>>,
}

impl WalChanges {
    fn apply_wal(&mut self, seq: &str, actions: Vec<model::Action>) {
        if self.wals.contains_key(seq) {
            return;
        }
        let mut touched = Vec::with_capacity(actions.len());
        for a in actions {
            let entries = self.entries.entry(a.data_type.clone()).or_default();
            let newer = entries.get(&a.id).is_none_or(|c| c.wal_seq.as_str() <= seq);
            if newer {
                entries.insert(
                    a.id.clone(),
                    Change {
                        wal_seq: seq.to_owned(),
                        data: match a.action_type {
                            model::ActionType::Put => Some(a.data),
                            model::ActionType::Delete => None,
                        },
                    },
                );
            }
            touched.push((a.data_type, a.id));
        }
        self.wals.insert(seq.to_owned(), touched);
    }

    /// Drops a WAL removed from KV: its puts **and deletes** still pointing at it.
    fn remove_wal(&mut self, seq: &str) {
        let Some(touched) = self.wals.remove(seq) else {
            return;
        };
        for (data_type, id) in touched {
            if let Some(entries) = self.entries.get_mut(&data_type)
                && entries.get(&id).is_some_and(|c| c.wal_seq == seq)
            {
                entries.remove(&id);
            }
        }
    }

    fn token(&self, groups: &[String]) -> ChangeGroupsUpdateToken {
        ChangeGroupsUpdateToken {
            cur_revision: self.revision,
            change_groups_revisions: groups
                .iter()
                .map(|g| (g.clone(), self.change_groups.get(g).copied().unwrap_or(0)))
                .collect(),
        }
    }
}

/// A small LRU of data file indexes.
#[derive(Debug)]
pub(crate) struct IndexCache {
    cap: usize,
    order: VecDeque<String>,
    map: HashMap<String, Arc<DataFileIndex>>,
}

impl IndexCache {
    pub fn new(cap: usize) -> Self {
        IndexCache {
            cap,
            order: VecDeque::new(),
            map: HashMap::new(),
        }
    }
    fn get(&mut self, k: &str) -> Option<Arc<DataFileIndex>> {
        let v = self.map.get(k).cloned()?;
        self.order.retain(|x| x != k);
        self.order.push_back(k.to_owned());
        Some(v)
    }
    fn put(&mut self, k: String, v: Arc<DataFileIndex>) {
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
            while self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }
}

impl DataManager {
    /// One entry and a token for `groups` taken at the same point. `NotExist` when absent or
    /// deleted by a WAL not yet checkpointed.
    pub async fn read(
        &self,
        data_type: &str,
        id: &str,
        groups: &[String],
    ) -> Result<(Vec<u8>, ChangeGroupsUpdateToken)> {
        match self.get(data_type, id, groups).await? {
            (Some(data), token) => Ok((data, token)),
            (None, _) => Err(Error::NotExist {
                data_type: data_type.to_owned(),
                id: id.to_owned(),
            }),
        }
    }

    /// Like [`Self::read`], but absence is a value: the token is taken at the same point
    /// either way, so "create if absent" can be guarded by it.
    pub async fn get(
        &self,
        data_type: &str,
        id: &str,
        groups: &[String],
    ) -> Result<(Option<Vec<u8>>, ChangeGroupsUpdateToken)> {
        self.check_not_in_maintenance_cached()?;
        let (change, status, token) = {
            let changes = self.inner.changes.read().await;
            if !changes.initialized {
                return Err(Error::Unavailable(
                    "the datamanager is initializing".to_owned(),
                ));
            }
            (
                changes
                    .entries
                    .get(data_type)
                    .and_then(|e| e.get(id))
                    .cloned(),
                changes.status.clone(),
                changes.token(groups),
            )
        };
        if let Some(change) = change {
            return Ok((change.data, token));
        }
        let Some(status) = status else {
            return Ok((None, token));
        };
        let Some(files) = status.files.get(data_type) else {
            return Ok((None, token));
        };
        let Some(file) = files.iter().find(|f| f.last_entry_id.as_str() >= id) else {
            return Ok((None, token));
        };
        let index = self.load_index(data_type, &file.id).await?;
        let Some(offset) = index.index.get(id).copied() else {
            return Ok((None, token));
        };
        let path = self.inner.paths.data_file(data_type, &file.id);
        let reader = self.inner.ost.read_range(&path, offset, None).await?;
        let mut line = Vec::new();
        BufReader::new(reader)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| Error::Unavailable(format!("reading {path}: {e}")))?;
        let entry: DataEntry = from_json("data entry", &line)?;
        if entry.id != id {
            return Err(Error::Corrupted(format!(
                "index of {path} points at {:?} for {id:?}",
                entry.id
            )));
        }
        Ok((Some(entry.data), token))
    }

    /// Every entry of `data_type` in id order, with a token for `groups` taken at the same
    /// point: the data files streamed entry by entry, merged with the pending WAL changes.
    pub async fn list(
        &self,
        data_type: &str,
        groups: &[String],
    ) -> Result<(Vec<(String, Vec<u8>)>, ChangeGroupsUpdateToken)> {
        self.check_not_in_maintenance_cached()?;
        let (overlay, status, token) = {
            let changes = self.inner.changes.read().await;
            if !changes.initialized {
                return Err(Error::Unavailable(
                    "the datamanager is initializing".to_owned(),
                ));
            }
            (
                changes.entries.get(data_type).cloned().unwrap_or_default(),
                changes.status.clone(),
                changes.token(groups),
            )
        };
        let mut out = Vec::new();
        let mut pending = overlay.into_iter().peekable();
        let files = status
            .as_ref()
            .and_then(|s| s.files.get(data_type).cloned())
            .unwrap_or_default();
        for file in files {
            let path = self.inner.paths.data_file(data_type, &file.id);
            let mut lines = BufReader::new(self.inner.ost.read(&path).await?).lines();
            while let Some(line) = lines
                .next_line()
                .await
                .map_err(|e| Error::Unavailable(format!("reading {path}: {e}")))?
            {
                let entry: DataEntry = from_json("data entry", line.as_bytes())?;
                while let Some((id, _)) = pending.peek() {
                    if id.as_str() >= entry.id.as_str() {
                        break;
                    }
                    if let Some((id, Change { data: Some(d), .. })) = pending.next() {
                        out.push((id, d));
                    }
                }
                match pending.peek() {
                    Some((id, _)) if *id == entry.id => {
                        if let Some((id, Change { data: Some(d), .. })) = pending.next() {
                            out.push((id, d));
                        }
                    }
                    _ => out.push((entry.id, entry.data)),
                }
            }
        }
        out.extend(pending.filter_map(|(id, c)| c.data.map(|d| (id, d))));
        Ok((out, token))
    }

    /// A token for `groups` from this instance's applied state.
    pub async fn token(&self, groups: &[String]) -> ChangeGroupsUpdateToken {
        self.inner.changes.read().await.token(groups)
    }

    async fn load_index(&self, data_type: &str, file_id: &str) -> Result<Arc<DataFileIndex>> {
        let key = format!("{data_type}/{file_id}");
        if let Ok(mut cache) = self.inner.index_cache.lock()
            && let Some(idx) = cache.get(&key)
        {
            return Ok(idx);
        }
        let bytes = self
            .inner
            .ost
            .read_to_vec(&self.inner.paths.data_index(data_type, file_id))
            .await?;
        let idx = Arc::new(from_json::<DataFileIndex>("data index", &bytes)?);
        if let Ok(mut cache) = self.inner.index_cache.lock() {
            cache.put(key, idx.clone());
        }
        Ok(idx)
    }

    pub(crate) async fn load_status(&self, data_seq: &str) -> Result<DataStatus> {
        let bytes = self
            .inner
            .ost
            .read_to_vec(&self.inner.paths.data_status(data_seq))
            .await?;
        from_json("data status", &bytes)
    }

    /// The latest status through `lastdatastatus`; when the key is missing, lists the status
    /// files once and writes the key.
    pub(crate) async fn latest_status(&self) -> Result<Option<DataStatus>> {
        if let Some(kv) = self.inner.kv.get(paths::LAST_DATA_STATUS).await? {
            let seq = String::from_utf8_lossy(&kv.value).into_owned();
            return Ok(Some(self.load_status(&seq).await?));
        }
        let Some(seq) = self.latest_status_seq_in_storage().await? else {
            return Ok(None);
        };
        self.inner
            .kv
            .txn(
                agola_kv::Txn::new()
                    .when([agola_kv::Compare::absent(paths::LAST_DATA_STATUS)])
                    .and_then([agola_kv::Op::put(
                        paths::LAST_DATA_STATUS,
                        seq.clone().into_bytes(),
                    )]),
            )
            .await?;
        Ok(Some(self.load_status(&seq).await?))
    }

    pub(crate) async fn latest_status_seq_in_storage(&self) -> Result<Option<String>> {
        let mut list = self
            .inner
            .ost
            .list(&self.inner.paths.data_dir(), None, false);
        let mut last = None;
        while let Some(obj) = list.next().await {
            let obj = obj?;
            if let Some(seq) = paths::seq_of_data_status(&obj.path) {
                last = Some(seq.to_owned());
            }
        }
        Ok(last)
    }

    /// Loads every WAL in KV and the change groups at one revision into memory.
    pub(crate) async fn init_changes(&self) -> Result<i64> {
        let inner = &self.inner;
        let wals = inner.kv.get_prefix(paths::WALS, 500).await?;
        let revision = wals.revision;
        let groups = inner
            .kv
            .range(RangeRequest::prefix(paths::CHANGE_GROUPS).at_revision(revision))
            .await?;
        let status = self.latest_status().await?.map(Arc::new);
        let mut fresh = WalChanges {
            initialized: true,
            revision,
            status,
            ..Default::default()
        };
        for kv in &wals.kvs {
            let header: WalHeader = from_json("wal header", &kv.value)?;
            let actions = self.read_payload(&header.wal_data_file_id).await?;
            fresh.apply_wal(&header.wal_sequence, actions);
        }
        for g in groups.kvs {
            if let Some(name) = g.key.strip_prefix(paths::CHANGE_GROUPS) {
                fresh.change_groups.insert(name.to_owned(), g.mod_revision);
            }
        }
        *inner.changes.write().await = fresh;
        inner.applied.send_replace(revision);
        Ok(revision)
    }

    pub(crate) async fn read_payload(&self, data_id: &str) -> Result<Vec<model::Action>> {
        let bytes = self
            .inner
            .ost
            .read_to_vec(&self.inner.paths.wal_data(data_id))
            .await?;
        model::decode_payload(&bytes)
    }

    /// Follows KV from `revision + 1`, applying WALs as they first appear `committed`;
    /// re-initializes on compaction or a broken watch. Runs until `shutdown` fires.
    pub(crate) async fn watch_loop(&self, mut revision: i64, shutdown: agola_common::Shutdown) {
        let mut shutdown_fut = Box::pin(shutdown.wait());
        loop {
            let stream = self
                .inner
                .kv
                .watch(KeyRange::Prefix(paths::KV_PREFIX.to_owned()), revision + 1)
                .await;
            let mut stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "datamanager watch failed, resyncing");
                    revision = self.resync(&mut shutdown_fut).await;
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    _ = &mut shutdown_fut => return,
                    n = stream.next() => n,
                };
                let resp = match next {
                    Some(Ok(r)) => r,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "datamanager watch broke, resyncing");
                        revision = self.resync(&mut shutdown_fut).await;
                        break;
                    }
                    None => {
                        revision = self.resync(&mut shutdown_fut).await;
                        break;
                    }
                };
                match self.apply_events(resp.events).await {
                    Ok(r) => revision = r.max(revision),
                    Err(e) => {
                        tracing::warn!(error = %e, "applying wal changes failed, resyncing");
                        revision = self.resync(&mut shutdown_fut).await;
                        break;
                    }
                }
            }
        }
    }

    async fn resync(
        &self,
        shutdown: &mut std::pin::Pin<Box<impl std::future::Future<Output = ()>>>,
    ) -> i64 {
        let mut backoff = std::time::Duration::from_millis(100);
        loop {
            match self.init_changes().await {
                Ok(r) => return r,
                Err(e) => {
                    tracing::warn!(error = %e, "datamanager resync failed");
                    tokio::select! {
                        _ = shutdown.as_mut() => return 0,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
                }
            }
        }
    }

    /// Applies one watch response. Everything it needs (payloads, statuses) is loaded first,
    /// then every change is applied under one write lock, so a reader never sees a change
    /// group moved without the WAL that moved it (a token would then pass a stale check).
    async fn apply_events(&self, events: Vec<agola_kv::Event>) -> Result<i64> {
        enum Update {
            ApplyWal(String, Vec<model::Action>),
            RemoveWal(String),
            Group(String, Option<i64>),
            Status(Arc<DataStatus>),
        }
        let mut updates = Vec::new();
        let mut max_rev = 0;
        // Phase 1: IO, without the lock.
        let mut pending_wals: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut status_cover: Option<Arc<DataStatus>> =
            self.inner.changes.read().await.status.clone();
        for ev in events {
            max_rev = max_rev.max(ev.kv.mod_revision);
            let key = ev.kv.key.as_str();
            if let Some(seq) = key.strip_prefix(paths::WALS) {
                match ev.kind {
                    EventKind::Put => {
                        // Applied once, when it first appears (committed, or committed_storage
                        // when re-inserted by a recovery); later status changes are ignored.
                        let known = self.inner.changes.read().await.wals.contains_key(seq)
                            || pending_wals.contains(seq);
                        if !known {
                            let header: WalHeader = from_json("wal header", &ev.kv.value)?;
                            let actions = self.read_payload(&header.wal_data_file_id).await?;
                            pending_wals.insert(seq.to_owned());
                            updates.push(Update::ApplyWal(seq.to_owned(), actions));
                        }
                    }
                    EventKind::Delete => {
                        // Before forgetting the WAL, make sure the status covers it so no
                        // change becomes invisible.
                        let covered = status_cover
                            .as_ref()
                            .is_some_and(|s| s.wal_sequence.as_str() >= seq);
                        if !covered {
                            let status = self.latest_status().await?.map(Arc::new);
                            let ok = status
                                .as_ref()
                                .is_some_and(|s| s.wal_sequence.as_str() >= seq);
                            if !ok {
                                return Err(Error::Corrupted(format!(
                                    "wal {seq} removed from kv but no checkpoint covers it"
                                )));
                            }
                            if let Some(st) = status {
                                status_cover = Some(st.clone());
                                updates.push(Update::Status(st));
                            }
                        }
                        updates.push(Update::RemoveWal(seq.to_owned()));
                    }
                }
            } else if let Some(name) = key.strip_prefix(paths::CHANGE_GROUPS) {
                updates.push(Update::Group(
                    name.to_owned(),
                    (ev.kind == EventKind::Put).then_some(ev.kv.mod_revision),
                ));
            } else if key == paths::LAST_DATA_STATUS && ev.kind == EventKind::Put {
                let seq = String::from_utf8_lossy(&ev.kv.value).into_owned();
                let status = Arc::new(self.load_status(&seq).await?);
                status_cover = Some(status.clone());
                updates.push(Update::Status(status));
            } else if key == paths::WALS_DATA && ev.kind == EventKind::Delete {
                // The KV store was wiped or re-initialized: start over.
                return Err(Error::Unavailable("walsdata deleted".to_owned()));
            }
        }
        // Phase 2: apply atomically.
        let mut changes = self.inner.changes.write().await;
        for u in updates {
            match u {
                Update::ApplyWal(seq, actions) => changes.apply_wal(&seq, actions),
                Update::RemoveWal(seq) => changes.remove_wal(&seq),
                Update::Group(name, Some(rev)) => {
                    changes.change_groups.insert(name, rev);
                }
                Update::Group(name, None) => {
                    changes.change_groups.remove(&name);
                }
                Update::Status(st) => changes.status = Some(st),
            }
        }
        changes.revision = changes.revision.max(max_rev);
        let rev = changes.revision;
        drop(changes);
        self.inner.applied.send_replace(rev);
        Ok(rev)
    }
}

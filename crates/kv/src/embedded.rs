//! The embedded backend: a single-process, on-disk store (redb) with etcd semantics.
//!
//! Tables: `kv` (key → record with create/mod revision, version, lease and value), `events`
//! (revision → the events of that revision, each with the previous record, so past revisions
//! can be reconstructed and watches replayed), `meta` (revision, compacted revision, lease id
//! counter), `leases` (id → ttl and deadline) and `lease_keys` (lease/key index). Every txn is
//! one redb write transaction committed with immediate durability: when `txn` returns the
//! write survives kill -9, and a txn is never half-applied. redb locks the file, so a second
//! process opening the same store fails clearly. Leases are persisted with deadlines and
//! expired at start and by a 1 s background task.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::StreamExt;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use tokio::sync::watch;

use crate::{
    Error, Event, EventKind, KeyRange, KeyValue, Kv, Lease, LeaseId, Op, OpResponse, RangeRequest,
    RangeResponse, Result, Txn, TxnResponse, WatchResponse, WatchStream,
};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const EVENTS: TableDefinition<i64, &[u8]> = TableDefinition::new("events");
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
const LEASES: TableDefinition<i64, (i64, i64)> = TableDefinition::new("leases");
const LEASE_KEYS: TableDefinition<(i64, &str), ()> = TableDefinition::new("lease_keys");

const META_REVISION: &str = "revision";
const META_COMPACT: &str = "compact_revision";
const META_LEASE_SEQ: &str = "lease_seq";

/// The embedded store. Clones share one database.
#[derive(Clone)]
pub struct EmbeddedKv {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    path: PathBuf,
    /// Latest committed revision, for watchers to wake on.
    revision_tx: watch::Sender<i64>,
}

impl std::fmt::Debug for EmbeddedKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedKv")
            .field("path", &self.inner.path)
            .finish()
    }
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::Unavailable(e.to_string())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

// ---- record encoding ------------------------------------------------------------------------

fn encode_record(kv: &KeyValue, out: &mut Vec<u8>) {
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.version.to_le_bytes());
    out.extend_from_slice(&kv.lease.to_le_bytes());
    out.extend_from_slice(&kv.value);
}

fn read_i64(bytes: &[u8], at: usize) -> Result<i64> {
    bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(i64::from_le_bytes)
        .ok_or_else(|| Error::Corrupted("truncated record".to_owned()))
}

fn decode_record(key: &str, bytes: &[u8]) -> Result<KeyValue> {
    Ok(KeyValue {
        key: key.to_owned(),
        create_revision: read_i64(bytes, 0)?,
        mod_revision: read_i64(bytes, 8)?,
        version: read_i64(bytes, 16)?,
        lease: read_i64(bytes, 24)?,
        value: bytes
            .get(32..)
            .ok_or_else(|| Error::Corrupted("truncated record".to_owned()))?
            .to_vec(),
    })
}

/// A stored event: what happened plus the record before it (for undo).
struct StoredEvent {
    event: Event,
    prev: Option<KeyValue>,
}

fn put_chunk(out: &mut Vec<u8>, chunk: &[u8]) {
    out.extend_from_slice(&(chunk.len() as u64).to_le_bytes());
    out.extend_from_slice(chunk);
}

fn take_chunk<'a>(bytes: &'a [u8], at: &mut usize) -> Result<&'a [u8]> {
    let len = usize::try_from(read_i64(bytes, *at)?)
        .map_err(|_| Error::Corrupted("bad chunk length".to_owned()))?;
    *at += 8;
    let chunk = bytes
        .get(*at..*at + len)
        .ok_or_else(|| Error::Corrupted("truncated event".to_owned()))?;
    *at += len;
    Ok(chunk)
}

fn encode_events(events: &[StoredEvent]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        out.push(match e.event.kind {
            EventKind::Put => 0,
            EventKind::Delete => 1,
        });
        put_chunk(&mut out, e.event.kv.key.as_bytes());
        let mut rec = Vec::new();
        encode_record(&e.event.kv, &mut rec);
        put_chunk(&mut out, &rec);
        match &e.prev {
            Some(prev) => {
                out.push(1);
                let mut rec = Vec::new();
                encode_record(prev, &mut rec);
                put_chunk(&mut out, &rec);
            }
            None => out.push(0),
        }
    }
    out
}

fn decode_events(bytes: &[u8]) -> Result<Vec<StoredEvent>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let kind = match bytes[at] {
            0 => EventKind::Put,
            1 => EventKind::Delete,
            _ => return Err(Error::Corrupted("bad event kind".to_owned())),
        };
        at += 1;
        let key = std::str::from_utf8(take_chunk(bytes, &mut at)?)
            .map_err(|_| Error::Corrupted("non-utf8 key".to_owned()))?
            .to_owned();
        let kv = decode_record(&key, take_chunk(bytes, &mut at)?)?;
        let has_prev = *bytes
            .get(at)
            .ok_or_else(|| Error::Corrupted("truncated event".to_owned()))?;
        at += 1;
        let prev = if has_prev == 1 {
            Some(decode_record(&key, take_chunk(bytes, &mut at)?)?)
        } else {
            None
        };
        out.push(StoredEvent {
            event: Event { kind, kv },
            prev,
        });
    }
    Ok(out)
}

fn bounds(range: &KeyRange) -> (Bound<&str>, Bound<String>) {
    match range {
        KeyRange::Key(k) => (Bound::Included(k.as_str()), Bound::Included(k.clone())),
        KeyRange::Prefix(p) => (Bound::Included(p.as_str()), Bound::Unbounded),
        KeyRange::Between { start, end } => (
            Bound::Included(start.as_str()),
            Bound::Excluded(end.clone()),
        ),
    }
}

// ---- synchronous core ------------------------------------------------------------------------

fn meta_get(table: &impl ReadableTable<&'static str, i64>, key: &str) -> Result<i64> {
    Ok(table
        .get(key)
        .map_err(unavailable)?
        .map_or(0, |v| v.value()))
}

fn scan(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    range: &KeyRange,
    limit: usize,
) -> Result<(Vec<KeyValue>, bool)> {
    let (start, end) = bounds(range);
    let end_ref: Bound<&str> = match &end {
        Bound::Included(s) => Bound::Included(s.as_str()),
        Bound::Excluded(s) => Bound::Excluded(s.as_str()),
        Bound::Unbounded => Bound::Unbounded,
    };
    let iter = table.range::<&str>((start, end_ref)).map_err(unavailable)?;
    let mut kvs = Vec::new();
    for item in iter {
        let (k, v) = item.map_err(unavailable)?;
        let key = k.value();
        if !range.contains(key) {
            // Prefix ranges are scanned from the prefix on; stop at the first key past it.
            break;
        }
        if limit > 0 && kvs.len() == limit {
            return Ok((kvs, true));
        }
        kvs.push(decode_record(key, v.value())?);
    }
    Ok((kvs, false))
}

impl Inner {
    fn read_range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        let rtx = self.db.begin_read().map_err(unavailable)?;
        let meta = rtx.open_table(META).map_err(unavailable)?;
        let current = meta_get(&meta, META_REVISION)?;
        let kv = rtx.open_table(KV).map_err(unavailable)?;
        if req.revision == 0 || req.revision >= current {
            if req.revision > current {
                return Err(Error::FutureRevision {
                    requested: req.revision,
                    current,
                });
            }
            let (kvs, more) = scan(&kv, &req.range, req.limit)?;
            return Ok(RangeResponse {
                kvs,
                more,
                revision: current,
            });
        }
        // A past revision: start from the current state of the range and undo the events
        // after the requested revision, newest first.
        let compacted = meta_get(&meta, META_COMPACT)?;
        if req.revision < compacted {
            return Err(Error::Compacted {
                requested: req.revision,
                compact_revision: compacted,
            });
        }
        let (kvs, _) = scan(&kv, &req.range, 0)?;
        let mut state: std::collections::BTreeMap<String, KeyValue> =
            kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
        let events = rtx.open_table(EVENTS).map_err(unavailable)?;
        let mut later: Vec<(i64, Vec<StoredEvent>)> = Vec::new();
        for item in events
            .range((req.revision + 1)..=current)
            .map_err(unavailable)?
        {
            let (rev, bytes) = item.map_err(unavailable)?;
            later.push((rev.value(), decode_events(bytes.value())?));
        }
        for (_, evs) in later.into_iter().rev() {
            for e in evs.into_iter().rev() {
                if !req.range.contains(&e.event.kv.key) {
                    continue;
                }
                match e.prev {
                    Some(prev) => {
                        state.insert(prev.key.clone(), prev);
                    }
                    None => {
                        state.remove(&e.event.kv.key);
                    }
                }
            }
        }
        let mut kvs: Vec<KeyValue> = state.into_values().collect();
        let more = req.limit > 0 && kvs.len() > req.limit;
        if more {
            kvs.truncate(req.limit);
        }
        Ok(RangeResponse {
            kvs,
            more,
            revision: current,
        })
    }

    /// Applies `txn` in one durable write transaction; returns the response and whether the
    /// revision moved.
    fn apply_txn(&self, txn: &Txn) -> Result<TxnResponse> {
        let wtx = self.db.begin_write().map_err(unavailable)?;
        let (resp, wrote) = Self::apply_in(&wtx, txn)?;
        if wrote {
            wtx.commit().map_err(unavailable)?;
        } else {
            // Nothing changed (reads, or a failed compare with a read-only branch): no commit,
            // so no fsync.
            wtx.abort().map_err(unavailable)?;
        }
        self.revision_tx.send_if_modified(|r| {
            if resp.revision > *r {
                *r = resp.revision;
                true
            } else {
                false
            }
        });
        Ok(resp)
    }

    /// Applies `txn` inside `wtx`; also says whether anything was written.
    fn apply_in(wtx: &WriteTransaction, txn: &Txn) -> Result<(TxnResponse, bool)> {
        let mut meta = wtx.open_table(META).map_err(unavailable)?;
        let current = meta_get(&meta, META_REVISION)?;
        let next = current + 1;
        let mut kv = wtx.open_table(KV).map_err(unavailable)?;
        let leases = wtx.open_table(LEASES).map_err(unavailable)?;
        let mut lease_keys = wtx.open_table(LEASE_KEYS).map_err(unavailable)?;

        let mut succeeded = true;
        for c in &txn.compares {
            let existing = match kv.get(c.key.as_str()).map_err(unavailable)? {
                Some(v) => Some(decode_record(&c.key, v.value())?),
                None => None,
            };
            if !c.matches(existing.as_ref()) {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded { &txn.then } else { &txn.otherwise };
        let mut events: Vec<StoredEvent> = Vec::new();
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Op::Put { key, value, lease } => {
                    let lease = lease.unwrap_or(0);
                    if lease != 0 && leases.get(lease).map_err(unavailable)?.is_none() {
                        return Err(Error::LeaseNotFound(lease));
                    }
                    let prev = match kv.get(key.as_str()).map_err(unavailable)? {
                        Some(v) => Some(decode_record(key, v.value())?),
                        None => None,
                    };
                    let rec = KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: prev.as_ref().map_or(next, |p| p.create_revision),
                        mod_revision: next,
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                        lease,
                    };
                    if let Some(p) = &prev
                        && p.lease != 0
                        && p.lease != lease
                    {
                        lease_keys
                            .remove((p.lease, key.as_str()))
                            .map_err(unavailable)?;
                    }
                    if lease != 0 {
                        lease_keys
                            .insert((lease, key.as_str()), ())
                            .map_err(unavailable)?;
                    }
                    let mut buf = Vec::with_capacity(32 + value.len());
                    encode_record(&rec, &mut buf);
                    kv.insert(key.as_str(), buf.as_slice())
                        .map_err(unavailable)?;
                    events.push(StoredEvent {
                        event: Event {
                            kind: EventKind::Put,
                            kv: rec,
                        },
                        prev,
                    });
                    responses.push(OpResponse::Put);
                }
                Op::Delete { range } => {
                    let (doomed, _) = scan(&kv, range, 0)?;
                    for prev in &doomed {
                        kv.remove(prev.key.as_str()).map_err(unavailable)?;
                        if prev.lease != 0 {
                            lease_keys
                                .remove((prev.lease, prev.key.as_str()))
                                .map_err(unavailable)?;
                        }
                    }
                    responses.push(OpResponse::Delete {
                        deleted: doomed.len() as i64,
                    });
                    for prev in doomed {
                        events.push(StoredEvent {
                            event: Event {
                                kind: EventKind::Delete,
                                kv: KeyValue {
                                    key: prev.key.clone(),
                                    value: Vec::new(),
                                    create_revision: 0,
                                    mod_revision: next,
                                    version: 0,
                                    lease: 0,
                                },
                            },
                            prev: Some(prev),
                        });
                    }
                }
                Op::Range(req) => {
                    if req.revision != 0 {
                        return Err(Error::InvalidArgument(
                            "a range inside a txn reads the current revision only".to_owned(),
                        ));
                    }
                    let (kvs, more) = scan(&kv, &req.range, req.limit)?;
                    responses.push(OpResponse::Range(RangeResponse {
                        kvs,
                        more,
                        revision: current,
                    }));
                }
            }
        }
        let revision = if events.is_empty() {
            current
        } else {
            let mut ev = wtx.open_table(EVENTS).map_err(unavailable)?;
            ev.insert(next, encode_events(&events).as_slice())
                .map_err(unavailable)?;
            meta.insert(META_REVISION, next).map_err(unavailable)?;
            next
        };
        // Range answers inside a txn report the revision after the txn, as etcd does.
        for r in &mut responses {
            if let OpResponse::Range(rr) = r {
                rr.revision = revision;
            }
        }
        Ok((
            TxnResponse {
                succeeded,
                revision,
                responses,
            },
            revision != current,
        ))
    }

    fn events_between(&self, from: i64, to: i64, range: &KeyRange) -> Result<Vec<Event>> {
        let rtx = self.db.begin_read().map_err(unavailable)?;
        let meta = rtx.open_table(META).map_err(unavailable)?;
        let compacted = meta_get(&meta, META_COMPACT)?;
        if from < compacted {
            return Err(Error::Compacted {
                requested: from,
                compact_revision: compacted,
            });
        }
        let events = rtx.open_table(EVENTS).map_err(unavailable)?;
        let mut out = Vec::new();
        for item in events.range(from..=to).map_err(unavailable)? {
            let (_, bytes) = item.map_err(unavailable)?;
            for e in decode_events(bytes.value())? {
                if range.contains(&e.event.kv.key) {
                    out.push(e.event);
                }
            }
        }
        Ok(out)
    }

    fn grant(&self, ttl_secs: i64) -> Result<Lease> {
        let wtx = self.db.begin_write().map_err(unavailable)?;
        let id = {
            let mut meta = wtx.open_table(META).map_err(unavailable)?;
            let id = meta_get(&meta, META_LEASE_SEQ)? + 1;
            meta.insert(META_LEASE_SEQ, id).map_err(unavailable)?;
            let mut leases = wtx.open_table(LEASES).map_err(unavailable)?;
            leases
                .insert(id, (ttl_secs, now_ms() + ttl_secs * 1000))
                .map_err(unavailable)?;
            id
        };
        wtx.commit().map_err(unavailable)?;
        Ok(Lease {
            id,
            ttl: Duration::from_secs(ttl_secs.unsigned_abs()),
        })
    }

    fn keep_alive(&self, id: LeaseId) -> Result<Duration> {
        let wtx = self.db.begin_write().map_err(unavailable)?;
        let ttl = {
            let mut leases = wtx.open_table(LEASES).map_err(unavailable)?;
            let entry = leases.get(id).map_err(unavailable)?.map(|v| v.value());
            let Some((ttl, deadline)) = entry else {
                return Err(Error::LeaseNotFound(id));
            };
            if deadline < now_ms() {
                // Expired but not reaped yet: it is gone for the caller.
                return Err(Error::LeaseNotFound(id));
            }
            leases
                .insert(id, (ttl, now_ms() + ttl * 1000))
                .map_err(unavailable)?;
            ttl
        };
        wtx.commit().map_err(unavailable)?;
        Ok(Duration::from_secs(ttl.unsigned_abs()))
    }

    /// Deletes the lease and its keys in one revision. `only_if_expired` guards the reaper
    /// against a keep-alive that landed after it listed the lease.
    fn revoke(&self, id: LeaseId, only_if_expired: bool) -> Result<bool> {
        let wtx = self.db.begin_write().map_err(unavailable)?;
        let keys = {
            let mut leases = wtx.open_table(LEASES).map_err(unavailable)?;
            let entry = leases.get(id).map_err(unavailable)?.map(|v| v.value());
            let Some((_, deadline)) = entry else {
                return if only_if_expired {
                    Ok(false)
                } else {
                    Err(Error::LeaseNotFound(id))
                };
            };
            if only_if_expired && deadline >= now_ms() {
                return Ok(false);
            }
            leases.remove(id).map_err(unavailable)?;
            let lease_keys = wtx.open_table(LEASE_KEYS).map_err(unavailable)?;
            let mut keys = Vec::new();
            for item in lease_keys
                .range((id, "")..(id + 1, ""))
                .map_err(unavailable)?
            {
                let (k, _) = item.map_err(unavailable)?;
                keys.push(k.value().1.to_owned());
            }
            keys
        };
        // The tables are closed again here: apply_in opens them itself.
        let (resp, _) =
            Self::apply_in(&wtx, &Txn::new().and_then(keys.into_iter().map(Op::delete)))?;
        wtx.commit().map_err(unavailable)?;
        self.revision_tx.send_if_modified(|r| {
            if resp.revision > *r {
                *r = resp.revision;
                true
            } else {
                false
            }
        });
        Ok(true)
    }

    fn expired_leases(&self) -> Result<Vec<LeaseId>> {
        let rtx = self.db.begin_read().map_err(unavailable)?;
        let leases = rtx.open_table(LEASES).map_err(unavailable)?;
        let now = now_ms();
        let mut out = Vec::new();
        for item in leases.iter().map_err(unavailable)? {
            let (id, v) = item.map_err(unavailable)?;
            if v.value().1 < now {
                out.push(id.value());
            }
        }
        Ok(out)
    }

    fn reap_expired(&self) -> Result<()> {
        for id in self.expired_leases()? {
            self.revoke(id, true)?;
        }
        Ok(())
    }

    fn compact(&self, revision: i64) -> Result<()> {
        let wtx = self.db.begin_write().map_err(unavailable)?;
        {
            let mut meta = wtx.open_table(META).map_err(unavailable)?;
            let current = meta_get(&meta, META_REVISION)?;
            if revision > current {
                return Err(Error::FutureRevision {
                    requested: revision,
                    current,
                });
            }
            if revision <= meta_get(&meta, META_COMPACT)? {
                return Ok(());
            }
            meta.insert(META_COMPACT, revision).map_err(unavailable)?;
            let mut events = wtx.open_table(EVENTS).map_err(unavailable)?;
            events
                .retain_in(..revision, |_, _| false)
                .map_err(unavailable)?;
        }
        wtx.commit().map_err(unavailable)
    }
}

impl EmbeddedKv {
    /// Opens (or creates) the store file at `path`. Fails clearly when another process holds
    /// it. Starts the lease reaper, which stops when the last clone is dropped.
    pub async fn open(path: impl AsRef<Path>) -> Result<EmbeddedKv> {
        let path = path.as_ref().to_owned();
        let p = path.clone();
        let db = tokio::task::spawn_blocking(move || -> Result<Database> {
            if let Some(dir) = p.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(|e| {
                    Error::Unavailable(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let db = Database::create(&p).map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => Error::Unavailable(format!(
                    "kv store {} is already open by another process",
                    p.display()
                )),
                other => {
                    Error::Unavailable(format!("cannot open kv store {}: {other}", p.display()))
                }
            })?;
            // Create every table so readers never meet a missing one.
            let wtx = db.begin_write().map_err(unavailable)?;
            wtx.open_table(KV).map_err(unavailable)?;
            wtx.open_table(EVENTS).map_err(unavailable)?;
            wtx.open_table(META).map_err(unavailable)?;
            wtx.open_table(LEASES).map_err(unavailable)?;
            wtx.open_table(LEASE_KEYS).map_err(unavailable)?;
            wtx.commit().map_err(unavailable)?;
            Ok(db)
        })
        .await
        .map_err(unavailable)??;
        let (revision_tx, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            db,
            path,
            revision_tx,
        });
        let kv = EmbeddedKv { inner };
        let current = kv
            .blocking(|i| i.read_range(&RangeRequest::key("\u{1}")))
            .await?;
        kv.inner.revision_tx.send_replace(current.revision);
        kv.blocking(|i| i.reap_expired()).await?;
        tokio::spawn(reaper(Arc::downgrade(&kv.inner)));
        Ok(kv)
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(unavailable)?
    }
}

async fn reaper(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let res = tokio::task::spawn_blocking(move || strong.reap_expired()).await;
        if let Ok(Err(e)) = res {
            tracing::warn!(error = %e, "embedded kv: expiring leases failed");
        }
    }
}

#[async_trait]
impl Kv for EmbeddedKv {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        crate::validate_range(&req.range)?;
        self.blocking(move |i| i.read_range(&req)).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        crate::validate_txn(&txn)?;
        self.blocking(move |i| i.apply_txn(&txn)).await
    }

    async fn watch(&self, range: KeyRange, from_revision: i64) -> Result<WatchStream> {
        crate::validate_range(&range)?;
        let mut rx = self.inner.revision_tx.subscribe();
        let current = *rx.borrow_and_update();
        let start = if from_revision <= 0 {
            current + 1
        } else {
            from_revision
        };
        // Check compaction now, so the caller learns it from `watch` itself.
        {
            let range = range.clone();
            self.blocking(move |i| i.events_between(start, start - 1, &range).map(|_| ()))
                .await?;
        }
        let this = self.clone();
        let stream = futures::stream::unfold(
            (this, rx, start, range, false),
            |(this, mut rx, next, range, failed)| async move {
                if failed {
                    return None;
                }
                let mut next = next;
                loop {
                    let current = *rx.borrow_and_update();
                    if next <= current {
                        let r = range.clone();
                        let res = this
                            .blocking(move |i| i.events_between(next, current, &r))
                            .await;
                        match res {
                            Ok(events) => {
                                next = current + 1;
                                if !events.is_empty() {
                                    return Some((
                                        Ok(WatchResponse { events }),
                                        (this, rx, next, range, false),
                                    ));
                                }
                            }
                            Err(e) => return Some((Err(e), (this, rx, next, range, true))),
                        }
                    }
                    if rx.changed().await.is_err() {
                        return None;
                    }
                }
            },
        );
        Ok(stream.boxed())
    }

    async fn grant(&self, ttl: Duration) -> Result<Lease> {
        let secs = crate::ttl_secs(ttl)?;
        self.blocking(move |i| i.grant(secs)).await
    }

    async fn keep_alive(&self, id: LeaseId) -> Result<Duration> {
        self.blocking(move |i| i.keep_alive(id)).await
    }

    async fn revoke(&self, id: LeaseId) -> Result<()> {
        self.blocking(move |i| i.revoke(id, false).map(|_| ()))
            .await
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        self.blocking(move |i| i.compact(revision)).await
    }
}

//! The etcd backend (etcd-client; works with etcd 3.4 and later).

use std::time::Duration;

use async_trait::async_trait;
use etcd_client as ec;
use futures::StreamExt;

use crate::{
    Compare, CompareOp, CompareTarget, Error, Event, EventKind, KeyRange, KeyValue, Kv, Lease,
    LeaseId, Op, OpResponse, RangeRequest, RangeResponse, Result, Txn, TxnResponse, WatchResponse,
    WatchStream,
};

/// A client of an etcd cluster. Clones share the connection.
#[derive(Clone)]
pub struct EtcdKv {
    client: ec::Client,
    endpoints: Vec<String>,
}

impl std::fmt::Debug for EtcdKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdKv")
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

fn map_err(e: ec::Error) -> Error {
    match e {
        ec::Error::GRpcStatus(s) => {
            let msg = s.message();
            if msg.contains("required revision has been compacted") {
                Error::Compacted {
                    requested: 0,
                    compact_revision: 0,
                }
            } else if msg.contains("future revision") {
                Error::FutureRevision {
                    requested: 0,
                    current: 0,
                }
            } else if msg.contains("requested lease not found") {
                Error::LeaseNotFound(0)
            } else if msg.contains("request is too large") {
                Error::InvalidArgument(format!("etcd: {msg}"))
            } else {
                Error::Unavailable(format!("etcd: {} {msg}", s.code()))
            }
        }
        ec::Error::LeaseKeepAliveError(msg) if msg.contains("lease not found") => {
            Error::LeaseNotFound(0)
        }
        other => Error::Unavailable(format!("etcd: {other}")),
    }
}

fn key_value(kv: &ec::KeyValue) -> Result<KeyValue> {
    Ok(KeyValue {
        key: std::str::from_utf8(kv.key())
            .map_err(|_| Error::Corrupted("non-utf8 key in etcd".to_owned()))?
            .to_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: kv.lease(),
    })
}

fn get_options(range: &KeyRange, limit: usize, revision: i64) -> (String, ec::GetOptions) {
    let mut opts = ec::GetOptions::new();
    if limit > 0 {
        opts = opts.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
    }
    if revision > 0 {
        opts = opts.with_revision(revision);
    }
    match range {
        KeyRange::Key(k) => (k.clone(), opts),
        KeyRange::Prefix(p) => (p.clone(), opts.with_prefix()),
        KeyRange::Between { start, end } => (start.clone(), opts.with_range(end.clone())),
    }
}

fn delete_options(range: &KeyRange) -> (String, Option<ec::DeleteOptions>) {
    match range {
        KeyRange::Key(k) => (k.clone(), None),
        KeyRange::Prefix(p) => (p.clone(), Some(ec::DeleteOptions::new().with_prefix())),
        KeyRange::Between { start, end } => (
            start.clone(),
            Some(ec::DeleteOptions::new().with_range(end.clone())),
        ),
    }
}

fn range_response(resp: &ec::GetResponse, limit: usize) -> Result<RangeResponse> {
    let mut kvs = resp
        .kvs()
        .iter()
        .map(key_value)
        .collect::<Result<Vec<_>>>()?;
    // etcd reports `more` itself; trim defensively to the limit asked.
    if limit > 0 && kvs.len() > limit {
        kvs.truncate(limit);
    }
    Ok(RangeResponse {
        kvs,
        more: resp.more(),
        revision: resp.header().map_or(0, |h| h.revision()),
    })
}

fn compare(c: &Compare) -> ec::Compare {
    let op = match c.op {
        CompareOp::Equal => ec::CompareOp::Equal,
        CompareOp::NotEqual => ec::CompareOp::NotEqual,
        CompareOp::Less => ec::CompareOp::Less,
        CompareOp::Greater => ec::CompareOp::Greater,
    };
    match &c.target {
        CompareTarget::Value(v) => ec::Compare::value(c.key.clone(), op, v.clone()),
        CompareTarget::Version(v) => ec::Compare::version(c.key.clone(), op, *v),
        CompareTarget::CreateRevision(v) => ec::Compare::create_revision(c.key.clone(), op, *v),
        CompareTarget::ModRevision(v) => ec::Compare::mod_revision(c.key.clone(), op, *v),
    }
}

fn txn_op(op: &Op) -> Result<ec::TxnOp> {
    Ok(match op {
        Op::Put { key, value, lease } => ec::TxnOp::put(
            key.clone(),
            value.clone(),
            lease.map(|l| ec::PutOptions::new().with_lease(l)),
        ),
        Op::Delete { range } => {
            let (key, opts) = delete_options(range);
            ec::TxnOp::delete(key, opts)
        }
        Op::Range(req) => {
            if req.revision != 0 {
                return Err(Error::InvalidArgument(
                    "a range inside a txn reads the current revision only".to_owned(),
                ));
            }
            let (key, opts) = get_options(&req.range, req.limit, 0);
            ec::TxnOp::get(key, Some(opts))
        }
    })
}

impl EtcdKv {
    /// Connects to `endpoints` (`http://host:port`).
    pub async fn connect(endpoints: &[String]) -> Result<EtcdKv> {
        if endpoints.is_empty() {
            return Err(Error::InvalidArgument(
                "etcd needs at least one endpoint".to_owned(),
            ));
        }
        let opts = ec::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(15))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let client = ec::Client::connect(endpoints, Some(opts))
            .await
            .map_err(|e| {
                Error::Unavailable(format!("cannot connect to etcd {endpoints:?}: {e}"))
            })?;
        Ok(EtcdKv {
            client,
            endpoints: endpoints.to_vec(),
        })
    }
}

#[async_trait]
impl Kv for EtcdKv {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        crate::validate_range(&req.range)?;
        let (key, opts) = get_options(&req.range, req.limit, req.revision);
        let resp =
            self.client
                .kv_client()
                .get(key, Some(opts))
                .await
                .map_err(|e| match map_err(e) {
                    Error::Compacted { .. } => Error::Compacted {
                        requested: req.revision,
                        compact_revision: 0,
                    },
                    Error::FutureRevision { .. } => Error::FutureRevision {
                        requested: req.revision,
                        current: 0,
                    },
                    other => other,
                })?;
        range_response(&resp, req.limit)
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        crate::validate_txn(&txn)?;
        let then = txn.then.iter().map(txn_op).collect::<Result<Vec<_>>>()?;
        let otherwise = txn
            .otherwise
            .iter()
            .map(txn_op)
            .collect::<Result<Vec<_>>>()?;
        let etxn = ec::Txn::new()
            .when(txn.compares.iter().map(compare).collect::<Vec<_>>())
            .and_then(then)
            .or_else(otherwise);
        let resp = self
            .client
            .kv_client()
            .txn(etxn)
            .await
            .map_err(|e| match map_err(e) {
                Error::LeaseNotFound(_) => {
                    let lease = txn
                        .then
                        .iter()
                        .chain(&txn.otherwise)
                        .find_map(|op| match op {
                            Op::Put { lease: Some(l), .. } => Some(*l),
                            _ => None,
                        })
                        .unwrap_or(0);
                    Error::LeaseNotFound(lease)
                }
                other => other,
            })?;
        let succeeded = resp.succeeded();
        let ops = if succeeded { &txn.then } else { &txn.otherwise };
        let mut responses = Vec::with_capacity(ops.len());
        for (op, r) in ops.iter().zip(resp.op_responses()) {
            responses.push(match r {
                ec::TxnOpResponse::Put(_) => OpResponse::Put,
                ec::TxnOpResponse::Delete(d) => OpResponse::Delete {
                    deleted: d.deleted(),
                },
                ec::TxnOpResponse::Get(g) => {
                    let limit = match op {
                        Op::Range(r) => r.limit,
                        _ => 0,
                    };
                    OpResponse::Range(range_response(&g, limit)?)
                }
                ec::TxnOpResponse::Txn(_) => {
                    return Err(Error::Corrupted("unexpected nested txn answer".to_owned()));
                }
            });
        }
        Ok(TxnResponse {
            succeeded,
            revision: resp.header().map_or(0, |h| h.revision()),
            responses,
        })
    }

    async fn watch(&self, range: KeyRange, from_revision: i64) -> Result<WatchStream> {
        crate::validate_range(&range)?;
        let (key, mut opts) = match &range {
            KeyRange::Key(k) => (k.clone(), ec::WatchOptions::new()),
            KeyRange::Prefix(p) => (p.clone(), ec::WatchOptions::new().with_prefix()),
            KeyRange::Between { start, end } => (
                start.clone(),
                ec::WatchOptions::new().with_range(end.clone()),
            ),
        };
        if from_revision > 0 {
            opts = opts.with_start_revision(from_revision);
        }
        let mut stream = self
            .client
            .watch_client()
            .watch(key, Some(opts))
            .await
            .map_err(map_err)?;
        // The first message acknowledges creation; a compacted start revision shows up
        // either there or in the next message as a cancellation with compact_revision set.
        let first = stream
            .message()
            .await
            .map_err(map_err)?
            .ok_or_else(|| Error::Unavailable("etcd closed the watch".to_owned()))?;
        if first.compact_revision() > 0 || first.canceled() {
            return Err(Error::Compacted {
                requested: from_revision,
                compact_revision: first.compact_revision(),
            });
        }
        let first_events = convert_events(&first);
        let initial = match first_events {
            Ok(events) if events.is_empty() => None,
            other => Some(other.map(|events| WatchResponse { events })),
        };
        let rest = futures::stream::unfold(Some(stream), move |state| async move {
            let mut stream = state?;
            loop {
                match stream.message().await {
                    Ok(Some(resp)) => {
                        if resp.compact_revision() > 0 || resp.canceled() {
                            return Some((
                                Err(Error::Compacted {
                                    requested: from_revision,
                                    compact_revision: resp.compact_revision(),
                                }),
                                None,
                            ));
                        }
                        match convert_events(&resp) {
                            Ok(events) if events.is_empty() => continue,
                            Ok(events) => {
                                return Some((Ok(WatchResponse { events }), Some(stream)));
                            }
                            Err(e) => return Some((Err(e), None)),
                        }
                    }
                    Ok(None) => {
                        return Some((
                            Err(Error::Unavailable("etcd closed the watch".to_owned())),
                            None,
                        ));
                    }
                    Err(e) => return Some((Err(map_err(e)), None)),
                }
            }
        });
        Ok(futures::stream::iter(initial).chain(rest).boxed())
    }

    async fn grant(&self, ttl: Duration) -> Result<Lease> {
        let secs = crate::ttl_secs(ttl)?;
        let resp = self
            .client
            .lease_client()
            .grant(secs, None)
            .await
            .map_err(map_err)?;
        Ok(Lease {
            id: resp.id(),
            ttl: Duration::from_secs(resp.ttl().unsigned_abs()),
        })
    }

    async fn keep_alive(&self, id: LeaseId) -> Result<Duration> {
        let not_found = |e: ec::Error| match map_err(e) {
            Error::LeaseNotFound(_) => Error::LeaseNotFound(id),
            other => other,
        };
        let (mut keeper, mut stream) = self
            .client
            .lease_client()
            .keep_alive(id)
            .await
            .map_err(not_found)?;
        keeper.keep_alive().await.map_err(not_found)?;
        let resp =
            stream.message().await.map_err(not_found)?.ok_or_else(|| {
                Error::Unavailable("etcd closed the keep-alive stream".to_owned())
            })?;
        if resp.ttl() <= 0 {
            return Err(Error::LeaseNotFound(id));
        }
        Ok(Duration::from_secs(resp.ttl().unsigned_abs()))
    }

    async fn revoke(&self, id: LeaseId) -> Result<()> {
        self.client
            .lease_client()
            .revoke(id)
            .await
            .map_err(|e| match map_err(e) {
                Error::LeaseNotFound(_) => Error::LeaseNotFound(id),
                other => other,
            })?;
        Ok(())
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        match self.client.kv_client().compact(revision, None).await {
            Ok(_) => Ok(()),
            Err(e) => match map_err(e) {
                // Already compacted at or beyond: nothing to do (the embedded store agrees).
                Error::Compacted { .. } => Ok(()),
                Error::FutureRevision { .. } => Err(Error::FutureRevision {
                    requested: revision,
                    current: 0,
                }),
                other => Err(other),
            },
        }
    }
}

fn convert_events(resp: &ec::WatchResponse) -> Result<Vec<Event>> {
    resp.events()
        .iter()
        .filter_map(|e| {
            let kv = e.kv()?;
            Some(key_value(kv).map(|kv| Event {
                kind: match e.event_type() {
                    ec::EventType::Put => EventKind::Put,
                    ec::EventType::Delete => EventKind::Delete,
                },
                kv,
            }))
        })
        .collect()
}

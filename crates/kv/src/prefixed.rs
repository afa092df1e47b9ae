//! A chroot over a [`Kv`]: every key is stored under a fixed prefix, which callers never see.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;

use crate::{
    Compare, Error, Event, KeyRange, KeyValue, Kv, Lease, LeaseId, Op, OpResponse, RangeRequest,
    RangeResponse, Result, Txn, TxnResponse, WatchResponse, WatchStream,
};

/// Gives a service its own namespace (`runservice/`, `configstore/`, ...).
#[derive(Debug, Clone)]
pub struct Prefixed {
    inner: Arc<dyn Kv>,
    prefix: Arc<str>,
}

impl Prefixed {
    /// `prefix` should end with `/`; an empty prefix passes keys through unchanged.
    pub fn new(inner: Arc<dyn Kv>, prefix: impl Into<String>) -> Self {
        Prefixed {
            inner,
            prefix: Arc::from(prefix.into()),
        }
    }

    fn add(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn add_range(&self, range: KeyRange) -> KeyRange {
        match range {
            KeyRange::Key(k) => KeyRange::Key(self.add(&k)),
            KeyRange::Prefix(p) => KeyRange::Prefix(self.add(&p)),
            KeyRange::Between { start, end } => KeyRange::Between {
                start: self.add(&start),
                end: self.add(&end),
            },
        }
    }

    fn add_req(&self, req: RangeRequest) -> RangeRequest {
        RangeRequest {
            range: self.add_range(req.range),
            ..req
        }
    }

    fn strip(prefix: &str, mut kv: KeyValue) -> Result<KeyValue> {
        match kv.key.strip_prefix(prefix) {
            Some(rest) => {
                kv.key = rest.to_owned();
                Ok(kv)
            }
            None => Err(Error::Corrupted(format!(
                "key {:?} outside the namespace {prefix:?}",
                kv.key
            ))),
        }
    }

    fn strip_range(&self, mut resp: RangeResponse) -> Result<RangeResponse> {
        resp.kvs = resp
            .kvs
            .into_iter()
            .map(|kv| Self::strip(&self.prefix, kv))
            .collect::<Result<_>>()?;
        Ok(resp)
    }
}

#[async_trait]
impl Kv for Prefixed {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        crate::validate_range(&req.range)?;
        let resp = self.inner.range(self.add_req(req)).await?;
        self.strip_range(resp)
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        crate::validate_txn(&txn)?;
        let map_ops = |ops: Vec<Op>| -> Vec<Op> {
            ops.into_iter()
                .map(|op| match op {
                    Op::Put { key, value, lease } => Op::Put {
                        key: self.add(&key),
                        value,
                        lease,
                    },
                    Op::Delete { range } => Op::Delete {
                        range: self.add_range(range),
                    },
                    Op::Range(r) => Op::Range(self.add_req(r)),
                })
                .collect()
        };
        let txn = Txn {
            compares: txn
                .compares
                .into_iter()
                .map(|c| Compare {
                    key: self.add(&c.key),
                    ..c
                })
                .collect(),
            then: map_ops(txn.then),
            otherwise: map_ops(txn.otherwise),
        };
        let mut resp = self.inner.txn(txn).await?;
        resp.responses = resp
            .responses
            .into_iter()
            .map(|r| match r {
                OpResponse::Range(rr) => self.strip_range(rr).map(OpResponse::Range),
                other => Ok(other),
            })
            .collect::<Result<_>>()?;
        Ok(resp)
    }

    async fn watch(&self, range: KeyRange, from_revision: i64) -> Result<WatchStream> {
        crate::validate_range(&range)?;
        let prefix = self.prefix.clone();
        let stream = self
            .inner
            .watch(self.add_range(range), from_revision)
            .await?;
        Ok(stream
            .map(move |resp| {
                let resp = resp?;
                let events = resp
                    .events
                    .into_iter()
                    .map(|e| {
                        Ok(Event {
                            kind: e.kind,
                            kv: Prefixed::strip(&prefix, e.kv)?,
                        })
                    })
                    .collect::<Result<_>>()?;
                Ok(WatchResponse { events })
            })
            .boxed())
    }

    async fn grant(&self, ttl: Duration) -> Result<Lease> {
        self.inner.grant(ttl).await
    }
    async fn keep_alive(&self, id: LeaseId) -> Result<Duration> {
        self.inner.keep_alive(id).await
    }
    async fn revoke(&self, id: LeaseId) -> Result<()> {
        self.inner.revoke(id).await
    }
    async fn compact(&self, revision: i64) -> Result<()> {
        self.inner.compact(revision).await
    }
}

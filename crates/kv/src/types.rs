//! The data types of the KV API, modelled on etcd's.

use std::time::Duration;

/// Identifier of a lease; keys attached to it are deleted when it expires or is revoked.
pub type LeaseId = i64;

/// A stored key with its revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the txn that created the key (since its last deletion).
    pub create_revision: i64,
    /// Revision of the txn that last modified the key.
    pub mod_revision: i64,
    /// Number of modifications since creation (1 after creation).
    pub version: i64,
    /// Attached lease, 0 if none.
    pub lease: LeaseId,
}

/// Which keys a range covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRange {
    /// Exactly one key.
    Key(String),
    /// Every key starting with the prefix (an empty prefix is not allowed).
    Prefix(String),
    /// Keys in `[start, end)`.
    Between { start: String, end: String },
}

impl KeyRange {
    pub fn contains(&self, key: &str) -> bool {
        match self {
            KeyRange::Key(k) => k == key,
            KeyRange::Prefix(p) => key.starts_with(p.as_str()),
            KeyRange::Between { start, end } => key >= start.as_str() && key < end.as_str(),
        }
    }
}

/// A read of keys, ascending by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeRequest {
    pub range: KeyRange,
    /// At most this many keys (0 = no limit); `more` says whether keys were left out.
    pub limit: usize,
    /// Read at this past revision (0 = current). Needs history: only etcd keeps it; the
    /// embedded store answers [`crate::Error::Compacted`] for a past revision it no longer has.
    pub revision: i64,
}

impl RangeRequest {
    pub fn key(key: impl Into<String>) -> Self {
        RangeRequest {
            range: KeyRange::Key(key.into()),
            limit: 0,
            revision: 0,
        }
    }
    pub fn prefix(prefix: impl Into<String>) -> Self {
        RangeRequest {
            range: KeyRange::Prefix(prefix.into()),
            limit: 0,
            revision: 0,
        }
    }
    pub fn between(start: impl Into<String>, end: impl Into<String>) -> Self {
        RangeRequest {
            range: KeyRange::Between {
                start: start.into(),
                end: end.into(),
            },
            limit: 0,
            revision: 0,
        }
    }
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
    pub fn at_revision(mut self, revision: i64) -> Self {
        self.revision = revision;
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    /// Keys were left out by the limit.
    pub more: bool,
    /// Store revision the read was served at.
    pub revision: i64,
}

/// What a compare looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareTarget {
    Value(Vec<u8>),
    Version(i64),
    CreateRevision(i64),
    ModRevision(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Less,
    Greater,
}

/// One condition of a txn. A missing key has version, create and mod revision 0 and never
/// matches a value compare (as in etcd).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    pub key: String,
    pub op: CompareOp,
    pub target: CompareTarget,
}

impl Compare {
    pub fn mod_revision(key: impl Into<String>, op: CompareOp, rev: i64) -> Self {
        Compare {
            key: key.into(),
            op,
            target: CompareTarget::ModRevision(rev),
        }
    }
    pub fn create_revision(key: impl Into<String>, op: CompareOp, rev: i64) -> Self {
        Compare {
            key: key.into(),
            op,
            target: CompareTarget::CreateRevision(rev),
        }
    }
    pub fn version(key: impl Into<String>, op: CompareOp, version: i64) -> Self {
        Compare {
            key: key.into(),
            op,
            target: CompareTarget::Version(version),
        }
    }
    pub fn value(key: impl Into<String>, op: CompareOp, value: impl Into<Vec<u8>>) -> Self {
        Compare {
            key: key.into(),
            op,
            target: CompareTarget::Value(value.into()),
        }
    }
    /// True when the key does not exist.
    pub fn absent(key: impl Into<String>) -> Self {
        Compare::create_revision(key, CompareOp::Equal, 0)
    }

    /// Evaluates the compare against the key's current state.
    pub fn matches(&self, kv: Option<&KeyValue>) -> bool {
        fn cmp<T: Ord>(op: CompareOp, a: T, b: T) -> bool {
            match op {
                CompareOp::Equal => a == b,
                CompareOp::NotEqual => a != b,
                CompareOp::Less => a < b,
                CompareOp::Greater => a > b,
            }
        }
        match &self.target {
            CompareTarget::Value(v) => match kv {
                Some(kv) => cmp(self.op, kv.value.as_slice(), v.as_slice()),
                None => false,
            },
            CompareTarget::Version(v) => cmp(self.op, kv.map_or(0, |kv| kv.version), *v),
            CompareTarget::CreateRevision(v) => {
                cmp(self.op, kv.map_or(0, |kv| kv.create_revision), *v)
            }
            CompareTarget::ModRevision(v) => cmp(self.op, kv.map_or(0, |kv| kv.mod_revision), *v),
        }
    }
}

/// An operation of a txn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    },
    Delete {
        range: KeyRange,
    },
    Range(RangeRequest),
}

impl Op {
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        }
    }
    pub fn put_with_lease(
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
        lease: LeaseId,
    ) -> Self {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: Some(lease),
        }
    }
    pub fn delete(key: impl Into<String>) -> Self {
        Op::Delete {
            range: KeyRange::Key(key.into()),
        }
    }
    pub fn delete_prefix(prefix: impl Into<String>) -> Self {
        Op::Delete {
            range: KeyRange::Prefix(prefix.into()),
        }
    }
    pub fn get(key: impl Into<String>) -> Self {
        Op::Range(RangeRequest::key(key))
    }
}

/// `if compares then ops else ops`, applied atomically.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub then: Vec<Op>,
    pub otherwise: Vec<Op>,
}

impl Txn {
    pub fn new() -> Self {
        Txn::default()
    }
    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Self {
        self.compares.extend(compares);
        self
    }
    pub fn and_then(mut self, ops: impl IntoIterator<Item = Op>) -> Self {
        self.then.extend(ops);
        self
    }
    pub fn or_else(mut self, ops: impl IntoIterator<Item = Op>) -> Self {
        self.otherwise.extend(ops);
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResponse {
    Put,
    Delete { deleted: i64 },
    Range(RangeResponse),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResponse {
    pub succeeded: bool,
    /// Store revision after the txn (bumped only when it wrote something).
    pub revision: i64,
    pub responses: Vec<OpResponse>,
}

impl TxnResponse {
    /// The range answer of op `i`, if it was a range.
    pub fn range(&self, i: usize) -> Option<&RangeResponse> {
        match self.responses.get(i) {
            Some(OpResponse::Range(r)) => Some(r),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// A change seen by a watcher. For deletes, `kv` holds the key and the deleting revision as
/// `mod_revision`, with an empty value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
}

/// The events of one or more revisions, in revision order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchResponse {
    pub events: Vec<Event>,
}

/// A granted lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub id: LeaseId,
    pub ttl: Duration,
}

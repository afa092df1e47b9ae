//! Errors of the KV layer.

use agola_common::ApiError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key (or prefix) is malformed: empty, too long, with a `..` segment or a NUL.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    /// The value is over the size limit.
    #[error("value of key {key:?} is {size} bytes, over the {limit} bytes limit")]
    ValueTooLarge {
        key: String,
        size: usize,
        limit: usize,
    },
    /// A watch or read asked for history older than the compacted revision: resync.
    #[error("revision {requested} has been compacted (compacted up to {compact_revision})")]
    Compacted {
        requested: i64,
        compact_revision: i64,
    },
    /// A revision in the future was asked for.
    #[error("revision {requested} is in the future (current {current})")]
    FutureRevision { requested: i64, current: i64 },
    /// The lease does not exist (expired or revoked).
    #[error("lease {0} not found")]
    LeaseNotFound(i64),
    /// A bad argument other than a key (zero TTL, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// The store is unreachable or failed; retrying later may succeed.
    #[error("kv store unavailable: {0}")]
    Unavailable(String),
    /// An optimistic-concurrency check failed (change group, lost CAS race after retries).
    #[error("concurrent update: {0}")]
    Concurrency(String),
    /// Stored data could not be decoded: a bug or corruption.
    #[error("kv store corrupted: {0}")]
    Corrupted(String),
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match &e {
            Error::InvalidKey { .. }
            | Error::ValueTooLarge { .. }
            | Error::InvalidArgument(_)
            | Error::FutureRevision { .. } => ApiError::bad_request(e.to_string()),
            Error::LeaseNotFound(_) => ApiError::not_found(e.to_string()),
            Error::Concurrency(_) => ApiError::concurrency(e.to_string()),
            Error::Compacted { .. } | Error::Unavailable(_) => ApiError::unavailable(e.to_string()),
            Error::Corrupted(_) => ApiError::internal(e.to_string()),
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        ApiError::from(e).to_status()
    }
}

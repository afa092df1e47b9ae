//! Errors of the datamanager.

use agola_common::ApiError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The entry does not exist (or a pending WAL deleted it).
    #[error("{data_type} {id:?} does not exist")]
    NotExist { data_type: String, id: String },
    /// The request is malformed (empty actions, bad change-group name, bad import data...).
    #[error("{0}")]
    BadRequest(String),
    /// A change group, the token window or an extra compare failed: re-validate and retry.
    #[error("concurrent update: {0}")]
    Concurrency(String),
    /// The store is in maintenance mode, or a dependency is unreachable.
    #[error("datamanager unavailable: {0}")]
    Unavailable(String),
    /// Stored data is inconsistent (broken WAL chain, undecodable file): needs an operator.
    #[error("datamanager data corrupted: {0}")]
    Corrupted(String),
}

impl Error {
    pub fn is_not_exist(&self) -> bool {
        matches!(self, Error::NotExist { .. })
    }
}

impl From<agola_kv::Error> for Error {
    fn from(e: agola_kv::Error) -> Self {
        match e {
            agola_kv::Error::Concurrency(m) => Error::Concurrency(m),
            agola_kv::Error::InvalidKey { .. }
            | agola_kv::Error::ValueTooLarge { .. }
            | agola_kv::Error::InvalidArgument(_) => Error::BadRequest(e.to_string()),
            agola_kv::Error::Corrupted(m) => Error::Corrupted(m),
            other => Error::Unavailable(other.to_string()),
        }
    }
}

impl From<agola_objectstorage::Error> for Error {
    fn from(e: agola_objectstorage::Error) -> Self {
        // A missing object the datamanager expected is corruption, not a user's NotExist:
        // callers that expect absence check `is_not_exist` on the storage error themselves.
        match e {
            agola_objectstorage::Error::NotExist { path } => {
                Error::Corrupted(format!("object {path:?} is missing"))
            }
            other => Error::Unavailable(other.to_string()),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match &e {
            Error::NotExist { .. } => ApiError::not_found(e.to_string()),
            Error::BadRequest(_) => ApiError::bad_request(e.to_string()),
            Error::Concurrency(_) => ApiError::concurrency(e.to_string()),
            Error::Unavailable(_) => ApiError::unavailable(e.to_string()),
            Error::Corrupted(_) => ApiError::internal(e.to_string()),
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        ApiError::from(e).to_status()
    }
}

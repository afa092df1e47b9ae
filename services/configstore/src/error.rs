//! The configstore's one error enum, mapped once to a gRPC status.

use agola_common::ApiError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, named for what the caller should do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed request or a rule violation (invalid name, moving a group under itself,
    /// deleting a root group, a remote source still in use). The message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// A ref names nothing.
    #[error("{0}")]
    NotFound(String),
    /// A name (or remote user, token name, ...) is already taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request does not fit the current state (maintenance mode already entered...).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A change-group conflict remained after the retries: re-read and retry.
    #[error("concurrent update: {0}")]
    Concurrency(String),
    /// Storage unreachable, read model still loading, maintenance mode.
    #[error("configstore unavailable: {0}")]
    Unavailable(String),
    /// Stored data is inconsistent or a bug; only logged.
    #[error("configstore internal error: {0}")]
    Internal(String),
    /// The gRPC server could not run (listener failure, ...).
    #[error("configstore grpc server failed: {0}")]
    Server(#[source] ApiError),
}

impl Error {
    pub(crate) fn not_found(what: &str, reference: &str) -> Self {
        Error::NotFound(format!("{what} {reference:?} does not exist"))
    }
}

impl From<agola_datamanager::Error> for Error {
    fn from(e: agola_datamanager::Error) -> Self {
        use agola_datamanager::Error as D;
        match e {
            D::NotExist { .. } => Error::NotFound(e.to_string()),
            D::BadRequest(m) => Error::InvalidArgument(m),
            D::Concurrency(m) => Error::Concurrency(m),
            D::Unavailable(m) => Error::Unavailable(m),
            D::Corrupted(m) => Error::Internal(m),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidArgument(m) | Error::FailedPrecondition(m) => ApiError::bad_request(m),
            Error::NotFound(m) => ApiError::not_found(m),
            Error::AlreadyExists(m) => ApiError::already_exists(m),
            Error::Concurrency(_) => ApiError::concurrency(e.to_string()),
            Error::Unavailable(_) => ApiError::unavailable(e.to_string()),
            Error::Internal(_) => ApiError::internal(e.to_string()),
            Error::Server(api) => api,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        // The error model has no "failed precondition" kind (it is a 400 over REST); keep the
        // gRPC code the maintenance contract documents while carrying the same error code.
        if let Error::FailedPrecondition(m) = &e {
            let api = ApiError::bad_request(m.clone());
            let mut status = tonic::Status::failed_precondition(m.clone());
            if let Ok(v) = api.client_code().parse() {
                status
                    .metadata_mut()
                    .insert(agola_common::error::ERROR_CODE_METADATA, v);
            }
            return status;
        }
        ApiError::from(e).to_status()
    }
}

//! The executor's error type, mapped once to `tonic::Status`.

use crate::driver::DriverError;

/// Errors of the executor service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The gRPC server could not run (listener failure, ...).
    #[error("executor grpc server failed: {0}")]
    Server(#[source] agola_common::ApiError),
    /// Bad configuration (named field).
    #[error("executor config: {0}")]
    Config(String),
    /// A request names something that does not exist here.
    #[error("{0}")]
    NotFound(String),
    /// A request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The driver failed.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// Local disk.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A call to the runservice failed.
    #[error("runservice: {0}")]
    Runservice(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Server(api) => api.to_status(),
            Error::NotFound(m) => tonic::Status::not_found(m),
            Error::BadRequest(m) => tonic::Status::invalid_argument(m),
            other => {
                // Internal detail is logged, not sent.
                tracing::error!(error = %other, "executor internal error");
                tonic::Status::internal("internal error")
            }
        }
    }
}

//! The executor: runs executor tasks through a driver (docker, kubernetes, local) and streams their status, logs and archives to the runservice (spec 30).
//!
//! What this crate serves today: its gRPC endpoint with `grpc.health.v1` and reflection, behind
//! internal authentication. Its domain API is not served yet; it arrives with the issue that
//! builds it, so nothing here answers a call it cannot really handle.

pub mod driver;

use std::net::SocketAddr;

use agola_common::Shutdown;
use agola_common::grpc::GrpcServer;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// The `executor` section of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// Address the gRPC endpoint listens on.
    pub listen_address: SocketAddr,
    /// Internal bearer token (from the top-level `internalAuth`); not read from the section.
    #[serde(skip)]
    pub internal_token: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen_address: SocketAddr::from(([127, 0, 0, 1], 4001)),
            internal_token: None,
        }
    }
}

/// Errors of the executor service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The gRPC server could not run (listener failure, ...).
    #[error("executor grpc server failed: {0}")]
    Server(#[source] agola_common::ApiError),
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Server(api) => api.to_status(),
        }
    }
}

/// Serves the executor on `listener` until `shutdown` fires.
pub async fn serve(config: Config, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
    tracing::info!(addr = ?listener.local_addr().ok(), "executor serving");
    GrpcServer::new(config.internal_token.as_deref())
        .add_descriptor_set(agola_proto::FILE_DESCRIPTOR_SET)
        .serve(listener, shutdown)
        .await
        .map_err(Error::Server)
}

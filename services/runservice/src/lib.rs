//! The runservice: owner of runs, run configs, executors, executor tasks, run events, logs, workspace archives and caches, and home of the task scheduler (spec 20).
//!
//! Built so far: the domain as pure functions, table-tested: run creation and re-creation
//! ([`create`]), the task DAG ([`dag`]) and the task scheduler ([`scheduler`]). Served so far:
//! its gRPC endpoint with `grpc.health.v1` and reflection, behind internal authentication; the
//! RunService and executor stream APIs are not served yet, so nothing answers a call it cannot
//! really handle. See `OVERVIEW.md`.

pub mod convert;
pub mod create;
pub mod dag;
pub mod executors;
pub mod runs;
pub mod scheduler;
pub mod store;
pub mod types;

use std::net::SocketAddr;

use agola_common::Shutdown;
use agola_common::grpc::GrpcServer;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// The `runservice` section of the config file.
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
            listen_address: SocketAddr::from(([127, 0, 0, 1], 4000)),
            internal_token: None,
        }
    }
}

/// Errors of the runservice service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The gRPC server could not run (listener failure, ...).
    #[error("runservice grpc server failed: {0}")]
    Server(#[source] agola_common::ApiError),
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Server(api) => api.to_status(),
        }
    }
}

/// Serves the runservice on `listener` until `shutdown` fires.
pub async fn serve(config: Config, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
    tracing::info!(addr = ?listener.local_addr().ok(), "runservice serving");
    GrpcServer::new(config.internal_token.as_deref())
        .add_descriptor_set(agola_proto::FILE_DESCRIPTOR_SET)
        .serve(listener, shutdown)
        .await
        .map_err(Error::Server)
}

//! The configstore service: owner of users, organizations and their members, project groups, projects, remote sources, secrets and variables (spec 50), stored in the datamanager.
//!
//! What this crate serves today: its gRPC endpoint with `grpc.health.v1` and reflection, behind
//! internal authentication. Its domain API is not served yet; it arrives with the issue that
//! builds it, so nothing here answers a call it cannot really handle.

pub mod error;
pub mod guards;
pub mod names;
pub mod orgs;
pub mod projects;
pub mod readmodel;
pub mod refs;
pub mod remotesources;
pub mod secrets;
pub mod store;
pub mod types;
pub mod users;

use std::net::SocketAddr;

use agola_common::Shutdown;
use agola_common::grpc::GrpcServer;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// The `configstore` section of the config file.
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
            listen_address: SocketAddr::from(([127, 0, 0, 1], 4002)),
            internal_token: None,
        }
    }
}

pub use error::{Error, Result};

/// Serves the configstore on `listener` until `shutdown` fires.
pub async fn serve(config: Config, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
    tracing::info!(addr = ?listener.local_addr().ok(), "configstore serving");
    GrpcServer::new(config.internal_token.as_deref())
        .add_descriptor_set(agola_proto::FILE_DESCRIPTOR_SET)
        .serve(listener, shutdown)
        .await
        .map_err(Error::Server)
}

//! The runservice: owner of runs, run configs, executors, executor tasks, run events, logs,
//! workspace archives and caches, and home of the task scheduler (spec 20).
//!
//! Served: `agola.runservice.v1.RunService` (runs, actions, logs, events, executors) and
//! `agola.runservice.v1.ExecutorControlService` (the executors' stream, log upload, workspace
//! archives, caches), health and reflection, with the loops that drive runs (scheduling, ET
//! cleaner, liveness, fetcher, task sync) and the datamanager's loops. See `OVERVIEW.md` for
//! what is not built yet.

pub mod blobs;
pub mod convert;
pub mod create;
pub mod dag;
pub mod executors;
pub mod fetcher;
pub mod grpc;
pub mod grpc_runs;
pub mod loops;
pub mod pull;
pub mod runs;
pub mod scheduler;
pub mod store;
pub mod types;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use agola_common::config::{KvConfig, ObjectStorageConfig};
use agola_common::grpc::GrpcServer;
use agola_common::{ApiError, Shutdown};
use agola_proto::runservice::v1::executor_control_service_server::ExecutorControlServiceServer;
use agola_proto::runservice::v1::run_service_server::RunServiceServer;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// The `runservice` section of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// Address the gRPC endpoint listens on.
    pub listen_address: SocketAddr,
    /// Overrides the top-level `kv` for this service.
    pub kv: Option<KvConfig>,
    /// Overrides the top-level `objectStorage` for this service.
    pub object_storage: Option<ObjectStorageConfig>,
    /// Executors without a heartbeat for this long are not given tasks (seconds).
    pub executor_alive_timeout_secs: u64,
    /// Executors without a heartbeat for this long are declared dead (seconds).
    pub executor_dead_timeout_secs: u64,
    /// Period of the scheduling safety-net pass (milliseconds).
    pub schedule_interval_ms: u64,
    /// Data directory (from the top level); not read from the section.
    #[serde(skip)]
    pub data_dir: PathBuf,
    /// Internal bearer token (from the top-level `internalAuth`); not read from the section.
    #[serde(skip)]
    pub internal_token: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen_address: SocketAddr::from(([127, 0, 0, 1], 4000)),
            kv: None,
            object_storage: None,
            executor_alive_timeout_secs: 60,
            executor_dead_timeout_secs: 60,
            schedule_interval_ms: 2000,
            data_dir: PathBuf::from("agola-data"),
            internal_token: None,
        }
    }
}

/// Errors of the runservice process.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Storage could not be opened or initialized.
    #[error("runservice storage: {0}")]
    Storage(String),
    /// The gRPC server could not run (listener failure, ...).
    #[error("runservice grpc server failed: {0}")]
    Server(#[source] ApiError),
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Server(api) => api.to_status(),
            other => ApiError::internal(other.to_string()).to_status(),
        }
    }
}

/// Serves the runservice on `listener` until `shutdown` fires.
pub async fn serve(config: Config, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
    let kv_config = config.kv.clone().unwrap_or_default();
    let ost_config = config.object_storage.clone().unwrap_or_default();
    let kv = agola_kv::open(&kv_config, &config.data_dir, "runservice")
        .await
        .map_err(|e| Error::Storage(e.to_string()))?;
    let ost = agola_objectstorage::open(&ost_config, &config.data_dir)
        .await
        .map_err(|e| Error::Storage(e.to_string()))?;
    let dm = agola_datamanager::DataManager::new(
        agola_datamanager::Config::new("rundata"),
        kv.clone(),
        ost.clone(),
    );
    dm.init(shutdown.clone())
        .await
        .map_err(|e| Error::Storage(e.to_string()))?;
    dm.start_loops(shutdown.clone());
    let runs = runs::Runs::new(store::Store::new(kv), dm);
    let hub = executors::Hub::new(runs.clone());
    let blobs = blobs::Blobs::new(ost);
    let alive = Duration::from_secs(config.executor_alive_timeout_secs);
    let fetch_kick = std::sync::Arc::new(tokio::sync::Notify::new());
    loops::start(
        loops::Loops {
            runs: runs.clone(),
            hub: hub.clone(),
            blobs: blobs.clone(),
            executor_clients: pull::ExecutorClients::new(config.internal_token.clone()),
            fetch_kick: fetch_kick.clone(),
            alive_timeout: alive,
            dead_timeout: Duration::from_secs(config.executor_dead_timeout_secs),
            schedule_interval: Duration::from_millis(config.schedule_interval_ms.max(10)),
        },
        shutdown.clone(),
    );
    tracing::info!(addr = ?listener.local_addr().ok(), "runservice serving");
    GrpcServer::new(config.internal_token.as_deref())
        .add_service(ExecutorControlServiceServer::new(grpc::ExecutorControl {
            hub,
            blobs: blobs.clone(),
            alive_timeout: alive,
            fetch_kick,
        }))
        .add_service(RunServiceServer::new(grpc_runs::RunApi { runs, blobs }))
        .add_descriptor_set(agola_proto::FILE_DESCRIPTOR_SET)
        .serve(listener, shutdown)
        .await
        .map_err(Error::Server)
}

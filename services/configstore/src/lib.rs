//! The configstore service: owner of users, organizations and their members, project groups,
//! projects, remote sources, secrets and variables (spec 50), stored in the datamanager (KV
//! namespace `configstore/`, object storage base path `configdata`).
//!
//! Served: `agola.configstore.v1.ConfigstoreService` and `agola.datamanager.v1.MaintenanceService`
//! with health and reflection, behind internal authentication. Reads come from a local
//! in-memory read model fed by the datamanager's follower; writes are planned on it, guarded
//! by change groups and return once the read model applied them. See `OVERVIEW.md`.

pub mod convert;
pub mod error;
pub mod grpc;
pub mod guards;
pub mod maintenance;
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
use std::path::PathBuf;
use std::time::Duration;

use agola_common::Shutdown;
use agola_common::config::{KvConfig, ObjectStorageConfig};
use agola_common::grpc::GrpcServer;
use agola_datamanager::DataManager;
use agola_proto::configstore::v1::configstore_service_server::ConfigstoreServiceServer;
use agola_proto::datamanager::v1::maintenance_service_server::MaintenanceServiceServer;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use error::{Error, Result};
pub use readmodel::Model;
pub use store::Store;

/// KV namespace of the configstore.
pub const KV_NAMESPACE: &str = "configstore";
/// Object storage base path of the configstore's datamanager.
pub const OST_BASE_PATH: &str = "configdata";
/// How often the maintenance flag is checked for the end of maintenance.
const MAINTENANCE_POLL: Duration = Duration::from_millis(100);

/// The `configstore` section of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// Address the gRPC endpoint listens on.
    pub listen_address: SocketAddr,
    /// Overrides the top-level `kv` for this service.
    pub kv: Option<KvConfig>,
    /// Overrides the top-level `objectStorage` for this service.
    pub object_storage: Option<ObjectStorageConfig>,
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
            listen_address: SocketAddr::from(([127, 0, 0, 1], 4002)),
            kv: None,
            object_storage: None,
            data_dir: PathBuf::from("agola-data"),
            internal_token: None,
        }
    }
}

/// Opens the storage of `config`, initializes the datamanager, starts its loops and the read
/// model's follower, and waits for the read model's first load. Returns the store and the
/// background tasks, which end when `shutdown` fires.
/// Opens the storage and loads the read model; None when `shutdown` fired meanwhile (a clean
/// stop, not an error).
async fn start(
    config: &Config,
    shutdown: Shutdown,
) -> Result<Option<(Store, Vec<JoinHandle<()>>)>> {
    let storage = |e: String| Error::Unavailable(format!("opening storage: {e}"));
    let kv = agola_kv::open(
        &config.kv.clone().unwrap_or_default(),
        &config.data_dir,
        KV_NAMESPACE,
    )
    .await
    .map_err(|e| storage(e.to_string()))?;
    let ost = agola_objectstorage::open(
        &config.object_storage.clone().unwrap_or_default(),
        &config.data_dir,
    )
    .await
    .map_err(|e| storage(e.to_string()))?;
    let dm = DataManager::new(
        agola_datamanager::Config::new(OST_BASE_PATH),
        kv.clone(),
        ost,
    );
    dm.init(shutdown.clone()).await?;
    let model = Model::new();
    let tasks = vec![
        dm.start_loops(shutdown.clone()),
        tokio::spawn(follow(dm.clone(), model.clone(), shutdown.clone())),
        tokio::spawn(resync_after_maintenance(
            dm.clone(),
            model.clone(),
            shutdown.clone(),
        )),
    ];
    tokio::select! {
        _ = model.wait_ready() => {}
        _ = shutdown.clone().wait() => {
            for t in tasks {
                let _ = t.await;
            }
            return Ok(None);
        }
    }
    Ok(Some((Store::new(dm, model, kv), tasks)))
}

/// Keeps the read model in step with the datamanager until `shutdown`. The follower resumes
/// from the model's position after a failure (a transient object storage error, ...) and is
/// restarted from scratch when a full reload is requested.
async fn follow(dm: DataManager, model: Model, shutdown: Shutdown) {
    let mut feeder = model.feeder();
    let mut resyncs = model.resync_requests();
    loop {
        tokio::select! {
            res = dm.follow(&mut feeder, shutdown.clone()) => match res {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "configstore read model follower failed, restarting");
                    tokio::select! {
                        _ = shutdown.clone().wait() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            },
            changed = resyncs.changed() => {
                if changed.is_err() {
                    return;
                }
                tracing::info!("configstore read model reload requested");
            }
        }
    }
}

/// Every instance reloads its read model when maintenance ends (spec 40 §6.9: instances
/// restart their internals), since an import may have replaced the data meanwhile.
async fn resync_after_maintenance(dm: DataManager, model: Model, shutdown: Shutdown) {
    let mut stop = std::pin::pin!(shutdown.wait());
    let mut was = dm.in_maintenance();
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(MAINTENANCE_POLL) => {}
        }
        let now = dm.in_maintenance();
        if was && !now {
            model.request_resync();
        }
        was = now;
    }
}

/// Serves the configstore on `listener` until `shutdown` fires.
pub async fn serve(config: Config, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
    let Some((store, tasks)) = start(&config, shutdown.clone()).await? else {
        return Ok(());
    };
    tracing::info!(addr = ?listener.local_addr().ok(), "configstore serving");
    let served = GrpcServer::new(config.internal_token.as_deref())
        .add_service(ConfigstoreServiceServer::new(grpc::ConfigstoreApi {
            store: store.clone(),
        }))
        .add_service(MaintenanceServiceServer::new(maintenance::MaintenanceApi {
            store,
        }))
        .add_descriptor_set(agola_proto::FILE_DESCRIPTOR_SET)
        .serve(listener, shutdown)
        .await;
    match served {
        // The server stopped because `shutdown` fired: the background tasks are ending too.
        // Wait for them, so the storage is released when this returns (a restart in the same
        // process can reopen the embedded KV).
        Ok(()) => {
            for t in tasks {
                let _ = t.await;
            }
            Ok(())
        }
        // Nothing will stop them otherwise.
        Err(e) => {
            for t in tasks {
                t.abort();
            }
            Err(Error::Server(e))
        }
    }
}

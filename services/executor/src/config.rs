//! The `executor` section of the config file (spec 30 §1).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Which driver runs the pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DriverType {
    /// Docker when a daemon answers on the configured (or default) socket, else local.
    #[default]
    Auto,
    /// Containers on a Docker daemon.
    Docker,
    /// Host processes, no isolation.
    Local,
}

pub use crate::driver::docker::PullPolicy;

/// The driver section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct DriverConfig {
    #[serde(rename = "type")]
    pub kind: DriverType,
    /// Docker: task image pull policy.
    pub pull_policy: PullPolicy,
    /// Docker: daemon socket path; empty = the default local socket.
    pub socket: Option<String>,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            kind: DriverType::Auto,
            pull_policy: PullPolicy::Always,
            socket: None,
        }
    }
}

/// The `executor` section of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// Address the `ExecutorService` endpoint listens on.
    pub listen_address: SocketAddr,
    /// Where the executor keeps its id, task logs and archives, and local pods. Empty = the
    /// top-level data dir's `executor/`.
    pub data_dir: Option<PathBuf>,
    /// The runservice's gRPC URL. Empty in an all-in-one server = the runservice it serves.
    pub runservice_url: String,
    /// Directory holding `agola-toolbox-linux-<arch>` (static binaries).
    pub toolbox_path: Option<PathBuf>,
    /// Image of the container that fills a pod's toolbox volume (docker).
    pub init_image: String,
    pub driver: DriverConfig,
    /// Reported to the runservice; not used for scheduling.
    pub labels: BTreeMap<String, String>,
    /// Tasks run at once; 0 = unlimited.
    pub active_tasks_limit: u32,
    pub allow_privileged_containers: bool,
    /// URL the runservice uses to reach this executor; empty = derived from the listener.
    pub advertise_url: Option<String>,
    /// Internal bearer token (from the top-level `internalAuth`); not read from the section.
    #[serde(skip)]
    pub internal_token: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen_address: SocketAddr::from(([127, 0, 0, 1], 4001)),
            data_dir: None,
            runservice_url: String::new(),
            toolbox_path: None,
            init_image: "busybox:stable".into(),
            driver: DriverConfig::default(),
            labels: BTreeMap::new(),
            active_tasks_limit: 2,
            allow_privileged_containers: false,
            advertise_url: None,
            internal_token: None,
        }
    }
}

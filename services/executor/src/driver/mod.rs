//! Drivers (spec 30 §6): the executor runs every task in a "pod" that a driver creates. A pod
//! is one or more containers sharing a network namespace (docker, kubernetes) or a directory
//! of host processes (local). Every command the executor runs in a pod goes through
//! [`Pod::exec`] on container 0, wrapped by the toolbox (`/mnt/agola/agola-toolbox exec ...`).
//!
//! The trait is ready for executor groups and dynamic executors (kubernetes), although the
//! docker and local drivers report group = own id, siblings = itself, not dynamic.

pub mod docker;

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use tokio::io::AsyncWrite;

pub mod local;

/// Where the toolbox is mounted in container 0 (and what the local driver maps to the host).
pub const TOOLBOX_DIR: &str = "/mnt/agola";
/// The toolbox binary as seen from inside a pod.
pub const TOOLBOX_BIN: &str = "/mnt/agola/agola-toolbox";

/// Errors of a driver.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The pod config cannot be run by this driver (named reason, shown in the setup log).
    #[error("{0}")]
    Unsupported(String),
    /// The container engine or the host failed.
    #[error("{0}")]
    Engine(String),
    /// The pod or container does not exist (removed underneath).
    #[error("not found: {0}")]
    NotFound(String),
    /// Local IO.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl DriverError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        DriverError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type DriverResult<T> = std::result::Result<T, DriverError>;

/// CPU architectures, named as Go names them (and as the toolbox files are suffixed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    I386,
    Amd64,
    Arm,
    Arm64,
}

impl Arch {
    /// The executor process's own architecture.
    pub fn host() -> Option<Arch> {
        Arch::from_uname(std::env::consts::ARCH)
    }

    /// Maps `uname -m` (or Rust's `std::env::consts::ARCH`) to an arch.
    pub fn from_uname(m: &str) -> Option<Arch> {
        match m {
            "x86_64" | "amd64" => Some(Arch::Amd64),
            "aarch64" | "arm64" => Some(Arch::Arm64),
            "i386" | "i686" | "x86" | "386" => Some(Arch::I386),
            "armv6l" | "armv7l" | "arm" => Some(Arch::Arm),
            _ => None,
        }
    }

    /// The Go-style name (`amd64`, `arm64`, `386`, `arm`).
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::I386 => "386",
            Arch::Amd64 => "amd64",
            Arch::Arm => "arm",
            Arch::Arm64 => "arm64",
        }
    }

    /// The toolbox file name for this arch inside the toolbox dir.
    pub fn toolbox_file_name(self) -> String {
        format!("agola-toolbox-linux-{}", self.as_str())
    }
}

/// A tmpfs volume of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmpfsVolume {
    pub path: String,
    /// Size in bytes; None = no limit.
    pub size: Option<u64>,
}

/// One container of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerConfig {
    pub image: String,
    /// The command of the container; container 0 gets the toolbox sleeper unless the task set
    /// an entrypoint.
    pub cmd: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Empty = the image's user.
    pub user: String,
    pub privileged: bool,
    pub volumes: Vec<TmpfsVolume>,
}

/// Credentials of one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
}

/// Everything a driver needs to create a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodConfig {
    /// Random id chosen by the executor.
    pub id: String,
    pub task_id: String,
    /// Container 0 is the main container; the others share its network namespace.
    pub containers: Vec<ContainerConfig>,
    pub arch: Arch,
    /// Where the toolbox is mounted in container 0 ([`TOOLBOX_DIR`]).
    pub init_volume_dir: String,
    /// Registry host (`docker.io` for Docker Hub) -> credentials, for every container's
    /// registry.
    pub docker_registries_auth: BTreeMap<String, RegistryAuth>,
}

/// One command to run in container 0 of a pod.
pub struct ExecConfig {
    pub cmd: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Empty = the container's working dir.
    pub working_dir: String,
    /// Empty = the container's user.
    pub user: String,
    /// When true, [`ContainerExec::take_stdin`] returns a writer; close it to send EOF.
    pub attach_stdin: bool,
    /// Receives stdout (and stderr too when `stderr` is None or `tty` is set).
    pub stdout: Box<dyn AsyncWrite + Send + Unpin>,
    pub stderr: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    pub tty: bool,
}

/// A running exec.
#[async_trait]
pub trait ContainerExec: Send {
    /// The stdin writer (once; None when stdin was not attached).
    fn take_stdin(&mut self) -> Option<Box<dyn AsyncWrite + Send + Unpin>>;
    /// Waits for the command to end, with every output byte written to the sinks; returns its
    /// exit code (128 + signal when killed by a signal).
    async fn wait(self: Box<Self>) -> DriverResult<i32>;
}

/// A pod created by a driver.
#[async_trait]
pub trait Pod: Send + Sync {
    fn id(&self) -> &str;
    fn executor_id(&self) -> &str;
    fn task_id(&self) -> &str;
    /// True when the driver cannot run commands as another user (local): the executor then
    /// passes no user to the toolbox.
    fn ignores_user(&self) -> bool {
        false
    }
    /// Stops every container (running execs end); idempotent.
    async fn stop(&self) -> DriverResult<()>;
    /// Removes the pod and everything it owns (containers, volumes, directories); idempotent.
    async fn remove(&self) -> DriverResult<()>;
    /// Runs a command in container 0.
    async fn exec(&self, config: ExecConfig) -> DriverResult<Box<dyn ContainerExec>>;
}

/// A source of pods (spec 30 §6).
#[async_trait]
pub trait Driver: Send + Sync {
    /// Prepares the driver (checks the engine, pulls or checks the init image...).
    async fn setup(&self) -> DriverResult<()>;
    /// Creates and starts a pod; progress and warnings go to `setup_log`.
    async fn new_pod(
        &self,
        config: PodConfig,
        setup_log: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> DriverResult<Box<dyn Pod>>;
    /// The pods of this executor, or of every executor sharing the engine when `all`.
    async fn get_pods(&self, all: bool) -> DriverResult<Vec<Box<dyn Pod>>>;
    /// The executor group id (docker, local: the executor id).
    async fn executor_group(&self) -> DriverResult<String>;
    /// The executors this driver sees alive in the group (docker, local: itself).
    async fn get_executors(&self) -> DriverResult<Vec<String>>;
    /// The archs this driver can run tasks on.
    async fn archs(&self) -> DriverResult<Vec<Arch>>;
    /// Whether executors of this driver are dynamic (removed by siblings once gone).
    fn dynamic(&self) -> bool {
        false
    }
}

/// Finds the toolbox binary for `arch` in `dir`: `agola-toolbox-linux-<arch>`.
pub fn toolbox_binary(dir: &std::path::Path, arch: Arch) -> DriverResult<PathBuf> {
    let path = dir.join(arch.toolbox_file_name());
    if path.is_file() {
        Ok(path)
    } else {
        Err(DriverError::Unsupported(format!(
            "no toolbox for arch {} at {} (build it with scripts/build-toolbox.sh)",
            arch.as_str(),
            path.display()
        )))
    }
}

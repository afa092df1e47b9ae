//! The pipeline config as written by users (spec 60 §8), after decoding and validation: every
//! short form is normalised, defaults are not yet applied (generation applies them), values may
//! still refer to variables.

use std::collections::BTreeMap;

use crate::node::Position;
use crate::runconfig::{
    Arch, DependCondition, DockerRegistryAuthType, RestoreCacheStep, RestoreWorkspaceStep,
    RuntimeType, SaveContent, SaveToWorkspaceStep, Volume,
};
use crate::when::When;

/// A validated pipeline config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// `v0` when given.
    pub version: Option<String>,
    /// Global registry credentials; runs, then tasks override them per registry.
    pub docker_registries_auth: BTreeMap<String, RegistryAuth>,
    pub runs: Vec<ConfigRun>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigRun {
    pub name: String,
    /// None = created for every ref.
    pub when: Option<When>,
    pub docker_registries_auth: BTreeMap<String, RegistryAuth>,
    pub tasks: Vec<ConfigTask>,
    /// Where the run is defined (YAML/JSON sources only).
    pub position: Option<Position>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigTask {
    pub name: String,
    pub runtime: ConfigRuntime,
    pub environment: BTreeMap<String, Value>,
    pub working_dir: Option<String>,
    pub shell: Option<String>,
    pub user: Option<String>,
    pub steps: Vec<ConfigStep>,
    pub depends: Vec<ConfigDepend>,
    pub ignore_failure: bool,
    pub approval: Approval,
    /// None = always created; a failing `when` creates the task skipped.
    pub when: Option<When>,
    pub docker_registries_auth: BTreeMap<String, RegistryAuth>,
    pub position: Option<Position>,
}

/// A string given literally or taken from a variable at generation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    Literal(String),
    FromVariable(String),
}

impl Value {
    pub fn literal(s: impl Into<String>) -> Self {
        Value::Literal(s.into())
    }
}

impl Default for Value {
    fn default() -> Self {
        Value::Literal(String::new())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryAuth {
    pub auth_type: DockerRegistryAuthType,
    pub username: Value,
    pub password: Value,
    pub auth: Value,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigRuntime {
    pub runtime_type: RuntimeType,
    pub arch: Option<Arch>,
    pub containers: Vec<ConfigContainer>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigContainer {
    pub image: String,
    pub environment: BTreeMap<String, Value>,
    pub user: Option<String>,
    pub privileged: bool,
    pub entrypoint: Option<String>,
    pub volumes: Vec<Volume>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDepend {
    pub task: String,
    /// Never empty: `[on_success]` when none was given.
    pub conditions: Vec<DependCondition>,
    pub position: Option<Position>,
}

/// Whether and by how many distinct users a task must be approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Approval {
    pub required: bool,
    /// ≥ 1.
    pub min_approvers: u32,
}

impl Default for Approval {
    fn default() -> Self {
        Approval {
            required: false,
            min_approvers: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigStep {
    Clone(CloneStep),
    Run(ConfigRunStep),
    SaveToWorkspace(SaveToWorkspaceStep),
    RestoreWorkspace(RestoreWorkspaceStep),
    SaveCache(ConfigSaveCacheStep),
    RestoreCache(RestoreCacheStep),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloneStep {
    /// ≥ 1; None = full history.
    pub depth: Option<u32>,
    pub recurse_submodules: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigRunStep {
    /// Given or derived (the command cut to 100 characters).
    pub name: String,
    pub command: String,
    pub environment: BTreeMap<String, Value>,
    pub working_dir: Option<String>,
    pub shell: Option<String>,
    pub tty: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigSaveCacheStep {
    pub key: String,
    /// Paths of each content default to `**` at generation.
    pub contents: Vec<SaveContent>,
}

//! The run config: the immutable, fully resolved definition of a run that the runservice stores
//! (spec 10 §3-§5). Plain serde types with the snake_case JSON shape of the stored records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Name of the run created instead of the configured runs when the config has errors.
pub const SETUP_ERROR_RUN_NAME: &str = "Setup Error";

/// Name of the run step the user-facing `clone` step becomes. Server-less runs recognise it to
/// copy the working tree instead of fetching.
pub const CLONE_STEP_NAME: &str = "Clone repository and checkout code";

/// Immutable definition of a run; same id as the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunConfig {
    /// Run id (a runservice sequence); empty until the runservice creates the run.
    pub id: String,
    pub name: String,
    pub group: String,
    /// Non-empty only for the "Setup Error" run, which has no tasks.
    pub setup_errors: Vec<String>,
    /// Copied from the run so listings need not load the run config.
    pub annotations: BTreeMap<String, String>,
    /// Kept by re-creation: `CI`, the `AGOLA_*` git variables, the ssh key.
    pub static_environment: BTreeMap<String, String>,
    /// Replaced by a restart request's value.
    pub environment: BTreeMap<String, String>,
    /// Task id → task.
    pub tasks: BTreeMap<String, RunConfigTask>,
    /// Cache namespace overriding the root group; empty = root group.
    pub cache_group: String,
}

impl RunConfig {
    /// Whether this is a setup-error run (errors and no tasks).
    pub fn is_setup_error(&self) -> bool {
        !self.setup_errors.is_empty()
    }

    /// The task with this (unique) name.
    pub fn task_by_name(&self, name: &str) -> Option<&RunConfigTask> {
        self.tasks.values().find(|t| t.name == name)
    }
}

/// One task of a run config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunConfigTask {
    /// DAG depth: roots 0, else 1 + max parent level.
    #[serde(default)]
    pub level: u32,
    /// UUID; also the run task and executor task id.
    pub id: String,
    /// Unique in the run.
    pub name: String,
    /// Parent task id → dependency.
    #[serde(default)]
    pub depends: BTreeMap<String, RunConfigTaskDepend>,
    pub runtime: Runtime,
    /// Resolved values.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    pub working_dir: String,
    pub shell: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub steps: Vec<Step>,
    /// A failure of this task does not fail the run.
    #[serde(default)]
    pub ignore_failure: bool,
    #[serde(default)]
    pub needs_approval: bool,
    /// Distinct approvers required (≥ 1).
    #[serde(default = "one")]
    pub min_approvers: u32,
    /// The task's `when` failed: created skipped.
    #[serde(default)]
    pub skip: bool,
    /// Registry host → credentials, already merged global < run < task.
    #[serde(default)]
    pub docker_registries_auth: BTreeMap<String, DockerRegistryAuth>,
    #[serde(default)]
    pub variable_refs: VariableRefs,
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

impl RunConfigTask {
    /// Re-applies `variable_refs` with freshly resolved variables (a restart, spec 20 §3.2):
    /// every value that came from a variable takes the variable's current value; a variable
    /// that no longer resolves removes the env var or empties the credential field.
    pub fn reapply_variables(&mut self, variables: &BTreeMap<String, String>) {
        for (env, var) in &self.variable_refs.environment {
            match variables.get(var) {
                Some(v) => {
                    self.environment.insert(env.clone(), v.clone());
                }
                None => {
                    self.environment.remove(env);
                }
            }
        }
        for (index, refs) in &self.variable_refs.container_environment {
            let Some(c) = self.runtime.containers.get_mut(*index as usize) else {
                continue;
            };
            for (env, var) in refs {
                match variables.get(var) {
                    Some(v) => {
                        c.environment.insert(env.clone(), v.clone());
                    }
                    None => {
                        c.environment.remove(env);
                    }
                }
            }
        }
        for (index, refs) in &self.variable_refs.step_environment {
            let Some(Step::Run(step)) = self.steps.get_mut(*index as usize) else {
                continue;
            };
            for (env, var) in refs {
                match variables.get(var) {
                    Some(v) => {
                        step.environment.insert(env.clone(), v.clone());
                    }
                    None => {
                        step.environment.remove(env);
                    }
                }
            }
        }
        for (registry, refs) in &self.variable_refs.docker_registries_auth {
            let Some(auth) = self.docker_registries_auth.get_mut(registry) else {
                continue;
            };
            let resolve = |var: &str| variables.get(var).cloned().unwrap_or_default();
            if !refs.username.is_empty() {
                auth.username = resolve(&refs.username);
            }
            if !refs.password.is_empty() {
                auth.password = resolve(&refs.password);
            }
            if !refs.auth.is_empty() {
                auth.auth = resolve(&refs.auth);
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunConfigTaskDepend {
    pub task_id: String,
    /// OR-ed; never empty once generated (default `[on_success]`).
    #[serde(default)]
    pub conditions: Vec<DependCondition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DependCondition {
    OnSuccess,
    OnFailure,
    OnSkipped,
}

impl DependCondition {
    pub fn as_str(self) -> &'static str {
        match self {
            DependCondition::OnSuccess => "on_success",
            DependCondition::OnFailure => "on_failure",
            DependCondition::OnSkipped => "on_skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "on_success" => Some(DependCondition::OnSuccess),
            "on_failure" => Some(DependCondition::OnFailure),
            "on_skipped" => Some(DependCondition::OnSkipped),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    #[serde(rename = "type")]
    pub runtime_type: RuntimeType,
    /// None = any architecture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<Arch>,
    /// Index 0 is the main container; the others are service containers sharing its network
    /// namespace.
    pub containers: Vec<Container>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeType {
    #[default]
    Pod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Arch {
    #[serde(rename = "386")]
    I386,
    #[serde(rename = "amd64")]
    Amd64,
    #[serde(rename = "arm")]
    Arm,
    #[serde(rename = "arm64")]
    Arm64,
}

impl Arch {
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::I386 => "386",
            Arch::Amd64 => "amd64",
            Arch::Arm => "arm",
            Arch::Arm64 => "arm64",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "386" => Some(Arch::I386),
            "amd64" => Some(Arch::Amd64),
            "arm" => Some(Arch::Arm),
            "arm64" => Some(Arch::Arm64),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Container {
    pub image: String,
    pub environment: BTreeMap<String, String>,
    pub user: String,
    pub privileged: bool,
    /// Command line split on spaces; empty = the toolbox sleeper.
    pub entrypoint: String,
    pub volumes: Vec<Volume>,
}

/// A container volume; only tmpfs volumes exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub path: String,
    pub tmpfs: TmpfsVolume,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsVolume {
    /// Size limit in bytes; None = no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DockerRegistryAuth {
    #[serde(rename = "type")]
    pub auth_type: DockerRegistryAuthType,
    pub username: String,
    pub password: String,
    pub auth: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DockerRegistryAuthType {
    #[default]
    Basic,
    EncodedAuth,
}

impl DockerRegistryAuthType {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "basic" => Some(DockerRegistryAuthType::Basic),
            "encodedauth" => Some(DockerRegistryAuthType::EncodedAuth),
            _ => None,
        }
    }
}

/// Values that came from `from_variable`, so a restart can re-resolve them.
///
/// `container_environment` and `step_environment` go beyond spec 10 §4, which records only the
/// task environment and registry credentials: without them a restart would keep stale secret
/// values in container and step environments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VariableRefs {
    /// Task environment variable → variable name.
    pub environment: BTreeMap<String, String>,
    /// Registry host → variable names of its credential fields.
    pub docker_registries_auth: BTreeMap<String, DockerRegistryAuthVariableRefs>,
    /// Container index → (environment variable → variable name).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub container_environment: BTreeMap<u32, BTreeMap<String, String>>,
    /// Step index → (environment variable → variable name), run steps only.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub step_environment: BTreeMap<u32, BTreeMap<String, String>>,
}

/// Variable name behind each credential field; empty = not from a variable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DockerRegistryAuthVariableRefs {
    pub username: String,
    pub password: String,
    pub auth: String,
}

/// A task step, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Step {
    Run(RunStep),
    SaveToWorkspace(SaveToWorkspaceStep),
    RestoreWorkspace(RestoreWorkspaceStep),
    SaveCache(SaveCacheStep),
    RestoreCache(RestoreCacheStep),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStep {
    pub name: String,
    pub command: String,
    /// Overrides the task environment.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Empty = the task working dir; relative paths resolve against it.
    #[serde(default)]
    pub working_dir: String,
    /// Empty = the task shell.
    #[serde(default)]
    pub shell: String,
    #[serde(default = "yes")]
    pub tty: bool,
}

/// One set of files to archive: `paths` (doublestar globs relative to `source_dir`) stored under
/// `dest_dir`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SaveContent {
    pub source_dir: String,
    pub dest_dir: String,
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SaveToWorkspaceStep {
    pub contents: Vec<SaveContent>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RestoreWorkspaceStep {
    pub dest_dir: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SaveCacheStep {
    /// Key template.
    pub key: String,
    /// Paths default to `["**"]`.
    pub contents: Vec<SaveContent>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RestoreCacheStep {
    /// Key templates, tried in order; the first prefix hit wins.
    pub keys: Vec<String>,
    pub dest_dir: String,
}

//! Domain types of the runservice (spec 10), stored as JSON with snake_case keys and the
//! lowercase enum strings of the model. Proto types never appear here.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub type Time = DateTime<Utc>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunPhase {
    Setuperror,
    Queued,
    Cancelled,
    Running,
    Finished,
}

impl RunPhase {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunPhase::Setuperror | RunPhase::Cancelled | RunPhase::Finished
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunResult {
    Unknown,
    Stopped,
    Success,
    Failed,
}

impl RunResult {
    pub fn is_set(self) -> bool {
        self != RunResult::Unknown
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunTaskStatus {
    Notstarted,
    Skipped,
    Cancelled,
    Running,
    Stopped,
    Success,
    Failed,
}

impl RunTaskStatus {
    pub fn is_finished(self) -> bool {
        !matches!(self, RunTaskStatus::Notstarted | RunTaskStatus::Running)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorTaskPhase {
    Notstarted,
    Cancelled,
    Running,
    Stopped,
    Success,
    Failed,
}

impl ExecutorTaskPhase {
    pub fn is_finished(self) -> bool {
        !matches!(
            self,
            ExecutorTaskPhase::Notstarted | ExecutorTaskPhase::Running
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FetchPhase {
    Notstarted,
    Finished,
    Lost,
}

impl FetchPhase {
    pub fn is_done(self) -> bool {
        self != FetchPhase::Notstarted
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DependCondition {
    OnSuccess,
    OnFailure,
    OnSkipped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunTaskStep {
    pub phase: ExecutorTaskPhase,
    pub log_phase: FetchPhase,
    pub exit_status: Option<i32>,
    pub start_time: Option<Time>,
    pub end_time: Option<Time>,
}

impl RunTaskStep {
    pub fn new() -> Self {
        RunTaskStep {
            phase: ExecutorTaskPhase::Notstarted,
            log_phase: FetchPhase::Notstarted,
            exit_status: None,
            start_time: None,
            end_time: None,
        }
    }
}

impl Default for RunTaskStep {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunTask {
    pub id: String,
    pub status: RunTaskStatus,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub skip: bool,
    pub waiting_approval: bool,
    pub approved: bool,
    pub setup_step: RunTaskStep,
    pub steps: Vec<RunTaskStep>,
    /// Indexes of the `save_to_workspace` steps.
    pub workspace_archives: Vec<usize>,
    /// Parallel to `workspace_archives`.
    pub workspace_archives_phase: Vec<FetchPhase>,
    pub start_time: Option<Time>,
    pub end_time: Option<Time>,
    /// Why the task failed outside its steps (setup, executor lost or restarted).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fail_error: String,
}

impl RunTask {
    /// Every log and archive fetched (or known lost).
    pub fn fetch_done(&self) -> bool {
        self.setup_step.log_phase.is_done()
            && self.steps.iter().all(|s| s.log_phase.is_done())
            && self.workspace_archives_phase.iter().all(|p| p.is_done())
    }

    pub fn archives_done(&self) -> bool {
        self.workspace_archives_phase.iter().all(|p| p.is_done())
    }

    /// Marks every fetch phase finished (nothing to fetch).
    pub fn finish_fetch_phases(&mut self) {
        self.setup_step.log_phase = FetchPhase::Finished;
        for s in &mut self.steps {
            s.log_phase = FetchPhase::Finished;
        }
        for p in &mut self.workspace_archives_phase {
            *p = FetchPhase::Finished;
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub id: String,
    pub name: String,
    pub counter: u64,
    pub group: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub phase: RunPhase,
    pub result: RunResult,
    pub stop: bool,
    pub tasks: BTreeMap<String, RunTask>,
    pub enqueue_time: Option<Time>,
    pub start_time: Option<Time>,
    pub end_time: Option<Time>,
    pub archived: bool,
}

impl Run {
    pub fn tasks_finished(&self) -> bool {
        self.tasks.values().all(|t| t.status.is_finished())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunConfigTaskDepend {
    pub task_id: String,
    pub conditions: Vec<DependCondition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Volume {
    pub path: String,
    /// tmpfs size in bytes; `None` = no size limit.
    pub tmpfs_size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Container {
    pub image: String,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub entrypoint: String,
    #[serde(default)]
    pub volumes: Vec<Volume>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Runtime {
    /// `386`, `amd64`, `arm`, `arm64`; empty = any.
    #[serde(default)]
    pub arch: String,
    pub containers: Vec<Container>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaveContent {
    pub source_dir: String,
    pub dest_dir: String,
    pub paths: Vec<String>,
}

/// A task step, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Step {
    Run {
        name: String,
        command: String,
        #[serde(default)]
        environment: BTreeMap<String, String>,
        #[serde(default)]
        working_dir: String,
        #[serde(default)]
        shell: String,
        #[serde(default)]
        tty: bool,
    },
    SaveToWorkspace {
        contents: Vec<SaveContent>,
    },
    RestoreWorkspace {
        dest_dir: String,
    },
    SaveCache {
        key: String,
        contents: Vec<SaveContent>,
    },
    RestoreCache {
        keys: Vec<String>,
        dest_dir: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RunConfigTask {
    pub level: u32,
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub depends: BTreeMap<String, RunConfigTaskDepend>,
    pub runtime: Runtime,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default)]
    pub shell: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub steps: Vec<Step>,
    #[serde(default)]
    pub ignore_failure: bool,
    #[serde(default)]
    pub needs_approval: bool,
    #[serde(default = "one")]
    pub min_approvers: u32,
    #[serde(default)]
    pub skip: bool,
}

fn one() -> u32 {
    1
}

impl RunConfigTask {
    pub fn privileged(&self) -> bool {
        self.runtime.containers.iter().any(|c| c.privileged)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RunConfig {
    pub id: String,
    pub name: String,
    pub group: String,
    #[serde(default)]
    pub setup_errors: Vec<String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub static_environment: BTreeMap<String, String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    pub tasks: BTreeMap<String, RunConfigTask>,
    #[serde(default)]
    pub cache_group: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Executor {
    pub id: String,
    #[serde(default)]
    pub listen_url: String,
    pub archs: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub allow_privileged_containers: bool,
    /// 0 = unlimited.
    pub active_tasks_limit: u32,
    pub active_tasks: u32,
    pub dynamic: bool,
    pub executor_group: String,
    #[serde(default)]
    pub siblings_executors: Vec<String>,
    pub last_status_update_time: Time,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorTaskSpec {
    pub executor_id: String,
    pub run_id: String,
    pub stop: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorTaskStepStatus {
    pub phase: ExecutorTaskPhase,
    pub start_time: Option<Time>,
    pub end_time: Option<Time>,
    pub exit_status: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorTaskStatus {
    pub phase: ExecutorTaskPhase,
    #[serde(default)]
    pub fail_error: String,
    pub setup_step: ExecutorTaskStepStatus,
    pub steps: Vec<ExecutorTaskStepStatus>,
    pub start_time: Option<Time>,
    pub end_time: Option<Time>,
}

/// The KV record of an executor task (spec data is never stored: it is rebuilt from run + rc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorTask {
    pub id: String,
    pub spec: ExecutorTaskSpec,
    pub status: ExecutorTaskStatus,
}

impl ExecutorTaskStepStatus {
    pub fn new() -> Self {
        ExecutorTaskStepStatus {
            phase: ExecutorTaskPhase::Notstarted,
            start_time: None,
            end_time: None,
            exit_status: None,
        }
    }
}

impl Default for ExecutorTaskStepStatus {
    fn default() -> Self {
        Self::new()
    }
}

/// An event on every change of a run's phase or result (spec 10 §8, 20 §10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunEvent {
    /// A `runeventsequence` value: events sort by it.
    pub sequence: String,
    pub run_id: String,
    pub group: String,
    pub phase: RunPhase,
    pub result: RunResult,
    pub time: Time,
}

//! Conversions between the Protobuf contracts (`Pb*`) and the domain types. Incoming messages
//! are validated here (`TryFrom`, failures are bad requests naming the field); outgoing ones
//! never fail. Handlers call these and nothing else touches proto types.

use std::collections::BTreeMap;

use agola_proto::common::v1 as pb;
use agola_proto::common::v1::{
    Arch as PbArch, ExecutorTaskPhase as PbPhase, FetchPhase as PbFetch, RunPhase as PbRunPhase,
    RunResult as PbRunResult, RunTaskStatus as PbTaskStatus,
};

use crate::executors::TaskSpecData;
use crate::runs::RunError;
use crate::types::{
    Container, DependCondition, Executor, ExecutorTask, ExecutorTaskPhase, ExecutorTaskStatus,
    ExecutorTaskStepStatus, FetchPhase, Run, RunConfig, RunConfigTask, RunConfigTaskDepend,
    RunEvent, RunPhase, RunResult, RunTask, RunTaskStatus, RunTaskStep, Runtime, SaveContent, Step,
    Time, Volume,
};

fn bad(msg: impl Into<String>) -> RunError {
    RunError::BadRequest(msg.into())
}

pub fn timestamp(t: Option<Time>) -> Option<prost_types::Timestamp> {
    t.map(|t| prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    })
}

pub fn from_timestamp(
    t: Option<&prost_types::Timestamp>,
    field: &str,
) -> Result<Option<Time>, RunError> {
    match t {
        None => Ok(None),
        Some(ts) => {
            let nanos =
                u32::try_from(ts.nanos).map_err(|_| bad(format!("{field}: negative nanos")))?;
            chrono::DateTime::from_timestamp(ts.seconds, nanos)
                .map(Some)
                .ok_or_else(|| bad(format!("{field}: timestamp out of range")))
        }
    }
}

pub fn arch_to_pb(arch: &str) -> PbArch {
    match arch {
        "386" => PbArch::Arch386,
        "amd64" => PbArch::Amd64,
        "arm" => PbArch::Arm,
        "arm64" => PbArch::Arm64,
        _ => PbArch::Unspecified,
    }
}

pub fn arch_from_pb(arch: PbArch) -> &'static str {
    match arch {
        PbArch::Arch386 => "386",
        PbArch::Amd64 => "amd64",
        PbArch::Arm => "arm",
        PbArch::Arm64 => "arm64",
        PbArch::Unspecified => "",
    }
}

fn arch_from_i32(v: i32, field: &str) -> Result<&'static str, RunError> {
    PbArch::try_from(v)
        .map(arch_from_pb)
        .map_err(|_| bad(format!("{field}: unknown arch {v}")))
}

pub fn phase_to_pb(p: ExecutorTaskPhase) -> PbPhase {
    match p {
        ExecutorTaskPhase::Notstarted => PbPhase::Notstarted,
        ExecutorTaskPhase::Cancelled => PbPhase::Cancelled,
        ExecutorTaskPhase::Running => PbPhase::Running,
        ExecutorTaskPhase::Stopped => PbPhase::Stopped,
        ExecutorTaskPhase::Success => PbPhase::Success,
        ExecutorTaskPhase::Failed => PbPhase::Failed,
    }
}

pub fn phase_from_pb(v: i32, field: &str) -> Result<ExecutorTaskPhase, RunError> {
    Ok(match PbPhase::try_from(v) {
        Ok(PbPhase::Notstarted) => ExecutorTaskPhase::Notstarted,
        Ok(PbPhase::Cancelled) => ExecutorTaskPhase::Cancelled,
        Ok(PbPhase::Running) => ExecutorTaskPhase::Running,
        Ok(PbPhase::Stopped) => ExecutorTaskPhase::Stopped,
        Ok(PbPhase::Success) => ExecutorTaskPhase::Success,
        Ok(PbPhase::Failed) => ExecutorTaskPhase::Failed,
        _ => return Err(bad(format!("{field}: invalid executor task phase {v}"))),
    })
}

pub fn run_phase_to_pb(p: RunPhase) -> PbRunPhase {
    match p {
        RunPhase::Setuperror => PbRunPhase::Setuperror,
        RunPhase::Queued => PbRunPhase::Queued,
        RunPhase::Cancelled => PbRunPhase::Cancelled,
        RunPhase::Running => PbRunPhase::Running,
        RunPhase::Finished => PbRunPhase::Finished,
    }
}

pub fn run_phase_from_pb(v: i32) -> Result<RunPhase, RunError> {
    Ok(match PbRunPhase::try_from(v) {
        Ok(PbRunPhase::Setuperror) => RunPhase::Setuperror,
        Ok(PbRunPhase::Queued) => RunPhase::Queued,
        Ok(PbRunPhase::Cancelled) => RunPhase::Cancelled,
        Ok(PbRunPhase::Running) => RunPhase::Running,
        Ok(PbRunPhase::Finished) => RunPhase::Finished,
        _ => return Err(bad(format!("invalid run phase {v}"))),
    })
}

pub fn run_result_to_pb(r: RunResult) -> PbRunResult {
    match r {
        RunResult::Unknown => PbRunResult::Unknown,
        RunResult::Stopped => PbRunResult::Stopped,
        RunResult::Success => PbRunResult::Success,
        RunResult::Failed => PbRunResult::Failed,
    }
}

fn task_status_to_pb(s: RunTaskStatus) -> PbTaskStatus {
    match s {
        RunTaskStatus::Notstarted => PbTaskStatus::Notstarted,
        RunTaskStatus::Skipped => PbTaskStatus::Skipped,
        RunTaskStatus::Cancelled => PbTaskStatus::Cancelled,
        RunTaskStatus::Running => PbTaskStatus::Running,
        RunTaskStatus::Stopped => PbTaskStatus::Stopped,
        RunTaskStatus::Success => PbTaskStatus::Success,
        RunTaskStatus::Failed => PbTaskStatus::Failed,
    }
}

fn fetch_to_pb(f: FetchPhase) -> PbFetch {
    match f {
        FetchPhase::Notstarted => PbFetch::Notstarted,
        FetchPhase::Finished => PbFetch::Finished,
        FetchPhase::Lost => PbFetch::Lost,
    }
}

fn condition_to_pb(c: DependCondition) -> pb::DependCondition {
    match c {
        DependCondition::OnSuccess => pb::DependCondition::OnSuccess,
        DependCondition::OnFailure => pb::DependCondition::OnFailure,
        DependCondition::OnSkipped => pb::DependCondition::OnSkipped,
    }
}

fn condition_from_pb(v: i32, field: &str) -> Result<DependCondition, RunError> {
    match pb::DependCondition::try_from(v) {
        Ok(pb::DependCondition::OnSuccess) => Ok(DependCondition::OnSuccess),
        Ok(pb::DependCondition::OnFailure) => Ok(DependCondition::OnFailure),
        Ok(pb::DependCondition::OnSkipped) => Ok(DependCondition::OnSkipped),
        _ => Err(bad(format!("{field}: invalid condition {v}"))),
    }
}

// ---- executors ------------------------------------------------------------------------------

/// An executor as registered; `last_status_update_time` is set by the runservice.
pub fn executor_from_pb(e: pb::Executor, now: Time) -> Result<Executor, RunError> {
    if e.id.is_empty() {
        return Err(bad("executor.id is required"));
    }
    let archs = e
        .archs
        .iter()
        .map(|a| arch_from_i32(*a, "executor.archs").map(str::to_owned))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|a| !a.is_empty())
        .collect();
    Ok(Executor {
        id: e.id,
        listen_url: e.listen_url,
        archs,
        labels: e.labels.into_iter().collect(),
        allow_privileged_containers: e.allow_privileged_containers,
        active_tasks_limit: e.active_tasks_limit,
        active_tasks: e.active_tasks,
        dynamic: e.dynamic,
        executor_group: e.executor_group,
        siblings_executors: e.siblings_executors,
        last_status_update_time: now,
    })
}

pub fn executor_to_pb(e: &Executor) -> pb::Executor {
    pb::Executor {
        id: e.id.clone(),
        listen_url: e.listen_url.clone(),
        archs: e.archs.iter().map(|a| arch_to_pb(a) as i32).collect(),
        labels: e.labels.clone().into_iter().collect(),
        allow_privileged_containers: e.allow_privileged_containers,
        active_tasks_limit: e.active_tasks_limit,
        active_tasks: e.active_tasks,
        dynamic: e.dynamic,
        executor_group: e.executor_group.clone(),
        siblings_executors: e.siblings_executors.clone(),
        last_status_update_time: timestamp(Some(e.last_status_update_time)),
    }
}

fn step_status_to_pb(s: &ExecutorTaskStepStatus) -> pb::ExecutorTaskStepStatus {
    pb::ExecutorTaskStepStatus {
        phase: phase_to_pb(s.phase) as i32,
        start_time: timestamp(s.start_time),
        end_time: timestamp(s.end_time),
        exit_status: s.exit_status,
    }
}

fn step_status_from_pb(
    s: Option<pb::ExecutorTaskStepStatus>,
    field: &str,
) -> Result<ExecutorTaskStepStatus, RunError> {
    let Some(s) = s else {
        return Ok(ExecutorTaskStepStatus::new());
    };
    Ok(ExecutorTaskStepStatus {
        phase: phase_from_pb(s.phase, field)?,
        start_time: from_timestamp(s.start_time.as_ref(), field)?,
        end_time: from_timestamp(s.end_time.as_ref(), field)?,
        exit_status: s.exit_status,
    })
}

pub fn task_status_to_pb_status(id: &str, s: &ExecutorTaskStatus) -> pb::ExecutorTaskStatus {
    pb::ExecutorTaskStatus {
        id: id.to_owned(),
        revision: 0,
        phase: phase_to_pb(s.phase) as i32,
        fail_error: s.fail_error.clone(),
        setup_step: Some(step_status_to_pb(&s.setup_step)),
        steps: s.steps.iter().map(step_status_to_pb).collect(),
        start_time: timestamp(s.start_time),
        end_time: timestamp(s.end_time),
    }
}

/// A status report of an executor; `expected_steps` guards against a wrong step count.
pub fn task_status_from_pb(
    s: pb::ExecutorTaskStatus,
    expected_steps: Option<usize>,
) -> Result<ExecutorTaskStatus, RunError> {
    if let Some(n) = expected_steps
        && s.steps.len() != n
    {
        return Err(bad(format!(
            "status reports {} steps, the task has {n}",
            s.steps.len()
        )));
    }
    Ok(ExecutorTaskStatus {
        phase: phase_from_pb(s.phase, "status.phase")?,
        fail_error: s.fail_error,
        setup_step: step_status_from_pb(s.setup_step, "status.setup_step")?,
        steps: s
            .steps
            .into_iter()
            .map(|st| step_status_from_pb(Some(st), "status.steps"))
            .collect::<Result<_, _>>()?,
        start_time: from_timestamp(s.start_time.as_ref(), "status.start_time")?,
        end_time: from_timestamp(s.end_time.as_ref(), "status.end_time")?,
    })
}

// ---- containers and steps -------------------------------------------------------------------

pub fn container_to_pb(c: &Container) -> pb::Container {
    pb::Container {
        image: c.image.clone(),
        environment: c.environment.clone().into_iter().collect(),
        user: c.user.clone(),
        privileged: c.privileged,
        entrypoint: c.entrypoint.clone(),
        volumes: c
            .volumes
            .iter()
            .map(|v| pb::Volume {
                path: v.path.clone(),
                tmpfs: Some(pb::TmpfsVolume { size: v.tmpfs_size }),
            })
            .collect(),
    }
}

pub fn container_from_pb(c: pb::Container) -> Result<Container, RunError> {
    if c.image.is_empty() {
        return Err(bad("container.image is required"));
    }
    Ok(Container {
        image: c.image,
        environment: c.environment.into_iter().collect(),
        user: c.user,
        privileged: c.privileged,
        entrypoint: c.entrypoint,
        volumes: c
            .volumes
            .into_iter()
            .map(|v| {
                if v.path.is_empty() {
                    return Err(bad("volume.path is required"));
                }
                let Some(tmpfs) = v.tmpfs else {
                    return Err(bad(format!("volume {}: only tmpfs volumes exist", v.path)));
                };
                Ok(Volume {
                    path: v.path,
                    tmpfs_size: tmpfs.size,
                })
            })
            .collect::<Result<_, _>>()?,
    })
}

fn contents_to_pb(c: &[SaveContent]) -> Vec<pb::SaveContent> {
    c.iter()
        .map(|c| pb::SaveContent {
            source_dir: c.source_dir.clone(),
            dest_dir: c.dest_dir.clone(),
            paths: c.paths.clone(),
        })
        .collect()
}

fn contents_from_pb(c: Vec<pb::SaveContent>) -> Vec<SaveContent> {
    c.into_iter()
        .map(|c| SaveContent {
            source_dir: c.source_dir,
            dest_dir: c.dest_dir,
            paths: c.paths,
        })
        .collect()
}

pub fn step_to_pb(s: &Step) -> pb::Step {
    use pb::step::Step as S;
    let step = match s {
        Step::Run {
            name,
            command,
            environment,
            working_dir,
            shell,
            tty,
        } => S::Run(pb::RunStep {
            name: name.clone(),
            command: command.clone(),
            environment: environment.clone().into_iter().collect(),
            working_dir: working_dir.clone(),
            shell: shell.clone(),
            tty: Some(*tty),
        }),
        Step::SaveToWorkspace { contents } => S::SaveToWorkspace(pb::SaveToWorkspaceStep {
            contents: contents_to_pb(contents),
        }),
        Step::RestoreWorkspace { dest_dir } => S::RestoreWorkspace(pb::RestoreWorkspaceStep {
            dest_dir: dest_dir.clone(),
        }),
        Step::SaveCache { key, contents } => S::SaveCache(pb::SaveCacheStep {
            key: key.clone(),
            contents: contents_to_pb(contents),
        }),
        Step::RestoreCache { keys, dest_dir } => S::RestoreCache(pb::RestoreCacheStep {
            keys: keys.clone(),
            dest_dir: dest_dir.clone(),
        }),
    };
    pb::Step { step: Some(step) }
}

pub fn step_from_pb(s: pb::Step) -> Result<Step, RunError> {
    use pb::step::Step as S;
    Ok(match s.step.ok_or_else(|| bad("step: no step type set"))? {
        S::Run(r) => {
            if r.command.is_empty() {
                return Err(bad(format!("run step {:?}: command is required", r.name)));
            }
            Step::Run {
                name: r.name,
                command: r.command,
                environment: r.environment.into_iter().collect(),
                working_dir: r.working_dir,
                shell: r.shell,
                tty: r.tty.unwrap_or(true),
            }
        }
        S::SaveToWorkspace(w) => Step::SaveToWorkspace {
            contents: contents_from_pb(w.contents),
        },
        S::RestoreWorkspace(w) => Step::RestoreWorkspace {
            dest_dir: w.dest_dir,
        },
        S::SaveCache(c) => {
            if c.key.is_empty() {
                return Err(bad("save_cache step: key is required"));
            }
            Step::SaveCache {
                key: c.key,
                contents: contents_from_pb(c.contents),
            }
        }
        S::RestoreCache(c) => {
            if c.keys.is_empty() {
                return Err(bad("restore_cache step: at least one key is required"));
            }
            Step::RestoreCache {
                keys: c.keys,
                dest_dir: c.dest_dir,
            }
        }
    })
}

/// An ET with its spec data, as sent to the executor.
pub fn executor_task_to_pb(et: &ExecutorTask, spec: &TaskSpecData) -> pb::ExecutorTask {
    pb::ExecutorTask {
        id: et.id.clone(),
        spec: Some(pb::ExecutorTaskSpec {
            executor_id: et.spec.executor_id.clone(),
            run_id: et.spec.run_id.clone(),
            stop: et.spec.stop,
            task_name: spec.task_name.clone(),
            arch: arch_to_pb(&spec.arch) as i32,
            containers: spec.containers.iter().map(container_to_pb).collect(),
            environment: spec.environment.clone().into_iter().collect(),
            working_dir: spec.working_dir.clone(),
            shell: spec.shell.clone(),
            user: spec.user.clone(),
            privileged: spec.privileged,
            workspace_operations: spec
                .workspace_operations
                .iter()
                .map(|w| pb::WorkspaceOperation {
                    task_id: w.task_id.clone(),
                    step: u32::try_from(w.step).unwrap_or(u32::MAX),
                    overwrite: w.overwrite,
                })
                .collect(),
            docker_registries_auth: Default::default(),
            cache_prefix: spec.cache_prefix.clone(),
            steps: spec.steps.iter().map(step_to_pb).collect(),
        }),
        status: Some(task_status_to_pb_status(&et.id, &et.status)),
    }
}

// ---- runs -----------------------------------------------------------------------------------

fn run_task_step_to_pb(s: &RunTaskStep) -> pb::RunTaskStep {
    pb::RunTaskStep {
        phase: phase_to_pb(s.phase) as i32,
        log_phase: fetch_to_pb(s.log_phase) as i32,
        exit_status: s.exit_status,
        start_time: timestamp(s.start_time),
        end_time: timestamp(s.end_time),
    }
}

fn run_task_to_pb(t: &RunTask) -> pb::RunTask {
    pb::RunTask {
        id: t.id.clone(),
        status: task_status_to_pb(t.status) as i32,
        annotations: t.annotations.clone().into_iter().collect(),
        skip: t.skip,
        waiting_approval: t.waiting_approval,
        approved: t.approved,
        setup_step: Some(run_task_step_to_pb(&t.setup_step)),
        steps: t.steps.iter().map(run_task_step_to_pb).collect(),
        workspace_archives: t
            .workspace_archives
            .iter()
            .map(|i| u32::try_from(*i).unwrap_or(u32::MAX))
            .collect(),
        workspace_archives_phase: t
            .workspace_archives_phase
            .iter()
            .map(|p| fetch_to_pb(*p) as i32)
            .collect(),
        start_time: timestamp(t.start_time),
        end_time: timestamp(t.end_time),
        fail_error: t.fail_error.clone(),
    }
}

pub fn run_to_pb(r: &Run) -> pb::Run {
    pb::Run {
        id: r.id.clone(),
        name: r.name.clone(),
        counter: r.counter,
        group: r.group.clone(),
        annotations: r.annotations.clone().into_iter().collect(),
        phase: run_phase_to_pb(r.phase) as i32,
        result: run_result_to_pb(r.result) as i32,
        stop: r.stop,
        tasks: r
            .tasks
            .iter()
            .map(|(k, t)| (k.clone(), run_task_to_pb(t)))
            .collect(),
        enqueue_time: timestamp(r.enqueue_time),
        start_time: timestamp(r.start_time),
        end_time: timestamp(r.end_time),
        archived: r.archived,
    }
}

pub fn run_config_task_to_pb(t: &RunConfigTask) -> pb::RunConfigTask {
    pb::RunConfigTask {
        level: t.level,
        id: t.id.clone(),
        name: t.name.clone(),
        depends: t
            .depends
            .iter()
            .map(|(k, d)| {
                (
                    k.clone(),
                    pb::RunConfigTaskDepend {
                        task_id: d.task_id.clone(),
                        conditions: d
                            .conditions
                            .iter()
                            .map(|c| condition_to_pb(*c) as i32)
                            .collect(),
                    },
                )
            })
            .collect(),
        runtime: Some(pb::Runtime {
            r#type: pb::RuntimeType::Pod as i32,
            arch: arch_to_pb(&t.runtime.arch) as i32,
            containers: t.runtime.containers.iter().map(container_to_pb).collect(),
        }),
        environment: t.environment.clone().into_iter().collect(),
        working_dir: t.working_dir.clone(),
        shell: t.shell.clone(),
        user: t.user.clone(),
        steps: t.steps.iter().map(step_to_pb).collect(),
        ignore_failure: t.ignore_failure,
        needs_approval: t.needs_approval,
        min_approvers: t.min_approvers,
        skip: t.skip,
        docker_registries_auth: Default::default(),
        variable_refs: None,
    }
}

/// A task of a CreateRun request.
pub fn run_config_task_from_pb(t: pb::RunConfigTask) -> Result<RunConfigTask, RunError> {
    if t.id.is_empty() {
        return Err(bad(format!("task {:?}: id is required", t.name)));
    }
    if t.name.is_empty() {
        return Err(bad(format!("task {}: name is required", t.id)));
    }
    let runtime = t
        .runtime
        .ok_or_else(|| bad(format!("task {:?}: runtime is required", t.name)))?;
    if runtime.containers.is_empty() {
        return Err(bad(format!(
            "task {:?}: at least one container is required",
            t.name
        )));
    }
    let depends = t
        .depends
        .into_iter()
        .map(|(k, d)| {
            let conditions = d
                .conditions
                .iter()
                .map(|c| condition_from_pb(*c, "depends.conditions"))
                .collect::<Result<Vec<_>, _>>()?;
            let task_id = if d.task_id.is_empty() {
                k.clone()
            } else {
                d.task_id
            };
            Ok((
                k,
                RunConfigTaskDepend {
                    task_id,
                    conditions,
                },
            ))
        })
        .collect::<Result<BTreeMap<_, _>, RunError>>()?;
    Ok(RunConfigTask {
        level: 0,
        id: t.id,
        name: t.name.clone(),
        depends,
        runtime: Runtime {
            arch: arch_from_i32(runtime.arch, "runtime.arch")?.to_owned(),
            containers: runtime
                .containers
                .into_iter()
                .map(container_from_pb)
                .collect::<Result<_, _>>()?,
        },
        environment: t.environment.into_iter().collect(),
        working_dir: t.working_dir,
        shell: t.shell,
        user: t.user,
        steps: t
            .steps
            .into_iter()
            .map(step_from_pb)
            .collect::<Result<_, _>>()
            .map_err(|e| bad(format!("task {:?}: {e}", t.name)))?,
        ignore_failure: t.ignore_failure,
        needs_approval: t.needs_approval,
        min_approvers: t.min_approvers.max(1),
        skip: t.skip,
    })
}

pub fn run_config_to_pb(rc: &RunConfig) -> pb::RunConfig {
    pb::RunConfig {
        id: rc.id.clone(),
        name: rc.name.clone(),
        group: rc.group.clone(),
        setup_errors: rc.setup_errors.clone(),
        annotations: rc.annotations.clone().into_iter().collect(),
        static_environment: rc.static_environment.clone().into_iter().collect(),
        environment: rc.environment.clone().into_iter().collect(),
        tasks: rc
            .tasks
            .iter()
            .map(|(k, t)| (k.clone(), run_config_task_to_pb(t)))
            .collect(),
        cache_group: rc.cache_group.clone(),
    }
}

pub fn run_event_to_pb(e: &RunEvent) -> pb::RunEvent {
    pb::RunEvent {
        sequence: e.sequence.clone(),
        run_id: e.run_id.clone(),
        group: e.group.clone(),
        phase: run_phase_to_pb(e.phase) as i32,
        result: run_result_to_pb(e.result) as i32,
        time: timestamp(Some(e.time)),
    }
}

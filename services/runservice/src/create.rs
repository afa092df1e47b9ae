//! Building runs: creation from run config tasks (spec 20 §3.1) and re-creation (restart,
//! §3.2), as pure functions; ids, counters and storage are the caller's.

use std::collections::{BTreeMap, BTreeSet};

use crate::dag;
use crate::types::{
    FetchPhase, Run, RunConfig, RunConfigTask, RunPhase, RunResult, RunTask, RunTaskStatus,
    RunTaskStep, Step, Time,
};

/// What a caller asks to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateRunRequest {
    pub name: String,
    pub group: String,
    pub tasks: Vec<RunConfigTask>,
    pub setup_errors: Vec<String>,
    pub static_environment: BTreeMap<String, String>,
    pub environment: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub cache_group: String,
}

/// Errors of run building, named for what the caller does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    BadRequest(String),
    #[error("run cannot be restarted: {0}")]
    NotRestartable(String),
}

/// A fresh run task for `ct`: `skipped` (with nothing to fetch) when its `when` failed.
pub fn new_run_task(ct: &RunConfigTask) -> RunTask {
    let workspace_archives: Vec<usize> = ct
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s, Step::SaveToWorkspace { .. }))
        .map(|(i, _)| i)
        .collect();
    let mut t = RunTask {
        id: ct.id.clone(),
        status: RunTaskStatus::Notstarted,
        annotations: BTreeMap::new(),
        skip: ct.skip,
        waiting_approval: false,
        approved: false,
        setup_step: RunTaskStep::new(),
        steps: ct.steps.iter().map(|_| RunTaskStep::new()).collect(),
        workspace_archives_phase: vec![FetchPhase::Notstarted; workspace_archives.len()],
        workspace_archives,
        start_time: None,
        end_time: None,
        fail_error: String::new(),
    };
    if ct.skip {
        t.status = RunTaskStatus::Skipped;
        t.finish_fetch_phases();
    }
    t
}

/// Validates a request and builds the run and its config (same id). DAG problems become
/// setup errors (the run is created in `setuperror` with no tasks), not request errors.
pub fn new_run(
    id: &str,
    counter: u64,
    req: CreateRunRequest,
    now: Time,
) -> Result<(Run, RunConfig), BuildError> {
    if !req.group.starts_with('/') || req.group.len() < 2 {
        return Err(BuildError::BadRequest(format!(
            "run group {:?} must be an absolute path",
            req.group
        )));
    }
    if req.tasks.is_empty() && req.setup_errors.is_empty() {
        return Err(BuildError::BadRequest(
            "a run needs tasks or setup errors".to_owned(),
        ));
    }
    let mut setup_errors = req.setup_errors;
    let mut tasks: BTreeMap<String, RunConfigTask> = BTreeMap::new();
    for t in req.tasks {
        if t.id.is_empty() {
            setup_errors.push(format!("task {:?} has no id", t.name));
            continue;
        }
        if let Some(prev) = tasks.insert(t.id.clone(), t) {
            setup_errors.push(format!("duplicate task id {:?} ({:?})", prev.id, prev.name));
        }
    }
    if setup_errors.is_empty() {
        setup_errors.extend(dag::check(&tasks));
    }
    if setup_errors.is_empty() {
        dag::set_levels(&mut tasks);
    } else {
        tasks.clear();
    }
    let phase = if setup_errors.is_empty() {
        RunPhase::Queued
    } else {
        RunPhase::Setuperror
    };
    let run = Run {
        id: id.to_owned(),
        name: req.name.clone(),
        counter,
        group: req.group.clone(),
        annotations: req.annotations.clone(),
        phase,
        result: RunResult::Unknown,
        stop: false,
        tasks: tasks
            .values()
            .map(|ct| (ct.id.clone(), new_run_task(ct)))
            .collect(),
        enqueue_time: Some(now),
        start_time: None,
        end_time: if phase.is_terminal() { Some(now) } else { None },
        archived: false,
    };
    let rc = RunConfig {
        id: id.to_owned(),
        name: req.name,
        group: req.group,
        setup_errors,
        annotations: req.annotations,
        static_environment: req.static_environment,
        environment: req.environment,
        tasks,
        cache_group: req.cache_group,
    };
    Ok((run, rc))
}

/// What a restart asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecreateRequest {
    /// Restart every task (else only the failed ones and their descendants).
    pub from_start: bool,
    /// Replaces the run config's `environment` when given.
    pub environment: Option<BTreeMap<String, String>>,
}

/// Whether `run` can restart from scratch: terminal and not a setup error.
pub fn can_restart_from_scratch(run: &Run) -> bool {
    run.phase.is_terminal() && run.phase != RunPhase::Setuperror
}

/// Whether `run` can restart from its failed tasks: restartable from scratch, not a success,
/// and every successful task fully fetched, its archives stored, not lost (improvement).
pub fn can_restart_from_failed(run: &Run) -> Result<(), String> {
    if !can_restart_from_scratch(run) {
        return Err("the run is not finished".to_owned());
    }
    if run.result == RunResult::Success {
        return Err("the run succeeded: restart it from the start".to_owned());
    }
    for t in run.tasks.values() {
        if t.status != RunTaskStatus::Success {
            continue;
        }
        if !t.fetch_done() {
            return Err(format!("task {} is not fully fetched yet", t.id));
        }
        if t.workspace_archives_phase.contains(&FetchPhase::Lost) {
            return Err(format!("the workspace archive of task {} was lost", t.id));
        }
    }
    Ok(())
}

/// Builds the restarted run and config with `new_id`. Tasks not `success` (all of them when
/// `from_start`) and every descendant of a renewed task get new ids from `new_task_id`;
/// succeeded tasks keep their ids and state, so they share logs and archives with the source.
pub fn recreate_run(
    src_run: &Run,
    src_rc: &RunConfig,
    new_id: &str,
    counter: u64,
    req: RecreateRequest,
    now: Time,
    mut new_task_id: impl FnMut() -> String,
) -> Result<(Run, RunConfig), BuildError> {
    let RecreateRequest {
        from_start,
        environment,
    } = req;
    if from_start {
        if !can_restart_from_scratch(src_run) {
            return Err(BuildError::NotRestartable(
                "the run is not finished or had setup errors".to_owned(),
            ));
        }
    } else {
        can_restart_from_failed(src_run).map_err(BuildError::NotRestartable)?;
    }
    let mut renewed: BTreeSet<String> = src_rc
        .tasks
        .keys()
        .filter(|id| {
            from_start
                || src_run
                    .tasks
                    .get(*id)
                    .is_none_or(|t| t.status != RunTaskStatus::Success)
        })
        .cloned()
        .collect();
    // Every descendant of a renewed task is renewed too.
    for id in src_rc.tasks.keys() {
        if dag::ancestors(&src_rc.tasks, id)
            .iter()
            .any(|a| renewed.contains(a))
        {
            renewed.insert(id.clone());
        }
    }
    let id_map: BTreeMap<String, String> = src_rc
        .tasks
        .keys()
        .map(|id| {
            let new = if renewed.contains(id) {
                new_task_id()
            } else {
                id.clone()
            };
            (id.clone(), new)
        })
        .collect();
    let mut rc = src_rc.clone();
    rc.id = new_id.to_owned();
    if let Some(env) = environment {
        rc.environment = env;
    }
    rc.tasks = src_rc
        .tasks
        .values()
        .map(|ct| {
            let mut ct = ct.clone();
            ct.id.clone_from(&id_map[&ct.id]);
            ct.depends = ct
                .depends
                .into_values()
                .map(|mut d| {
                    d.task_id.clone_from(&id_map[&d.task_id]);
                    (d.task_id.clone(), d)
                })
                .collect();
            (ct.id.clone(), ct)
        })
        .collect();
    let tasks = rc
        .tasks
        .values()
        .map(|ct| {
            let task = match src_run.tasks.get(&ct.id) {
                Some(kept) if !renewed.contains(&ct.id) => kept.clone(),
                _ => new_run_task(ct),
            };
            (ct.id.clone(), task)
        })
        .collect();
    let run = Run {
        id: new_id.to_owned(),
        counter,
        phase: RunPhase::Queued,
        result: RunResult::Unknown,
        stop: false,
        archived: false,
        tasks,
        enqueue_time: Some(now),
        start_time: None,
        end_time: None,
        ..src_run.clone()
    };
    Ok((run, rc))
}

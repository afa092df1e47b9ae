//! The task scheduler as pure functions (spec 20 §4): given a run, its config, the executor
//! tasks (ETs) scheduled for it and the executors, compute the next run state and the ETs to
//! create or stop. `scheduleRun` (the IO around it) lives elsewhere; nothing here does IO, so
//! every case is table-tested.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::dag;
use crate::types::{
    DependCondition, Executor, ExecutorTask, ExecutorTaskPhase, ExecutorTaskSpec,
    ExecutorTaskStatus, ExecutorTaskStepStatus, Run, RunConfig, RunConfigTask, RunPhase, RunResult,
    RunTaskStatus, Time,
};

/// Why no executor could take a task (logged and counted by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoExecutor {
    NoneAlive,
    Privileged,
    Arch,
    Capacity,
}

/// The outcome of one scheduling pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The run after advancing; save it only if it differs from the input.
    pub run: Run,
    /// ETs to create (only if absent).
    pub create: Vec<ExecutorTask>,
    /// ETs whose `spec.stop` must be set.
    pub stop: Vec<String>,
    /// Set when dispatch stopped because no executor fits the next task.
    pub blocked: Option<(String, NoExecutor)>,
}

/// Inputs of [`plan`].
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub run: &'a Run,
    pub rc: &'a RunConfig,
    /// Every ET in KV whose id is a task of the run, finished ones included.
    pub ets: &'a BTreeMap<String, ExecutorTask>,
    pub executors: &'a [Executor],
    /// ETs per executor id over the whole store (capacity counts them).
    pub executor_load: &'a BTreeMap<String, u32>,
    pub now: Time,
    pub alive_timeout: Duration,
}

/// Advances the run to its fixed point and decides what to dispatch and stop.
pub fn plan(input: PlanInput<'_>) -> Plan {
    let mut run = input.run.clone();
    // advanceRunTasks reaches its fixed point in one pass (level order); advanceRun may then
    // change the result, which may cancel roots: a few rounds settle everything.
    for _ in 0..4 {
        let before = run.clone();
        advance_run(&mut run, input.rc, input.ets, input.now);
        if run.phase == RunPhase::Running {
            run = advance_run_tasks(&run, input.rc, input.ets);
        }
        if run == before {
            break;
        }
    }
    let mut out = Plan {
        run,
        create: Vec::new(),
        stop: Vec::new(),
        blocked: None,
    };
    if out.run.stop {
        out.stop = input
            .ets
            .values()
            .filter(|et| !et.spec.stop)
            .map(|et| et.id.clone())
            .collect();
    }
    if out.run.phase == RunPhase::Running && !out.run.stop {
        let mut load = input.executor_load.clone();
        for task_id in tasks_to_run(&out.run, input.rc, input.ets) {
            let Some(ct) = input.rc.tasks.get(&task_id) else {
                continue;
            };
            match choose_executor(input.executors, ct, &load, input.now, input.alive_timeout) {
                Ok(executor) => {
                    *load.entry(executor.id.clone()).or_default() += 1;
                    out.create
                        .push(new_executor_task(&out.run, ct, &executor.id));
                }
                Err(reason) => {
                    out.blocked = Some((task_id, reason));
                    break;
                }
            }
        }
    }
    out
}

/// The only place result and phase change (spec 20 §4.2).
pub fn advance_run(run: &mut Run, rc: &RunConfig, ets: &BTreeMap<String, ExecutorTask>, now: Time) {
    if run.phase == RunPhase::Running && run.result == RunResult::Unknown {
        let failed = run.tasks.values().any(|t| {
            t.status == RunTaskStatus::Failed
                && !rc.tasks.get(&t.id).is_some_and(|ct| ct.ignore_failure)
        });
        if failed {
            run.result = RunResult::Failed;
        } else if run.tasks_finished() {
            run.result = RunResult::Success;
        } else if run.stop {
            run.result = RunResult::Stopped;
        }
    }
    // Finished only once no ET of the run is left in KV: all logs and archives are stored.
    if run.result.is_set()
        && run.tasks_finished()
        && run.phase == RunPhase::Running
        && ets.is_empty()
    {
        run.phase = RunPhase::Finished;
        run.end_time = Some(now);
    }
    if run.phase.is_terminal() {
        for t in run.tasks.values_mut() {
            if t.status == RunTaskStatus::Notstarted {
                t.finish_fetch_phases();
            }
        }
    }
}

/// Whether every parent's conditions hold for `ct` (AND across parents, OR within one
/// parent's conditions; cancelled or stopped parents match nothing).
pub fn conditions_match(run: &Run, ct: &RunConfigTask) -> bool {
    ct.depends.iter().all(|(parent, dep)| {
        let Some(p) = run.tasks.get(parent) else {
            return false;
        };
        let conditions: &[DependCondition] = if dep.conditions.is_empty() {
            &[DependCondition::OnSuccess]
        } else {
            &dep.conditions
        };
        conditions.iter().any(|c| {
            matches!(
                (c, p.status),
                (DependCondition::OnSuccess, RunTaskStatus::Success)
                    | (DependCondition::OnFailure, RunTaskStatus::Failed)
                    | (DependCondition::OnSkipped, RunTaskStatus::Skipped)
            )
        })
    })
}

fn parents_done(run: &Run, ct: &RunConfigTask) -> bool {
    ct.depends.keys().all(|p| {
        run.tasks
            .get(p)
            .is_some_and(|t| t.status.is_finished() && t.archives_done())
    })
}

/// Decides not-started tasks from the current run while writing a copy (spec 20 §4.3), in
/// level order so one pass reaches the fixed point: run-level facts (`stop`, result) come from
/// the input, parent states from the copy (parents sit at lower levels, already final).
pub fn advance_run_tasks(cur: &Run, rc: &RunConfig, ets: &BTreeMap<String, ExecutorTask>) -> Run {
    let mut next = cur.clone();
    for id in dag::level_order(&rc.tasks) {
        let Some(ct) = rc.tasks.get(&id) else {
            continue;
        };
        let Some(status) = next.tasks.get(&id).map(|t| t.status) else {
            continue;
        };
        if status != RunTaskStatus::Notstarted {
            continue;
        }
        let has_et = ets.contains_key(&id);
        let mut new_status = None;
        if cur.stop && !has_et {
            new_status = Some(RunTaskStatus::Skipped);
        } else if ct.depends.is_empty() && !ct.skip && cur.result.is_set() && !has_et {
            // After a failure no new independent root starts; children of started roots are
            // still evaluated, so the run continues wherever conditions allow.
            new_status = Some(RunTaskStatus::Cancelled);
        } else if parents_done(&next, ct) {
            if !conditions_match(&next, ct) {
                new_status = Some(RunTaskStatus::Skipped);
            } else if ct.needs_approval
                && let Some(t) = next.tasks.get_mut(&id)
                && !t.waiting_approval
                && !t.approved
            {
                t.waiting_approval = true;
            }
        }
        if let Some(s) = new_status
            && let Some(t) = next.tasks.get_mut(&id)
        {
            t.status = s;
            // Nothing will be fetched for it: mark the fetch phases done at once.
            t.finish_fetch_phases();
        }
    }
    next
}

/// Tasks ready to dispatch, in (level, id) order (spec 20 §4.4).
pub fn tasks_to_run(
    run: &Run,
    rc: &RunConfig,
    ets: &BTreeMap<String, ExecutorTask>,
) -> Vec<String> {
    dag::level_order(&rc.tasks)
        .into_iter()
        .filter(|id| {
            let (Some(t), Some(ct)) = (run.tasks.get(id), rc.tasks.get(id)) else {
                return false;
            };
            !ct.skip
                && t.status == RunTaskStatus::Notstarted
                && !ets.contains_key(id)
                && parents_done(run, ct)
                && conditions_match(run, ct)
                && (!ct.needs_approval || t.approved)
        })
        .collect()
}

/// Picks an executor for `ct` (spec 20 §4.6): alive, privileged-capable when needed,
/// arch-compatible, under capacity; the least loaded wins, ties by id.
pub fn choose_executor<'a>(
    executors: &'a [Executor],
    ct: &RunConfigTask,
    load: &BTreeMap<String, u32>,
    now: Time,
    alive_timeout: Duration,
) -> Result<&'a Executor, NoExecutor> {
    let alive: Vec<&Executor> = executors
        .iter()
        .filter(|e| {
            now.signed_duration_since(e.last_status_update_time)
                .to_std()
                .map_or(true, |age| age <= alive_timeout)
        })
        .collect();
    if alive.is_empty() {
        return Err(NoExecutor::NoneAlive);
    }
    let privileged = ct.privileged();
    let allowed: Vec<&Executor> = alive
        .into_iter()
        .filter(|e| !privileged || e.allow_privileged_containers)
        .collect();
    if allowed.is_empty() {
        return Err(NoExecutor::Privileged);
    }
    let arch = ct.runtime.arch.as_str();
    let fitting: Vec<&Executor> = allowed
        .into_iter()
        .filter(|e| arch.is_empty() || e.archs.iter().any(|a| a == arch))
        .collect();
    if fitting.is_empty() {
        return Err(NoExecutor::Arch);
    }
    let count = |e: &Executor| load.get(&e.id).copied().unwrap_or(0).max(e.active_tasks);
    fitting
        .into_iter()
        .filter(|e| e.active_tasks_limit == 0 || count(e) < e.active_tasks_limit)
        .min_by(|a, b| count(a).cmp(&count(b)).then_with(|| a.id.cmp(&b.id)))
        .ok_or(NoExecutor::Capacity)
}

/// A new ET for `ct` on `executor_id`; id = run task id.
pub fn new_executor_task(run: &Run, ct: &RunConfigTask, executor_id: &str) -> ExecutorTask {
    ExecutorTask {
        id: ct.id.clone(),
        spec: ExecutorTaskSpec {
            executor_id: executor_id.to_owned(),
            run_id: run.id.clone(),
            stop: false,
        },
        status: ExecutorTaskStatus {
            phase: ExecutorTaskPhase::Notstarted,
            fail_error: String::new(),
            setup_step: ExecutorTaskStepStatus::new(),
            steps: ct
                .steps
                .iter()
                .map(|_| ExecutorTaskStepStatus::new())
                .collect(),
            start_time: None,
            end_time: None,
        },
    }
}

/// Applies an executor's report to the run task (spec 20 §6.3). A disallowed transition is
/// ignored and reported as `Err` with the reason, for a warning.
pub fn update_run_task_status(run: &mut Run, et: &ExecutorTask) -> Result<(), String> {
    let Some(t) = run.tasks.get_mut(&et.id) else {
        return Err(format!("run {} has no task {}", run.id, et.id));
    };
    t.start_time = et.status.start_time;
    t.end_time = et.status.end_time;
    use ExecutorTaskPhase as P;
    use RunTaskStatus as S;
    let allowed_from: &[S] = match et.status.phase {
        P::Notstarted => &[S::Notstarted],
        P::Cancelled => &[S::Cancelled, S::Notstarted],
        P::Running => &[S::Running, S::Notstarted],
        P::Stopped => &[S::Stopped, S::Notstarted, S::Running],
        P::Success => &[S::Success, S::Notstarted, S::Running],
        P::Failed => &[S::Failed, S::Notstarted, S::Running],
    };
    if !allowed_from.contains(&t.status) {
        return Err(format!(
            "task {}: ignoring transition {:?} -> {:?}",
            t.id, t.status, et.status.phase
        ));
    }
    t.status = match et.status.phase {
        P::Notstarted => S::Notstarted,
        P::Cancelled => S::Cancelled,
        P::Running => S::Running,
        P::Stopped => S::Stopped,
        P::Success => S::Success,
        P::Failed => S::Failed,
    };
    t.fail_error.clone_from(&et.status.fail_error);
    t.setup_step.phase = et.status.setup_step.phase;
    t.setup_step.start_time = et.status.setup_step.start_time;
    t.setup_step.end_time = et.status.setup_step.end_time;
    for (step, st) in t.steps.iter_mut().zip(&et.status.steps) {
        step.phase = st.phase;
        step.start_time = st.start_time;
        step.end_time = st.end_time;
        step.exit_status = st.exit_status;
    }
    Ok(())
}

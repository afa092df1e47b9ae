//! Project runs, addressed by their per-project number (the runservice counter of the root
//! group `/project/<project id>`): listing, reading, run actions (restart, cancel, stop), task
//! approval (recording the caller in the `approvers` annotation; the scheduler approves) and
//! step logs. Readers of the project may read runs; members act on them.

use agola_common::ApiError;
use agola_proto::common::v1 as pbc;
use agola_proto::gateway::v1 as pb;
use agola_proto::runservice::v1 as rs;

use crate::auth::{Access, Caller};
use crate::backends::Backends;
use crate::projects::{project_with, readable_project};

/// The root run group of a project.
pub fn project_group(project_id: &str) -> String {
    format!("/project/{project_id}")
}

/// Annotation holding the JSON array of the user ids that approved a task.
pub const APPROVERS_ANNOTATION: &str = "approvers";

/// How many times an approval retries after a concurrent update.
const APPROVE_ATTEMPTS: usize = 5;

/// Filters of `GET /projects/{ref}/runs`.
#[derive(Debug, Default)]
pub struct ListFilter {
    /// Group path below the project, e.g. `branch/main`.
    pub subgroup: String,
    pub phases: Vec<pbc::RunPhase>,
    pub results: Vec<pbc::RunResult>,
    /// Exclusive start run number.
    pub start: Option<u64>,
    pub limit: u32,
    pub asc: bool,
}

fn approvers(task: &pbc::RunTask) -> Result<Vec<String>, ApiError> {
    match task.annotations.get(APPROVERS_ANNOTATION) {
        None => Ok(Vec::new()),
        Some(s) if s.is_empty() => Ok(Vec::new()),
        Some(s) => serde_json::from_str(s).map_err(|e| {
            ApiError::internal(format!(
                "task {} has an invalid approvers annotation: {e}",
                task.id
            ))
        }),
    }
}

fn summary(run: &pbc::Run) -> pb::RunSummary {
    let mut waiting: Vec<String> = run
        .tasks
        .values()
        .filter(|t| t.waiting_approval)
        .map(|t| t.id.clone())
        .collect();
    waiting.sort();
    pb::RunSummary {
        number: run.counter,
        name: run.name.clone(),
        annotations: run.annotations.clone(),
        phase: run.phase,
        result: run.result,
        stopping: run.stop && run.phase() == pbc::RunPhase::Running,
        tasks_waiting_approval: waiting,
        enqueue_time: run.enqueue_time,
        start_time: run.start_time,
        end_time: run.end_time,
    }
}

/// The public view of a run with its tasks (names and dependencies from the run config).
pub fn run_view(run: &pbc::Run, rc: Option<&pbc::RunConfig>, setup_errors: Vec<String>) -> pb::Run {
    let s = summary(run);
    let finished = run.phase() == pbc::RunPhase::Finished;
    let tasks = run
        .tasks
        .iter()
        .map(|(id, t)| {
            let rct = rc.and_then(|rc| rc.tasks.get(id));
            let mut depends: Vec<pb::RunTaskDepend> = rct
                .map(|c| {
                    c.depends
                        .values()
                        .map(|d| pb::RunTaskDepend {
                            task_id: d.task_id.clone(),
                            conditions: d.conditions.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            depends.sort_by(|a, b| a.task_id.cmp(&b.task_id));
            let approvers_count =
                approvers(t).map_or(0, |a| u32::try_from(a.len()).unwrap_or(u32::MAX));
            (
                id.clone(),
                pb::RunTask {
                    id: id.clone(),
                    name: rct.map(|c| c.name.clone()).unwrap_or_default(),
                    status: t.status,
                    level: rct.map_or(0, |c| c.level),
                    depends,
                    waiting_approval: t.waiting_approval,
                    approved: t.approved,
                    approval_annotations: t.annotations.clone(),
                    min_approvers: rct.map_or(0, |c| c.min_approvers),
                    approvers_count,
                    start_time: t.start_time,
                    end_time: t.end_time,
                },
            )
        })
        .collect();
    let all_succeeded = run
        .tasks
        .values()
        .all(|t| t.status() == pbc::RunTaskStatus::Success);
    pb::Run {
        number: s.number,
        name: s.name,
        annotations: s.annotations,
        phase: s.phase,
        result: s.result,
        setup_errors,
        stopping: s.stopping,
        enqueue_time: s.enqueue_time,
        start_time: s.start_time,
        end_time: s.end_time,
        tasks,
        tasks_waiting_approval: s.tasks_waiting_approval,
        can_restart_from_scratch: finished && !run.archived,
        can_restart_from_failed_tasks: finished && !run.archived && !all_succeeded,
    }
}

async fn run_by_number(
    b: &Backends,
    project_id: &str,
    number: u64,
) -> Result<(pbc::Run, Option<pbc::RunConfig>), ApiError> {
    let res = b
        .rs()?
        .get_run_by_group(rs::GetRunByGroupRequest {
            group: project_group(project_id),
            counter: number,
        })
        .await?
        .into_inner();
    let run = res
        .run
        .ok_or_else(|| ApiError::internal("runservice answered no run"))?;
    Ok((run, res.run_config))
}

/// `GET /projects/{ref}/runs`.
pub async fn list(
    b: &Backends,
    caller: &Caller,
    project_ref: &str,
    filter: ListFilter,
) -> Result<Vec<pb::RunSummary>, ApiError> {
    let (p, _) = readable_project(b, caller, project_ref).await?;
    let mut group = project_group(&p.id);
    let sub = filter.subgroup.trim_matches('/');
    if !sub.is_empty() {
        group = format!("{group}/{sub}");
    }
    let start_run_id = match filter.start {
        None => String::new(),
        Some(n) => run_by_number(b, &p.id, n).await?.0.id,
    };
    let runs = b
        .rs()?
        .list_runs(rs::ListRunsRequest {
            phases: filter.phases.into_iter().map(Into::into).collect(),
            results: filter.results.into_iter().map(Into::into).collect(),
            groups: vec![group],
            last_run: false,
            start_run_id,
            limit: filter.limit,
            ascending: filter.asc,
            change_groups: Vec::new(),
        })
        .await?
        .into_inner()
        .runs;
    Ok(runs.iter().map(summary).collect())
}

/// `GET /projects/{ref}/runs/{number}`.
pub async fn get(
    b: &Backends,
    caller: &Caller,
    project_ref: &str,
    number: u64,
) -> Result<pb::Run, ApiError> {
    let (p, _) = readable_project(b, caller, project_ref).await?;
    let (run, rc) = run_by_number(b, &p.id, number).await?;
    let errors = rc
        .as_ref()
        .map(|rc| rc.setup_errors.clone())
        .unwrap_or_default();
    Ok(run_view(&run, rc.as_ref(), errors))
}

/// `PUT /projects/{ref}/runs/{number}/actions` (members): restart returns the new run.
pub async fn action(
    b: &Backends,
    caller: &Caller,
    project_ref: &str,
    number: u64,
    action: pb::RunActionType,
    from_start: bool,
) -> Result<Option<pb::Run>, ApiError> {
    let p = project_with(b, caller, project_ref, Access::Member).await?;
    let (run, rc) = run_by_number(b, &p.id, number).await?;
    let mut client = b.rs()?;
    match action {
        pb::RunActionType::Restart => {
            // Variables are resolved afresh, so a restart uses the current secret values.
            let variables = match run.annotations.get("ref") {
                Some(git_ref) => {
                    let sha = run
                        .annotations
                        .get("commit_sha")
                        .cloned()
                        .unwrap_or_default();
                    let ctx = crate::createrun::ref_context(git_ref, sha);
                    let values = crate::createrun::variables(b, &p, &ctx).await?;
                    Some(rs::RunVariables {
                        values: values.into_iter().collect(),
                    })
                }
                None => None,
            };
            let res = client
                .recreate_run(rs::RecreateRunRequest {
                    run_id: run.id,
                    from_start,
                    environment: rc.map(|rc| rc.environment).unwrap_or_default(),
                    variables,
                })
                .await
                .map_err(|s| {
                    let e = ApiError::from(s);
                    if e.kind == agola_common::ErrorKind::BadRequest
                        && e.code == e.kind.default_code()
                    {
                        e.with_code("run_not_restartable")
                    } else {
                        e
                    }
                })?
                .into_inner();
            let new = res
                .run
                .ok_or_else(|| ApiError::internal("runservice answered no run"))?;
            let errors = res
                .run_config
                .as_ref()
                .map(|rc| rc.setup_errors.clone())
                .unwrap_or_default();
            Ok(Some(run_view(&new, res.run_config.as_ref(), errors)))
        }
        pb::RunActionType::Cancel | pb::RunActionType::Stop => {
            let (action_type, phase) = if action == pb::RunActionType::Cancel {
                (rs::RunActionType::ChangePhase, pbc::RunPhase::Cancelled)
            } else {
                (rs::RunActionType::Stop, pbc::RunPhase::Unspecified)
            };
            client
                .run_action(rs::RunActionRequest {
                    run_id: run.id,
                    action_type: action_type.into(),
                    phase: phase.into(),
                    change_groups_update_token: String::new(),
                })
                .await?;
            Ok(None)
        }
        pb::RunActionType::Unspecified => Err(ApiError::bad_request(
            "action_type must be restart, cancel or stop",
        )),
    }
}

/// `PUT /projects/{ref}/runs/{number}/tasks/{taskid}/actions {action_type: approve}`
/// (members): records the caller in the task's `approvers` annotation under the run's
/// `approval-<runID>` change group, retrying on concurrent updates. It does not approve.
pub async fn approve(
    b: &Backends,
    caller: &Caller,
    project_ref: &str,
    number: u64,
    task_id: &str,
) -> Result<(), ApiError> {
    let user_id = caller.require_user()?.id.clone();
    let p = project_with(b, caller, project_ref, Access::Member).await?;
    let (run, _) = run_by_number(b, &p.id, number).await?;
    let mut client = b.rs()?;
    let mut last = None;
    for _ in 0..APPROVE_ATTEMPTS {
        let res = client
            .get_run(rs::GetRunRequest {
                run_id: run.id.clone(),
                change_groups: vec![format!("approval-{}", run.id)],
            })
            .await?
            .into_inner();
        let run = res
            .run
            .ok_or_else(|| ApiError::internal("runservice answered no run"))?;
        let task = run
            .tasks
            .get(task_id)
            .ok_or_else(|| ApiError::not_found(format!("task {task_id:?} not found")))?;
        if !task.waiting_approval {
            return Err(ApiError::bad_request(format!(
                "task {task_id:?} is not waiting approval"
            )));
        }
        let mut list = approvers(task)?;
        if list.contains(&user_id) {
            return Err(ApiError::bad_request(format!(
                "you already approved task {task_id:?}"
            )));
        }
        list.push(user_id.clone());
        let mut annotations = task.annotations.clone();
        annotations.insert(
            APPROVERS_ANNOTATION.to_owned(),
            serde_json::to_string(&list)
                .map_err(|e| ApiError::internal(format!("encoding approvers: {e}")))?,
        );
        match client
            .run_task_action(rs::RunTaskActionRequest {
                run_id: run.id.clone(),
                task_id: task_id.to_owned(),
                action_type: rs::RunTaskActionType::SetAnnotations.into(),
                annotations,
                change_groups_update_token: res.change_groups_update_token,
            })
            .await
        {
            Ok(_) => return Ok(()),
            Err(s) if s.code() == tonic::Code::Aborted => last = Some(s),
            Err(s) => return Err(s.into()),
        }
    }
    Err(last.map_or_else(
        || ApiError::concurrency("approval kept conflicting"),
        ApiError::from,
    ))
}

/// Which log of a task.
#[derive(Debug, Clone, Copy)]
pub enum LogSelector {
    Setup,
    Step(i32),
}

/// `GET …/tasks/{taskid}/logs`: the runservice's log stream.
pub async fn logs(
    b: &Backends,
    caller: &Caller,
    project_ref: &str,
    number: u64,
    task_id: &str,
    which: LogSelector,
    follow: bool,
) -> Result<tonic::Streaming<rs::GetLogsResponse>, ApiError> {
    let (p, _) = readable_project(b, caller, project_ref).await?;
    let (run, _) = run_by_number(b, &p.id, number).await?;
    if !run.tasks.contains_key(task_id) {
        return Err(ApiError::not_found(format!("task {task_id:?} not found")));
    }
    let (setup, step) = match which {
        LogSelector::Setup => (true, None),
        LogSelector::Step(n) => (false, Some(n)),
    };
    Ok(b.rs()?
        .get_logs(rs::GetLogsRequest {
            run_id: run.id,
            task_id: task_id.to_owned(),
            setup,
            step,
            follow,
        })
        .await?
        .into_inner())
}

fn step_view(step: &pbc::Step, status: Option<&pbc::RunTaskStep>) -> pb::RunTaskStep {
    use pbc::step::Step as S;
    let (r#type, name, command, shell) = match &step.step {
        Some(S::Run(r)) => (
            pb::StepType::Run,
            r.name.clone(),
            r.command.clone(),
            r.shell.clone(),
        ),
        Some(S::SaveToWorkspace(_)) => (
            pb::StepType::SaveToWorkspace,
            "save to workspace".to_owned(),
            String::new(),
            String::new(),
        ),
        Some(S::RestoreWorkspace(_)) => (
            pb::StepType::RestoreWorkspace,
            "restore workspace".to_owned(),
            String::new(),
            String::new(),
        ),
        Some(S::SaveCache(_)) => (
            pb::StepType::SaveCache,
            "save cache".to_owned(),
            String::new(),
            String::new(),
        ),
        Some(S::RestoreCache(_)) => (
            pb::StepType::RestoreCache,
            "restore cache".to_owned(),
            String::new(),
            String::new(),
        ),
        None => (
            pb::StepType::Unspecified,
            String::new(),
            String::new(),
            String::new(),
        ),
    };
    pb::RunTaskStep {
        r#type: r#type.into(),
        name,
        command,
        shell,
        phase: status.map_or(0, |s| s.phase),
        exit_status: status.and_then(|s| s.exit_status),
        start_time: status.and_then(|s| s.start_time),
        end_time: status.and_then(|s| s.end_time),
        log_archived: status.is_some_and(|s| s.log_phase() == pbc::FetchPhase::Finished),
        log_lost: status.is_some_and(|s| s.log_phase() == pbc::FetchPhase::Lost),
    }
}

/// `GET /projects/{ref}/runs/{number}/tasks/{taskid}`: the task with its setup step and steps.
pub async fn get_task(
    b: &Backends,
    caller: &Caller,
    project_ref: &str,
    number: u64,
    task_id: &str,
) -> Result<pb::RunTaskDetail, ApiError> {
    let (p, _) = readable_project(b, caller, project_ref).await?;
    let (run, rc) = run_by_number(b, &p.id, number).await?;
    let view = run_view(&run, rc.as_ref(), Vec::new());
    let (Some(t), Some(task)) = (view.tasks.get(task_id), run.tasks.get(task_id)) else {
        return Err(ApiError::not_found(format!("task {task_id:?} not found")));
    };
    let steps = rc
        .as_ref()
        .and_then(|rc| rc.tasks.get(task_id))
        .map(|c| {
            c.steps
                .iter()
                .enumerate()
                .map(|(i, s)| step_view(s, task.steps.get(i)))
                .collect()
        })
        .unwrap_or_default();
    Ok(pb::RunTaskDetail {
        id: t.id.clone(),
        name: t.name.clone(),
        status: t.status,
        level: t.level,
        depends: t.depends.clone(),
        waiting_approval: t.waiting_approval,
        approved: t.approved,
        approval_annotations: t.approval_annotations.clone(),
        min_approvers: t.min_approvers,
        approvers_count: t.approvers_count,
        start_time: t.start_time,
        end_time: t.end_time,
        setup_step: task.setup_step.as_ref().map(|s| pb::RunTaskSetupStep {
            phase: s.phase,
            start_time: s.start_time,
            end_time: s.end_time,
            log_archived: s.log_phase() == pbc::FetchPhase::Finished,
            log_lost: s.log_phase() == pbc::FetchPhase::Lost,
        }),
        steps,
    })
}

/// `DELETE /projects/{ref}/runs/{number}` (owners): the runservice refuses runs not archived.
pub async fn delete(
    b: &Backends,
    caller: &Caller,
    project_ref: &str,
    number: u64,
) -> Result<(), ApiError> {
    let p = project_with(b, caller, project_ref, Access::Owner).await?;
    let (run, _) = run_by_number(b, &p.id, number).await?;
    b.rs()?
        .delete_run(rs::DeleteRunRequest { run_id: run.id })
        .await?;
    Ok(())
}

/// `DELETE …/tasks/{taskid}/logs` (members).
pub async fn delete_logs(
    b: &Backends,
    caller: &Caller,
    project_ref: &str,
    number: u64,
    task_id: &str,
    which: LogSelector,
) -> Result<(), ApiError> {
    let p = project_with(b, caller, project_ref, Access::Member).await?;
    let (run, _) = run_by_number(b, &p.id, number).await?;
    let (setup, step) = match which {
        LogSelector::Setup => (true, None),
        LogSelector::Step(n) => (false, Some(n)),
    };
    b.rs()?
        .delete_logs(rs::DeleteLogsRequest {
            run_id: run.id,
            task_id: task_id.to_owned(),
            setup,
            step,
        })
        .await?;
    Ok(())
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `GET /badges/{projectref}?branch=`: an SVG labelled "build" with the last run's result if
/// finished, else its phase, "unknown" if there is none.
pub async fn badge(
    b: &Backends,
    caller: &Caller,
    project_ref: &str,
    branch: &str,
) -> Result<String, ApiError> {
    let (p, _) = readable_project(b, caller, project_ref).await?;
    let mut client = b.rs()?;
    let last = if branch.is_empty() {
        client
            .list_runs(rs::ListRunsRequest {
                groups: vec![project_group(&p.id)],
                limit: 1,
                ascending: false,
                ..Default::default()
            })
            .await?
            .into_inner()
            .runs
    } else {
        client
            .list_group_runs(rs::ListGroupRunsRequest {
                group: format!(
                    "{}/branch/{}",
                    project_group(&p.id),
                    crate::createrun::escape(branch)
                ),
                limit: 1,
                ascending: false,
                ..Default::default()
            })
            .await?
            .into_inner()
            .runs
    };
    let (message, color) = match last.first() {
        None => ("unknown".to_owned(), "#9f9f9f"),
        Some(r) if r.phase() == pbc::RunPhase::Finished => {
            let color = match r.result() {
                pbc::RunResult::Success => "#4c1",
                pbc::RunResult::Failed => "#e05d44",
                _ => "#9f9f9f",
            };
            (result_name(r.result()).to_owned(), color)
        }
        Some(r) => (phase_name(r.phase()).to_owned(), "#dfb317"),
    };
    let label_w = 40;
    let msg_w = 10 + 7 * message.chars().count();
    let total = label_w + msg_w;
    let message = xml_escape(&message);
    Ok(format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" aria-label="build: {message}"><title>build: {message}</title><rect width="{label_w}" height="20" fill="#555"/><rect x="{label_w}" width="{msg_w}" height="20" fill="{color}"/><g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11"><text x="{lx}" y="14">build</text><text x="{mx}" y="14">{message}</text></g></svg>"##,
        lx = label_w / 2,
        mx = label_w + msg_w / 2,
    ))
}

/// Lowercase name of a run phase, as the API spells it.
pub fn phase_name(p: pbc::RunPhase) -> &'static str {
    match p {
        pbc::RunPhase::Setuperror => "setuperror",
        pbc::RunPhase::Queued => "queued",
        pbc::RunPhase::Cancelled => "cancelled",
        pbc::RunPhase::Running => "running",
        pbc::RunPhase::Finished => "finished",
        pbc::RunPhase::Unspecified => "unspecified",
    }
}

/// Lowercase name of a run result, as the API spells it.
pub fn result_name(r: pbc::RunResult) -> &'static str {
    match r {
        pbc::RunResult::Unknown => "unknown",
        pbc::RunResult::Stopped => "stopped",
        pbc::RunResult::Success => "success",
        pbc::RunResult::Failed => "failed",
        pbc::RunResult::Unspecified => "unspecified",
    }
}

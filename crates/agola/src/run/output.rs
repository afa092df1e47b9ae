//! What `agola run` prints: task state changes and the live output of running steps as
//! prefixed lines (`task | step | line`), then a summary; or, with `--output json`, one JSON
//! object at the end and nothing else on stdout.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agola_common::grpc::GrpcChannel;
use agola_proto::common::v1 as pbc;
use agola_proto::runservice::v1 as pb;
use agola_proto::runservice::v1::run_service_client::RunServiceClient;
use futures::StreamExt;
use serde_json::json;
use tokio::task::JoinHandle;

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// Lower-case name of a Protobuf enum value without its type prefix.
fn enum_name(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
}

fn task_status(s: i32) -> String {
    pbc::RunTaskStatus::try_from(s)
        .map(|v| enum_name(v.as_str_name(), "RUN_TASK_STATUS_"))
        .unwrap_or_else(|_| "unknown".into())
}

fn step_phase(s: i32) -> String {
    pbc::ExecutorTaskPhase::try_from(s)
        .map(|v| enum_name(v.as_str_name(), "EXECUTOR_TASK_PHASE_"))
        .unwrap_or_else(|_| "unknown".into())
}

fn run_phase(s: i32) -> String {
    pbc::RunPhase::try_from(s)
        .map(|v| enum_name(v.as_str_name(), "RUN_PHASE_"))
        .unwrap_or_else(|_| "unknown".into())
}

fn run_result(s: i32) -> String {
    pbc::RunResult::try_from(s)
        .map(|v| enum_name(v.as_str_name(), "RUN_RESULT_"))
        .unwrap_or_else(|_| "unknown".into())
}

/// A step's display name: the run step's name, else its type.
fn step_name(rc: &pbc::RunConfig, task_id: &str, i: usize) -> String {
    use pbc::step::Step as S;
    let step = rc
        .tasks
        .get(task_id)
        .and_then(|t| t.steps.get(i))
        .and_then(|s| s.step.as_ref());
    match step {
        Some(S::Run(r)) if !r.name.is_empty() => r.name.clone(),
        Some(S::Run(_)) => "run".into(),
        Some(S::SaveToWorkspace(_)) => "save_to_workspace".into(),
        Some(S::RestoreWorkspace(_)) => "restore_workspace".into(),
        Some(S::SaveCache(_)) => "save_cache".into(),
        // `agola run` turns clone steps into a restore of the working tree.
        Some(S::RestoreCache(c)) if c.keys.iter().any(|k| k.starts_with("agola-worktree-")) => {
            "clone".into()
        }
        Some(S::RestoreCache(_)) => "restore_cache".into(),
        None => format!("step {i}"),
    }
}

fn task_name(rc: &pbc::RunConfig, task_id: &str) -> String {
    rc.tasks
        .get(task_id)
        .map(|t| t.name.clone())
        .unwrap_or_else(|| task_id.to_owned())
}

fn duration(
    start: Option<&prost_types::Timestamp>,
    end: Option<&prost_types::Timestamp>,
) -> Option<Duration> {
    let (s, e) = (start?, end?);
    let ms = (e.seconds - s.seconds) * 1000 + i64::from(e.nanos - s.nanos) / 1_000_000;
    u64::try_from(ms).ok().map(Duration::from_millis)
}

fn fmt_duration(d: Option<Duration>) -> String {
    match d {
        Some(d) if d.as_secs() >= 60 => format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60),
        Some(d) => format!("{:.1}s", d.as_secs_f64()),
        None => "-".into(),
    }
}

/// Progress printer.
pub struct Progress {
    format: OutputFormat,
    api: RunServiceClient<GrpcChannel>,
    /// Last seen status per (run, task).
    seen: BTreeMap<(String, String), (i32, bool)>,
    /// Tasks whose output is being followed.
    followed: BTreeSet<(String, String)>,
    followers: Vec<JoinHandle<()>>,
    stdout: Arc<Mutex<std::io::Stdout>>,
}

impl Progress {
    pub fn new(format: OutputFormat, api: RunServiceClient<GrpcChannel>) -> Progress {
        Progress {
            format,
            api,
            seen: BTreeMap::new(),
            followed: BTreeSet::new(),
            followers: Vec::new(),
            stdout: Arc::new(Mutex::new(std::io::stdout())),
        }
    }

    fn line(&self, text: &str) {
        if self.format == OutputFormat::Text {
            print_line(&self.stdout, text);
        }
    }

    /// A message for people (stderr, so `--output json` stays parseable).
    pub fn note(&self, text: &str) {
        eprintln!("agola run: {text}");
    }

    pub fn start(&self, runs: &[(pbc::Run, pbc::RunConfig)], driver: agola_executor::DriverType) {
        let names: Vec<&str> = runs.iter().map(|(_, rc)| rc.name.as_str()).collect();
        let driver = match driver {
            agola_executor::DriverType::Docker => "docker",
            _ => "local",
        };
        self.note(&format!(
            "{} run(s): {} (driver {driver})",
            runs.len(),
            names.join(", ")
        ));
    }

    /// Prints what changed in `run`; a task that started gets a follower that prints its
    /// steps' output in order and then its final status.
    pub fn update(&mut self, run: &pbc::Run, rc: &pbc::RunConfig) {
        for (id, t) in &run.tasks {
            let key = (run.id.clone(), id.clone());
            let waiting = t.waiting_approval && !t.approved;
            let prev = self.seen.insert(key.clone(), (t.status, waiting));
            let changed = prev != Some((t.status, waiting));
            let ran = t
                .setup_step
                .as_ref()
                .is_some_and(|s| s.phase != pbc::ExecutorTaskPhase::Notstarted as i32);
            if ran {
                if self.followed.insert(key) && self.format == OutputFormat::Text {
                    self.line(&format!("[{}] {}: started", rc.name, task_name(rc, id)));
                    self.followers.push(tokio::spawn(follow_task(
                        self.api.clone(),
                        run.id.clone(),
                        id.clone(),
                        rc.clone(),
                        self.stdout.clone(),
                    )));
                }
                continue;
            }
            if changed && (t.status != pbc::RunTaskStatus::Notstarted as i32 || waiting) {
                let mut text = format!(
                    "[{}] {}: {}",
                    rc.name,
                    task_name(rc, id),
                    task_status(t.status)
                );
                if waiting {
                    text = format!("[{}] {}: waiting for approval", rc.name, task_name(rc, id));
                }
                if !t.fail_error.is_empty() {
                    text.push_str(&format!(": {}", t.fail_error));
                }
                self.line(&text);
            }
        }
    }

    /// Waits for the log followers to drain (bounded: a log that never completes, e.g. an
    /// executor lost, does not hang the command).
    pub async fn finish_logs(&mut self) {
        for f in self.followers.drain(..) {
            let abort = f.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), f)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }

    pub fn summary(
        &self,
        runs: &[(pbc::Run, pbc::RunConfig)],
        stopped_waiting: &BTreeMap<String, Vec<String>>,
    ) {
        match self.format {
            // The caller prints the report.
            OutputFormat::Json => {}
            OutputFormat::Text => {
                for (run, rc) in runs {
                    self.line("");
                    let result = if run.phase == pbc::RunPhase::Setuperror as i32 {
                        "setup error".to_owned()
                    } else {
                        run_result(run.result)
                    };
                    self.line(&format!(
                        "run {}: {result} ({})",
                        rc.name,
                        fmt_duration(duration(run.start_time.as_ref(), run.end_time.as_ref()))
                    ));
                    for e in &rc.setup_errors {
                        self.line(&format!("  setup error: {e}"));
                    }
                    let mut tasks: Vec<(&String, &pbc::RunTask)> = run.tasks.iter().collect();
                    tasks.sort_by_key(|(id, _)| {
                        (
                            rc.tasks.get(*id).map(|t| t.level).unwrap_or(0),
                            task_name(rc, id),
                        )
                    });
                    let width = tasks
                        .iter()
                        .map(|(id, _)| task_name(rc, id).len())
                        .max()
                        .unwrap_or(4)
                        .max(4);
                    if !tasks.is_empty() {
                        self.line(&format!("  {:width$}  {:10}  DURATION", "TASK", "STATUS"));
                    }
                    for (id, t) in tasks {
                        let mut status = task_status(t.status);
                        if t.waiting_approval && !t.approved {
                            status = "waiting approval".into();
                        }
                        let mut text = format!(
                            "  {:width$}  {:10}  {}",
                            task_name(rc, id),
                            status,
                            fmt_duration(duration(t.start_time.as_ref(), t.end_time.as_ref()))
                        );
                        if !t.fail_error.is_empty() {
                            text.push_str(&format!("  ({})", t.fail_error));
                        } else if let Some((i, s)) = t
                            .steps
                            .iter()
                            .enumerate()
                            .find(|(_, s)| s.phase == pbc::ExecutorTaskPhase::Failed as i32)
                        {
                            text.push_str(&format!(
                                "  (step {} exited with {})",
                                step_name(rc, id, i),
                                s.exit_status
                                    .map_or("no status".to_owned(), |c| c.to_string())
                            ));
                        }
                        self.line(&text);
                    }
                    if let Some(w) = stopped_waiting.get(&run.id) {
                        self.line(&format!(
                            "  stopped: tasks waiting for approval: {} (use --approve TASK or --approve-all)",
                            w.join(", ")
                        ));
                    }
                }
            }
        }
    }
}

/// The `--output json` document: one entry per run.
pub fn report(
    runs: &[(pbc::Run, pbc::RunConfig)],
    stopped_waiting: &BTreeMap<String, Vec<String>>,
) -> serde_json::Value {
    let runs: Vec<serde_json::Value> = runs
        .iter()
        .map(|(run, rc)| run_json(run, rc, stopped_waiting.get(&run.id)))
        .collect();
    json!({ "runs": runs })
}

fn run_json(
    run: &pbc::Run,
    rc: &pbc::RunConfig,
    waiting: Option<&Vec<String>>,
) -> serde_json::Value {
    let tasks: serde_json::Map<String, serde_json::Value> = run
        .tasks
        .iter()
        .map(|(id, t)| {
            let steps: Vec<serde_json::Value> = t
                .steps
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    json!({
                        "name": step_name(rc, id, i),
                        "phase": step_phase(s.phase),
                        "exit_status": s.exit_status,
                    })
                })
                .collect();
            let mut task = json!({
                "id": id,
                "status": task_status(t.status),
                "waiting_approval": t.waiting_approval,
                "approved": t.approved,
                "steps": steps,
            });
            if !t.fail_error.is_empty() {
                task["fail_error"] = json!(t.fail_error);
            }
            (task_name(rc, id), task)
        })
        .collect();
    let mut out = json!({
        "id": run.id,
        "name": rc.name,
        "phase": run_phase(run.phase),
        "result": run_result(run.result),
        "setup_errors": rc.setup_errors,
        "tasks": tasks,
    });
    if let Some(w) = waiting {
        out["stopped_waiting_approval"] = json!(w);
    }
    out
}

fn print_line(stdout: &Mutex<std::io::Stdout>, text: &str) {
    let out = stdout.lock().unwrap_or_else(|p| p.into_inner());
    let mut out = out.lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

fn finished(status: i32) -> bool {
    use pbc::RunTaskStatus as S;
    matches!(
        S::try_from(status),
        Ok(S::Skipped | S::Cancelled | S::Stopped | S::Success | S::Failed)
    )
}

/// Prints one task's step logs in order, each line prefixed with `task | step | `, then the
/// task's final status.
async fn follow_task(
    mut api: RunServiceClient<GrpcChannel>,
    run_id: String,
    task_id: String,
    rc: pbc::RunConfig,
    stdout: Arc<Mutex<std::io::Stdout>>,
) {
    let name = task_name(&rc, &task_id);
    let mut next = 0;
    loop {
        let Ok(resp) = api
            .get_run(pb::GetRunRequest {
                run_id: run_id.clone(),
                change_groups: vec![],
            })
            .await
        else {
            return;
        };
        let Some(t) = resp
            .into_inner()
            .run
            .and_then(|r| r.tasks.get(&task_id).cloned())
        else {
            return;
        };
        if let Some(s) = t.steps.get(next)
            && s.phase != pbc::ExecutorTaskPhase::Notstarted as i32
        {
            let prefix = format!("{name} | {} | ", step_name(&rc, &task_id, next));
            follow_log(&mut api, &run_id, &task_id, next, &prefix, &stdout).await;
            next += 1;
            continue;
        }
        if finished(t.status) {
            let mut text = format!(
                "[{}] {name}: {} ({})",
                rc.name,
                task_status(t.status),
                fmt_duration(duration(t.start_time.as_ref(), t.end_time.as_ref()))
            );
            if !t.fail_error.is_empty() {
                text.push_str(&format!(": {}", t.fail_error));
            }
            print_line(&stdout, &text);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Streams one step's log with `prefix` on every line.
async fn follow_log(
    api: &mut RunServiceClient<GrpcChannel>,
    run_id: &str,
    task_id: &str,
    step: usize,
    prefix: &str,
    stdout: &Mutex<std::io::Stdout>,
) {
    let req = pb::GetLogsRequest {
        run_id: run_id.to_owned(),
        task_id: task_id.to_owned(),
        setup: false,
        step: Some(step as i32),
        follow: true,
    };
    let Ok(resp) = api.get_logs(req).await else {
        return;
    };
    let mut stream = resp.into_inner();
    let mut pending: Vec<u8> = Vec::new();
    let print = |line: &[u8]| {
        let text = String::from_utf8_lossy(line);
        print_line(stdout, &format!("{prefix}{}", text.trim_end_matches('\r')));
    };
    while let Some(Ok(chunk)) = stream.next().await {
        pending.extend_from_slice(&chunk.data);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            print(&pending[..pos]);
            pending.drain(..=pos);
        }
    }
    if !pending.is_empty() {
        print(&pending);
    }
}

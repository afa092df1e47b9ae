//! Task intake and execution (spec 30 §3, §4, §10).
//!
//! Every task the executor knows has an entry in [`Tasks`] with its latest status, which is
//! also persisted as `<dataDir>/tasks/<id>/status.pb`: after a restart the executor still
//! knows the tasks whose data it keeps, and a task that was running when the process died is
//! reported failed with a reason instead of being left running.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use agola_proto::common::v1 as pbc;
use agola_proto::runservice::v1 as pb;
use prost::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::driver::{Driver, Pod};
use crate::error::{Error, Result};
use crate::runservice::RunserviceClient;
use crate::steps;

pub const RESTARTED: &str = "executor restarted while the task was running";

/// Phase helpers on the wire enum.
pub fn is_finished(phase: i32) -> bool {
    matches!(
        pbc::ExecutorTaskPhase::try_from(phase),
        Ok(pbc::ExecutorTaskPhase::Cancelled
            | pbc::ExecutorTaskPhase::Stopped
            | pbc::ExecutorTaskPhase::Success
            | pbc::ExecutorTaskPhase::Failed)
    )
}

pub fn now_ts() -> prost_types::Timestamp {
    let now = std::time::SystemTime::now();
    prost_types::Timestamp::from(now)
}

/// What the executor knows of one task.
struct LocalTask {
    status: pbc::ExecutorTaskStatus,
    /// Set while `execute_task` runs.
    running: Option<CancellationToken>,
    /// When the task finished (to compare with a task sync's generation time).
    finished_at: Option<prost_types::Timestamp>,
}

/// Where the executor keeps one task's data.
pub fn task_dir(data_dir: &Path, task_id: &str) -> PathBuf {
    data_dir.join("tasks").join(task_id)
}

pub fn setup_log_path(data_dir: &Path, task_id: &str) -> PathBuf {
    task_dir(data_dir, task_id).join("setup.log")
}

pub fn step_log_path(data_dir: &Path, task_id: &str, step: usize) -> PathBuf {
    task_dir(data_dir, task_id)
        .join("steps")
        .join(format!("{step}.log"))
}

pub fn archive_path(data_dir: &Path, task_id: &str, step: usize) -> PathBuf {
    task_dir(data_dir, task_id)
        .join("archives")
        .join(format!("{step}.tar"))
}

/// Task ids are used as directory names: only accept what the runservice generates.
pub fn check_task_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::BadRequest(format!("invalid task id {id:?}")));
    }
    Ok(())
}

/// The executor's tasks, shared by the stream handler, the task runners, the pods cleaner
/// and the `ExecutorService` endpoint.
pub struct Tasks {
    pub executor_id: String,
    pub data_dir: PathBuf,
    pub active_tasks_limit: u32,
    pub allow_privileged: bool,
    pub driver: Arc<dyn Driver>,
    pub runservice: RunserviceClient,
    map: Mutex<HashMap<String, LocalTask>>,
    /// The live stream's sender, while connected.
    up: Mutex<Option<mpsc::Sender<pb::ConnectRequest>>>,
    /// Serializes intake (spec 30 §3).
    intake: tokio::sync::Mutex<()>,
    /// Wakes log followers when a step or the setup changes phase.
    pub changed: tokio::sync::watch::Sender<u64>,
}

impl Tasks {
    pub fn new(
        executor_id: String,
        data_dir: PathBuf,
        active_tasks_limit: u32,
        allow_privileged: bool,
        driver: Arc<dyn Driver>,
        runservice: RunserviceClient,
    ) -> Arc<Tasks> {
        Arc::new(Tasks {
            executor_id,
            data_dir,
            active_tasks_limit,
            allow_privileged,
            driver,
            runservice,
            map: Mutex::default(),
            up: Mutex::default(),
            intake: tokio::sync::Mutex::new(()),
            changed: tokio::sync::watch::channel(0).0,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LocalTask>> {
        // A poisoned lock only means a panic elsewhere; the map itself stays consistent
        // because every update is a single insert or field write.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads the statuses persisted by a previous process. Tasks that were running are
    /// failed with [`RESTARTED`] (their pods are removed by the pods cleaner).
    pub async fn load(&self) -> Result<()> {
        let dir = self.data_dir.join("tasks");
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
        };
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?
        {
            let Some(id) = entry.file_name().to_str().map(String::from) else {
                continue;
            };
            let path = entry.path().join("status.pb");
            let status = match tokio::fs::read(&path).await {
                Ok(raw) => pbc::ExecutorTaskStatus::decode(raw.as_slice()).ok(),
                Err(_) => None,
            };
            let Some(mut status) = status else {
                // No readable status: the task never got past intake; drop its data.
                let _ = tokio::fs::remove_dir_all(entry.path()).await;
                continue;
            };
            if !is_finished(status.phase) {
                fail_unfinished(&mut status, RESTARTED);
                self.persist(&id, &status).await;
            }
            let finished_at = status.end_time;
            self.lock().insert(
                id,
                LocalTask {
                    status,
                    running: None,
                    finished_at,
                },
            );
        }
        Ok(())
    }

    /// Number of tasks running now.
    pub fn active(&self) -> u32 {
        self.lock().values().filter(|t| t.running.is_some()).count() as u32
    }

    /// Ids of the tasks running now.
    pub fn running_ids(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, t)| t.running.is_some())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The latest status of a task, if known.
    pub fn status(&self, task_id: &str) -> Option<pbc::ExecutorTaskStatus> {
        self.lock().get(task_id).map(|t| t.status.clone())
    }

    /// Installs the sender of a new stream and re-sends every known status on it.
    pub async fn connected(&self, tx: mpsc::Sender<pb::ConnectRequest>) {
        *self.up.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx.clone());
        let all: Vec<(String, pbc::ExecutorTaskStatus)> = self
            .lock()
            .iter()
            .map(|(id, t)| (id.clone(), t.status.clone()))
            .collect();
        for (id, status) in all {
            let _ = tx.send(status_msg(&id, status)).await;
        }
    }

    pub fn disconnected(&self) {
        *self.up.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Re-sends the status of every running task (spec 30 §4.5).
    pub async fn resend_running(&self) {
        let running: Vec<(String, pbc::ExecutorTaskStatus)> = self
            .lock()
            .iter()
            .filter(|(_, t)| t.running.is_some())
            .map(|(id, t)| (id.clone(), t.status.clone()))
            .collect();
        for (id, status) in running {
            self.send(status_msg(&id, status)).await;
        }
    }

    async fn send(&self, msg: pb::ConnectRequest) {
        let tx = self.up.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(tx) = tx {
            // Disconnected: dropped; the status is re-sent on reconnect.
            let _ = tx.send(msg).await;
        }
    }

    async fn persist(&self, task_id: &str, status: &pbc::ExecutorTaskStatus) {
        let dir = task_dir(&self.data_dir, task_id);
        let tmp = dir.join("status.pb.tmp");
        let res = async {
            tokio::fs::create_dir_all(&dir).await?;
            tokio::fs::write(&tmp, status.encode_to_vec()).await?;
            tokio::fs::rename(&tmp, dir.join("status.pb")).await
        }
        .await;
        if let Err(e) = res {
            tracing::warn!(task_id, error = %e, "cannot persist the task status");
        }
    }

    /// Records and reports a new status of a task.
    pub async fn report(&self, task_id: &str, status: pbc::ExecutorTaskStatus) {
        {
            let mut map = self.lock();
            if let Some(t) = map.get_mut(task_id) {
                if is_finished(status.phase) && t.finished_at.is_none() {
                    t.finished_at = Some(now_ts());
                }
                t.status = status.clone();
            } else {
                let finished_at = is_finished(status.phase).then(now_ts);
                map.insert(
                    task_id.to_owned(),
                    LocalTask {
                        status: status.clone(),
                        running: None,
                        finished_at,
                    },
                );
            }
        }
        self.persist(task_id, &status).await;
        self.changed.send_modify(|n| *n += 1);
        self.send(status_msg(task_id, status)).await;
    }

    /// Handles one executor task from the runservice (spec 30 §3), serialized.
    pub async fn update(self: &Arc<Self>, et: pbc::ExecutorTask) {
        let _guard = self.intake.lock().await;
        let Some(spec) = et.spec.clone() else {
            tracing::warn!(task_id = %et.id, "executor task without spec ignored");
            return;
        };
        if spec.executor_id != self.executor_id {
            return;
        }
        if let Err(e) = check_task_id(&et.id) {
            tracing::warn!(error = %e, "executor task ignored");
            return;
        }
        let (running, known_finished) = {
            let map = self.lock();
            match map.get(&et.id) {
                Some(t) => (t.running.clone(), is_finished(t.status.phase)),
                None => (None, false),
            }
        };
        if let Some(cancel) = running {
            if spec.stop {
                cancel.cancel();
            }
            return;
        }
        if known_finished {
            return;
        }
        let remote = et.status.clone().unwrap_or_default();
        let remote_phase = pbc::ExecutorTaskPhase::try_from(remote.phase)
            .unwrap_or(pbc::ExecutorTaskPhase::Unspecified);
        match remote_phase {
            pbc::ExecutorTaskPhase::Notstarted | pbc::ExecutorTaskPhase::Unspecified => {
                if spec.stop {
                    let mut status = initial_status(&et.id, spec.steps.len());
                    status.phase = pbc::ExecutorTaskPhase::Cancelled as i32;
                    status.end_time = Some(now_ts());
                    self.report(&et.id, status).await;
                    return;
                }
                // Improvement over Agola (which checked `>`): at the limit, nothing starts.
                if self.active_tasks_limit > 0 && self.active() >= self.active_tasks_limit {
                    return;
                }
                let cancel = CancellationToken::new();
                let status = initial_status(&et.id, spec.steps.len());
                self.lock().insert(
                    et.id.clone(),
                    LocalTask {
                        status,
                        running: Some(cancel.clone()),
                        finished_at: None,
                    },
                );
                tracing::debug!(task_id = %et.id, "task accepted");
                let tasks = self.clone();
                tokio::spawn(async move {
                    let id = et.id.clone();
                    execute_task(&tasks, et, spec, cancel).await;
                    if let Some(t) = tasks.lock().get_mut(&id) {
                        t.running = None;
                    }
                    tasks.changed.send_modify(|n| *n += 1);
                });
            }
            pbc::ExecutorTaskPhase::Running => {
                // Running for the runservice but unknown here: this executor restarted and
                // lost its data.
                let mut status = remote;
                fail_unfinished(&mut status, RESTARTED);
                self.report(&et.id, status).await;
            }
            _ => {}
        }
    }

    /// Cancels a running task.
    pub fn stop(&self, task_id: &str) {
        if let Some(cancel) = self.lock().get(task_id).and_then(|t| t.running.clone()) {
            cancel.cancel();
        }
    }

    /// Drops a finished task's local data (`task_removed`, or absent from a newer sync).
    pub async fn remove(&self, task_id: &str) {
        if check_task_id(task_id).is_err() {
            return;
        }
        {
            let mut map = self.lock();
            if map.get(task_id).is_some_and(|t| t.running.is_some()) {
                return;
            }
            map.remove(task_id);
        }
        let dir = task_dir(&self.data_dir, task_id);
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(task_id, error = %e, "cannot remove task data");
        }
    }

    /// Handles a task sync: each listed task as an update; running tasks not listed are
    /// cancelled and forgotten; finished ones not listed, finished before the list was
    /// generated, have their data deleted.
    pub async fn sync(
        self: &Arc<Self>,
        tasks: Vec<pbc::ExecutorTask>,
        generated_at: Option<prost_types::Timestamp>,
    ) {
        let listed: std::collections::HashSet<String> =
            tasks.iter().map(|t| t.id.clone()).collect();
        for et in tasks {
            self.update(et).await;
        }
        let (to_cancel, to_remove): (Vec<_>, Vec<_>) = {
            let map = self.lock();
            let cancel = map
                .iter()
                .filter(|(id, t)| t.running.is_some() && !listed.contains(*id))
                .map(|(id, t)| (id.clone(), t.running.clone()))
                .collect::<Vec<_>>();
            let remove = map
                .iter()
                .filter(|(id, t)| {
                    t.running.is_none()
                        && !listed.contains(*id)
                        && match (&t.finished_at, &generated_at) {
                            (Some(f), Some(g)) => (f.seconds, f.nanos) < (g.seconds, g.nanos),
                            _ => false,
                        }
                })
                .map(|(id, _)| id.clone())
                .collect::<Vec<_>>();
            (cancel, remove)
        };
        for (id, cancel) in to_cancel {
            tracing::info!(task_id = %id, "task no longer assigned to this executor: cancelled");
            if let Some(c) = cancel {
                c.cancel();
            }
        }
        for id in to_remove {
            self.remove(&id).await;
        }
    }

    /// Removes this executor's pods whose task is not running here (spec 30 §8).
    pub async fn clean_pods(&self) {
        let pods = match self.driver.get_pods(false).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "pods cleaner: cannot list pods");
                return;
            }
        };
        let running: std::collections::HashSet<String> = self.running_ids().into_iter().collect();
        for pod in pods {
            if !running.contains(pod.task_id()) {
                tracing::info!(
                    pod = pod.id(),
                    task_id = pod.task_id(),
                    "removing orphan pod"
                );
                if let Err(e) = pod.remove().await {
                    tracing::warn!(pod = pod.id(), error = %e, "cannot remove orphan pod");
                }
            }
        }
    }
}

fn status_msg(task_id: &str, status: pbc::ExecutorTaskStatus) -> pb::ConnectRequest {
    pb::ConnectRequest {
        message: Some(pb::connect_request::Message::TaskStatus(
            pb::ExecutorTaskStatusUpdate {
                task_id: task_id.to_owned(),
                status: Some(status),
            },
        )),
    }
}

fn step_status(phase: pbc::ExecutorTaskPhase) -> pbc::ExecutorTaskStepStatus {
    pbc::ExecutorTaskStepStatus {
        phase: phase as i32,
        ..Default::default()
    }
}

fn initial_status(task_id: &str, steps: usize) -> pbc::ExecutorTaskStatus {
    pbc::ExecutorTaskStatus {
        id: task_id.to_owned(),
        revision: 0,
        phase: pbc::ExecutorTaskPhase::Notstarted as i32,
        fail_error: String::new(),
        setup_step: Some(step_status(pbc::ExecutorTaskPhase::Notstarted)),
        steps: (0..steps)
            .map(|_| step_status(pbc::ExecutorTaskPhase::Notstarted))
            .collect(),
        start_time: None,
        end_time: None,
    }
}

/// Fails a task that did not finish: running steps and the setup fail too.
fn fail_unfinished(status: &mut pbc::ExecutorTaskStatus, reason: &str) {
    let now = now_ts();
    status.phase = pbc::ExecutorTaskPhase::Failed as i32;
    status.fail_error = reason.to_owned();
    status.end_time = Some(now);
    let setup = status.setup_step.get_or_insert_with(Default::default);
    for s in std::iter::once(setup).chain(status.steps.iter_mut()) {
        if s.phase == pbc::ExecutorTaskPhase::Running as i32 {
            s.phase = pbc::ExecutorTaskPhase::Failed as i32;
            s.end_time = Some(now);
        }
    }
}

/// Runs a task to its end and reports every transition (spec 30 §4).
async fn execute_task(
    tasks: &Arc<Tasks>,
    et: pbc::ExecutorTask,
    spec: pbc::ExecutorTaskSpec,
    cancel: CancellationToken,
) {
    let id = et.id.clone();
    let mut status = initial_status(&id, spec.steps.len());
    status.phase = pbc::ExecutorTaskPhase::Running as i32;
    status.start_time = Some(now_ts());
    if let Some(s) = status.setup_step.as_mut() {
        s.phase = pbc::ExecutorTaskPhase::Running as i32;
        s.start_time = Some(now_ts());
    }
    // Wipe leftovers of a previous attempt before anything is written (the status file is
    // written by the report below).
    let dir = task_dir(&tasks.data_dir, &id);
    let _ = tokio::fs::remove_dir_all(&dir).await;
    tasks.report(&id, status.clone()).await;

    let mut runner = steps::TaskRunner::new(tasks.clone(), id.clone(), spec, cancel.clone());
    let pod: Option<Box<dyn Pod>> = match runner.setup().await {
        Ok(pod) => {
            if let Some(s) = status.setup_step.as_mut() {
                s.phase = pbc::ExecutorTaskPhase::Success as i32;
                s.end_time = Some(now_ts());
            }
            tasks.report(&id, status.clone()).await;
            Some(pod)
        }
        Err(e) => {
            let stopped = cancel.is_cancelled();
            let phase = if stopped {
                pbc::ExecutorTaskPhase::Stopped
            } else {
                pbc::ExecutorTaskPhase::Failed
            };
            if let Some(s) = status.setup_step.as_mut() {
                s.phase = phase as i32;
                s.end_time = Some(now_ts());
            }
            status.phase = phase as i32;
            if !stopped {
                status.fail_error = format!("setup failed: {e}");
            }
            status.end_time = Some(now_ts());
            runner.finish_logs().await;
            tasks.report(&id, status).await;
            return;
        }
    };
    let pod = pod.expect("set above");
    let mut final_phase = pbc::ExecutorTaskPhase::Success;
    for i in 0..status.steps.len() {
        if cancel.is_cancelled() {
            final_phase = pbc::ExecutorTaskPhase::Stopped;
            break;
        }
        status.steps[i].phase = pbc::ExecutorTaskPhase::Running as i32;
        status.steps[i].start_time = Some(now_ts());
        tasks.report(&id, status.clone()).await;
        let outcome = runner.run_step(pod.as_ref(), i).await;
        let step = &mut status.steps[i];
        step.end_time = Some(now_ts());
        step.exit_status = outcome.exit_status;
        let phase = if cancel.is_cancelled() {
            pbc::ExecutorTaskPhase::Stopped
        } else if outcome.ok {
            pbc::ExecutorTaskPhase::Success
        } else {
            pbc::ExecutorTaskPhase::Failed
        };
        step.phase = phase as i32;
        if phase != pbc::ExecutorTaskPhase::Success {
            final_phase = phase;
            tasks.report(&id, status.clone()).await;
            break;
        }
        tasks.report(&id, status.clone()).await;
    }
    // `remove` kills whatever still runs (a separate stop would only add the engine's stop
    // timeout to every task).
    if let Err(e) = pod.remove().await {
        tracing::warn!(task_id = %id, error = %e, "cannot remove the pod (the pods cleaner retries)");
    }
    runner.finish_logs().await;
    status.phase = final_phase as i32;
    status.end_time = Some(now_ts());
    tasks.report(&id, status).await;
    tracing::debug!(task_id = %id, phase = ?final_phase, "task finished");
}

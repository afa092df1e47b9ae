//! Executors and their tasks (spec 20 §6), transport-agnostic: the executor stream's messages
//! as domain types, registration and heartbeats, stale dynamic siblings, status reports, the
//! spec data of an assignment (rebuilt from run + run config, never stored), the ET cleaner
//! and the liveness checker. The gRPC stream only converts messages and forwards them here.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, mpsc};

use crate::dag;
use crate::runs::{RunError, Runs};
use crate::store::StoreError;
use crate::types::{
    Container, Executor, ExecutorTask, ExecutorTaskPhase, ExecutorTaskStatus, FetchPhase, Run,
    RunConfig, Step, Time,
};

/// One archive a task restores: a `save_to_workspace` step of an ancestor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceOperation {
    pub task_id: String,
    pub step: usize,
    pub overwrite: bool,
}

/// What an executor needs to run a task, rebuilt from run + run config whenever the task is
/// sent (KV values stay small).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpecData {
    pub task_name: String,
    pub arch: String,
    pub containers: Vec<Container>,
    /// Task env < static environment < environment.
    pub environment: BTreeMap<String, String>,
    pub working_dir: String,
    pub shell: String,
    pub user: String,
    pub privileged: bool,
    pub workspace_operations: Vec<WorkspaceOperation>,
    pub cache_prefix: String,
    pub steps: Vec<Step>,
}

/// Builds the spec data of `task_id` (spec 10 §6).
pub fn spec_data(run: &Run, rc: &RunConfig, task_id: &str) -> Option<TaskSpecData> {
    let ct = rc.tasks.get(task_id)?;
    let mut environment = ct.environment.clone();
    environment.extend(rc.static_environment.clone());
    environment.extend(rc.environment.clone());
    // Every ancestor's save_to_workspace steps, sorted by (level, name), then step. Only
    // steps that succeeded and whose archive is stored are included (improvement: skipped or
    // failed ancestors produced nothing); a `lost` archive is included so the restore fails
    // naming it.
    let mut ancestors: Vec<&crate::types::RunConfigTask> = dag::ancestors(&rc.tasks, task_id)
        .iter()
        .filter_map(|id| rc.tasks.get(id))
        .collect();
    ancestors.sort_by(|a, b| (a.level, &a.name).cmp(&(b.level, &b.name)));
    let mut workspace_operations = Vec::new();
    for a in ancestors {
        let Some(rt) = run.tasks.get(&a.id) else {
            continue;
        };
        for (i, step) in rt.workspace_archives.iter().enumerate() {
            let succeeded = rt
                .steps
                .get(*step)
                .is_some_and(|s| s.phase == ExecutorTaskPhase::Success);
            let phase = rt.workspace_archives_phase.get(i).copied();
            if succeeded && phase.is_some_and(|p| p != FetchPhase::Notstarted) {
                workspace_operations.push(WorkspaceOperation {
                    task_id: a.id.clone(),
                    step: *step,
                    overwrite: false,
                });
            }
        }
    }
    let cache_prefix = if rc.cache_group.is_empty() {
        crate::runs::root_group(&rc.group)
            .unwrap_or_default()
            .to_owned()
    } else {
        rc.cache_group.clone()
    };
    Some(TaskSpecData {
        task_name: ct.name.clone(),
        arch: ct.runtime.arch.clone(),
        containers: ct.runtime.containers.clone(),
        environment,
        working_dir: ct.working_dir.clone(),
        shell: ct.shell.clone(),
        user: ct.user.clone(),
        privileged: ct.privileged(),
        workspace_operations,
        cache_prefix,
        steps: ct.steps.clone(),
    })
}

/// Runservice → executor messages.
#[derive(Debug, Clone, PartialEq)]
pub enum Down {
    Registered,
    /// An assignment, or a change of an assigned task (stop).
    Task(ExecutorTask, Box<TaskSpecData>),
    StopTask(String),
    TaskRemoved(String),
    /// Every ET of the executor (safety net after registration and periodically).
    TaskSync(Vec<(ExecutorTask, Box<TaskSpecData>)>, Time),
}

/// The executors connected to this instance, and the operations on executors and ETs.
#[derive(Debug, Clone)]
pub struct Hub {
    runs: Runs,
    connections: Arc<Mutex<HashMap<String, mpsc::Sender<Down>>>>,
    /// One lock per run being scheduled: passes of one run in this instance run one after
    /// the other instead of racing (and failing) on the run's CAS save.
    scheduling: Arc<std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>>,
}

pub type Result<T, E = RunError> = std::result::Result<T, E>;

impl Hub {
    pub fn new(runs: Runs) -> Self {
        Hub {
            runs,
            connections: Arc::new(Mutex::new(HashMap::new())),
            scheduling: Arc::default(),
        }
    }

    /// Registration (first message of a stream): stores the executor, removes stale dynamic
    /// siblings, remembers the connection, then answers `Registered` and a `TaskSync`.
    pub async fn register(
        &self,
        mut e: Executor,
        down: mpsc::Sender<Down>,
        now: Time,
    ) -> Result<()> {
        if e.id.is_empty() {
            return Err(RunError::BadRequest(
                "register without an executor id".to_owned(),
            ));
        }
        e.last_status_update_time = now;
        self.store_executor(&e).await?;
        self.connections
            .lock()
            .await
            .insert(e.id.clone(), down.clone());
        let _ = down.send(Down::Registered).await;
        self.sync_tasks(&e.id, now).await?;
        Ok(())
    }

    /// Heartbeat: refreshes the record (and its liveness) and removes stale dynamic siblings.
    pub async fn heartbeat(&self, mut e: Executor, now: Time) -> Result<()> {
        e.last_status_update_time = now;
        self.store_executor(&e).await
    }

    /// Forgets a connection (the record stays: liveness goes by heartbeat age).
    pub async fn disconnect(&self, executor_id: &str) {
        self.connections.lock().await.remove(executor_id);
    }

    async fn store_executor(&self, e: &Executor) -> Result<()> {
        let store = self.runs.store();
        store.put_executor(e).await?;
        // Other dynamic executors of the same group that the sender no longer sees are gone.
        for other in store.list_executors().await? {
            if other.id != e.id
                && other.dynamic
                && other.executor_group == e.executor_group
                && !e.siblings_executors.contains(&other.id)
            {
                tracing::info!(executor = %other.id, "removing stale dynamic sibling");
                store.delete_executor(&other.id).await?;
            }
        }
        Ok(())
    }

    async fn send(&self, executor_id: &str, msg: Down) {
        let tx = self.connections.lock().await.get(executor_id).cloned();
        if let Some(tx) = tx
            && tx.send(msg).await.is_err()
        {
            self.disconnect(executor_id).await;
        }
    }

    /// The spec data of an ET, from its run and run config.
    async fn with_spec(&self, et: &ExecutorTask) -> Result<Option<TaskSpecData>> {
        let Some((run, _)) = self.runs.store().get_run(&et.spec.run_id).await? else {
            return Ok(None);
        };
        let rc = self.runs.get_run_config(&run.id).await?;
        Ok(spec_data(&run, &rc, &et.id))
    }

    /// Pushes an ET put (assignment or stop change) to its executor if connected here.
    pub async fn push_task(&self, et: &ExecutorTask) -> Result<()> {
        if !self
            .connections
            .lock()
            .await
            .contains_key(&et.spec.executor_id)
        {
            return Ok(());
        }
        if let Some(spec) = self.with_spec(et).await? {
            self.send(&et.spec.executor_id, Down::Task(et.clone(), Box::new(spec)))
                .await;
        }
        Ok(())
    }

    /// Tells an executor that an ET is gone (it may drop the task's local data).
    pub async fn push_removed(&self, executor_id: &str, task_id: &str) {
        self.send(executor_id, Down::TaskRemoved(task_id.to_owned()))
            .await;
    }

    /// Tells every executor connected here that an ET is gone; executors ignore ids they do
    /// not run (a delete event does not say which executor had it).
    pub async fn broadcast_removed(&self, task_id: &str) {
        let ids: Vec<String> = self.connections.lock().await.keys().cloned().collect();
        for id in ids {
            self.send(&id, Down::TaskRemoved(task_id.to_owned())).await;
        }
    }

    /// Sends the executor every ET assigned to it.
    pub async fn sync_tasks(&self, executor_id: &str, now: Time) -> Result<()> {
        let mut tasks = Vec::new();
        for (et, _) in self.runs.store().list_executor_tasks().await? {
            if et.spec.executor_id == executor_id
                && let Some(spec) = self.with_spec(&et).await?
            {
                tasks.push((et, Box::new(spec)));
            }
        }
        self.send(executor_id, Down::TaskSync(tasks, now)).await;
        Ok(())
    }

    /// A status report (spec 20 §6.3). Returns the run id to schedule when the run task
    /// changed.
    pub async fn task_status(
        &self,
        executor_id: &str,
        task_id: &str,
        status: ExecutorTaskStatus,
        now: Time,
    ) -> Result<Option<String>> {
        let store = self.runs.store();
        let reported = status.phase;
        let Some(et) = store.update_executor_task_status(task_id, status).await? else {
            self.push_removed(executor_id, task_id).await;
            return Ok(None);
        };
        if et.status.phase.is_finished() && reported == ExecutorTaskPhase::Running {
            // Declared lost and come back: the stored end is final.
            self.send(executor_id, Down::StopTask(task_id.to_owned()))
                .await;
            return Ok(None);
        }
        store.handle_executor_task_update(task_id, now).await?;
        Ok(Some(et.spec.run_id))
    }

    /// Schedules a run (the IO around the pure planner).
    pub async fn schedule(&self, run_id: &str, now: Time, alive_timeout: Duration) -> Result<()> {
        let lock = {
            let mut map = self.scheduling.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(run_id.to_owned()).or_default().clone()
        };
        let result = {
            let _guard = lock.lock().await;
            self.schedule_locked(run_id, now, alive_timeout).await
        };
        let mut map = self.scheduling.lock().unwrap_or_else(|p| p.into_inner());
        // The map's own reference and ours: nobody else waits for this run.
        if Arc::strong_count(&lock) <= 2 {
            map.remove(run_id);
        }
        result
    }

    async fn schedule_locked(
        &self,
        run_id: &str,
        now: Time,
        alive_timeout: Duration,
    ) -> Result<()> {
        let rc = self.runs.get_run_config(run_id).await?;
        // A pass that lost a race with another save of the run is retried at once (a few
        // times): waiting for the next periodic pass would add its whole interval to the
        // latency of every task.
        for _ in 0..5 {
            match self
                .runs
                .store()
                .schedule_run(run_id, &rc, now, alive_timeout)
                .await
            {
                Ok(o) if o.conflict => continue,
                Ok(_) | Err(StoreError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// ET cleaner pass (spec 20 §6.4). Returns the runs to schedule.
    pub async fn clean_tasks(&self, now: Time) -> Result<Vec<String>> {
        let store = self.runs.store();
        let executors: std::collections::HashSet<String> = store
            .list_executors()
            .await?
            .into_iter()
            .map(|e| e.id)
            .collect();
        let mut touched = Vec::new();
        for (mut et, rev) in store.list_executor_tasks().await? {
            let run = store.get_run(&et.spec.run_id).await?;
            if et.status.phase.is_finished() {
                match run {
                    None => {
                        let _ = store.delete_executor_task(&et.id, rev).await;
                    }
                    Some((run, _)) if run.phase.is_terminal() && !et.spec.stop => {
                        et.spec.stop = true;
                        if store.save_executor_task(&et, rev).await.is_ok() {
                            self.push_task(&et).await?;
                        }
                    }
                    _ => {}
                }
            } else if !executors.contains(&et.spec.executor_id) {
                fail_task(&mut et.status, "executor deleted", now);
                if store.save_executor_task(&et, rev).await.is_ok() {
                    store.handle_executor_task_update(&et.id, now).await?;
                    touched.push(et.spec.run_id.clone());
                }
            }
        }
        Ok(touched)
    }

    /// Liveness pass (spec 20 §6.5, improvement): executors without a heartbeat for
    /// `dead_timeout` (counted from the later of their last update and `checker_start`) are
    /// declared dead: their unfinished ETs fail with a reason and the record is deleted.
    /// Returns the runs to schedule.
    pub async fn check_liveness(
        &self,
        now: Time,
        checker_start: Time,
        dead_timeout: Duration,
    ) -> Result<Vec<String>> {
        let store = self.runs.store();
        let mut touched = Vec::new();
        for e in store.list_executors().await? {
            let since = e.last_status_update_time.max(checker_start);
            let dead = now
                .signed_duration_since(since)
                .to_std()
                .is_ok_and(|age| age > dead_timeout);
            if !dead {
                continue;
            }
            tracing::warn!(executor = %e.id, "executor declared dead");
            let reason = format!(
                "executor lost: no heartbeat since {}",
                e.last_status_update_time.to_rfc3339()
            );
            for (mut et, rev) in store.list_executor_tasks().await? {
                if et.spec.executor_id == e.id && !et.status.phase.is_finished() {
                    fail_task(&mut et.status, &reason, now);
                    if store.save_executor_task(&et, rev).await.is_ok() {
                        store.handle_executor_task_update(&et.id, now).await?;
                        touched.push(et.spec.run_id.clone());
                    }
                }
            }
            store.delete_executor(&e.id).await?;
        }
        Ok(touched)
    }
}

/// Marks a task failed with `reason`: running steps fail, end times set.
fn fail_task(status: &mut ExecutorTaskStatus, reason: &str, now: Time) {
    status.phase = ExecutorTaskPhase::Failed;
    status.fail_error = reason.to_owned();
    status.end_time = Some(now);
    for s in std::iter::once(&mut status.setup_step).chain(status.steps.iter_mut()) {
        if s.phase == ExecutorTaskPhase::Running {
            s.phase = ExecutorTaskPhase::Failed;
            s.end_time = Some(now);
        }
    }
}

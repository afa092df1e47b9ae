//! Run operations (spec 20 §3, §5): creation with the per-root-group counter and the run
//! config in the datamanager, reads (KV first, then the datamanager), phase changes, stop,
//! task annotations and approval, and restart. Domain only: no proto types.

use std::collections::BTreeMap;
use std::time::Duration;

use agola_common::ApiError;
use agola_datamanager::{Action, ChangeGroupsUpdateToken, DataManager, group_name};
use agola_kv::changegroup::ChangeGroups;
use agola_kv::sequence::Backoff;

use crate::create::{self, BuildError, CreateRunRequest, RecreateRequest};
use crate::store::{Store, StoreError};
use crate::types::{Run, RunConfig, RunPhase, RunTask, Time};

/// Datamanager data types of the runservice.
pub const DATA_RUN: &str = "run";
pub const DATA_RUN_CONFIG: &str = "runconfig";
pub const DATA_RUN_COUNTER: &str = "runcounter";

/// Errors of run operations, named for what the caller does.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    BadRequest(String),
    #[error("run cannot be restarted: {0}")]
    NotRestartable(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("concurrent update: {0}")]
    Concurrency(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for RunError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(w) => RunError::NotFound(w),
            StoreError::AlreadyExists(w) => RunError::Internal(format!("{w} already exists")),
            StoreError::Concurrency(w) => RunError::Concurrency(w),
            StoreError::Kv(e) => RunError::Unavailable(e.to_string()),
            e @ StoreError::Corrupted { .. } => RunError::Internal(e.to_string()),
        }
    }
}

impl From<agola_datamanager::Error> for RunError {
    fn from(e: agola_datamanager::Error) -> Self {
        match e {
            agola_datamanager::Error::NotExist { data_type, id } => {
                RunError::NotFound(format!("{data_type} {id}"))
            }
            agola_datamanager::Error::BadRequest(m) => RunError::BadRequest(m),
            agola_datamanager::Error::Concurrency(m) => RunError::Concurrency(m),
            agola_datamanager::Error::Unavailable(m) => RunError::Unavailable(m),
            e @ agola_datamanager::Error::Corrupted(_) => RunError::Internal(e.to_string()),
        }
    }
}

impl From<agola_kv::Error> for RunError {
    fn from(e: agola_kv::Error) -> Self {
        match e {
            agola_kv::Error::InvalidArgument(m) => RunError::BadRequest(m),
            agola_kv::Error::Concurrency(m) => RunError::Concurrency(m),
            other => RunError::Unavailable(other.to_string()),
        }
    }
}

impl From<BuildError> for RunError {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::BadRequest(m) => RunError::BadRequest(m),
            BuildError::NotRestartable(m) => RunError::NotRestartable(m),
        }
    }
}

impl From<RunError> for ApiError {
    fn from(e: RunError) -> Self {
        match &e {
            RunError::BadRequest(_) => ApiError::bad_request(e.to_string()),
            RunError::NotRestartable(_) => {
                ApiError::bad_request(e.to_string()).with_code("run_not_restartable")
            }
            RunError::NotFound(_) => ApiError::not_found(e.to_string()),
            RunError::Concurrency(_) => ApiError::concurrency(e.to_string()),
            RunError::Unavailable(_) => ApiError::unavailable(e.to_string()),
            RunError::Internal(_) => ApiError::internal(e.to_string()),
        }
    }
}

impl From<RunError> for tonic::Status {
    fn from(e: RunError) -> Self {
        ApiError::from(e).to_status()
    }
}

pub type Result<T, E = RunError> = std::result::Result<T, E>;

/// The root group of a run group path: its second element (`/project/<id>/...` → `<id>`).
pub fn root_group(group: &str) -> Option<&str> {
    group.split('/').filter(|s| !s.is_empty()).nth(1)
}

/// Run operations over the live store and the datamanager.
#[derive(Debug, Clone)]
pub struct Runs {
    store: Store,
    dm: DataManager,
    /// The runservice's KV change groups (`scheduler/`, window 100).
    kv_groups: ChangeGroups,
}

impl Runs {
    pub fn new(store: Store, dm: DataManager) -> Self {
        Runs {
            store,
            dm,
            kv_groups: ChangeGroups::new("scheduler/", 100),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn datamanager(&self) -> &DataManager {
        &self.dm
    }

    /// Creates a run (spec 20 §3.1): id from `runsequence`; DAG problems become setup errors;
    /// the root group's counter and the run config go in one WAL guarded by the counter's
    /// change group (retried on concurrent creations); then the run and its event in one txn.
    pub async fn create_run(&self, req: CreateRunRequest, now: Time) -> Result<(Run, RunConfig)> {
        let Some(root) = root_group(&req.group).map(str::to_owned) else {
            return Err(RunError::BadRequest(format!(
                "run group {:?} must be an absolute path with a root group",
                req.group
            )));
        };
        let id = self.store.next_run_id().await?;
        let (mut run, rc) = create::new_run(&id, 0, req, now)?;
        run.counter = self.commit_counter_and_config(&root, &rc).await?;
        self.store.create_run(&run, now).await?;
        Ok((run, rc))
    }

    /// Increments the root group's counter and stores the run config in one WAL; retried with
    /// backoff when another creation in the same root group won (Agola failed one of them).
    async fn commit_counter_and_config(&self, root: &str, rc: &RunConfig) -> Result<u64> {
        let group = group_name("counter", root);
        let rc_bytes = serde_json::to_vec(rc).map_err(|e| RunError::Internal(e.to_string()))?;
        let mut backoff = Backoff::new(Duration::from_secs(10));
        loop {
            let (current, token) = self
                .dm
                .get(DATA_RUN_COUNTER, root, std::slice::from_ref(&group))
                .await?;
            let counter: u64 = match current {
                Some(bytes) => std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .ok_or_else(|| {
                        RunError::Internal(format!("run counter of {root} is not a number"))
                    })?,
                None => 0,
            };
            let next = counter + 1;
            let actions = vec![
                Action::put(DATA_RUN_COUNTER, root, next.to_string().into_bytes()),
                Action::put(DATA_RUN_CONFIG, rc.id.clone(), rc_bytes.clone()),
            ];
            match self.dm.write_wal(actions, Some(&token)).await {
                Ok(_) => return Ok(next),
                Err(agola_datamanager::Error::Concurrency(_)) => {
                    if !backoff.wait().await {
                        return Err(RunError::Concurrency(format!(
                            "too many concurrent run creations in {root}"
                        )));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The run config of `id` from the datamanager.
    pub async fn get_run_config(&self, id: &str) -> Result<RunConfig> {
        let (bytes, _) = self.dm.read(DATA_RUN_CONFIG, id, &[]).await?;
        serde_json::from_slice(&bytes).map_err(|e| RunError::Internal(e.to_string()))
    }

    /// A run (live in KV, else archived in the datamanager) and its config.
    pub async fn get_run(&self, id: &str) -> Result<(Run, RunConfig)> {
        let run = match self.store.get_run(id).await? {
            Some((run, _)) => run,
            None => {
                let (bytes, _) = self.dm.read(DATA_RUN, id, &[]).await.map_err(|e| {
                    if e.is_not_exist() {
                        RunError::NotFound(format!("run {id}"))
                    } else {
                        e.into()
                    }
                })?;
                serde_json::from_slice(&bytes).map_err(|e| RunError::Internal(e.to_string()))?
            }
        };
        let rc = self.get_run_config(id).await?;
        Ok((run, rc))
    }

    /// A token over the runservice's KV change groups (`approval-<runID>`,
    /// `changegroup-<runGroup>`), given as `<kind>-<value>` ids.
    pub async fn kv_token(&self, groups: &[String]) -> Result<ChangeGroupsUpdateToken> {
        let names: Vec<String> = groups
            .iter()
            .map(|g| {
                g.split_once('-')
                    .map(|(k, v)| group_name(k, v))
                    .ok_or_else(|| RunError::BadRequest(format!("invalid change group {g:?}")))
            })
            .collect::<Result<_>>()?;
        Ok(self
            .kv_groups
            .token(self.store.kv().as_ref(), &names)
            .await?)
    }

    /// Loads a live run, applies `change`, and CAS-saves it (guarded by `token` when given),
    /// retrying when only the run moved and no token was given.
    async fn modify_live_run(
        &self,
        id: &str,
        token: Option<&ChangeGroupsUpdateToken>,
        now: Time,
        change: impl Fn(&mut Run) -> Result<()>,
    ) -> Result<Run> {
        loop {
            let Some((run, rev)) = self.store.get_run(id).await? else {
                // Archived runs are terminal: no action applies to them.
                return match self.dm.read(DATA_RUN, id, &[]).await {
                    Ok(_) => Err(RunError::BadRequest(format!("run {id} is archived"))),
                    Err(_) => Err(RunError::NotFound(format!("run {id}"))),
                };
            };
            let mut next = run.clone();
            change(&mut next)?;
            let (compares, ops) = match token {
                Some(t) => self.kv_groups.guard(t),
                None => (Vec::new(), Vec::new()),
            };
            match self
                .store
                .save_run(&next, &run, rev, now, compares, ops)
                .await
            {
                Ok(_) => return Ok(next),
                Err(StoreError::Concurrency(w)) if token.is_some() => {
                    return Err(RunError::Concurrency(w));
                }
                Err(StoreError::Concurrency(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Phase change (spec 20 §5): `queued → running` (the scheduler, with the run group's
    /// token) or `queued → cancelled`; anything else is a bad request.
    pub async fn change_phase(
        &self,
        id: &str,
        phase: RunPhase,
        token: Option<&ChangeGroupsUpdateToken>,
        now: Time,
    ) -> Result<Run> {
        self.modify_live_run(id, token, now, |run| {
            match (run.phase, phase) {
                (RunPhase::Queued, RunPhase::Running) => {
                    run.phase = RunPhase::Running;
                    run.start_time = Some(now);
                }
                (RunPhase::Queued, RunPhase::Cancelled) => {
                    run.phase = RunPhase::Cancelled;
                    run.end_time = Some(now);
                }
                (from, to) => {
                    return Err(RunError::BadRequest(format!(
                        "cannot change run phase from {from:?} to {to:?}"
                    )));
                }
            }
            Ok(())
        })
        .await
    }

    /// Stop (only while running): sets `stop` and clears every `waiting_approval`.
    pub async fn stop(&self, id: &str, now: Time) -> Result<Run> {
        self.modify_live_run(id, None, now, |run| {
            if run.phase != RunPhase::Running {
                return Err(RunError::BadRequest(format!(
                    "run {} is {:?}, only running runs can be stopped",
                    run.id, run.phase
                )));
            }
            run.stop = true;
            for t in run.tasks.values_mut() {
                t.waiting_approval = false;
            }
            Ok(())
        })
        .await
    }

    /// Replaces a task's whole annotation map.
    pub async fn set_task_annotations(
        &self,
        id: &str,
        task_id: &str,
        annotations: BTreeMap<String, String>,
        token: Option<&ChangeGroupsUpdateToken>,
        now: Time,
    ) -> Result<Run> {
        self.modify_live_run(id, token, now, |run| {
            let t = run
                .tasks
                .get_mut(task_id)
                .ok_or_else(|| RunError::NotFound(format!("task {task_id} of run {id}")))?;
            t.annotations.clone_from(&annotations);
            Ok(())
        })
        .await
    }

    /// Approves a task waiting for approval.
    pub async fn approve_task(
        &self,
        id: &str,
        task_id: &str,
        token: Option<&ChangeGroupsUpdateToken>,
        now: Time,
    ) -> Result<Run> {
        self.modify_live_run(id, token, now, |run| {
            let t = run
                .tasks
                .get_mut(task_id)
                .ok_or_else(|| RunError::NotFound(format!("task {task_id} of run {id}")))?;
            if !t.waiting_approval || t.approved {
                return Err(RunError::BadRequest(format!(
                    "task {task_id} is not waiting for approval"
                )));
            }
            t.approved = true;
            t.waiting_approval = false;
            Ok(())
        })
        .await
    }

    /// Restarts a run (spec 20 §3.2) into a new run with a new counter value.
    pub async fn recreate_run(
        &self,
        id: &str,
        req: RecreateRequest,
        now: Time,
    ) -> Result<(Run, RunConfig)> {
        let (src_run, src_rc) = self.get_run(id).await?;
        let Some(root) = root_group(&src_run.group).map(str::to_owned) else {
            return Err(RunError::Internal(format!("run {id} has no root group")));
        };
        let new_id = self.store.next_run_id().await?;
        let (mut run, rc) = create::recreate_run(&src_run, &src_rc, &new_id, 0, req, now, || {
            uuid::Uuid::new_v4().to_string()
        })?;
        run.counter = self.commit_counter_and_config(&root, &rc).await?;
        self.store.create_run(&run, now).await?;
        Ok((run, rc))
    }
}

/// A query over runs (ListRuns).
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    pub phases: Vec<RunPhase>,
    pub results: Vec<crate::types::RunResult>,
    /// Group path prefixes matched on whole path elements; empty = all.
    pub groups: Vec<String>,
    pub last_run: bool,
    pub start_run_id: Option<String>,
    pub limit: usize,
    pub ascending: bool,
}

/// Whether `group` is `prefix` or below it (whole path elements: `/a/b` is not under `/a/bc`).
pub fn group_matches(group: &str, prefix: &str) -> bool {
    let p = prefix.trim_end_matches('/');
    p.is_empty() || group == p || group.starts_with(&format!("{p}/"))
}

impl Runs {
    /// Every run, live (KV) and archived (datamanager), by id. A scan: correct, but O(runs);
    /// the read model and runs index that make it cheap are not built yet.
    async fn all_runs(&self) -> Result<Vec<Run>> {
        let mut by_id: BTreeMap<String, Run> = BTreeMap::new();
        let (archived, _) = self.dm.list(DATA_RUN, &[]).await?;
        for (id, bytes) in archived {
            let run: Run =
                serde_json::from_slice(&bytes).map_err(|e| RunError::Internal(e.to_string()))?;
            by_id.insert(id, run);
        }
        for (run, _) in self.store.list_runs().await? {
            by_id.insert(run.id.clone(), run);
        }
        Ok(by_id.into_values().collect())
    }

    /// Runs matching `q`, ordered by id (ascending or descending), paged by id.
    pub async fn list_runs(&self, q: &RunQuery) -> Result<Vec<Run>> {
        let limit = if q.limit == 0 { 25 } else { q.limit.min(40) };
        let mut runs: Vec<Run> = self
            .all_runs()
            .await?
            .into_iter()
            .filter(|r| q.phases.is_empty() || q.phases.contains(&r.phase))
            .filter(|r| q.results.is_empty() || q.results.contains(&r.result))
            .filter(|r| q.groups.is_empty() || q.groups.iter().any(|g| group_matches(&r.group, g)))
            .collect();
        if q.last_run {
            let mut newest: BTreeMap<String, Run> = BTreeMap::new();
            for r in runs {
                match newest.get(&r.group) {
                    Some(cur) if cur.id >= r.id => {}
                    _ => {
                        newest.insert(r.group.clone(), r);
                    }
                }
            }
            runs = newest.into_values().collect();
            runs.sort_by(|a, b| a.id.cmp(&b.id));
        }
        if !q.ascending {
            runs.reverse();
        }
        let out = runs
            .into_iter()
            .filter(|r| match &q.start_run_id {
                Some(s) if q.ascending => r.id > *s,
                Some(s) => r.id < *s,
                None => true,
            })
            .take(limit)
            .collect();
        Ok(out)
    }

    /// The run numbered `counter` in the root group of `group`.
    pub async fn get_run_by_group(&self, group: &str, counter: u64) -> Result<(Run, RunConfig)> {
        let root = root_group(group)
            .ok_or_else(|| RunError::BadRequest(format!("invalid group {group:?}")))?;
        let run = self
            .all_runs()
            .await?
            .into_iter()
            .find(|r| r.counter == counter && root_group(&r.group) == Some(root))
            .ok_or_else(|| RunError::NotFound(format!("run {counter} of {group}")))?;
        let rc = self.get_run_config(&run.id).await?;
        Ok((run, rc))
    }

    /// Runs of exactly `group`, paged by counter.
    pub async fn list_group_runs(
        &self,
        group: &str,
        phases: &[RunPhase],
        results: &[crate::types::RunResult],
        start_counter: Option<u64>,
        limit: usize,
        ascending: bool,
    ) -> Result<Vec<Run>> {
        let limit = if limit == 0 { 25 } else { limit.min(40) };
        let mut runs: Vec<Run> = self
            .all_runs()
            .await?
            .into_iter()
            .filter(|r| r.group == group)
            .filter(|r| phases.is_empty() || phases.contains(&r.phase))
            .filter(|r| results.is_empty() || results.contains(&r.result))
            .collect();
        runs.sort_by_key(|r| r.counter);
        if !ascending {
            runs.reverse();
        }
        Ok(runs
            .into_iter()
            .filter(|r| match start_counter {
                Some(c) if ascending => r.counter > c,
                Some(c) => r.counter < c,
                None => true,
            })
            .take(limit)
            .collect())
    }

    /// Archiver pass (spec 20 §11.1): a live run that is terminal, has every log and archive
    /// fetched and no ET left is marked `archived` (CAS), written to the datamanager, then
    /// removed from KV (CAS). A crash between the steps is repaired by the next pass (the
    /// WAL put is idempotent). Returns the ids archived.
    pub async fn archive_pass(&self, now: Time) -> Result<Vec<String>> {
        let mut archived = Vec::new();
        let mut live = self.store.list_runs().await?;
        live.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        for (run, _) in live {
            if !run.phase.is_terminal() || !run.tasks.values().all(RunTask::fetch_done) {
                continue;
            }
            let Some((run, rev, at)) = self.store.get_run_snapshot(&run.id).await? else {
                continue;
            };
            if !self.store.run_executor_tasks(&run, at).await?.is_empty() {
                continue;
            }
            let (run, rev) = if run.archived {
                (run, rev)
            } else {
                let mut next = run.clone();
                next.archived = true;
                match self
                    .store
                    .save_run(&next, &run, rev, now, vec![], vec![])
                    .await
                {
                    Ok(_) => {}
                    Err(StoreError::Concurrency(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
                match self.store.get_run(&run.id).await? {
                    Some(r) => r,
                    None => continue,
                }
            };
            let bytes = serde_json::to_vec(&run).map_err(|e| RunError::Internal(e.to_string()))?;
            self.dm
                .write_wal(vec![Action::put(DATA_RUN, run.id.clone(), bytes)], None)
                .await?;
            match self.store.delete_run(&run.id, rev).await {
                Ok(()) => archived.push(run.id.clone()),
                Err(StoreError::Concurrency(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(archived)
    }

    /// Deletes an archived run and its config (the counter stays). Live runs are refused:
    /// a run is deletable only once archived. Returns the deleted run (its tasks' data is
    /// released by the caller).
    pub async fn delete_run(&self, id: &str) -> Result<Run> {
        if self.store.get_run(id).await?.is_some() {
            return Err(RunError::BadRequest(format!("run {id} not archived yet")));
        }
        let (bytes, _) = self.dm.read(DATA_RUN, id, &[]).await.map_err(|e| {
            if e.is_not_exist() {
                RunError::NotFound(format!("run {id}"))
            } else {
                e.into()
            }
        })?;
        let run: Run =
            serde_json::from_slice(&bytes).map_err(|e| RunError::Internal(e.to_string()))?;
        if !run.phase.is_terminal() {
            return Err(RunError::BadRequest(format!("run {id} is not finished")));
        }
        self.dm
            .write_wal(
                vec![
                    Action::delete(DATA_RUN, id),
                    Action::delete(DATA_RUN_CONFIG, id),
                ],
                None,
            )
            .await?;
        Ok(run)
    }
}

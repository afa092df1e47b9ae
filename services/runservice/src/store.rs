//! Live state in the KV store (spec 20 §1): runs, executor tasks (ETs), executors and run
//! events under the `scheduler/` prefix of the runservice namespace, with the CAS rules the
//! scheduler relies on. `schedule_run` is the IO around the pure [`crate::scheduler::plan`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use agola_kv::sequence::increment;
use agola_kv::{Compare, CompareOp, EventKind, KeyRange, Kv, KvExt, Op, RangeRequest, Txn};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::scheduler::{self, NoExecutor, PlanInput};
use crate::types::{Executor, ExecutorTask, Run, RunConfig, RunEvent, Time};

pub const RUNS: &str = "scheduler/runs/";
pub const TASKS: &str = "scheduler/tasks/";
pub const EXECUTORS: &str = "scheduler/executors/";
pub const EVENTS: &str = "scheduler/runevents/";
pub const RUN_SEQUENCE: &str = "scheduler/runsequence";
pub const EVENT_SEQUENCE: &str = "scheduler/runeventsequence";
/// Sequence of the newest event removed by retention: a replay from before it is truncated.
pub const EVENTS_RETAINED_FROM: &str = "scheduler/runeventsretention";

/// Errors of the live store, named for what the caller does.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The record changed since it was read: re-read and retry (or let the next pass do it).
    #[error("concurrent update of {0}")]
    Concurrency(String),
    #[error("kv store: {0}")]
    Kv(#[from] agola_kv::Error),
    #[error("corrupted record {key}: {reason}")]
    Corrupted { key: String, reason: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

fn encode<T: Serialize>(key: &str, v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupted {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupted {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

/// What one scheduling pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScheduleOutcome {
    /// The run was saved (it changed).
    pub saved: bool,
    /// An event was written (phase or result changed).
    pub event: Option<RunEvent>,
    /// ETs created by this pass (others may have been created concurrently).
    pub created: Vec<String>,
    /// ETs given `spec.stop`.
    pub stopped: Vec<String>,
    pub blocked: Option<(String, NoExecutor)>,
    /// The run changed while the pass computed: nothing was saved; the caller may retry.
    pub conflict: bool,
}

/// The runservice's live state in KV.
#[derive(Debug, Clone)]
pub struct Store {
    kv: Arc<dyn Kv>,
}

impl Store {
    /// `kv` is the runservice's namespace (e.g. `Prefixed(kv, "runservice/")`).
    pub fn new(kv: Arc<dyn Kv>) -> Self {
        Store { kv }
    }

    pub fn kv(&self) -> &Arc<dyn Kv> {
        &self.kv
    }

    /// A new run id (shared by run and run config): an epoch-sortable sequence.
    pub async fn next_run_id(&self) -> Result<String> {
        Ok(increment(self.kv.as_ref(), RUN_SEQUENCE).await?.to_string())
    }

    async fn new_event(&self, run: &Run, now: Time) -> Result<RunEvent> {
        Ok(RunEvent {
            sequence: increment(self.kv.as_ref(), EVENT_SEQUENCE)
                .await?
                .to_string(),
            run_id: run.id.clone(),
            group: run.group.clone(),
            phase: run.phase,
            result: run.result,
            time: now,
        })
    }

    /// Creates the run key only if absent, with its creation event, in one txn.
    pub async fn create_run(&self, run: &Run, now: Time) -> Result<RunEvent> {
        let key = format!("{RUNS}{}", run.id);
        let event = self.new_event(run, now).await?;
        let ev_key = format!("{EVENTS}{}", event.sequence);
        let resp = self
            .kv
            .txn(Txn::new().when([Compare::absent(key.as_str())]).and_then([
                Op::put(key.as_str(), encode(&key, run)?),
                Op::put(ev_key.as_str(), encode(&ev_key, &event)?),
            ]))
            .await?;
        if !resp.succeeded {
            return Err(StoreError::AlreadyExists(format!("run {}", run.id)));
        }
        Ok(event)
    }

    /// The live run and its revision (the KV mod revision), if present.
    pub async fn get_run(&self, id: &str) -> Result<Option<(Run, i64)>> {
        let key = format!("{RUNS}{id}");
        match self.kv.get(&key).await? {
            Some(kv) => Ok(Some((decode(&key, &kv.value)?, kv.mod_revision))),
            None => Ok(None),
        }
    }

    /// The live run, its revision, and the store revision the read happened at (ETs are read
    /// at that revision, so run and ETs form one consistent snapshot).
    pub async fn get_run_snapshot(&self, id: &str) -> Result<Option<(Run, i64, i64)>> {
        let key = format!("{RUNS}{id}");
        let resp = self.kv.range(RangeRequest::key(key.as_str())).await?;
        match resp.kvs.first() {
            Some(kv) => Ok(Some((
                decode(&key, &kv.value)?,
                kv.mod_revision,
                resp.revision,
            ))),
            None => Ok(None),
        }
    }

    /// Every live run.
    pub async fn list_runs(&self) -> Result<Vec<(Run, i64)>> {
        let resp = self.kv.get_prefix(RUNS, 200).await?;
        resp.kvs
            .iter()
            .map(|kv| Ok((decode(&kv.key, &kv.value)?, kv.mod_revision)))
            .collect()
    }

    /// Saves `run` if it differs from `prev`, as a CAS on `revision`; writes one event in the
    /// same txn when phase or result changed. Extra compares/ops join the txn (a change-group
    /// token's guard). Returns the event written, if any.
    pub async fn save_run(
        &self,
        run: &Run,
        prev: &Run,
        revision: i64,
        now: Time,
        extra_compares: Vec<Compare>,
        extra_ops: Vec<Op>,
    ) -> Result<Option<RunEvent>> {
        if run == prev {
            return Ok(None);
        }
        let key = format!("{RUNS}{}", run.id);
        let mut ops = vec![Op::put(key.as_str(), encode(&key, run)?)];
        let event = if run.phase != prev.phase || run.result != prev.result {
            let ev = self.new_event(run, now).await?;
            let ev_key = format!("{EVENTS}{}", ev.sequence);
            ops.push(Op::put(ev_key.as_str(), encode(&ev_key, &ev)?));
            Some(ev)
        } else {
            None
        };
        ops.extend(extra_ops);
        let mut compares = vec![Compare::mod_revision(
            key.as_str(),
            CompareOp::Equal,
            revision,
        )];
        compares.extend(extra_compares);
        let resp = self.kv.txn(Txn::new().when(compares).and_then(ops)).await?;
        if !resp.succeeded {
            return Err(StoreError::Concurrency(format!("run {}", run.id)));
        }
        Ok(event)
    }

    /// Removes a live run from KV (after the archiver stored it in the datamanager), as a CAS
    /// on its revision.
    pub async fn delete_run(&self, id: &str, revision: i64) -> Result<()> {
        let key = format!("{RUNS}{id}");
        let resp = self
            .kv
            .txn(
                Txn::new()
                    .when(vec![Compare::mod_revision(
                        key.as_str(),
                        CompareOp::Equal,
                        revision,
                    )])
                    .and_then(vec![Op::delete(key.as_str())]),
            )
            .await?;
        if !resp.succeeded {
            return Err(StoreError::Concurrency(format!("run {id}")));
        }
        Ok(())
    }

    /// The ETs of `run`'s tasks, finished ones included, read at `revision` (the store
    /// revision the run was read at, not the run's mod revision) in txns of at most 10 keys.
    pub async fn run_executor_tasks(
        &self,
        run: &Run,
        revision: i64,
    ) -> Result<BTreeMap<String, ExecutorTask>> {
        let ids: Vec<&String> = run.tasks.keys().collect();
        let mut out = BTreeMap::new();
        for chunk in ids.chunks(10) {
            for id in chunk {
                let key = format!("{TASKS}{id}");
                let resp = self
                    .kv
                    .range(RangeRequest::key(key.as_str()).at_revision(revision))
                    .await;
                // A revision compacted away: read the current state instead (still safe: the
                // run save is a CAS on the run's revision).
                let resp = match resp {
                    Err(agola_kv::Error::Compacted { .. }) => {
                        self.kv.range(RangeRequest::key(key.as_str())).await?
                    }
                    other => other?,
                };
                if let Some(kv) = resp.kvs.first() {
                    let et: ExecutorTask = decode(&key, &kv.value)?;
                    out.insert(et.id.clone(), et);
                }
            }
        }
        Ok(out)
    }

    /// Every ET with its mod revision.
    pub async fn list_executor_tasks(&self) -> Result<Vec<(ExecutorTask, i64)>> {
        let resp = self.kv.get_prefix(TASKS, 200).await?;
        resp.kvs
            .iter()
            .map(|kv| Ok((decode(&kv.key, &kv.value)?, kv.mod_revision)))
            .collect()
    }

    pub async fn get_executor_task(&self, id: &str) -> Result<Option<(ExecutorTask, i64)>> {
        let key = format!("{TASKS}{id}");
        match self.kv.get(&key).await? {
            Some(kv) => Ok(Some((decode(&key, &kv.value)?, kv.mod_revision))),
            None => Ok(None),
        }
    }

    /// Creates the ET only if absent (at-most-once dispatch); `false` when it existed.
    pub async fn create_executor_task(&self, et: &ExecutorTask) -> Result<bool> {
        let key = format!("{TASKS}{}", et.id);
        let resp = self
            .kv
            .txn(
                Txn::new()
                    .when([Compare::absent(key.as_str())])
                    .and_then([Op::put(key.as_str(), encode(&key, et)?)]),
            )
            .await?;
        Ok(resp.succeeded)
    }

    /// CAS-saves an ET read at `revision`.
    pub async fn save_executor_task(&self, et: &ExecutorTask, revision: i64) -> Result<()> {
        let key = format!("{TASKS}{}", et.id);
        let resp = self
            .kv
            .txn(
                Txn::new()
                    .when([Compare::mod_revision(
                        key.as_str(),
                        CompareOp::Equal,
                        revision,
                    )])
                    .and_then([Op::put(key.as_str(), encode(&key, et)?)]),
            )
            .await?;
        if !resp.succeeded {
            return Err(StoreError::Concurrency(format!("executor task {}", et.id)));
        }
        Ok(())
    }

    pub async fn delete_executor_task(&self, id: &str, revision: i64) -> Result<()> {
        let key = format!("{TASKS}{id}");
        let resp = self
            .kv
            .txn(
                Txn::new()
                    .when([Compare::mod_revision(
                        key.as_str(),
                        CompareOp::Equal,
                        revision,
                    )])
                    .and_then([Op::delete(key.as_str())]),
            )
            .await?;
        if !resp.succeeded {
            return Err(StoreError::Concurrency(format!("executor task {id}")));
        }
        Ok(())
    }

    pub async fn put_executor(&self, e: &Executor) -> Result<()> {
        let key = format!("{EXECUTORS}{}", e.id);
        self.kv.put(&key, encode(&key, e)?).await?;
        Ok(())
    }

    pub async fn list_executors(&self) -> Result<Vec<Executor>> {
        let resp = self.kv.get_prefix(EXECUTORS, 200).await?;
        resp.kvs
            .iter()
            .map(|kv| decode(&kv.key, &kv.value))
            .collect()
    }

    /// Deletes an executor record; `false` when it did not exist.
    pub async fn delete_executor(&self, id: &str) -> Result<bool> {
        Ok(self.kv.delete(&format!("{EXECUTORS}{id}")).await?)
    }

    /// One scheduling pass over a run (spec 20 §4.1): load run and ETs at one revision, plan,
    /// save only if changed (with one event if phase or result changed), then stop and create
    /// ETs. A lost CAS ends the pass: the next trigger retries with fresh state.
    pub async fn schedule_run(
        &self,
        run_id: &str,
        rc: &RunConfig,
        now: Time,
        alive_timeout: Duration,
    ) -> Result<ScheduleOutcome> {
        let Some((run, revision, read_revision)) = self.get_run_snapshot(run_id).await? else {
            return Err(StoreError::NotFound(format!("run {run_id}")));
        };
        let ets = self.run_executor_tasks(&run, read_revision).await?;
        let executors = self.list_executors().await?;
        let mut load: BTreeMap<String, u32> = BTreeMap::new();
        for (et, _) in self.list_executor_tasks().await? {
            if !et.status.phase.is_finished() {
                *load.entry(et.spec.executor_id).or_default() += 1;
            }
        }
        let plan = scheduler::plan(PlanInput {
            run: &run,
            rc,
            ets: &ets,
            executors: &executors,
            executor_load: &load,
            now,
            alive_timeout,
        });
        let mut outcome = ScheduleOutcome {
            blocked: plan.blocked.clone(),
            ..Default::default()
        };
        if plan.run != run {
            match self
                .save_run(&plan.run, &run, revision, now, Vec::new(), Vec::new())
                .await
            {
                Ok(ev) => {
                    outcome.saved = true;
                    outcome.event = ev;
                }
                Err(StoreError::Concurrency(what)) => {
                    tracing::debug!(%what, "run modified during the pass");
                    outcome.conflict = true;
                    return Ok(outcome);
                }
                Err(e) => return Err(e),
            }
        }
        for id in &plan.stop {
            if let Some((mut et, rev)) = self.get_executor_task(id).await?
                && !et.spec.stop
            {
                et.spec.stop = true;
                if self.save_executor_task(&et, rev).await.is_ok() {
                    outcome.stopped.push(id.clone());
                }
            }
        }
        for et in &plan.create {
            if self.create_executor_task(et).await? {
                outcome.created.push(et.id.clone());
            }
        }
        Ok(outcome)
    }

    /// Applies an executor's status report to its ET (spec 20 §6.3): only `status` is
    /// replaced, CAS-saved with re-reads on conflict. Returns `None` when the ET is gone (the
    /// caller answers `task_removed`), and the stored ET otherwise. A stored phase that is
    /// already finished is final: the report is ignored.
    pub async fn update_executor_task_status(
        &self,
        id: &str,
        status: crate::types::ExecutorTaskStatus,
    ) -> Result<Option<ExecutorTask>> {
        loop {
            let Some((mut et, rev)) = self.get_executor_task(id).await? else {
                return Ok(None);
            };
            if et.status.phase.is_finished() {
                return Ok(Some(et));
            }
            et.status = status.clone();
            match self.save_executor_task(&et, rev).await {
                Ok(()) => return Ok(Some(et)),
                Err(StoreError::Concurrency(_)) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Copies an ET's status into its run task and saves the run (spec 20 §6.3
    /// handleExecutorTaskUpdate); the caller then schedules the run. A disallowed transition
    /// is ignored with a warning.
    pub async fn handle_executor_task_update(&self, et_id: &str, now: Time) -> Result<()> {
        loop {
            let Some((et, _)) = self.get_executor_task(et_id).await? else {
                return Ok(());
            };
            let Some((run, revision)) = self.get_run(&et.spec.run_id).await? else {
                return Ok(());
            };
            let mut next = run.clone();
            if let Err(why) = scheduler::update_run_task_status(&mut next, &et) {
                tracing::warn!(run_id = %run.id, %why, "executor task update ignored");
                return Ok(());
            }
            match self
                .save_run(&next, &run, revision, now, Vec::new(), Vec::new())
                .await
            {
                Ok(_) => return Ok(()),
                Err(StoreError::Concurrency(_)) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Events after `after` (exclusive; `None` = live only), then live ones: a replay read at
    /// one revision followed by a watch from the next revision, so nothing is missed or
    /// repeated.
    /// Retention (spec 20 §10): deletes events older than `max_age` or beyond the newest
    /// `max_count`, oldest first, and records the newest removed sequence so a replay from
    /// before it reports `truncated`. Returns how many were removed.
    pub async fn clean_events(
        &self,
        now: Time,
        max_age: chrono::TimeDelta,
        max_count: usize,
    ) -> Result<usize> {
        let resp = self.kv.get_prefix(EVENTS, 500).await?;
        let total = resp.kvs.len();
        let mut doomed: Vec<(String, String)> = Vec::new();
        for (i, kv) in resp.kvs.iter().enumerate() {
            let beyond_count = total - i > max_count;
            let too_old = decode::<RunEvent>(&kv.key, &kv.value)
                .map(|ev| now - ev.time > max_age)
                // An undecodable event is useless to every reader: remove it too.
                .unwrap_or(true);
            if !(beyond_count || too_old) {
                // Keys sort by sequence, so every later event is newer and kept too.
                break;
            }
            let seq = kv.key.trim_start_matches(EVENTS).to_owned();
            doomed.push((kv.key.clone(), seq));
        }
        // Txns stay under etcd's 128 operations.
        for chunk in doomed.chunks(100) {
            let mut ops: Vec<Op> = chunk.iter().map(|(k, _)| Op::delete(k.as_str())).collect();
            if let Some((_, seq)) = chunk.last() {
                ops.push(Op::put(EVENTS_RETAINED_FROM, seq.as_bytes().to_vec()));
            }
            self.kv.txn(Txn::new().and_then(ops)).await?;
        }
        Ok(doomed.len())
    }

    /// Whether events after `after` were removed by retention.
    pub async fn events_truncated(&self, after: &str) -> Result<bool> {
        let resp = self
            .kv
            .range(RangeRequest::key(EVENTS_RETAINED_FROM))
            .await?;
        Ok(resp
            .kvs
            .first()
            .is_some_and(|kv| after.as_bytes() < kv.value.as_slice()))
    }

    pub async fn watch_events(
        &self,
        after: Option<&str>,
    ) -> Result<BoxStream<'static, Result<RunEvent>>> {
        let (replay, revision) = match after {
            Some(after) => {
                let start = format!("{EVENTS}{after}\0");
                let end = agola_kv::prefix_end(EVENTS);
                let first = self.kv.range(RangeRequest::between(start, end)).await?;
                let events = first
                    .kvs
                    .iter()
                    .map(|kv| decode::<RunEvent>(&kv.key, &kv.value))
                    .collect::<Result<Vec<_>>>()?;
                (events, first.revision)
            }
            None => (Vec::new(), self.kv.current_revision().await?),
        };
        let live = self
            .kv
            .watch(KeyRange::Prefix(EVENTS.to_owned()), revision + 1)
            .await?;
        let live = live.flat_map(|resp| {
            let items: Vec<Result<RunEvent>> = match resp {
                Ok(r) => r
                    .events
                    .into_iter()
                    .filter(|e| e.kind == EventKind::Put)
                    .map(|e| decode::<RunEvent>(&e.kv.key, &e.kv.value))
                    .collect(),
                Err(e) => vec![Err(StoreError::Kv(e))],
            };
            futures::stream::iter(items)
        });
        Ok(futures::stream::iter(replay.into_iter().map(Ok))
            .chain(live)
            .boxed())
    }
}

//! The scheduler service (spec 70 §1): starts the first queued run of each run group when the
//! group has no running run, guarded by the group's change-group token so two scheduler
//! instances never start two runs of one group; approves a task waiting for approval once its
//! `approvers` annotation lists enough distinct users (`min_approvers`, default 1). It reacts
//! to the runservice's event stream and makes a periodic pass as a safety net. It stores
//! nothing: everything goes through the runservice's gRPC API.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use agola_common::grpc::{GrpcChannel, GrpcServer, connect};
use agola_common::{ApiError, ErrorKind, Shutdown};
use agola_proto::common::v1 as pbc;
use agola_proto::runservice::v1 as pb;
use agola_proto::runservice::v1::run_service_client::RunServiceClient;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// The `scheduler` section of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// Address the gRPC endpoint (health, reflection) listens on.
    pub listen_address: SocketAddr,
    /// The runservice's gRPC URL (set by `agola serve` when the runservice runs in-process).
    pub runservice_url: String,
    /// Period of the safety-net pass (milliseconds).
    pub interval_ms: u64,
    /// Internal bearer token (from the top-level `internalAuth`); not read from the section.
    #[serde(skip)]
    pub internal_token: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen_address: SocketAddr::from(([127, 0, 0, 1], 4004)),
            runservice_url: "http://127.0.0.1:4000".to_owned(),
            interval_ms: 2000,
            internal_token: None,
        }
    }
}

/// Errors of the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runservice URL is invalid.
    #[error("scheduler config: {0}")]
    Config(#[source] ApiError),
    /// The gRPC server could not run (listener failure, ...).
    #[error("scheduler grpc server failed: {0}")]
    Server(#[source] ApiError),
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Config(api) | Error::Server(api) => api.to_status(),
        }
    }
}

/// Users listed in a task's `approvers` annotation (a JSON array of user ids), deduplicated.
pub fn approvers(annotations: &std::collections::HashMap<String, String>) -> BTreeSet<String> {
    annotations
        .get("approvers")
        .and_then(|v| serde_json::from_str::<Vec<String>>(v).ok())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// The scheduling logic over a runservice client.
#[derive(Debug, Clone)]
pub struct Scheduler {
    rs: RunServiceClient<GrpcChannel>,
}

impl Scheduler {
    pub fn new(rs: RunServiceClient<GrpcChannel>) -> Self {
        Scheduler { rs }
    }

    async fn list_all(&self, phase: pbc::RunPhase) -> Result<Vec<pbc::Run>, ApiError> {
        let mut out: Vec<pbc::Run> = Vec::new();
        loop {
            let page = self
                .rs
                .clone()
                .list_runs(pb::ListRunsRequest {
                    phases: vec![phase as i32],
                    start_run_id: out.last().map(|r| r.id.clone()).unwrap_or_default(),
                    limit: 40,
                    ascending: true,
                    ..Default::default()
                })
                .await?
                .into_inner()
                .runs;
            let done = page.len() < 40;
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    /// Starts the first queued run of every group without a running run. Returns the runs
    /// started.
    pub async fn start_runs(&self) -> Result<Vec<String>, ApiError> {
        let mut first_queued: BTreeMap<String, String> = BTreeMap::new();
        for run in self.list_all(pbc::RunPhase::Queued).await? {
            first_queued.entry(run.group.clone()).or_insert(run.id);
        }
        let mut started = Vec::new();
        for (group, run_id) in first_queued {
            // The token is taken before looking for a running run: a start by anyone else
            // after this point moves the group and makes our start fail.
            let token = self
                .rs
                .clone()
                .get_change_groups_update_token(pb::GetChangeGroupsUpdateTokenRequest {
                    change_groups: vec![format!("changegroup-{group}")],
                })
                .await?
                .into_inner()
                .change_groups_update_token;
            let running = self
                .rs
                .clone()
                .list_group_runs(pb::ListGroupRunsRequest {
                    group: group.clone(),
                    phases: vec![pbc::RunPhase::Running as i32],
                    limit: 1,
                    ..Default::default()
                })
                .await?
                .into_inner()
                .runs;
            if !running.is_empty() {
                continue;
            }
            let res = self
                .rs
                .clone()
                .run_action(pb::RunActionRequest {
                    run_id: run_id.clone(),
                    action_type: pb::RunActionType::ChangePhase as i32,
                    phase: pbc::RunPhase::Running as i32,
                    change_groups_update_token: token,
                })
                .await;
            match res {
                Ok(_) => started.push(run_id),
                // Another scheduler started a run of this group, or the run moved: the next
                // pass sees the new state.
                Err(s) => {
                    let e = ApiError::from_status(&s);
                    if !matches!(e.kind, ErrorKind::Concurrency | ErrorKind::BadRequest) {
                        return Err(e);
                    }
                }
            }
        }
        Ok(started)
    }

    /// Approves every waiting task whose approvers reached its minimum. Returns the tasks
    /// approved.
    pub async fn approve_tasks(&self) -> Result<Vec<String>, ApiError> {
        let mut approved = Vec::new();
        for run in self.list_all(pbc::RunPhase::Running).await? {
            let waiting: Vec<&pbc::RunTask> =
                run.tasks.values().filter(|t| t.waiting_approval).collect();
            if waiting.is_empty() {
                continue;
            }
            let rc = self
                .rs
                .clone()
                .get_run(pb::GetRunRequest {
                    run_id: run.id.clone(),
                    change_groups: vec![],
                })
                .await?
                .into_inner()
                .run_config
                .unwrap_or_default();
            for t in waiting {
                let min = rc
                    .tasks
                    .get(&t.id)
                    .map(|ct| ct.min_approvers.max(1))
                    .unwrap_or(1) as usize;
                if approvers(&t.annotations).len() < min {
                    continue;
                }
                let res = self
                    .rs
                    .clone()
                    .run_task_action(pb::RunTaskActionRequest {
                        run_id: run.id.clone(),
                        task_id: t.id.clone(),
                        action_type: pb::RunTaskActionType::Approve as i32,
                        ..Default::default()
                    })
                    .await;
                match res {
                    Ok(_) => approved.push(t.id.clone()),
                    Err(s) if ApiError::from_status(&s).kind == ErrorKind::BadRequest => {}
                    Err(s) => return Err(ApiError::from_status(&s)),
                }
            }
        }
        Ok(approved)
    }

    /// One pass: starts and approvals.
    pub async fn pass(&self) -> Result<(), ApiError> {
        self.start_runs().await?;
        self.approve_tasks().await?;
        Ok(())
    }
}

/// Runs passes on every run event and every `interval` until `shutdown`.
async fn run_loop(scheduler: Scheduler, interval: Duration, shutdown: Shutdown) {
    let stop = shutdown.wait();
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let events = scheduler
            .rs
            .clone()
            .watch_run_events(pb::WatchRunEventsRequest {
                after_sequence: String::new(),
            })
            .await;
        let mut events = match events {
            Ok(r) => Some(r.into_inner()),
            Err(e) => {
                tracing::debug!(error = %e, "run events unavailable, polling");
                None
            }
        };
        loop {
            let woke = tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => true,
                ev = async {
                    match events.as_mut() {
                        Some(s) => s.next().await,
                        None => std::future::pending().await,
                    }
                } => ev.is_some_and(|r| r.is_ok()),
            };
            if let Err(e) = scheduler.pass().await {
                tracing::warn!(error = %e, "scheduler pass failed");
            }
            if !woke {
                // The event stream ended: subscribe again.
                break;
            }
        }
    }
}

/// Serves the scheduler's health endpoint and runs its loop until `shutdown` fires.
pub async fn serve(config: Config, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
    let channel =
        connect(&config.runservice_url, config.internal_token.as_deref()).map_err(Error::Config)?;
    let scheduler = Scheduler::new(RunServiceClient::new(channel));
    tokio::spawn(run_loop(
        scheduler,
        Duration::from_millis(config.interval_ms.max(10)),
        shutdown.clone(),
    ));
    tracing::info!(addr = ?listener.local_addr().ok(), "scheduler serving");
    GrpcServer::new(config.internal_token.as_deref())
        .add_descriptor_set(agola_proto::FILE_DESCRIPTOR_SET)
        .serve(listener, shutdown)
        .await
        .map_err(Error::Server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approvers_are_distinct_users_and_garbage_counts_as_none() {
        let mut a = std::collections::HashMap::new();
        assert!(approvers(&a).is_empty());
        a.insert("approvers".to_owned(), r#"["u1","u2","u1"]"#.to_owned());
        assert_eq!(approvers(&a).len(), 2);
        a.insert("approvers".to_owned(), "not json".to_owned());
        assert!(approvers(&a).is_empty());
    }
}

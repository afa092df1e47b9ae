//! Thin tonic handlers of `agola.runservice.v1.RunService`: convert, validate, call
//! [`Runs`] / [`Store`](crate::store::Store) / [`Blobs`], convert back.

use std::pin::Pin;
use std::time::Duration;

use agola_proto::runservice::v1 as pb;
use agola_proto::runservice::v1::run_service_server::RunService;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use crate::blobs::{Blobs, LogKind, log_path};
use crate::convert;
use crate::create::{CreateRunRequest, RecreateRequest};
use crate::runs::{RunError, RunQuery, Runs};
use crate::types::{FetchPhase, RunPhase, RunResult, RunTask};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// How often a followed log polls for new uploaded parts.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

/// The run API.
#[derive(Debug, Clone)]
pub struct RunApi {
    pub runs: Runs,
    pub blobs: Blobs,
}

fn token(t: &str) -> Result<Option<agola_kv::changegroup::ChangeGroupsUpdateToken>, Status> {
    if t.is_empty() {
        return Ok(None);
    }
    agola_kv::changegroup::ChangeGroupsUpdateToken::decode(t)
        .map(Some)
        .map_err(|e| Status::from(RunError::BadRequest(e.to_string())))
}

fn phases(v: &[i32]) -> Result<Vec<RunPhase>, Status> {
    v.iter()
        .map(|p| convert::run_phase_from_pb(*p).map_err(Status::from))
        .collect()
}

fn results(v: &[i32]) -> Result<Vec<RunResult>, Status> {
    use agola_proto::common::v1::RunResult as P;
    v.iter()
        .map(|r| match P::try_from(*r) {
            Ok(P::Unknown) => Ok(RunResult::Unknown),
            Ok(P::Stopped) => Ok(RunResult::Stopped),
            Ok(P::Success) => Ok(RunResult::Success),
            Ok(P::Failed) => Ok(RunResult::Failed),
            _ => Err(Status::from(RunError::BadRequest(format!(
                "invalid run result {r}"
            )))),
        })
        .collect()
}

impl RunApi {
    async fn token_for(&self, groups: &[String]) -> Result<String, Status> {
        if groups.is_empty() {
            return Ok(String::new());
        }
        Ok(self.runs.kv_token(groups).await?.encode())
    }

    /// The task and its log phase for a log request.
    async fn log_target(
        &self,
        run_id: &str,
        task_id: &str,
        kind: LogKind,
    ) -> Result<(RunTask, FetchPhase), RunError> {
        let (run, _) = self.runs.get_run(run_id).await?;
        let task = run
            .tasks
            .get(task_id)
            .cloned()
            .ok_or_else(|| RunError::NotFound(format!("task {task_id} of run {run_id}")))?;
        let phase = match kind {
            LogKind::Setup => task.setup_step.log_phase,
            LogKind::Step(n) => {
                task.steps
                    .get(n)
                    .ok_or_else(|| RunError::NotFound(format!("step {n} of task {task_id}")))?
                    .log_phase
            }
        };
        Ok((task, phase))
    }
}

#[tonic::async_trait]
impl RunService for RunApi {
    async fn create_run(
        &self,
        request: Request<pb::CreateRunRequest>,
    ) -> Result<Response<pb::CreateRunResponse>, Status> {
        let req = request.into_inner();
        let tasks = req
            .run_config_tasks
            .into_iter()
            .map(convert::run_config_task_from_pb)
            .collect::<Result<Vec<_>, _>>()?;
        let (run, rc) = self
            .runs
            .create_run(
                CreateRunRequest {
                    name: req.name,
                    group: req.group,
                    tasks,
                    setup_errors: req.setup_errors,
                    static_environment: req.static_environment.into_iter().collect(),
                    environment: req.environment.into_iter().collect(),
                    annotations: req.annotations.into_iter().collect(),
                    cache_group: req.cache_group,
                },
                chrono::Utc::now(),
            )
            .await?;
        Ok(Response::new(pb::CreateRunResponse {
            run: Some(convert::run_to_pb(&run)),
            run_config: Some(convert::run_config_to_pb(&rc)),
        }))
    }

    async fn recreate_run(
        &self,
        request: Request<pb::RecreateRunRequest>,
    ) -> Result<Response<pb::RecreateRunResponse>, Status> {
        let req = request.into_inner();
        // Variables re-resolution needs `variable_refs`, which run configs do not record yet;
        // with no refs recorded there is nothing to re-resolve.
        let environment =
            (!req.environment.is_empty()).then(|| req.environment.into_iter().collect());
        let (run, rc) = self
            .runs
            .recreate_run(
                &req.run_id,
                RecreateRequest {
                    from_start: req.from_start,
                    environment,
                },
                chrono::Utc::now(),
            )
            .await?;
        // Kept (succeeded) tasks share their data with the source run: mark it as referenced
        // by the new run too, so deleting either run keeps it for the other.
        for (task_id, t) in &run.tasks {
            if t.status == crate::types::RunTaskStatus::Success {
                self.blobs.write_markers(task_id, &run.id).await?;
            }
        }
        Ok(Response::new(pb::RecreateRunResponse {
            run: Some(convert::run_to_pb(&run)),
            run_config: Some(convert::run_config_to_pb(&rc)),
        }))
    }

    async fn get_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::GetRunResponse>, Status> {
        let req = request.into_inner();
        let token = self.token_for(&req.change_groups).await?;
        let (run, rc) = self.runs.get_run(&req.run_id).await?;
        Ok(Response::new(pb::GetRunResponse {
            run: Some(convert::run_to_pb(&run)),
            run_config: Some(convert::run_config_to_pb(&rc)),
            change_groups_update_token: token,
        }))
    }

    async fn get_run_by_group(
        &self,
        request: Request<pb::GetRunByGroupRequest>,
    ) -> Result<Response<pb::GetRunByGroupResponse>, Status> {
        let req = request.into_inner();
        let (run, rc) = self.runs.get_run_by_group(&req.group, req.counter).await?;
        Ok(Response::new(pb::GetRunByGroupResponse {
            run: Some(convert::run_to_pb(&run)),
            run_config: Some(convert::run_config_to_pb(&rc)),
        }))
    }

    async fn list_runs(
        &self,
        request: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        let req = request.into_inner();
        let token = self.token_for(&req.change_groups).await?;
        let q = RunQuery {
            phases: phases(&req.phases)?,
            results: results(&req.results)?,
            groups: req.groups,
            last_run: req.last_run,
            start_run_id: (!req.start_run_id.is_empty()).then_some(req.start_run_id),
            limit: req.limit as usize,
            ascending: req.ascending,
        };
        let runs = self.runs.list_runs(&q).await?;
        Ok(Response::new(pb::ListRunsResponse {
            runs: runs.iter().map(convert::run_to_pb).collect(),
            change_groups_update_token: token,
        }))
    }

    async fn list_group_runs(
        &self,
        request: Request<pb::ListGroupRunsRequest>,
    ) -> Result<Response<pb::ListGroupRunsResponse>, Status> {
        let req = request.into_inner();
        let token = self.token_for(&req.change_groups).await?;
        let runs = self
            .runs
            .list_group_runs(
                &req.group,
                &phases(&req.phases)?,
                &results(&req.results)?,
                req.start_counter,
                req.limit as usize,
                req.ascending,
            )
            .await?;
        Ok(Response::new(pb::ListGroupRunsResponse {
            runs: runs.iter().map(convert::run_to_pb).collect(),
            change_groups_update_token: token,
        }))
    }

    async fn run_action(
        &self,
        request: Request<pb::RunActionRequest>,
    ) -> Result<Response<pb::RunActionResponse>, Status> {
        let req = request.into_inner();
        let token = token(&req.change_groups_update_token)?;
        let now = chrono::Utc::now();
        let run = match pb::RunActionType::try_from(req.action_type) {
            Ok(pb::RunActionType::ChangePhase) => {
                let phase = convert::run_phase_from_pb(req.phase)?;
                self.runs
                    .change_phase(&req.run_id, phase, token.as_ref(), now)
                    .await?
            }
            Ok(pb::RunActionType::Stop) => self.runs.stop(&req.run_id, now).await?,
            _ => return Err(RunError::BadRequest("unknown run action".into()).into()),
        };
        Ok(Response::new(pb::RunActionResponse {
            run: Some(convert::run_to_pb(&run)),
        }))
    }

    async fn run_task_action(
        &self,
        request: Request<pb::RunTaskActionRequest>,
    ) -> Result<Response<pb::RunTaskActionResponse>, Status> {
        let req = request.into_inner();
        let token = token(&req.change_groups_update_token)?;
        let now = chrono::Utc::now();
        let run = match pb::RunTaskActionType::try_from(req.action_type) {
            Ok(pb::RunTaskActionType::SetAnnotations) => {
                self.runs
                    .set_task_annotations(
                        &req.run_id,
                        &req.task_id,
                        req.annotations.into_iter().collect(),
                        token.as_ref(),
                        now,
                    )
                    .await?
            }
            Ok(pb::RunTaskActionType::Approve) => {
                self.runs
                    .approve_task(&req.run_id, &req.task_id, token.as_ref(), now)
                    .await?
            }
            _ => return Err(RunError::BadRequest("unknown run task action".into()).into()),
        };
        Ok(Response::new(pb::RunTaskActionResponse {
            run: Some(convert::run_to_pb(&run)),
        }))
    }

    async fn delete_run(
        &self,
        request: Request<pb::DeleteRunRequest>,
    ) -> Result<Response<pb::DeleteRunResponse>, Status> {
        let run = self.runs.delete_run(&request.into_inner().run_id).await?;
        // Drop this run's markers; data no other run (a restart) references goes with them.
        // A failure here leaves orphan markers, which do not break anything.
        for task_id in run.tasks.keys() {
            if let Err(e) = self.blobs.release_task_data(task_id, &run.id).await {
                tracing::warn!(run_id = %run.id, task_id, error = %e, "releasing task data failed");
            }
        }
        Ok(Response::new(pb::DeleteRunResponse {}))
    }

    type GetLogsStream = BoxStream<pb::GetLogsResponse>;

    async fn get_logs(
        &self,
        request: Request<pb::GetLogsRequest>,
    ) -> Result<Response<Self::GetLogsStream>, Status> {
        let req = request.into_inner();
        let kind = LogKind::from_wire(req.setup, req.step)?;
        let (task, phase) = self.log_target(&req.run_id, &req.task_id, kind).await?;
        let path = log_path(&task.id, kind);
        let ost = self.blobs.storage().clone();
        match phase {
            FetchPhase::Finished | FetchPhase::Lost => {
                if ost.stat(&path).await.is_err() {
                    let err = if phase == FetchPhase::Lost {
                        RunError::NotFound("the log was lost".into())
                    } else {
                        RunError::NotFound(format!("log of task {}", task.id))
                    };
                    let mut status: Status = err.into();
                    if phase == FetchPhase::Lost
                        && let Ok(v) = tonic::metadata::MetadataValue::try_from("log_lost")
                    {
                        status
                            .metadata_mut()
                            .insert(agola_common::error::ERROR_CODE_METADATA, v);
                    }
                    return Err(status);
                }
            }
            FetchPhase::Notstarted => {}
        }
        let (tx, rx) = mpsc::channel(8);
        let api = self.clone();
        let (run_id, task_id, follow) = (req.run_id, req.task_id, req.follow);
        tokio::spawn(async move {
            let mut sent = 0u64;
            loop {
                // The final object when it exists, else the uploaded parts.
                let (_, phase) = match api.log_target(&run_id, &task_id, kind).await {
                    Ok(t) => t,
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                };
                let source = if ost.stat(&path).await.is_ok() {
                    Some(path.clone())
                } else {
                    None
                };
                let chunk = match &source {
                    Some(p) => read_from(&ost, p, sent).await,
                    None => api.blobs.read_parts_from(&task_id, kind, sent).await,
                };
                match chunk {
                    Ok(data) if !data.is_empty() => {
                        sent += data.len() as u64;
                        if tx.send(Ok(pb::GetLogsResponse { data })).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                }
                if !follow || phase.is_done() && source.is_some() {
                    return;
                }
                tokio::time::sleep(FOLLOW_POLL).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn delete_logs(
        &self,
        request: Request<pb::DeleteLogsRequest>,
    ) -> Result<Response<pb::DeleteLogsResponse>, Status> {
        let req = request.into_inner();
        let kind = LogKind::from_wire(req.setup, req.step)?;
        let (task, phase) = self.log_target(&req.run_id, &req.task_id, kind).await?;
        if phase != FetchPhase::Finished {
            return Err(RunError::BadRequest("the log is not stored yet".into()).into());
        }
        self.blobs
            .storage()
            .delete(&log_path(&task.id, kind))
            .await
            .map_err(|e| {
                Status::from(if e.is_not_exist() {
                    RunError::NotFound("log".into())
                } else {
                    RunError::Unavailable(e.to_string())
                })
            })?;
        Ok(Response::new(pb::DeleteLogsResponse {}))
    }

    type WatchRunEventsStream = BoxStream<pb::WatchRunEventsResponse>;

    async fn watch_run_events(
        &self,
        request: Request<pb::WatchRunEventsRequest>,
    ) -> Result<Response<Self::WatchRunEventsStream>, Status> {
        let req = request.into_inner();
        let after = (!req.after_sequence.is_empty()).then_some(req.after_sequence);
        let stream = self
            .runs
            .store()
            .watch_events(after.as_deref())
            .await
            .map_err(|e| Status::from(RunError::from(e)))?;
        let truncated = match after.as_deref() {
            Some(a) => self
                .runs
                .store()
                .events_truncated(a)
                .await
                .map_err(|e| Status::from(RunError::from(e)))?,
            None => false,
        };
        // The first message says whether retention removed events the client asked for.
        let mut first = Some(truncated);
        let out = stream.map(move |r| match r {
            Ok(ev) => Ok(pb::WatchRunEventsResponse {
                event: Some(convert::run_event_to_pb(&ev)),
                truncated: first.take().unwrap_or(false),
            }),
            Err(e) => Err(Status::from(RunError::from(e))),
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn get_change_groups_update_token(
        &self,
        request: Request<pb::GetChangeGroupsUpdateTokenRequest>,
    ) -> Result<Response<pb::GetChangeGroupsUpdateTokenResponse>, Status> {
        let groups = request.into_inner().change_groups;
        let token = self.runs.kv_token(&groups).await?.encode();
        Ok(Response::new(pb::GetChangeGroupsUpdateTokenResponse {
            change_groups_update_token: token,
        }))
    }

    async fn list_executors(
        &self,
        _request: Request<pb::ListExecutorsRequest>,
    ) -> Result<Response<pb::ListExecutorsResponse>, Status> {
        let executors = self
            .runs
            .store()
            .list_executors()
            .await
            .map_err(|e| Status::from(RunError::from(e)))?;
        Ok(Response::new(pb::ListExecutorsResponse {
            executors: executors.iter().map(convert::executor_to_pb).collect(),
        }))
    }

    async fn delete_executor(
        &self,
        request: Request<pb::DeleteExecutorRequest>,
    ) -> Result<Response<pb::DeleteExecutorResponse>, Status> {
        let id = request.into_inner().id;
        let existed = self
            .runs
            .store()
            .delete_executor(&id)
            .await
            .map_err(|e| Status::from(RunError::from(e)))?;
        if !existed {
            return Err(RunError::NotFound(format!("executor {id}")).into());
        }
        Ok(Response::new(pb::DeleteExecutorResponse {}))
    }
}

/// Bytes of `path` from `offset` (up to 256 KiB).
async fn read_from(
    ost: &std::sync::Arc<dyn agola_objectstorage::ObjectStorage>,
    path: &str,
    offset: u64,
) -> Result<Vec<u8>, RunError> {
    use tokio::io::AsyncReadExt;
    let mut r = ost
        .read_range(path, offset, Some(256 * 1024))
        .await
        .map_err(|e| RunError::Unavailable(e.to_string()))?;
    let mut buf = Vec::new();
    r.read_to_end(&mut buf)
        .await
        .map_err(|e| RunError::Unavailable(e.to_string()))?;
    Ok(buf)
}

//! Thin tonic handlers of `agola.runservice.v1.ExecutorControlService`: convert, validate,
//! call the domain (`Hub`, `Blobs`), convert back.

use std::pin::Pin;
use std::time::Duration;

use agola_proto::runservice::v1 as pb;
use agola_proto::runservice::v1::executor_control_service_server::ExecutorControlService;
use futures::{Stream, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::blobs::{Blobs, LogKind};
use crate::convert;
use crate::executors::{Down, Hub};
use crate::runs::RunError;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Chunk size of streamed objects.
const CHUNK: usize = 256 * 1024;

/// The executor-facing service.
#[derive(Debug, Clone)]
pub struct ExecutorControl {
    pub hub: Hub,
    pub blobs: Blobs,
    pub alive_timeout: Duration,
    /// Wakes the fetcher when a log is complete (its task's ET can then be deleted at once,
    /// freeing the executor's slot, instead of at the next periodic pass).
    pub fetch_kick: std::sync::Arc<tokio::sync::Notify>,
}

fn down_to_pb(d: Down) -> pb::ConnectResponse {
    use pb::connect_response::Message as M;
    let message = match d {
        Down::Registered => M::Registered(pb::ExecutorRegistered {
            executor_id: String::new(),
        }),
        Down::Task(et, spec) => M::Task(convert::executor_task_to_pb(&et, &spec)),
        Down::StopTask(id) => M::StopTask(pb::StopTask { task_id: id }),
        Down::TaskRemoved(id) => M::TaskRemoved(pb::TaskRemoved { task_id: id }),
        Down::TaskSync(tasks, at) => M::TaskSync(pb::TaskSync {
            tasks: tasks
                .iter()
                .map(|(et, spec)| convert::executor_task_to_pb(et, spec))
                .collect(),
            generated_at: convert::timestamp(Some(at)),
        }),
    };
    pb::ConnectResponse {
        message: Some(message),
    }
}

/// One chunk of a streamed object; the first carries the object's size.
type Chunk = Result<(Option<u64>, Vec<u8>), Status>;

/// Streams an object in chunks, the size first.
async fn stream_object(blobs: &Blobs, path: &str, tx: mpsc::Sender<Chunk>) {
    let ost = blobs.storage();
    let info = match ost.stat(path).await {
        Ok(i) => i,
        Err(e) => {
            let err = if e.is_not_exist() {
                RunError::NotFound(format!("object {path}"))
            } else {
                RunError::Unavailable(e.to_string())
            };
            let _ = tx.send(Err(err.into())).await;
            return;
        }
    };
    let mut reader = match ost.read(path).await {
        Ok(r) => r,
        Err(e) => {
            let _ = tx
                .send(Err(RunError::Unavailable(e.to_string()).into()))
                .await;
            return;
        }
    };
    let mut first = Some(info.size);
    let mut buf = vec![0u8; CHUNK];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => {
                if let Some(size) = first {
                    let _ = tx.send(Ok((Some(size), Vec::new()))).await;
                }
                return;
            }
            Ok(n) => {
                if tx
                    .send(Ok((first.take(), buf[..n].to_vec())))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                let _ = tx
                    .send(Err(RunError::Unavailable(e.to_string()).into()))
                    .await;
                return;
            }
        }
    }
}

#[tonic::async_trait]
impl ExecutorControlService for ExecutorControl {
    type ConnectStream = BoxStream<pb::ConnectResponse>;

    async fn connect(
        &self,
        request: Request<Streaming<pb::ConnectRequest>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let mut up = request.into_inner();
        let first = up
            .message()
            .await?
            .and_then(|m| m.message)
            .ok_or_else(|| Status::invalid_argument("the stream must start with register"))?;
        let pb::connect_request::Message::Register(reg) = first else {
            return Err(Status::invalid_argument(
                "the stream must start with register",
            ));
        };
        let executor = reg
            .executor
            .ok_or_else(|| Status::invalid_argument("register.executor is required"))?;
        let executor = convert::executor_from_pb(executor, chrono::Utc::now())?;
        let executor_id = executor.id.clone();
        let (tx, rx) = mpsc::channel::<Down>(256);
        self.hub.register(executor, tx, chrono::Utc::now()).await?;
        let hub = self.hub.clone();
        let alive = self.alive_timeout;
        let kick = self.fetch_kick.clone();
        tokio::spawn(async move {
            while let Some(msg) = up.next().await {
                let Ok(msg) = msg else { break };
                let now = chrono::Utc::now();
                let res: Result<(), RunError> = match msg.message {
                    Some(pb::connect_request::Message::Heartbeat(hb)) => match hb.executor {
                        Some(e) => match convert::executor_from_pb(e, now) {
                            Ok(e) if e.id == executor_id => hub.heartbeat(e, now).await,
                            Ok(_) => Err(RunError::BadRequest(
                                "heartbeat for another executor id".into(),
                            )),
                            Err(e) => Err(e),
                        },
                        None => Err(RunError::BadRequest(
                            "heartbeat.executor is required".into(),
                        )),
                    },
                    Some(pb::connect_request::Message::TaskStatus(ts)) => {
                        match ts
                            .status
                            .ok_or_else(|| {
                                RunError::BadRequest("task_status.status is required".into())
                            })
                            .and_then(|s| convert::task_status_from_pb(s, None))
                        {
                            Ok(status) => match hub
                                .task_status(&executor_id, &ts.task_id, status.clone(), now)
                                .await
                            {
                                // Only a finished task can make others ready; progress reports
                                // were already applied to the run by `task_status`.
                                Ok(Some(run_id)) if status.phase.is_finished() => {
                                    // ET and run are both saved as finished now: the fetcher
                                    // can free the executor's slot if the logs are in.
                                    kick.notify_one();
                                    hub.schedule(&run_id, now, alive).await
                                }
                                Ok(Some(_)) => Ok(()),
                                Ok(None) => Ok(()),
                                Err(e) => Err(e),
                            },
                            Err(e) => Err(e),
                        }
                    }
                    Some(pb::connect_request::Message::Register(_)) => {
                        Err(RunError::BadRequest("register sent twice".into()))
                    }
                    None => Err(RunError::BadRequest("empty message".into())),
                };
                if let Err(e) = res {
                    // A bad message is logged and skipped: the stream stays up.
                    tracing::warn!(executor = %executor_id, error = %e, "executor message rejected");
                }
            }
            hub.disconnect(&executor_id).await;
        });
        let out = tokio_stream::wrappers::ReceiverStream::new(rx).map(|d| Ok(down_to_pb(d)));
        Ok(Response::new(Box::pin(out)))
    }

    type GetWorkspaceArchiveStream = BoxStream<pb::GetWorkspaceArchiveResponse>;

    async fn get_workspace_archive(
        &self,
        request: Request<pb::GetWorkspaceArchiveRequest>,
    ) -> Result<Response<Self::GetWorkspaceArchiveStream>, Status> {
        let req = request.into_inner();
        if req.task_id.is_empty() {
            return Err(Status::invalid_argument("task_id is required"));
        }
        let path = crate::blobs::archive_path(&req.task_id, req.step as usize);
        let (tx, rx) = mpsc::channel(4);
        let blobs = self.blobs.clone();
        tokio::spawn(async move { stream_object(&blobs, &path, tx).await });
        let out = tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(|r| r.map(|(size, data)| pb::GetWorkspaceArchiveResponse { size, data }));
        Ok(Response::new(Box::pin(out)))
    }

    async fn stat_cache(
        &self,
        request: Request<pb::StatCacheRequest>,
    ) -> Result<Response<pb::StatCacheResponse>, Status> {
        let req = request.into_inner();
        let (key, info) = self.blobs.find_cache(&req.key, req.prefix).await?;
        Ok(Response::new(pb::StatCacheResponse {
            key,
            size: info.size,
            last_modified: convert::timestamp(Some(info.last_modified.into())),
        }))
    }

    type GetCacheStream = BoxStream<pb::GetCacheResponse>;

    async fn get_cache(
        &self,
        request: Request<pb::GetCacheRequest>,
    ) -> Result<Response<Self::GetCacheStream>, Status> {
        let req = request.into_inner();
        let (key, info) = self.blobs.find_cache(&req.key, req.prefix).await?;
        let (tx, rx) = mpsc::channel(4);
        let blobs = self.blobs.clone();
        tokio::spawn(async move { stream_object(&blobs, &info.path, tx).await });
        let mut first_key = Some(key);
        let out = tokio_stream::wrappers::ReceiverStream::new(rx).map(move |r| {
            r.map(|(size, data)| pb::GetCacheResponse {
                key: first_key.take().unwrap_or_default(),
                size,
                data,
            })
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn put_cache(
        &self,
        request: Request<Streaming<pb::PutCacheRequest>>,
    ) -> Result<Response<pb::PutCacheResponse>, Status> {
        let mut stream = request.into_inner();
        let Some(pb::put_cache_request::Payload::Header(header)) =
            stream.message().await?.and_then(|m| m.payload)
        else {
            return Err(Status::invalid_argument(
                "put_cache must start with a header",
            ));
        };
        let path = Blobs::cache_path(&header.key)?;
        let ost = self.blobs.storage();
        if ost.stat(&path).await.is_ok() {
            // Another task won the race, or the cache exists: drain and report it.
            while stream.message().await?.is_some() {}
            return Ok(Response::new(pb::PutCacheResponse {
                already_existed: true,
            }));
        }
        let (reader, mut writer) = tokio::io::duplex(CHUNK);
        let feeder = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Some(msg) = stream.message().await? {
                match msg.payload {
                    Some(pb::put_cache_request::Payload::Data(d)) => {
                        if writer.write_all(&d).await.is_err() {
                            break;
                        }
                    }
                    _ => return Err(Status::invalid_argument("put_cache: unexpected message")),
                }
            }
            let _ = writer.shutdown().await;
            Ok::<(), Status>(())
        });
        let mut reader = reader;
        let res = ost.write(&path, &mut reader, header.size, false).await;
        feeder
            .await
            .map_err(|e| Status::from(RunError::Internal(e.to_string())))??;
        res.map_err(|e| match e {
            agola_objectstorage::Error::InvalidInput(m) => Status::invalid_argument(m),
            other => RunError::Unavailable(other.to_string()).into(),
        })?;
        Ok(Response::new(pb::PutCacheResponse {
            already_existed: false,
        }))
    }

    type UploadLogStream = BoxStream<pb::UploadLogResponse>;

    async fn upload_log(
        &self,
        request: Request<Streaming<pb::UploadLogRequest>>,
    ) -> Result<Response<Self::UploadLogStream>, Status> {
        let mut stream = request.into_inner();
        let Some(pb::upload_log_request::Payload::Header(header)) =
            stream.message().await?.and_then(|m| m.payload)
        else {
            return Err(Status::invalid_argument(
                "upload_log must start with a header",
            ));
        };
        let kind = LogKind::from_wire(header.setup, header.step)?;
        let task_id = header.task_id;
        let blobs = self.blobs.clone();
        let kick = self.fetch_kick.clone();
        // The first ack tells a reconnecting executor where to resume.
        let mut acked = blobs.acked_offset(&task_id, kind).await?;
        let (tx, rx) = mpsc::channel(16);
        let _ = tx
            .send(Ok(pb::UploadLogResponse {
                acked_offset: acked,
                completed: false,
            }))
            .await;
        tokio::spawn(async move {
            while let Ok(Some(msg)) = stream.message().await {
                let resp = match msg.payload {
                    Some(pb::upload_log_request::Payload::Chunk(c)) => {
                        let end = c.offset + c.data.len() as u64;
                        match blobs
                            .store_log_part(&task_id, kind, c.offset, &c.data)
                            .await
                        {
                            // Contiguous with what is acknowledged: extend it without
                            // listing the parts again.
                            Ok(()) if c.offset <= acked => {
                                acked = acked.max(end);
                                Ok(acked)
                            }
                            Ok(()) => blobs.acked_offset(&task_id, kind).await.inspect(|a| {
                                acked = *a;
                            }),
                            Err(e) => Err(e),
                        }
                        .map(|acked| pb::UploadLogResponse {
                            acked_offset: acked,
                            completed: false,
                        })
                    }
                    Some(pb::upload_log_request::Payload::End(end)) => {
                        match blobs.complete_log(&task_id, kind, end.final_size).await {
                            Ok(done) => blobs.acked_offset(&task_id, kind).await.map(|a| {
                                if done {
                                    kick.notify_one();
                                }
                                pb::UploadLogResponse {
                                    acked_offset: if done { end.final_size } else { a },
                                    completed: done,
                                }
                            }),
                            Err(e) => Err(e),
                        }
                    }
                    _ => Err(RunError::BadRequest(
                        "upload_log: unexpected message".into(),
                    )),
                };
                if tx.send(resp.map_err(Status::from)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

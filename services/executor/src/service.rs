//! `agola.executor.v1.ExecutorService` (spec 30 §9): task logs and workspace archives served
//! from the executor's data dir, for the runservice to fetch what was not uploaded.

use std::sync::Arc;
use std::time::Duration;

use agola_proto::common::v1 as pbc;
use agola_proto::executor::v1 as pb;
use agola_proto::executor::v1::executor_service_server::ExecutorService;
use futures::Stream;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use crate::tasks::{self, Tasks, check_task_id, is_finished};

const CHUNK: usize = 1024 * 1024;
/// Follow mode: how long to wait at end of file before reading again.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

/// A chunk of a served file: the size (first message, when known) and data.
type Chunk = Result<(Option<u64>, Vec<u8>), Status>;

type BoxStream<T> = std::pin::Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The served endpoint.
pub struct Service {
    pub tasks: Arc<Tasks>,
}

/// Is the log's producer finished (step or setup phase finished, or the task unknown)?
fn log_finished(tasks: &Tasks, task_id: &str, step: Option<usize>) -> bool {
    let Some(status) = tasks.status(task_id) else {
        return true;
    };
    if is_finished(status.phase) {
        return true;
    }
    let phase = match step {
        None => status.setup_step.map(|s| s.phase),
        Some(i) => status.steps.get(i).map(|s| s.phase),
    };
    match phase {
        Some(p) => {
            is_finished(p) || p == pbc::ExecutorTaskPhase::Notstarted as i32 && step.is_none()
        }
        None => true,
    }
}

async fn stream_file(
    path: std::path::PathBuf,
    tx: mpsc::Sender<Chunk>,
    follow: Option<(Arc<Tasks>, String, Option<usize>)>,
) {
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => {
            let _ = tx.send(Err(Status::internal(format!("open: {e}")))).await;
            return;
        }
    };
    let mut size = if follow.is_none() {
        file.metadata().await.ok().map(|m| m.len())
    } else {
        None
    };
    if size.is_some() {
        // The size goes first, even for an empty file.
        if tx.send(Ok((size.take(), Vec::new()))).await.is_err() {
            return;
        }
    }
    let mut buf = vec![0u8; CHUNK];
    loop {
        // Read the producer state before reading, so "finished and nothing read" means the
        // whole file was sent.
        let finished = match &follow {
            Some((tasks, id, step)) => log_finished(tasks, id, *step),
            None => true,
        };
        match file.read(&mut buf).await {
            Ok(0) if finished => return,
            Ok(0) => {
                let mut changed = follow.as_ref().map(|(t, _, _)| t.changed.subscribe());
                tokio::select! {
                    _ = tokio::time::sleep(FOLLOW_POLL) => {}
                    _ = async { if let Some(c) = changed.as_mut() { let _ = c.changed().await; } } => {}
                }
            }
            Ok(n) => {
                if tx.send(Ok((None, buf[..n].to_vec()))).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(Status::internal(format!("read: {e}")))).await;
                return;
            }
        }
    }
}

#[tonic::async_trait]
impl ExecutorService for Service {
    type GetTaskLogsStream = BoxStream<pb::GetTaskLogsResponse>;

    async fn get_task_logs(
        &self,
        request: Request<pb::GetTaskLogsRequest>,
    ) -> Result<Response<Self::GetTaskLogsStream>, Status> {
        let req = request.into_inner();
        check_task_id(&req.task_id)?;
        let step = match (req.setup, req.step) {
            (true, None) => None,
            (false, Some(s)) if s >= 0 => Some(s as usize),
            (false, Some(s)) => return Err(Status::invalid_argument(format!("negative step {s}"))),
            _ => {
                return Err(Status::invalid_argument(
                    "exactly one of setup and step is required",
                ));
            }
        };
        let path = match step {
            None => tasks::setup_log_path(&self.tasks.data_dir, &req.task_id),
            Some(i) => tasks::step_log_path(&self.tasks.data_dir, &req.task_id, i),
        };
        if !path.is_file() {
            return Err(Status::not_found(format!(
                "no log for task {} {}",
                req.task_id,
                step.map_or("setup".to_owned(), |i| format!("step {i}"))
            )));
        }
        let (tx, rx) = mpsc::channel(4);
        let follow = req
            .follow
            .then(|| (self.tasks.clone(), req.task_id.clone(), step));
        tokio::spawn(stream_file(path, tx, follow));
        let out = tokio_stream::wrappers::ReceiverStream::new(rx)
            .map_ok(|(size, data)| pb::GetTaskLogsResponse { size, data });
        Ok(Response::new(Box::pin(out)))
    }

    type GetTaskArchiveStream = BoxStream<pb::GetTaskArchiveResponse>;

    async fn get_task_archive(
        &self,
        request: Request<pb::GetTaskArchiveRequest>,
    ) -> Result<Response<Self::GetTaskArchiveStream>, Status> {
        let req = request.into_inner();
        check_task_id(&req.task_id)?;
        let path = tasks::archive_path(&self.tasks.data_dir, &req.task_id, req.step as usize);
        if !path.is_file() {
            return Err(Status::not_found(format!(
                "no archive for task {} step {}",
                req.task_id, req.step
            )));
        }
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(stream_file(path, tx, None));
        let out = tokio_stream::wrappers::ReceiverStream::new(rx)
            .map_ok(|(size, data)| pb::GetTaskArchiveResponse { size, data });
        Ok(Response::new(Box::pin(out)))
    }
}

use futures::TryStreamExt as _;

//! Live log upload (spec 30 §9, improvement over Agola): while a step runs, its log file is
//! tailed and sent to the runservice's `UploadLog` in chunks of at most 1 MiB; after a
//! disconnect the upload resumes from the offset the runservice acknowledged; when the step
//! ends the final size is sent. The local file stays the source for `GetTaskLogs`.
//!
//! Memory is bounded: at most a few chunks are in flight per log.

use std::path::PathBuf;
use std::time::Duration;

use agola_proto::runservice::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::runservice::RunserviceClient;

const CHUNK: usize = 1024 * 1024;
/// How often the file is checked for new output while the step produces none.
const POLL: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Which log of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    Setup,
    Step(usize),
}

/// A running upload; [`LogUpload::finish`] says the log is complete.
pub struct LogUpload {
    done: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl LogUpload {
    /// Starts uploading `path` (which may not exist yet).
    pub fn start(
        client: RunserviceClient,
        task_id: String,
        kind: LogKind,
        path: PathBuf,
    ) -> LogUpload {
        let (done, done_rx) = watch::channel(false);
        let handle = tokio::spawn(run(client, task_id, kind, path, done_rx));
        LogUpload { done, handle }
    }

    /// The log file is complete: send what is left and the final size. Returns at once; the
    /// upload goes on in the background (retrying while the runservice is unreachable).
    pub fn finish(self) -> JoinHandle<()> {
        let _ = self.done.send(true);
        self.handle
    }
}

async fn run(
    client: RunserviceClient,
    task_id: String,
    kind: LogKind,
    path: PathBuf,
    mut done: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        match attempt(&client, &task_id, kind, &path, &mut done).await {
            Ok(()) => return,
            Err(e) => {
                if *done.borrow() && !path.exists() {
                    // The task data was removed: nothing left to upload.
                    return;
                }
                tracing::debug!(task_id, ?kind, error = %e, "log upload interrupted; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn header(task_id: &str, kind: LogKind) -> pb::UploadLogRequest {
    let (setup, step) = match kind {
        LogKind::Setup => (true, None),
        LogKind::Step(i) => (false, Some(i as i32)),
    };
    pb::UploadLogRequest {
        payload: Some(pb::upload_log_request::Payload::Header(
            pb::UploadLogHeader {
                task_id: task_id.to_owned(),
                setup,
                step,
            },
        )),
    }
}

async fn attempt(
    client: &RunserviceClient,
    task_id: &str,
    kind: LogKind,
    path: &PathBuf,
    done: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::UploadLogRequest>(4);
    tx.send(header(task_id, kind))
        .await
        .map_err(|e| e.to_string())?;
    let mut responses = client
        .clone()
        .upload_log(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let first = responses
        .message()
        .await
        .map_err(|e| e.to_string())?
        .ok_or("upload_log ended before its first ack")?;
    let mut offset = first.acked_offset;
    // Acks are read concurrently: the last one says whether the log is complete.
    let (ack_tx, mut ack_rx) = watch::channel((first.acked_offset, first.completed));
    let reader = tokio::spawn(async move {
        loop {
            match responses.message().await {
                Ok(Some(r)) => {
                    let _ = ack_tx.send((r.acked_offset, r.completed));
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(e.to_string()),
            }
        }
    });
    let mut file: Option<tokio::fs::File> = None;
    let mut buf = vec![0u8; CHUNK];
    let result = loop {
        // Read `done` before reading the file: when it was already set, every byte was
        // written before this read, so reading nothing means the log is complete.
        let finished = *done.borrow();
        if file.is_none() {
            file = tokio::fs::File::open(path).await.ok();
        }
        let mut n = 0;
        if let Some(f) = file.as_mut() {
            f.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(|e| e.to_string())?;
            n = read_up_to(f, &mut buf).await.map_err(|e| e.to_string())?;
        }
        if n > 0 {
            let chunk = pb::UploadLogRequest {
                payload: Some(pb::upload_log_request::Payload::Chunk(pb::UploadLogChunk {
                    offset,
                    data: buf[..n].to_vec(),
                })),
            };
            if tx.send(chunk).await.is_err() {
                break Err("upload stream closed".to_string());
            }
            offset += n as u64;
            continue;
        }
        if finished {
            let end = pb::UploadLogRequest {
                payload: Some(pb::upload_log_request::Payload::End(pb::UploadLogEnd {
                    final_size: offset,
                })),
            };
            if tx.send(end).await.is_err() {
                break Err("upload stream closed".to_string());
            }
            let completed = tokio::time::timeout(
                Duration::from_secs(60),
                ack_rx.wait_for(|(_, completed)| *completed),
            )
            .await;
            break match completed {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(_)) => Err("upload stream closed before completion".into()),
                Err(_) => Err("no completion ack within 60 s".into()),
            };
        }
        tokio::select! {
            _ = done.changed() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    };
    drop(tx);
    reader.abort();
    result
}

/// Reads until `buf` is full or end of file.
async fn read_up_to(f: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let r = f.read(&mut buf[n..]).await?;
        if r == 0 {
            break;
        }
        n += r;
    }
    Ok(n)
}

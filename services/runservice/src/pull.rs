//! Pulling task data from an executor's `ExecutorService` (spec 20 §7.2, 30 §9): workspace
//! archives (the executor keeps them on its disk) and logs that the live upload did not
//! complete (e.g. the executor restarted). Channels are cached per executor URL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use agola_common::grpc::GrpcChannel;
use agola_proto::executor::v1 as pb;
use agola_proto::executor::v1::executor_service_client::ExecutorServiceClient;
use tokio::io::AsyncWriteExt;

use crate::blobs::{Blobs, LogKind, archive_path, log_path};
use crate::runs::RunError;

/// Clients of the executors' `ExecutorService`.
#[derive(Debug, Clone, Default)]
pub struct ExecutorClients {
    token: Option<String>,
    channels: Arc<Mutex<HashMap<String, GrpcChannel>>>,
}

/// What a pull found.
#[derive(Debug, PartialEq, Eq)]
pub enum Pulled {
    Stored,
    /// The executor does not have it (nothing was produced, or its data is gone).
    NotFound,
}

impl ExecutorClients {
    pub fn new(token: Option<String>) -> Self {
        ExecutorClients {
            token,
            channels: Arc::default(),
        }
    }

    fn client(&self, url: &str) -> Result<ExecutorServiceClient<GrpcChannel>, RunError> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let channel = match channels.get(url) {
            Some(c) => c.clone(),
            None => {
                let c = agola_common::grpc::connect(url, self.token.as_deref())
                    .map_err(|e| RunError::Unavailable(format!("executor url {url:?}: {e}")))?;
                channels.insert(url.to_owned(), c.clone());
                c
            }
        };
        Ok(ExecutorServiceClient::new(channel))
    }

    /// Copies a workspace archive from the executor into object storage.
    pub async fn pull_archive(
        &self,
        blobs: &Blobs,
        url: &str,
        task_id: &str,
        step: usize,
    ) -> Result<Pulled, RunError> {
        let resp = self
            .client(url)?
            .get_task_archive(pb::GetTaskArchiveRequest {
                task_id: task_id.to_owned(),
                step: step as u32,
            })
            .await;
        let stream = match resp {
            Ok(r) => r.into_inner(),
            Err(st) if st.code() == tonic::Code::NotFound => return Ok(Pulled::NotFound),
            Err(st) => return Err(RunError::Unavailable(st.message().to_owned())),
        };
        store_stream(
            blobs,
            &archive_path(task_id, step),
            stream,
            |m| (m.size, m.data),
            true,
        )
        .await
    }

    /// Copies a finished log from the executor into object storage.
    pub async fn pull_log(
        &self,
        blobs: &Blobs,
        url: &str,
        task_id: &str,
        kind: LogKind,
    ) -> Result<Pulled, RunError> {
        let (setup, step) = match kind {
            LogKind::Setup => (true, None),
            LogKind::Step(i) => (false, Some(i as i32)),
        };
        let resp = self
            .client(url)?
            .get_task_logs(pb::GetTaskLogsRequest {
                task_id: task_id.to_owned(),
                setup,
                step,
                follow: false,
            })
            .await;
        let stream = match resp {
            Ok(r) => r.into_inner(),
            Err(st) if st.code() == tonic::Code::NotFound => return Ok(Pulled::NotFound),
            Err(st) => return Err(RunError::Unavailable(st.message().to_owned())),
        };
        store_stream(
            blobs,
            &log_path(task_id, kind),
            stream,
            |m| (m.size, m.data),
            false,
        )
        .await
    }
}

/// Streams `stream` into the object at `path`. The first message carries the size.
async fn store_stream<T: Send + 'static>(
    blobs: &Blobs,
    path: &str,
    mut stream: tonic::Streaming<T>,
    parts: fn(T) -> (Option<u64>, Vec<u8>),
    persist: bool,
) -> Result<Pulled, RunError> {
    let first = match stream.message().await {
        Ok(m) => m,
        Err(st) if st.code() == tonic::Code::NotFound => return Ok(Pulled::NotFound),
        Err(st) => return Err(RunError::Unavailable(st.message().to_owned())),
    };
    let (size, first_data) = first.map(parts).unwrap_or((Some(0), Vec::new()));
    let (mut reader, mut writer) = tokio::io::duplex(256 * 1024);
    let feeder = tokio::spawn(async move {
        writer
            .write_all(&first_data)
            .await
            .map_err(|e| e.to_string())?;
        while let Some(m) = stream.message().await.map_err(|e| e.message().to_owned())? {
            let (_, data) = parts(m);
            writer.write_all(&data).await.map_err(|e| e.to_string())?;
        }
        writer.shutdown().await.map_err(|e| e.to_string())
    });
    let res = blobs
        .storage()
        .write(path, &mut reader, size, persist)
        .await
        .map_err(|e| RunError::Unavailable(e.to_string()));
    let fed = feeder
        .await
        .map_err(|e| RunError::Internal(e.to_string()))?;
    res?;
    if let Err(e) = fed {
        // A stream cut short must not leave a truncated object that looks complete.
        let _ = blobs.storage().delete(path).await;
        return Err(RunError::Unavailable(e));
    }
    Ok(Pulled::Stored)
}

//! `agola.datamanager.v1.MaintenanceService` over the configstore's datamanager (spec 40
//! §6.9): maintenance mode, export and import. The byte streams are bridged to the
//! datamanager's reader/writer API through an in-memory pipe, so neither side buffers a whole
//! export.

use std::pin::Pin;

use agola_kv::KvExt;
use agola_proto::datamanager::v1 as pb;
use agola_proto::datamanager::v1::maintenance_service_server::MaintenanceService;
use futures::{Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Request, Response, Status, Streaming};

use crate::error::Error;
use crate::store::Store;

/// The datamanager's maintenance key in the service's KV namespace.
const MAINTENANCE_KEY: &str = "maintenance";

/// Pipe buffer and chunk size of export/import streams.
const CHUNK: usize = 64 * 1024;

/// The maintenance API.
#[derive(Debug, Clone)]
pub struct MaintenanceApi {
    pub store: Store,
}

/// Maintenance-state errors are preconditions, not malformed requests.
fn precondition(e: agola_datamanager::Error) -> Error {
    match e {
        agola_datamanager::Error::BadRequest(m) => Error::FailedPrecondition(m),
        other => other.into(),
    }
}

#[tonic::async_trait]
impl MaintenanceService for MaintenanceApi {
    type ExportStream = Pin<Box<dyn Stream<Item = Result<pb::ExportResponse, Status>> + Send>>;

    async fn enter_maintenance(
        &self,
        _req: Request<pb::EnterMaintenanceRequest>,
    ) -> Result<Response<pb::EnterMaintenanceResponse>, Status> {
        self.store
            .datamanager()
            .enter_maintenance()
            .await
            .map_err(precondition)?;
        Ok(Response::new(pb::EnterMaintenanceResponse {}))
    }

    async fn exit_maintenance(
        &self,
        _req: Request<pb::ExitMaintenanceRequest>,
    ) -> Result<Response<pb::ExitMaintenanceResponse>, Status> {
        self.store
            .datamanager()
            .exit_maintenance()
            .await
            .map_err(precondition)?;
        Ok(Response::new(pb::ExitMaintenanceResponse {}))
    }

    async fn export(
        &self,
        _req: Request<pb::ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        let (mut writer, mut reader) = tokio::io::duplex(CHUNK);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::ExportResponse, Status>>(4);
        let dm = self.store.datamanager().clone();
        let error_tx = tx.clone();
        tokio::spawn(async move {
            let res = dm.export(&mut writer).await;
            // Closing the pipe ends the reader below.
            drop(writer);
            if let Err(e) = res {
                let _ = error_tx.send(Err(Status::from(Error::from(e)))).await;
            }
        });
        tokio::spawn(async move {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) => return,
                    Ok(n) => {
                        let chunk = pb::ExportResponse {
                            data: buf[..n].to_vec(),
                        };
                        if tx.send(Ok(chunk)).await.is_err() {
                            // The client went away: dropping the reader stops the export.
                            return;
                        }
                    }
                    Err(e) => {
                        let err = Error::Unavailable(format!("export pipe: {e}"));
                        let _ = tx.send(Err(Status::from(err))).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn import(
        &self,
        req: Request<Streaming<pb::ImportRequest>>,
    ) -> Result<Response<pb::ImportResponse>, Status> {
        // Checked here so the precondition is told apart from a malformed import.
        let in_maintenance = self
            .store
            .kv()
            .get(MAINTENANCE_KEY)
            .await
            .map_err(|e| Status::from(Error::from(agola_datamanager::Error::from(e))))?
            .is_some();
        if !in_maintenance {
            return Err(
                Error::FailedPrecondition("import needs maintenance mode".to_owned()).into(),
            );
        }
        let mut incoming = req.into_inner();
        let (mut writer, mut reader) = tokio::io::duplex(CHUNK);
        let feed = tokio::spawn(async move {
            while let Some(msg) = incoming.next().await {
                let msg = msg?;
                if writer.write_all(&msg.data).await.is_err() {
                    // The import stopped reading (it failed): its error is the answer.
                    return Ok(());
                }
            }
            let _ = writer.shutdown().await;
            Ok::<(), Status>(())
        });
        let res = self.store.datamanager().import(&mut reader).await;
        drop(reader);
        let fed = feed
            .await
            .map_err(|e| Status::from(Error::Internal(format!("import feeder: {e}"))))?;
        match res {
            Ok(()) => {
                fed?;
                // Reload at once here; every instance also reloads when maintenance ends.
                self.store.model().request_resync();
                Ok(Response::new(pb::ImportResponse {}))
            }
            Err(e) => Err(Error::from(e).into()),
        }
    }
}

//! Thin tonic handlers of the public gRPC API.

use agola_proto::gateway::v1::version_service_server::VersionService;
use agola_proto::gateway::v1::{GetVersionRequest, GetVersionResponse};
use tonic::{Request, Response, Status};

/// `agola.gateway.v1.VersionService`.
#[derive(Debug, Clone, Copy)]
pub struct Version;

#[tonic::async_trait]
impl VersionService for Version {
    async fn get_version(
        &self,
        _request: Request<GetVersionRequest>,
    ) -> Result<Response<GetVersionResponse>, Status> {
        Ok(Response::new(GetVersionResponse {
            version: crate::VERSION.to_owned(),
        }))
    }
}

//! The gateway's only way to the configstore and the runservice: their generated gRPC clients
//! over [`agola_common::grpc::connect`] channels.

use agola_common::ApiError;
use agola_common::grpc::{GrpcChannel, connect};
use agola_proto::configstore::v1::configstore_service_client::ConfigstoreServiceClient;
use agola_proto::runservice::v1::run_service_client::RunServiceClient;

use crate::Config;

/// Clients of the internal services plus the admin token; cheap to clone (channels are shared).
#[derive(Clone)]
pub struct Backends {
    configstore: Option<ConfigstoreServiceClient<GrpcChannel>>,
    runservice: Option<RunServiceClient<GrpcChannel>>,
    admin_token: Option<String>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("configstore", &self.configstore.is_some())
            .field("runservice", &self.runservice.is_some())
            .finish_non_exhaustive()
    }
}

impl Backends {
    /// Builds lazy clients (nothing connects before the first call). An empty URL leaves that
    /// backend unconfigured: its routes answer 500 and log why.
    pub fn new(config: &Config) -> Result<Self, ApiError> {
        let token = config.internal_token.as_deref().filter(|t| !t.is_empty());
        let configstore = (!config.configstore_url.is_empty())
            .then(|| connect(&config.configstore_url, token).map(ConfigstoreServiceClient::new))
            .transpose()?;
        let runservice = (!config.runservice_url.is_empty())
            .then(|| connect(&config.runservice_url, token).map(RunServiceClient::new))
            .transpose()?;
        Ok(Backends {
            configstore,
            runservice,
            admin_token: config.admin_token.clone().filter(|t| !t.is_empty()),
        })
    }

    /// The configstore client.
    pub fn cs(&self) -> Result<ConfigstoreServiceClient<GrpcChannel>, ApiError> {
        self.configstore
            .clone()
            .ok_or_else(|| ApiError::unavailable("gateway.configstoreUrl is not configured"))
    }

    /// The runservice client.
    pub fn rs(&self) -> Result<RunServiceClient<GrpcChannel>, ApiError> {
        self.runservice
            .clone()
            .ok_or_else(|| ApiError::unavailable("gateway.runserviceUrl is not configured"))
    }

    /// The configured admin token, if any.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }
}

//! The gateway: agola's public API on one port (spec 60). gRPC, gRPC-web (for the browser
//! front end, with CORS for other origins) and REST/JSON under `/api/v1alpha` share the
//! listener; errors are translated once into the JSON model `{"code","message"}`.
//!
//! Callers are authenticated once per request (`auth`); the resource modules (`users`, `orgs`,
//! `projects`, `secrets`, `runs`, `createrun`) hold the authorization rules and talk to the
//! configstore and the runservice only through their gRPC clients (`backends`); `rest` and
//! `grpc` are thin adapters. Not built yet: JWT login, remote sources (webhooks, remote-source
//! projects, linked accounts), user direct runs and the gitserver.

mod auth;
mod backends;
mod createrun;
mod grpc;
mod orgs;
mod projects;
mod remotesources;
mod rest;
mod runs;
mod secrets;
mod users;
mod views;

use std::net::SocketAddr;

use agola_common::grpc::{GrpcServer, InternalAuthLayer};
use agola_common::telemetry::TraceContextServerLayer;
use agola_common::{ApiError, Shutdown};
use agola_proto::gateway::v1::org_service_server::OrgServiceServer;
use agola_proto::gateway::v1::project_group_service_server::ProjectGroupServiceServer;
use agola_proto::gateway::v1::project_service_server::ProjectServiceServer;
use agola_proto::gateway::v1::remote_source_service_server::RemoteSourceServiceServer;
use agola_proto::gateway::v1::run_service_server::RunServiceServer;
use agola_proto::gateway::v1::secret_service_server::SecretServiceServer;
use agola_proto::gateway::v1::user_service_server::UserServiceServer;
use agola_proto::gateway::v1::variable_service_server::VariableServiceServer;
use agola_proto::gateway::v1::version_service_server::VersionServiceServer;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// The version every API reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The `gateway` section of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// Address of the public API (REST, gRPC and gRPC-web).
    pub listen_address: SocketAddr,
    /// Origins allowed to call the API from a browser (CORS); empty = same origin only.
    pub allowed_origins: Vec<String>,
    /// Admin token (`--admin-token` or `AGOLA_ADMIN_TOKEN`); not read from the section.
    #[serde(skip)]
    pub admin_token: Option<String>,
    /// gRPC URL of the configstore (comma-separated for several instances); `agola serve`
    /// fills it from the in-process listener when the configstore runs in the same process.
    pub configstore_url: String,
    /// gRPC URL of the runservice; filled like `configstore_url`.
    pub runservice_url: String,
    /// Token of internal calls (`internalAuth.token`); set by the binary, not read here.
    #[serde(skip)]
    pub internal_token: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen_address: SocketAddr::from(([127, 0, 0, 1], 8000)),
            allowed_origins: Vec::new(),
            admin_token: None,
            configstore_url: String::new(),
            runservice_url: String::new(),
            internal_token: None,
        }
    }
}

/// Errors of the gateway.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An allowed origin is not a valid header value.
    #[error("invalid allowed origin {0:?}")]
    InvalidOrigin(String),
    /// A backend URL is invalid.
    #[error("gateway backends: {0}")]
    Backends(#[source] ApiError),
    /// The gRPC routes could not be assembled.
    #[error("gateway routes: {0}")]
    Routes(#[source] ApiError),
    /// The listener failed.
    #[error("gateway server failed: {0}")]
    Server(#[source] std::io::Error),
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        ApiError::internal(e.to_string()).to_status()
    }
}

/// Builds the whole router: REST under `/api/v1alpha`, gRPC and gRPC-web for everything else.
pub async fn router(config: &Config) -> Result<axum::Router, Error> {
    let backends = backends::Backends::new(config).map_err(Error::Backends)?;
    let (routes, _) = GrpcServer::new(None)
        .add_service(VersionServiceServer::new(grpc::Version))
        .add_service(OrgServiceServer::new(grpc::Orgs(backends.clone())))
        .add_service(ProjectGroupServiceServer::new(grpc::ProjectGroups(
            backends.clone(),
        )))
        .add_service(ProjectServiceServer::new(grpc::Projects(backends.clone())))
        .add_service(RunServiceServer::new(grpc::Runs(backends.clone())))
        .add_service(RemoteSourceServiceServer::new(grpc::RemoteSources(
            backends.clone(),
        )))
        .add_service(SecretServiceServer::new(grpc::Secrets(backends.clone())))
        .add_service(UserServiceServer::new(grpc::Users(backends.clone())))
        .add_service(VariableServiceServer::new(grpc::Variables(
            backends.clone(),
        )))
        .add_descriptor_set(agola_proto::FILE_DESCRIPTOR_SET)
        .into_routes()
        .await
        .map_err(Error::Routes)?;
    let mut cors = tower_http::cors::CorsLayer::new()
        .allow_methods([http::Method::POST, http::Method::GET, http::Method::OPTIONS])
        .allow_headers([
            http::header::CONTENT_TYPE,
            http::header::AUTHORIZATION,
            http::HeaderName::from_static("x-grpc-web"),
            http::HeaderName::from_static("x-user-agent"),
            http::HeaderName::from_static("grpc-timeout"),
        ])
        // Without these, a browser reads every cross-origin gRPC-web error as "missing trailer".
        .expose_headers([
            http::HeaderName::from_static("grpc-status"),
            http::HeaderName::from_static("grpc-message"),
            http::HeaderName::from_static("grpc-status-details-bin"),
        ]);
    if !config.allowed_origins.is_empty() {
        let origins = config
            .allowed_origins
            .iter()
            .map(|o| http::HeaderValue::from_str(o).map_err(|_| Error::InvalidOrigin(o.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        cors = cors.allow_origin(origins);
    }
    // The gRPC-web layer sits only on the tonic routes, inside CORS (it answers 400 to a
    // preflight); the public API authenticates users itself, so no internal-token check here.
    let grpc = routes
        .into_axum_router()
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(cors)
        .layer(InternalAuthLayer::new(None));
    Ok(grpc
        .nest("/api/v1alpha", rest::router(backends))
        .layer(TraceContextServerLayer))
}

/// Serves the gateway on `listener` until `shutdown` fires.
pub async fn serve(config: Config, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
    let app = router(&config).await?;
    tracing::info!(addr = ?listener.local_addr().ok(), "gateway serving");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.wait())
        .await
        .map_err(Error::Server)
}

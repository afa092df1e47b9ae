//! gRPC server and client plumbing shared by every service.
//!
//! [`GrpcServer`] assembles a service's tonic routes with `grpc.health.v1`, reflection (v1 and
//! v1alpha), internal authentication and trace-context propagation, and serves them on a
//! listener the caller bound. [`connect`] builds a lazily connecting channel whose requests carry
//! the internal token and the caller's trace context.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::{Routes, RoutesBuilder};
use tonic::transport::{Channel, Endpoint};

use crate::error::ApiError;
use crate::shutdown::Shutdown;
use crate::telemetry::{TraceContextServerLayer, inject_current_context};

/// Path prefixes served without internal authentication (probes and tooling).
const UNAUTHENTICATED_PREFIXES: [&str; 3] = [
    "/grpc.health.v1.",
    "/grpc.reflection.v1.",
    "/grpc.reflection.v1alpha.",
];

/// A service's gRPC endpoint: its own services plus health and reflection.
pub struct GrpcServer {
    routes: RoutesBuilder,
    service_names: Vec<&'static str>,
    descriptor_sets: Vec<&'static [u8]>,
    internal_token: Option<Arc<str>>,
}

impl std::fmt::Debug for GrpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcServer")
            .field("service_names", &self.service_names)
            .finish_non_exhaustive()
    }
}

impl GrpcServer {
    /// `internal_token`: required `authorization: bearer <token>` on every call but health and
    /// reflection; `None` or empty disables the check (single-process embedded default only).
    pub fn new(internal_token: Option<&str>) -> Self {
        GrpcServer {
            routes: RoutesBuilder::default(),
            service_names: Vec::new(),
            descriptor_sets: Vec::new(),
            internal_token: internal_token.filter(|t| !t.is_empty()).map(Arc::from),
        }
    }

    /// Adds a tonic service; it is reported `SERVING` by the health service.
    pub fn add_service<S>(mut self, svc: S) -> Self
    where
        S: tower::Service<http::Request<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.routes.add_service(svc);
        self.service_names.push(S::NAME);
        self
    }

    /// Registers an encoded `FileDescriptorSet` for reflection.
    pub fn add_descriptor_set(mut self, set: &'static [u8]) -> Self {
        self.descriptor_sets.push(set);
        self
    }

    /// Names of the services added so far (without health and reflection).
    pub fn service_names(&self) -> &[&'static str] {
        &self.service_names
    }

    /// Builds the routes, health and reflection included, without the auth and trace layers.
    pub async fn into_routes(self) -> Result<(Routes, Option<Arc<str>>), ApiError> {
        let GrpcServer {
            mut routes,
            service_names,
            descriptor_sets,
            internal_token,
        } = self;
        let (reporter, health) = tonic_health::server::health_reporter();
        for name in &service_names {
            reporter
                .set_service_status(*name, tonic_health::ServingStatus::Serving)
                .await;
        }
        // Reflection lists only what this endpoint really serves, although the descriptor
        // sets describe every agola service.
        let listed = service_names.iter().copied().chain([
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]);
        let mut v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        let mut v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        for name in listed {
            v1 = v1.with_service_name(name);
            v1alpha = v1alpha.with_service_name(name);
        }
        for set in descriptor_sets {
            v1 = v1.register_encoded_file_descriptor_set(set);
            v1alpha = v1alpha.register_encoded_file_descriptor_set(set);
        }
        let v1 = v1
            .build_v1()
            .map_err(|e| ApiError::internal(format!("reflection v1: {e}")))?;
        let v1alpha = v1alpha
            .build_v1alpha()
            .map_err(|e| ApiError::internal(format!("reflection v1alpha: {e}")))?;
        routes.add_service(health);
        routes.add_service(v1);
        routes.add_service(v1alpha);
        Ok((routes.routes(), internal_token))
    }

    /// Serves on `listener` until `shutdown` fires, then drains in-flight calls.
    pub async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> Result<(), ApiError> {
        let (routes, token) = self.into_routes().await?;
        tonic::transport::Server::builder()
            // HTTP/2's default 64 KiB windows cap a stream at one window per round trip; logs,
            // archives and caches are streamed in 1 MiB chunks.
            .initial_stream_window_size(Some(STREAM_WINDOW))
            .initial_connection_window_size(Some(CONNECTION_WINDOW))
            .layer(TraceContextServerLayer)
            .layer(InternalAuthLayer::new(token))
            .add_routes(routes)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.wait())
            .await
            .map_err(|e| ApiError::unavailable(format!("grpc server: {e}")))
    }
}

/// Server-side check of the internal bearer token.
#[derive(Debug, Clone)]
pub struct InternalAuthLayer {
    token: Option<Arc<str>>,
}

impl InternalAuthLayer {
    pub fn new(token: Option<Arc<str>>) -> Self {
        InternalAuthLayer { token }
    }
}

impl<S> tower::Layer<S> for InternalAuthLayer {
    type Service = InternalAuth<S>;
    fn layer(&self, inner: S) -> Self::Service {
        InternalAuth {
            inner,
            token: self.token.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct InternalAuth<S> {
    inner: S,
    token: Option<Arc<str>>,
}

/// Whether `headers` carry `authorization: bearer <token>` (scheme case-insensitive).
fn bearer_matches(headers: &http::HeaderMap, token: &str) -> bool {
    let Some(value) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    match value.split_once(' ') {
        Some((scheme, given)) => {
            scheme.eq_ignore_ascii_case("bearer") && constant_time_eq(given.trim(), token)
        }
        None => false,
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl<S, B, RB> tower::Service<http::Request<B>> for InternalAuth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    RB: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if let Some(token) = &self.token {
            let path = req.uri().path();
            let exempt = UNAUTHENTICATED_PREFIXES.iter().any(|p| path.starts_with(p));
            if !exempt && !bearer_matches(req.headers(), token) {
                let status =
                    ApiError::unauthorized("missing or invalid internal token").to_status();
                return Box::pin(async move { Ok(status.into_http()) });
            }
        }
        Box::pin(self.inner.call(req))
    }
}

/// A channel to another service: lazily connected, with the internal token and trace context
/// added to every request.
pub type GrpcChannel = ClientHeaders<Channel>;

/// HTTP/2 flow-control windows of every agola gRPC server and client (per stream and per
/// connection); large enough for 1 MiB chunks to flow without waiting for window updates.
const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// Builds a [`GrpcChannel`] to `url` (`http://host:port`), or to several instances of one
/// service given as a comma-separated list: requests are balanced over the instances that
/// answer, so one instance going away does not stop the caller. It connects on first use and
/// reconnects by itself, so services may start in any order.
pub fn connect(url: &str, internal_token: Option<&str>) -> Result<GrpcChannel, ApiError> {
    let urls: Vec<&str> = url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    let endpoints = urls
        .iter()
        .map(|u| endpoint(u))
        .collect::<Result<Vec<_>, _>>()?;
    let channel = match endpoints.len() {
        0 => {
            return Err(ApiError::bad_request(format!(
                "invalid service url {url:?}: empty"
            )));
        }
        1 => endpoints[0].connect_lazy(),
        _ => Channel::balance_list(endpoints.into_iter()),
    };
    Ok(ClientHeaders::new(channel, internal_token))
}

fn endpoint(url: &str) -> Result<Endpoint, ApiError> {
    Ok(Endpoint::from_shared(url.to_owned())
        .map_err(|e| ApiError::bad_request(format!("invalid service url {url:?}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(CONNECTION_WINDOW))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_while_idle(true))
}

/// Client-side service adding `authorization: bearer <token>` and the trace context.
#[derive(Debug, Clone)]
pub struct ClientHeaders<S> {
    inner: S,
    authorization: Option<http::HeaderValue>,
}

impl<S> ClientHeaders<S> {
    pub fn new(inner: S, internal_token: Option<&str>) -> Self {
        let authorization = internal_token
            .filter(|t| !t.is_empty())
            .and_then(|t| http::HeaderValue::from_str(&format!("Bearer {t}")).ok());
        ClientHeaders {
            inner,
            authorization,
        }
    }
}

impl<S, B> tower::Service<http::Request<B>> for ClientHeaders<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        if let Some(auth) = &self.authorization {
            req.headers_mut()
                .insert(http::header::AUTHORIZATION, auth.clone());
        }
        inject_current_context(req.headers_mut());
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_check() {
        let mut h = http::HeaderMap::new();
        assert!(!bearer_matches(&h, "s3cret"));
        h.insert(
            http::header::AUTHORIZATION,
            "Bearer s3cret".parse().expect("hv"),
        );
        assert!(bearer_matches(&h, "s3cret"));
        h.insert(
            http::header::AUTHORIZATION,
            "bearer s3cret".parse().expect("hv"),
        );
        assert!(bearer_matches(&h, "s3cret"));
        h.insert(
            http::header::AUTHORIZATION,
            "Bearer s3cre".parse().expect("hv"),
        );
        assert!(!bearer_matches(&h, "s3cret"));
        h.insert(
            http::header::AUTHORIZATION,
            "token s3cret".parse().expect("hv"),
        );
        assert!(!bearer_matches(&h, "s3cret"));
    }
}

//! Tracing and OpenTelemetry set-up, and W3C trace context on gRPC metadata.
//!
//! [`init`] installs one global subscriber: an `EnvFilter`, a fmt layer and, when an OTLP
//! endpoint is configured, an OpenTelemetry layer exporting spans over OTLP/gRPC.
//! [`TraceContextServerLayer`] (server side) and [`TraceContextClientLayer`] (client side)
//! carry `traceparent`/`tracestate` across every gRPC call, so one trace spans services.

use std::task::{Context, Poll};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Telemetry settings (the `telemetry` section of the config file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct TelemetryConfig {
    /// `EnvFilter` directives; `RUST_LOG` overrides them when set.
    pub log_filter: String,
    /// OTLP/gRPC collector endpoint (e.g. `http://127.0.0.1:4317`); none = no export.
    pub otlp_endpoint: Option<String>,
    /// `service.name` resource attribute of exported spans.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            log_filter: "info".to_owned(),
            otlp_endpoint: None,
            service_name: "agola".to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter {filter:?}: {reason}")]
    InvalidFilter { filter: String, reason: String },
    #[error("cannot build the OTLP exporter for {endpoint}: {reason}")]
    Exporter { endpoint: String, reason: String },
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Keeps the tracer provider alive; [`TelemetryGuard::shutdown`] flushes pending spans.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Flushes and stops the exporter. Blocking: it runs on a blocking thread so it never
    /// stalls a runtime worker (a current-thread runtime would otherwise time out after 5 s).
    pub async fn shutdown(mut self) {
        if let Some(provider) = self.provider.take() {
            let res = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(e)) = res {
                eprintln!("telemetry: exporter shutdown failed: {e}");
            }
        }
    }

    /// Flushes pending spans without stopping the exporter (same blocking caveat).
    pub async fn flush(&self) {
        if let Some(provider) = self.provider.clone() {
            let _ = tokio::task::spawn_blocking(move || provider.force_flush()).await;
        }
    }
}

/// Builds an OTLP/gRPC tracer provider exporting to `endpoint`. Needs a Tokio runtime.
pub fn otlp_provider(
    endpoint: &str,
    service_name: &str,
) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| TelemetryError::Exporter {
            endpoint: endpoint.to_owned(),
            reason: e.to_string(),
        })?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build())
}

/// Installs the global subscriber and the W3C propagator. Call once, from inside a
/// multi-thread Tokio runtime when OTLP export is configured.
pub fn init(config: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => f,
        _ => config.log_filter.clone(),
    };
    let env_filter = EnvFilter::try_new(&filter).map_err(|e| TelemetryError::InvalidFilter {
        filter: filter.clone(),
        reason: e.to_string(),
    })?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let provider = match &config.otlp_endpoint {
        Some(endpoint) => Some(otlp_provider(endpoint, &config.service_name)?),
        None => None,
    };
    let otel_layer = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(config.service_name.clone())));
    tracing_subscriber::registry()
        .with(env_filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(otel_layer)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(TelemetryGuard { provider })
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::header::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Writes the current span's trace context into request headers (gRPC metadata).
pub fn inject_current_context(headers: &mut http::HeaderMap) {
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// Reads a trace context from request headers.
pub fn extract_context(headers: &http::HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Server-side tower layer: opens a `grpc.server` span per request, parented to the caller's
/// trace context when the request carries one.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceContextServerLayer;

impl<S> tower::Layer<S> for TraceContextServerLayer {
    type Service = TraceContextServer<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TraceContextServer { inner }
    }
}

#[derive(Debug, Clone)]
pub struct TraceContextServer<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for TraceContextServer<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let span = tracing::info_span!("grpc.server", rpc.path = %req.uri().path());
        let parent = extract_context(req.headers());
        // A missing or malformed traceparent just starts a new trace.
        let _ = span.set_parent(parent);
        let fut = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        Box::pin(fut.instrument(span))
    }
}

/// Client-side tower layer: injects the current span's trace context into each request.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceContextClientLayer;

impl<S> tower::Layer<S> for TraceContextClientLayer {
    type Service = TraceContextClient<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TraceContextClient { inner }
    }
}

#[derive(Debug, Clone)]
pub struct TraceContextClient<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for TraceContextClient<S>
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
        inject_current_context(req.headers_mut());
        self.inner.call(req)
    }
}

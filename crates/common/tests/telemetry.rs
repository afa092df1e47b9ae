//! A span crosses a gRPC call with the same trace id and reaches an in-process OTLP collector.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agola_common::Shutdown;
use agola_common::grpc::{GrpcServer, connect};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Debug, Clone)]
struct SpanRecord {
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<SpanRecord>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().expect("lock");
        for rs in request.into_inner().resource_spans {
            for ss in rs.scope_spans {
                for s in ss.spans {
                    spans.push(SpanRecord {
                        name: s.name,
                        trace_id: s.trace_id,
                        span_id: s.span_id,
                        parent_span_id: s.parent_span_id,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_crosses_a_grpc_call_and_reaches_the_collector() {
    // In-process OTLP collector.
    let collector = Collector::default();
    let collector_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let collector_url = format!("http://{}", collector_listener.local_addr().expect("addr"));
    let svc = TraceServiceServer::new(collector.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(TcpListenerStream::new(collector_listener)),
    );

    let provider =
        agola_common::telemetry::otlp_provider(&collector_url, "telemetry-test").expect("provider");
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber).expect("global subscriber");

    // A gRPC server with the trace-context layer (health is enough to carry a call).
    let (trigger, shutdown) = Shutdown::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(GrpcServer::new(None).serve(listener, shutdown));

    let channel = connect(&url, None).expect("channel");
    let mut client = HealthClient::new(channel);
    async {
        client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("health call");
    }
    .instrument(tracing::info_span!("client.call"))
    .await;

    let deadline = Instant::now() + Duration::from_secs(20);
    let (client_span, server_span) = loop {
        let p = provider.clone();
        tokio::task::spawn_blocking(move || p.force_flush())
            .await
            .expect("join")
            .expect("flush");
        let spans = collector.spans.lock().expect("lock").clone();
        let c = spans.iter().find(|s| s.name == "client.call").cloned();
        let s = spans.iter().find(|s| s.name == "grpc.server").cloned();
        if let (Some(c), Some(s)) = (c, s) {
            break (c, s);
        }
        assert!(
            Instant::now() < deadline,
            "spans did not reach the collector: {spans:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(client_span.trace_id.len(), 16);
    assert_eq!(server_span.trace_id, client_span.trace_id, "same trace");
    assert_eq!(
        server_span.parent_span_id, client_span.span_id,
        "server span is a child of the client span"
    );

    trigger.trigger();
    server.await.expect("join").expect("server stopped cleanly");
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .expect("join")
        .expect("shutdown");
}

//! `agola serve` in-process: every component answers health and reflection; the gateway
//! serves gRPC, gRPC-web and REST on one port.

use std::time::Duration;

use agola::config::{Component, Config};
use agola_integration_tests::{TestCluster, wait_until};
use agola_proto::gateway::v1::GetVersionRequest;
use agola_proto::gateway::v1::version_service_client::VersionServiceClient;
use agola_proto::runservice::v1::GetRunRequest;
use agola_proto::runservice::v1::run_service_client::RunServiceClient;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn all() -> TestCluster {
    TestCluster::start(
        Config::default(),
        Component::parse_list("all").expect("all"),
    )
    .await
    .expect("start cluster")
}

async fn channel(url: String) -> Channel {
    wait_until("a gRPC connection", Duration::from_secs(10), || {
        let url = url.clone();
        async move { Channel::from_shared(url).ok()?.connect().await.ok() }
    })
    .await
    .expect("connect")
}

async fn list_services(ch: Channel) -> Vec<String> {
    let mut client = ServerReflectionClient::new(ch);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(futures::stream::iter([req]))
        .await
        .expect("reflection call")
        .into_inner();
    let resp = stream
        .message()
        .await
        .expect("reflection message")
        .expect("one response");
    match resp.message_response {
        Some(MessageResponse::ListServicesResponse(l)) => {
            l.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

#[tokio::test]
async fn every_component_answers_health_and_reflection() {
    let cluster = all().await;
    for c in Component::ALL {
        let ch = channel(cluster.url(c)).await;
        let resp = HealthClient::new(ch.clone())
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("{}: health: {e}", c.name()))
            .into_inner();
        assert_eq!(resp.status(), ServingStatus::Serving, "{}", c.name());
        let services = list_services(ch).await;
        assert!(
            services.iter().any(|s| s == "grpc.health.v1.Health"),
            "{}: {services:?}",
            c.name()
        );
        let served: &[&str] = match c {
            Component::Gateway => &[
                "agola.gateway.v1.OrgService",
                "agola.gateway.v1.ProjectGroupService",
                "agola.gateway.v1.ProjectService",
                "agola.gateway.v1.RemoteSourceService",
                "agola.gateway.v1.RunService",
                "agola.gateway.v1.SecretService",
                "agola.gateway.v1.UserService",
                "agola.gateway.v1.VariableService",
                "agola.gateway.v1.VersionService",
            ],
            Component::Runservice => &[
                "agola.runservice.v1.ExecutorControlService",
                "agola.runservice.v1.RunService",
            ],
            Component::Executor => &["agola.executor.v1.ExecutorService"],
            Component::Configstore => &[
                "agola.configstore.v1.ConfigstoreService",
                "agola.datamanager.v1.MaintenanceService",
            ],
            _ => &[],
        };
        if !served.is_empty() {
            let mut listed: Vec<&str> = services
                .iter()
                .map(String::as_str)
                .filter(|s| s.starts_with("agola."))
                .collect();
            listed.sort();
            assert_eq!(listed, served, "{}: lists exactly what it serves", c.name());
        } else {
            // Components list only what they really serve: no domain API is served yet.
            assert!(
                !services.iter().any(|s| s.starts_with("agola.")),
                "{}: {services:?}",
                c.name()
            );
        }
    }
    cluster.stop().await.expect("clean stop");
}

#[tokio::test]
async fn gateway_serves_grpc_grpc_web_and_rest_on_one_port() {
    let cluster = all().await;
    let url = cluster.url(Component::Gateway);

    // gRPC
    let mut client = VersionServiceClient::new(channel(url.clone()).await);
    let v = client
        .get_version(GetVersionRequest {})
        .await
        .expect("grpc version")
        .into_inner();
    assert_eq!(v.version, env!("CARGO_PKG_VERSION"));

    // gRPC-web over HTTP/1.1
    let http1 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let svc = tower::ServiceBuilder::new()
        .layer(tonic_web::GrpcWebClientLayer::new())
        .service(http1);
    let mut web = VersionServiceClient::with_origin(svc, url.parse().expect("uri"));
    let v = web
        .get_version(GetVersionRequest {})
        .await
        .expect("grpc-web version")
        .into_inner();
    assert_eq!(v.version, env!("CARGO_PKG_VERSION"));

    // REST
    let (status, body) = http_get(&format!("{url}/api/v1alpha/version")).await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));

    // Unknown API routes answer 400 with the JSON error model, not 404.
    let (status, body) = http_get(&format!("{url}/api/v1alpha/nope")).await;
    assert_eq!(status, 400);
    let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(json["code"], "bad_request");
    assert!(json["message"].as_str().expect("message").contains("/nope"));

    cluster.stop().await.expect("clean stop");
}

#[tokio::test]
async fn internal_token_is_required_when_configured() {
    let mut config = Config::default();
    config.internal_auth.token = "s3cret".into();
    let cluster = TestCluster::start(config, [Component::Runservice].into())
        .await
        .expect("start");
    let ch = channel(cluster.url(Component::Runservice)).await;
    // Health stays open for probes.
    HealthClient::new(ch.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health without token");
    // Anything else needs the token: the call is refused before routing.
    let err = RunServiceClient::new(ch)
        .get_run(GetRunRequest::default())
        .await
        .expect_err("must be refused");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    cluster.stop().await.expect("clean stop");
}

async fn http_get(url: &str) -> (u16, bytes::Bytes) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let resp = client
        .get(url.parse().expect("uri"))
        .await
        .expect("http get");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, body)
}

//! A client in another language: Python stubs generated from `proto/` with grpcio-tools
//! (installed by scripts/install-deps.sh) create a user and a project through the gateway's
//! gRPC API and list the project's runs; a missing project is NOT_FOUND.

use std::path::Path;
use std::process::Command;

use agola::config::{Component, Config};
use agola_integration_tests::TestCluster;

const ADMIN: &str = "python-admin-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_grpcio_client_creates_a_project_and_lists_its_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let generated = tempfile::tempdir().expect("tempdir");
    let protos: Vec<String> = ["common", "gateway"]
        .iter()
        .map(|a| format!("agola/{a}/v1/{a}.proto"))
        .collect();
    let out = Command::new("python3")
        .args(["-m", "grpc_tools.protoc", "-Iproto"])
        .arg(format!("--python_out={}", generated.path().display()))
        .arg(format!("--grpc_python_out={}", generated.path().display()))
        .args(&protos)
        .current_dir(&root)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "generating the Python stubs failed (run scripts/test.sh, which installs grpcio-tools): {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut config = Config::default();
    config.gateway.admin_token = Some(ADMIN.into());
    let cluster = TestCluster::start(
        config,
        [
            Component::Gateway,
            Component::Configstore,
            Component::Runservice,
        ]
        .into_iter()
        .collect(),
    )
    .await
    .expect("cluster");
    let addr = cluster.addr(Component::Gateway).to_string();
    let username = format!("py{}", std::process::id());
    let client = root.join("integration-tests/python/client.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(client)
            .arg(generated.path())
            .arg(addr)
            .arg(ADMIN)
            .arg(&username)
            .output()
            .map(|o| (o, username))
    })
    .await
    .expect("join")
    .expect("python3 runs");
    let (out, username) = out;
    assert!(
        out.status.success(),
        "the Python client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the client prints JSON");
    assert_eq!(seen["user"], username.as_str());
    assert_eq!(
        seen["project_path"],
        format!("user/{username}/pyproject").as_str()
    );
    assert_eq!(seen["runs"], 0);
    assert_eq!(seen["missing"], "NOT_FOUND");
    cluster.stop().await.expect("clean stop");
}

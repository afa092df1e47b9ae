//! Helpers shared by the runservice and scheduler tests: a run config task builder and run
//! polling through the RunService API.

use std::collections::BTreeMap;
use std::time::Duration;

use agola_common::Shutdown;
use agola_common::config::{KvConfig, ObjectStorageConfig};
use agola_integration_tests::infra;
use agola_proto::common::v1 as pbc;
use agola_proto::runservice::v1 as pb;
use agola_proto::runservice::v1::run_service_client::RunServiceClient;
use agola_runservice::types::*;
use tokio::net::TcpListener;

pub type Api = RunServiceClient<agola_common::grpc::GrpcChannel>;

/// A task with a unique id, a busybox container and one `echo` step, depending on `parents`
/// (ids) with the default condition.
pub fn task(name: &str, parents: &[&str]) -> RunConfigTask {
    RunConfigTask {
        id: format!("{name}-{}", infra::unique_name("t")),
        name: name.to_owned(),
        runtime: Runtime {
            arch: String::new(),
            containers: vec![Container {
                image: "busybox".into(),
                ..Default::default()
            }],
        },
        depends: parents
            .iter()
            .map(|p| {
                (
                    (*p).to_owned(),
                    RunConfigTaskDepend {
                        task_id: (*p).to_owned(),
                        conditions: vec![],
                    },
                )
            })
            .collect(),
        steps: vec![Step::Run {
            name: "echo".into(),
            command: "echo hello".into(),
            environment: BTreeMap::new(),
            working_dir: String::new(),
            shell: String::new(),
            tty: false,
        }],
        min_approvers: 1,
        ..Default::default()
    }
}

pub async fn get_run(api: &mut Api, id: &str) -> pbc::Run {
    api.get_run(pb::GetRunRequest {
        run_id: id.to_owned(),
        change_groups: vec![],
    })
    .await
    .expect("get run")
    .into_inner()
    .run
    .expect("run")
}

/// Polls the run until `pred` holds; panics naming `what` after `timeout`.
pub async fn wait_run(
    api: &mut Api,
    id: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&pbc::Run) -> bool,
) -> pbc::Run {
    let last = std::sync::Mutex::new(None);
    let found = agola_common::poll::wait_until(what, timeout, || {
        let mut api = api.clone();
        let (pred, last) = (&pred, &last);
        async move {
            let run = get_run(&mut api, id).await;
            if pred(&run) {
                return Some(run);
            }
            *last.lock().unwrap_or_else(|p| p.into_inner()) = Some(run);
            None
        }
    })
    .await;
    match found {
        Ok(run) => run,
        Err(e) => panic!(
            "run {id}: {e}: {:?}",
            last.lock().unwrap_or_else(|p| p.into_inner())
        ),
    }
}

pub struct Served {
    pub url: String,
    pub api: Api,
    pub stop: agola_common::shutdown::ShutdownTrigger,
    /// Kept for the life of the test (the runservice's data).
    pub _dir: tempfile::TempDir,
}

/// Serves a runservice on etcd + posix object storage and returns a RunService client.
pub async fn serve(dead_timeout_secs: u64) -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = agola_runservice::Config {
        kv: Some(KvConfig::Etcd {
            endpoints: infra::etcd_endpoints(),
            prefix: format!("{}/", infra::unique_name("rs")),
        }),
        object_storage: Some(ObjectStorageConfig::Posix {
            path: Some(dir.path().join("ost")),
        }),
        executor_dead_timeout_secs: dead_timeout_secs,
        schedule_interval_ms: 100,
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, shutdown) = Shutdown::new();
    tokio::spawn(agola_runservice::serve(config, listener, shutdown));
    wait_ready(&url).await;
    let api = RunServiceClient::new(agola_common::grpc::connect(&url, None).expect("channel"));
    Served {
        url,
        api,
        stop,
        _dir: dir,
    }
}

/// Creates a run through the API and starts it (as the scheduler service would).
pub async fn create_and_start(api: &mut Api, tasks: &[RunConfigTask]) -> pbc::Run {
    let created = api
        .create_run(pb::CreateRunRequest {
            run_config_tasks: tasks
                .iter()
                .map(agola_runservice::convert::run_config_task_to_pb)
                .collect(),
            name: "test".into(),
            group: format!("/project/{}/branch/main", infra::unique_name("p")),
            ..Default::default()
        })
        .await
        .expect("create run")
        .into_inner()
        .run
        .expect("run");
    assert_eq!(created.phase, pbc::RunPhase::Queued as i32);
    api.run_action(pb::RunActionRequest {
        run_id: created.id.clone(),
        action_type: pb::RunActionType::ChangePhase as i32,
        phase: pbc::RunPhase::Running as i32,
        change_groups_update_token: String::new(),
    })
    .await
    .expect("start")
    .into_inner()
    .run
    .expect("run")
}

pub async fn wait_ready(url: &str) {
    agola_integration_tests::wait_until("the runservice", Duration::from_secs(30), || {
        let url = url.to_owned();
        async move {
            let channel = tonic::transport::Channel::from_shared(url)
                .ok()?
                .connect()
                .await
                .ok()?;
            tonic_health::pb::health_client::HealthClient::new(channel)
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .ok()
        }
    })
    .await
    .expect("runservice ready");
}

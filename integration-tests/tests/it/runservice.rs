//! The runservice through gRPC with a fake executor on the Connect stream (real etcd, posix
//! object storage): a diamond DAG runs queued → running → finished/success with logs uploaded
//! live; a killed executor connection fails its task with a visible reason.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use agola_common::Shutdown;
use agola_common::config::{KvConfig, ObjectStorageConfig};
use agola_integration_tests::infra;
use agola_proto::common::v1 as pbc;
use agola_proto::runservice::v1 as pb;
use agola_proto::runservice::v1::executor_control_service_client::ExecutorControlServiceClient;
use agola_runservice::create::CreateRunRequest;
use agola_runservice::runs::Runs;
use agola_runservice::store::Store;
use agola_runservice::types::*;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

struct Served {
    url: String,
    runs: Runs,
    stop: agola_common::shutdown::ShutdownTrigger,
    _dir: tempfile::TempDir,
}

/// Serves a runservice on etcd + posix, and opens a second instance of its storage for the
/// test (another datamanager instance on the same namespace, as a second runservice would).
async fn serve(dead_timeout_secs: u64) -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let kv_config = KvConfig::Etcd {
        endpoints: infra::etcd_endpoints(),
        prefix: format!("{}/", infra::unique_name("rs")),
    };
    let ost_config = ObjectStorageConfig::Posix {
        path: Some(dir.path().join("ost")),
    };
    let config = agola_runservice::Config {
        kv: Some(kv_config.clone()),
        object_storage: Some(ost_config.clone()),
        executor_dead_timeout_secs: dead_timeout_secs,
        schedule_interval_ms: 100,
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, shutdown) = Shutdown::new();
    tokio::spawn(agola_runservice::serve(config, listener, shutdown));
    let kv = agola_kv::open(&kv_config, dir.path(), "runservice")
        .await
        .expect("kv");
    let ost = agola_objectstorage::open(&ost_config, dir.path())
        .await
        .expect("ost");
    let dm = agola_datamanager::DataManager::new(
        agola_datamanager::Config::new("rundata"),
        kv.clone(),
        ost,
    );
    dm.init(Shutdown::never()).await.expect("datamanager");
    Served {
        url,
        runs: Runs::new(Store::new(kv), dm),
        stop,
        _dir: dir,
    }
}

/// Polls gRPC health until the served runservice answers.
async fn wait_ready(url: &str) {
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

fn task(name: &str, parents: &[&str]) -> RunConfigTask {
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

fn register(id: &str) -> pb::ConnectRequest {
    pb::ConnectRequest {
        message: Some(pb::connect_request::Message::Register(
            pb::RegisterExecutor {
                executor: Some(pbc::Executor {
                    id: id.to_owned(),
                    archs: vec![pbc::Arch::Amd64 as i32],
                    executor_group: id.to_owned(),
                    siblings_executors: vec![id.to_owned()],
                    ..Default::default()
                }),
            },
        )),
    }
}

fn status_update(task: &pbc::ExecutorTask, phase: pbc::ExecutorTaskPhase) -> pb::ConnectRequest {
    let mut status = task.status.clone().unwrap_or_default();
    status.phase = phase as i32;
    let step_phase = phase as i32;
    if let Some(s) = status.setup_step.as_mut() {
        s.phase = if phase == pbc::ExecutorTaskPhase::Running {
            pbc::ExecutorTaskPhase::Success as i32
        } else {
            s.phase.max(pbc::ExecutorTaskPhase::Success as i32)
        };
    }
    for s in &mut status.steps {
        s.phase = step_phase;
        if phase == pbc::ExecutorTaskPhase::Success {
            s.exit_status = Some(0);
        }
    }
    pb::ConnectRequest {
        message: Some(pb::connect_request::Message::TaskStatus(
            pb::ExecutorTaskStatusUpdate {
                task_id: task.id.clone(),
                status: Some(status),
            },
        )),
    }
}

async fn upload_log(
    client: &mut ExecutorControlServiceClient<agola_common::grpc::GrpcChannel>,
    task_id: &str,
    setup: bool,
    text: &str,
) {
    let mut msgs = vec![pb::UploadLogRequest {
        payload: Some(pb::upload_log_request::Payload::Header(
            pb::UploadLogHeader {
                task_id: task_id.to_owned(),
                setup,
                step: if setup { None } else { Some(0) },
            },
        )),
    }];
    // Two chunks, to exercise offsets.
    let (a, b) = text.split_at(text.len() / 2);
    msgs.push(pb::UploadLogRequest {
        payload: Some(pb::upload_log_request::Payload::Chunk(pb::UploadLogChunk {
            offset: 0,
            data: a.as_bytes().to_vec(),
        })),
    });
    msgs.push(pb::UploadLogRequest {
        payload: Some(pb::upload_log_request::Payload::Chunk(pb::UploadLogChunk {
            offset: a.len() as u64,
            data: b.as_bytes().to_vec(),
        })),
    });
    msgs.push(pb::UploadLogRequest {
        payload: Some(pb::upload_log_request::Payload::End(pb::UploadLogEnd {
            final_size: text.len() as u64,
        })),
    });
    let mut acks = client
        .upload_log(futures::stream::iter(msgs))
        .await
        .expect("upload log")
        .into_inner();
    let mut completed = false;
    while let Some(ack) = acks.message().await.expect("ack") {
        completed |= ack.completed;
    }
    assert!(completed, "the log upload completed");
}

async fn wait_run(runs: &Runs, id: &str, timeout: Duration, pred: impl Fn(&Run) -> bool) -> Run {
    let deadline = Instant::now() + timeout;
    loop {
        let (run, _) = runs.get_run(id).await.expect("get run");
        if pred(&run) {
            return run;
        }
        if Instant::now() >= deadline {
            let ets = runs.store().list_executor_tasks().await.expect("ets");
            panic!(
                "run {id} did not reach the expected state: {:?} {:?} {:?}; tasks {:?}; ets {:?}",
                run.phase,
                run.result,
                run.tasks.values().map(|t| t.status).collect::<Vec<_>>(),
                run.tasks
                    .values()
                    .map(|t| (
                        t.setup_step.log_phase,
                        t.steps.iter().map(|s| s.log_phase).collect::<Vec<_>>()
                    ))
                    .collect::<Vec<_>>(),
                ets.iter()
                    .map(|(e, _)| (e.id.clone(), e.status.phase))
                    .collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diamond_dag_runs_to_success_through_the_executor_stream() {
    let s = serve(60).await;
    let a = task("a", &[]);
    let b = task("b", &[&a.id]);
    let c = task("c", &[&a.id]);
    let d = task("d", &[&b.id, &c.id]);
    let names: BTreeMap<String, String> = [&a, &b, &c, &d]
        .iter()
        .map(|t| (t.id.clone(), t.name.clone()))
        .collect();
    let (run, _) = s
        .runs
        .create_run(
            CreateRunRequest {
                name: "diamond".into(),
                group: format!("/project/{}/branch/main", infra::unique_name("p")),
                tasks: vec![a, b, c, d],
                ..Default::default()
            },
            chrono::Utc::now(),
        )
        .await
        .expect("create run");
    assert_eq!(run.phase, RunPhase::Queued);
    s.runs
        .change_phase(&run.id, RunPhase::Running, None, chrono::Utc::now())
        .await
        .expect("start");

    let channel = agola_common::grpc::connect(&s.url, None).expect("channel");
    let mut client = ExecutorControlServiceClient::new(channel);
    let (up, up_rx) = mpsc::channel(64);
    up.send(register("fake-exec")).await.expect("send");
    wait_ready(&s.url).await;
    let mut down = client
        .connect(tokio_stream::wrappers::ReceiverStream::new(up_rx))
        .await
        .expect("connect")
        .into_inner();
    let first = down.message().await.expect("msg").expect("registered");
    assert!(matches!(
        first.message,
        Some(pb::connect_response::Message::Registered(_))
    ));

    let mut order = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while order.len() < 4 {
        assert!(
            Instant::now() < deadline,
            "tasks not all dispatched: {order:?}"
        );
        let msg = tokio::time::timeout(Duration::from_secs(30), down.message())
            .await
            .expect("a message in time")
            .expect("stream ok")
            .expect("stream open");
        let tasks = match msg.message {
            Some(pb::connect_response::Message::Task(t)) => vec![t],
            Some(pb::connect_response::Message::TaskSync(s)) => s.tasks,
            _ => continue,
        };
        for t in tasks {
            let phase = t.status.as_ref().map(|s| s.phase).unwrap_or_default();
            if phase != pbc::ExecutorTaskPhase::Notstarted as i32 || order.contains(&t.id) {
                continue;
            }
            order.push(t.id.clone());
            up.send(status_update(&t, pbc::ExecutorTaskPhase::Running))
                .await
                .expect("send");
            upload_log(&mut client, &t.id, true, "setup ok\n").await;
            upload_log(
                &mut client,
                &t.id,
                false,
                &format!("hello from {}\n", names[&t.id]),
            )
            .await;
            up.send(status_update(&t, pbc::ExecutorTaskPhase::Success))
                .await
                .expect("send");
        }
    }
    let done = wait_run(&s.runs, &run.id, Duration::from_secs(60), |r| {
        r.phase == RunPhase::Finished
    })
    .await;
    assert_eq!(done.result, RunResult::Success);
    let order: Vec<&str> = order.iter().map(|id| names[id].as_str()).collect();
    assert_eq!(order.first(), Some(&"a"));
    assert_eq!(order.last(), Some(&"d"));
    // Logs were stored from the live upload, and no ET is left.
    for t in done.tasks.values() {
        assert_eq!(t.steps[0].log_phase, FetchPhase::Finished);
    }
    assert!(
        s.runs
            .store()
            .list_executor_tasks()
            .await
            .expect("ets")
            .is_empty()
    );
    drop(up);
    s.stop.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_executor_fails_its_task_with_a_reason() {
    let s = serve(1).await;
    let t = task("only", &[]);
    let (run, _) = s
        .runs
        .create_run(
            CreateRunRequest {
                name: "lost".into(),
                group: format!("/project/{}/branch/main", infra::unique_name("p")),
                tasks: vec![t],
                ..Default::default()
            },
            chrono::Utc::now(),
        )
        .await
        .expect("create run");
    s.runs
        .change_phase(&run.id, RunPhase::Running, None, chrono::Utc::now())
        .await
        .expect("start");
    let channel = agola_common::grpc::connect(&s.url, None).expect("channel");
    let mut client = ExecutorControlServiceClient::new(channel);
    let (up, up_rx) = mpsc::channel(16);
    up.send(register("doomed-exec")).await.expect("send");
    wait_ready(&s.url).await;
    let mut down = client
        .connect(tokio_stream::wrappers::ReceiverStream::new(up_rx))
        .await
        .expect("connect")
        .into_inner();
    let got = loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), down.message())
            .await
            .expect("assignment in time")
            .expect("ok")
            .expect("open");
        let tasks = match msg.message {
            Some(pb::connect_response::Message::Task(t)) => vec![t],
            Some(pb::connect_response::Message::TaskSync(s)) => s.tasks,
            _ => continue,
        };
        if let Some(t) = tasks.into_iter().next() {
            break t;
        }
    };
    up.send(status_update(&got, pbc::ExecutorTaskPhase::Running))
        .await
        .expect("send");
    wait_run(&s.runs, &run.id, Duration::from_secs(20), |r| {
        r.tasks.values().any(|t| t.status == RunTaskStatus::Running)
    })
    .await;
    // Kill the connection: no more heartbeats, the executor is declared dead.
    drop(up);
    drop(down);
    let done = wait_run(&s.runs, &run.id, Duration::from_secs(40), |r| {
        r.phase == RunPhase::Finished
    })
    .await;
    assert_eq!(done.result, RunResult::Failed);
    let task = done.tasks.values().next().expect("task");
    assert_eq!(task.status, RunTaskStatus::Failed);
    assert_eq!(
        task.steps[0].log_phase,
        FetchPhase::Lost,
        "the log is reported lost"
    );
    s.stop.trigger();
}

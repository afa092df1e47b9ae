//! Scheduling benchmark of the runservice (issue #6), on the embedded KV, with a fake executor
//! on the `Connect` stream that finishes every task the moment it is assigned (tasks have no
//! steps and report no setup, so nothing is fetched). Printed against raw KV transactions per
//! second measured in the same run; nothing is asserted.
//!
//! - **latency**: in a chain of tasks, from the parent's final status sent by the executor
//!   to the child's assignment received on the stream; p50 and p99 (goal p50 ≤ 5 ms,
//!   p99 ≤ 50 ms).
//! - **throughput**: 100 concurrent runs of a 20-task DAG (5 levels of 4, each task depending
//!   on every task of the level above): tasks assigned per second (goal ≥ 500/s).
//!
//! Run: `cargo bench -p agola-runservice --bench scheduling` (env `AGOLA_BENCH_CHAIN`,
//! default 200 tasks; `AGOLA_BENCH_RUNS`, default 100).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agola_common::Shutdown;
use agola_common::grpc::GrpcChannel;
use agola_proto::common::v1 as pbc;
use agola_proto::runservice::v1 as pb;
use agola_proto::runservice::v1::executor_control_service_client::ExecutorControlServiceClient;
use agola_proto::runservice::v1::run_service_client::RunServiceClient;
use tokio::sync::mpsc;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn task(name: &str, parents: &[String]) -> pbc::RunConfigTask {
    pbc::RunConfigTask {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_owned(),
        runtime: Some(pbc::Runtime {
            r#type: pbc::RuntimeType::Pod as i32,
            arch: pbc::Arch::Unspecified as i32,
            containers: vec![pbc::Container {
                image: "busybox".into(),
                ..Default::default()
            }],
        }),
        min_approvers: 1,
        depends: parents
            .iter()
            .map(|p| {
                (
                    p.clone(),
                    pbc::RunConfigTaskDepend {
                        task_id: p.clone(),
                        conditions: vec![],
                    },
                )
            })
            .collect(),
        ..Default::default()
    }
}

fn finished(id: &str) -> pb::ConnectRequest {
    pb::ConnectRequest {
        message: Some(pb::connect_request::Message::TaskStatus(
            pb::ExecutorTaskStatusUpdate {
                task_id: id.to_owned(),
                status: Some(pbc::ExecutorTaskStatus {
                    id: id.to_owned(),
                    phase: pbc::ExecutorTaskPhase::Success as i32,
                    setup_step: Some(pbc::ExecutorTaskStepStatus {
                        phase: pbc::ExecutorTaskPhase::Notstarted as i32,
                        ..Default::default()
                    }),
                    start_time: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
                    end_time: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
                    ..Default::default()
                }),
            },
        )),
    }
}

/// What the fake executor recorded.
#[derive(Default)]
struct Record {
    /// Task id -> when its assignment arrived.
    assigned: HashMap<String, Instant>,
    /// Task id -> when its final status was sent.
    finished: HashMap<String, Instant>,
}

/// A fake executor finishing every assigned task at once.
async fn fake_executor(channel: GrpcChannel, record: Arc<Mutex<Record>>) {
    let (tx, rx) = mpsc::channel::<pb::ConnectRequest>(1024);
    tx.send(pb::ConnectRequest {
        message: Some(pb::connect_request::Message::Register(
            pb::RegisterExecutor {
                executor: Some(pbc::Executor {
                    id: "bench-executor".into(),
                    archs: vec![pbc::Arch::Amd64 as i32],
                    active_tasks_limit: 0,
                    executor_group: "bench-executor".into(),
                    siblings_executors: vec!["bench-executor".into()],
                    ..Default::default()
                }),
            },
        )),
    })
    .await
    .expect("register");
    let mut down = ExecutorControlServiceClient::new(channel)
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("connect")
        .into_inner();
    while let Ok(Some(msg)) = down.message().await {
        let tasks = match msg.message {
            Some(pb::connect_response::Message::Task(t)) => vec![t],
            Some(pb::connect_response::Message::TaskSync(s)) => s.tasks,
            _ => continue,
        };
        for t in tasks {
            let now = Instant::now();
            let finished_phase = t
                .status
                .as_ref()
                .is_some_and(|s| s.phase != pbc::ExecutorTaskPhase::Notstarted as i32);
            {
                let mut r = record.lock().expect("record");
                if finished_phase || r.assigned.contains_key(&t.id) {
                    continue;
                }
                r.assigned.insert(t.id.clone(), now);
            }
            let _ = tx.send(finished(&t.id)).await;
            record
                .lock()
                .expect("record")
                .finished
                .insert(t.id.clone(), Instant::now());
        }
    }
}

async fn create_and_start(
    api: &mut RunServiceClient<GrpcChannel>,
    tasks: Vec<pbc::RunConfigTask>,
    group: &str,
) -> String {
    let run = api
        .create_run(pb::CreateRunRequest {
            run_config_tasks: tasks,
            name: "bench".into(),
            group: group.to_owned(),
            ..Default::default()
        })
        .await
        .expect("create run")
        .into_inner()
        .run
        .expect("run");
    api.run_action(pb::RunActionRequest {
        run_id: run.id.clone(),
        action_type: pb::RunActionType::ChangePhase as i32,
        phase: pbc::RunPhase::Running as i32,
        change_groups_update_token: String::new(),
    })
    .await
    .expect("start");
    run.id
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn raw_kv_txns(n: usize) -> f64 {
    use agola_kv::{Kv, Op, Txn};
    let dir = tempfile::tempdir().expect("tempdir");
    let kv = agola_kv::embedded::EmbeddedKv::open(dir.path().join("kv.redb"))
        .await
        .expect("kv");
    let start = Instant::now();
    for i in 0..n {
        kv.txn(Txn::new().and_then(vec![Op::put(format!("bench/{i}").as_str(), vec![0u8; 200])]))
            .await
            .expect("txn");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn wait_all_assigned(record: &Mutex<Record>, ids: &[String], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let done = {
            let r = record.lock().expect("record");
            ids.iter().all(|id| r.assigned.contains_key(id))
        };
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "tasks were not all assigned in {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let chain_len = env_usize("AGOLA_BENCH_CHAIN", 200);
    let runs = env_usize("AGOLA_BENCH_RUNS", 100);
    let raw = raw_kv_txns(2000).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let config = agola_runservice::Config {
        data_dir: dir.path().to_owned(),
        schedule_interval_ms: 2000,
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, shutdown) = Shutdown::new();
    tokio::spawn(agola_runservice::serve(config, listener, shutdown));
    let channel = agola_common::grpc::connect(&url, None).expect("channel");
    let mut api = RunServiceClient::new(channel.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while api
        .list_executors(pb::ListExecutorsRequest {})
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "runservice not ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let record = Arc::new(Mutex::new(Record::default()));
    tokio::spawn(fake_executor(channel.clone(), record.clone()));
    while api
        .list_executors(pb::ListExecutorsRequest {})
        .await
        .map(|r| r.into_inner().executors.is_empty())
        .unwrap_or(true)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Latency along a chain.
    let mut chain: Vec<pbc::RunConfigTask> = Vec::new();
    for i in 0..chain_len {
        let parents: Vec<String> = chain.last().map(|t| vec![t.id.clone()]).unwrap_or_default();
        chain.push(task(&format!("c{i}"), &parents));
    }
    let ids: Vec<String> = chain.iter().map(|t| t.id.clone()).collect();
    create_and_start(&mut api, chain, "/project/bench/branch/chain").await;
    wait_all_assigned(&record, &ids, Duration::from_secs(600)).await;
    let mut lat: Vec<Duration> = {
        let r = record.lock().expect("record");
        ids.windows(2)
            .map(|w| r.assigned[&w[1]].saturating_duration_since(r.finished[&w[0]]))
            .collect()
    };
    lat.sort();
    println!(
        "latency    chain of {chain_len}: parent final status -> child assignment p50 {:.2} ms, p99 {:.2} ms (goals 5 / 50 ms); raw embedded KV {raw:.0} txn/s",
        percentile(&lat, 0.5).as_secs_f64() * 1000.0,
        percentile(&lat, 0.99).as_secs_f64() * 1000.0,
    );

    // Throughput: concurrent DAG runs, each in its own group.
    let mut all_ids = Vec::new();
    let mut dags = Vec::new();
    for r in 0..runs {
        let mut levels: Vec<Vec<pbc::RunConfigTask>> = Vec::new();
        for l in 0..5 {
            let parents: Vec<String> = levels
                .last()
                .map(|lv| lv.iter().map(|t| t.id.clone()).collect())
                .unwrap_or_default();
            levels.push(
                (0..4)
                    .map(|i| task(&format!("r{r}l{l}t{i}"), &parents))
                    .collect(),
            );
        }
        let tasks: Vec<pbc::RunConfigTask> = levels.into_iter().flatten().collect();
        all_ids.extend(tasks.iter().map(|t| t.id.clone()));
        dags.push(tasks);
    }
    let start = Instant::now();
    let mut handles = Vec::new();
    for (r, tasks) in dags.into_iter().enumerate() {
        let mut api = api.clone();
        handles.push(tokio::spawn(async move {
            create_and_start(&mut api, tasks, &format!("/project/bench{r}/branch/main")).await
        }));
    }
    for h in handles {
        h.await.expect("create");
    }
    wait_all_assigned(&record, &all_ids, Duration::from_secs(1200)).await;
    let took = start.elapsed();
    let n = all_ids.len();
    println!(
        "throughput {runs} runs x 20 tasks: {n} tasks assigned in {:.2} s = {:.0} tasks/s (goal >= 500/s on the embedded KV); raw embedded KV {raw:.0} txn/s",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    stop.trigger();
}

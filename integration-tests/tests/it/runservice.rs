//! The runservice through gRPC (real etcd, posix object storage): runs created and started
//! through `RunService`, executed by a fake executor on the `ExecutorControlService` stream
//! with live log upload; a diamond DAG goes queued → running → finished/success, events and
//! logs are served; a killed executor connection fails its task with a visible reason.

use std::collections::BTreeMap;
use std::time::Duration;

use agola_proto::common::v1 as pbc;
use agola_proto::runservice::v1 as pb;
use agola_proto::runservice::v1::executor_control_service_client::ExecutorControlServiceClient;

use crate::common::{create_and_start, serve, task, wait_run};
use tokio::sync::mpsc;

async fn next_tasks(down: &mut tonic::Streaming<pb::ConnectResponse>) -> Vec<pbc::ExecutorTask> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), down.message())
            .await
            .expect("a message in time")
            .expect("stream ok")
            .expect("stream open");
        match msg.message {
            Some(pb::connect_response::Message::Task(t)) => return vec![t],
            Some(pb::connect_response::Message::TaskSync(s)) if !s.tasks.is_empty() => {
                return s.tasks;
            }
            _ => continue,
        }
    }
}

/// Polls gRPC health until the served runservice answers.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diamond_dag_runs_to_success_through_the_executor_stream() {
    let mut s = serve(60).await;
    let mut events = s
        .api
        .watch_run_events(pb::WatchRunEventsRequest {
            after_sequence: String::new(),
        })
        .await
        .expect("watch events")
        .into_inner();
    let a = task("a", &[]);
    let b = task("b", &[&a.id]);
    let c = task("c", &[&a.id]);
    let d = task("d", &[&b.id, &c.id]);
    let names: BTreeMap<String, String> = [&a, &b, &c, &d]
        .iter()
        .map(|t| (t.id.clone(), t.name.clone()))
        .collect();
    let run = create_and_start(&mut s.api, &[a, b, c, d]).await;

    let mut client = ExecutorControlServiceClient::new(
        agola_common::grpc::connect(&s.url, None).expect("channel"),
    );
    let (up, up_rx) = mpsc::channel(64);
    up.send(register("fake-exec")).await.expect("send");
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
    while order.len() < 4 {
        for t in next_tasks(&mut down).await {
            let phase = t.status.as_ref().map(|s| s.phase).unwrap_or_default();
            if phase != pbc::ExecutorTaskPhase::Notstarted as i32 || order.contains(&t.id) {
                continue;
            }
            let spec = t.spec.as_ref().expect("spec data");
            assert_eq!(spec.task_name, names[&t.id]);
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
    let done = wait_run(
        &mut s.api,
        &run.id,
        "the expected state",
        Duration::from_secs(60),
        |r| r.phase == pbc::RunPhase::Finished as i32,
    )
    .await;
    assert_eq!(done.result, pbc::RunResult::Success as i32);
    let order: Vec<&str> = order.iter().map(|id| names[id].as_str()).collect();
    assert_eq!(order.first(), Some(&"a"));
    assert_eq!(order.last(), Some(&"d"));
    for t in done.tasks.values() {
        assert_eq!(t.steps[0].log_phase, pbc::FetchPhase::Finished as i32);
    }
    // Events: queued at creation, running, then the result and finished, in order.
    let mut seen = Vec::new();
    while seen.last()
        != Some(&(
            pbc::RunPhase::Finished as i32,
            pbc::RunResult::Success as i32,
        ))
    {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.message())
            .await
            .expect("event in time")
            .expect("ok")
            .expect("open")
            .event
            .expect("event");
        if ev.run_id == run.id {
            seen.push((ev.phase, ev.result));
        }
    }
    assert_eq!(
        seen[0],
        (pbc::RunPhase::Queued as i32, pbc::RunResult::Unknown as i32)
    );
    assert_eq!(
        seen[1],
        (
            pbc::RunPhase::Running as i32,
            pbc::RunResult::Unknown as i32
        )
    );
    // The stored log of d, through the API.
    let d_id = names
        .iter()
        .find(|(_, n)| *n == "d")
        .map(|(id, _)| id.clone())
        .expect("d");
    let mut logs = s
        .api
        .get_logs(pb::GetLogsRequest {
            run_id: run.id.clone(),
            task_id: d_id,
            setup: false,
            step: Some(0),
            follow: false,
        })
        .await
        .expect("get logs")
        .into_inner();
    let mut text = Vec::new();
    while let Some(chunk) = logs.message().await.expect("chunk") {
        text.extend(chunk.data);
    }
    assert_eq!(String::from_utf8(text).expect("utf8"), "hello from d\n");
    // Listings and bad requests.
    let listed = s
        .api
        .list_runs(pb::ListRunsRequest {
            groups: vec![done.group.clone()],
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .runs;
    assert_eq!(
        listed.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        vec![run.id.clone()]
    );
    let by_group = s
        .api
        .get_run_by_group(pb::GetRunByGroupRequest {
            group: done.group.clone(),
            counter: 1,
        })
        .await
        .expect("by group")
        .into_inner();
    assert_eq!(by_group.run.expect("run").id, run.id);
    let err = s
        .api
        .get_run(pb::GetRunRequest {
            run_id: "missing".into(),
            change_groups: vec![],
        })
        .await
        .expect_err("missing run");
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = s
        .api
        .create_run(pb::CreateRunRequest {
            group: "relative/group".into(),
            setup_errors: vec!["x".into()],
            ..Default::default()
        })
        .await
        .expect_err("bad group");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = s
        .api
        .run_action(pb::RunActionRequest {
            run_id: run.id.clone(),
            action_type: pb::RunActionType::Stop as i32,
            ..Default::default()
        })
        .await
        .expect_err("stop a finished run");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    drop(up);
    s.stop.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_executor_fails_its_task_with_a_reason() {
    let mut s = serve(1).await;
    let run = create_and_start(&mut s.api, &[task("only", &[])]).await;
    let mut client = ExecutorControlServiceClient::new(
        agola_common::grpc::connect(&s.url, None).expect("channel"),
    );
    let (up, up_rx) = mpsc::channel(16);
    up.send(register("doomed-exec")).await.expect("send");
    let mut down = client
        .connect(tokio_stream::wrappers::ReceiverStream::new(up_rx))
        .await
        .expect("connect")
        .into_inner();
    let got = next_tasks(&mut down).await.remove(0);
    up.send(status_update(&got, pbc::ExecutorTaskPhase::Running))
        .await
        .expect("send");
    upload_log(&mut client, &got.id, true, "setup ok\n").await;
    wait_run(
        &mut s.api,
        &run.id,
        "the expected state",
        Duration::from_secs(20),
        |r| {
            r.tasks
                .values()
                .any(|t| t.status == pbc::RunTaskStatus::Running as i32)
        },
    )
    .await;
    // Kill the connection: no more heartbeats, the executor is declared dead.
    drop(up);
    drop(down);
    let done = wait_run(
        &mut s.api,
        &run.id,
        "the expected state",
        Duration::from_secs(40),
        |r| r.phase == pbc::RunPhase::Finished as i32,
    )
    .await;
    assert_eq!(done.result, pbc::RunResult::Failed as i32);
    let task = done.tasks.values().next().expect("task");
    assert_eq!(task.status, pbc::RunTaskStatus::Failed as i32);
    assert_eq!(
        task.steps[0].log_phase,
        pbc::FetchPhase::Lost as i32,
        "the step log is reported lost"
    );
    let executors = s
        .api
        .list_executors(pb::ListExecutorsRequest {})
        .await
        .expect("list executors")
        .into_inner()
        .executors;
    assert!(
        executors.iter().all(|e| e.id != "doomed-exec"),
        "dead executor removed"
    );
    s.stop.trigger();
}

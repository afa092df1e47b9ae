//! The scheduler service with the runservice, in-process: queued runs of one branch are
//! serialized while other branches run in parallel; a two-approver task is approved only after
//! the second distinct user.

use std::time::{Duration, Instant};

use agola::config::{Component, Config};
use agola_integration_tests::TestCluster;
use agola_proto::common::v1 as pbc;
use agola_proto::runservice::v1 as pb;
use agola_proto::runservice::v1::run_service_client::RunServiceClient;
use agola_runservice::types::*;

use crate::common::{Api, get_run as run, wait_run};

/// A task that needs `approval` approvers when given.
fn task(name: &str, approval: Option<u32>) -> RunConfigTask {
    let mut t = crate::common::task(name, &[]);
    t.needs_approval = approval.is_some();
    t.min_approvers = approval.unwrap_or(1);
    t
}

async fn wait(api: &mut Api, id: &str, what: &str, pred: impl Fn(&pbc::Run) -> bool) -> pbc::Run {
    wait_run(api, id, what, Duration::from_secs(30), pred).await
}

async fn cluster() -> (TestCluster, Api) {
    let mut config = Config::default();
    config.scheduler.interval_ms = 100;
    let cluster = TestCluster::start(config, [Component::Runservice, Component::Scheduler].into())
        .await
        .expect("cluster");
    let api = RunServiceClient::new(
        agola_common::grpc::connect(&cluster.url(Component::Runservice), None).expect("channel"),
    );
    (cluster, api)
}

async fn create(api: &mut Api, group: &str, t: RunConfigTask) -> String {
    // The runservice may still be starting: retry until it answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let res = api
            .create_run(pb::CreateRunRequest {
                run_config_tasks: vec![agola_runservice::convert::run_config_task_to_pb(&t)],
                name: "r".into(),
                group: group.to_owned(),
                ..Default::default()
            })
            .await;
        match res {
            Ok(r) => return r.into_inner().run.expect("run").id,
            Err(e) if e.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("create run: {e}"),
        }
    }
}

fn phase_is(p: pbc::RunPhase) -> impl Fn(&pbc::Run) -> bool {
    move |r| r.phase == p as i32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_of_one_branch_are_serialized_other_branches_run_in_parallel() {
    let (cluster, mut api) = cluster().await;
    let project = agola_integration_tests::infra::unique_name("p");
    let main = format!("/project/{project}/branch/main");
    let dev = format!("/project/{project}/branch/dev");
    let r1 = create(&mut api, &main, task("a", None)).await;
    let r2 = create(&mut api, &main, task("a", None)).await;
    let r3 = create(&mut api, &dev, task("a", None)).await;
    wait(&mut api, &r1, "running", phase_is(pbc::RunPhase::Running)).await;
    wait(&mut api, &r3, "running", phase_is(pbc::RunPhase::Running)).await;
    assert_eq!(
        run(&mut api, &r2).await.phase,
        pbc::RunPhase::Queued as i32,
        "a second run of the same branch waits"
    );
    // Stopping the first (no executor ever took its task) finishes it; the next one starts.
    api.run_action(pb::RunActionRequest {
        run_id: r1.clone(),
        action_type: pb::RunActionType::Stop as i32,
        ..Default::default()
    })
    .await
    .expect("stop");
    let done = wait(&mut api, &r1, "finished", phase_is(pbc::RunPhase::Finished)).await;
    assert_eq!(done.result, pbc::RunResult::Stopped as i32);
    wait(&mut api, &r2, "running", phase_is(pbc::RunPhase::Running)).await;
    cluster.stop().await.expect("stop cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_approver_task_is_approved_after_the_second_distinct_user() {
    let (cluster, mut api) = cluster().await;
    let project = agola_integration_tests::infra::unique_name("p");
    let t = task("deploy", Some(2));
    let task_id = t.id.clone();
    let id = create(&mut api, &format!("/project/{project}/branch/main"), t).await;
    wait(&mut api, &id, "the task waiting for approval", |r| {
        r.tasks.get(&task_id).is_some_and(|t| t.waiting_approval)
    })
    .await;
    let set = |approvers: &str| pb::RunTaskActionRequest {
        run_id: id.clone(),
        task_id: task_id.clone(),
        action_type: pb::RunTaskActionType::SetAnnotations as i32,
        annotations: [("approvers".to_owned(), approvers.to_owned())].into(),
        change_groups_update_token: String::new(),
    };
    api.run_task_action(set(r#"["u1", "u1"]"#))
        .await
        .expect("annotate");
    // Proof that the scheduler made a pass after the annotation: it starts a run created now.
    let probe = create(
        &mut api,
        &format!("/project/{project}/branch/probe"),
        task("x", None),
    )
    .await;
    wait(
        &mut api,
        &probe,
        "running",
        phase_is(pbc::RunPhase::Running),
    )
    .await;
    let r = run(&mut api, &id).await;
    assert!(
        !r.tasks[&task_id].approved,
        "one distinct approver is not enough"
    );
    api.run_task_action(set(r#"["u1", "u2"]"#))
        .await
        .expect("annotate");
    wait(&mut api, &id, "the task approved", |r| {
        r.tasks
            .get(&task_id)
            .is_some_and(|t| t.approved && !t.waiting_approval)
    })
    .await;
    cluster.stop().await.expect("stop cluster");
}

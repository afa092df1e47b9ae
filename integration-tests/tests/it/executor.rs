//! The executor with the local driver against a real runservice (etcd, posix object storage):
//! a DAG with run steps, exit codes, a workspace passed between tasks, a cache saved and
//! restored by prefix, an on_failure branch; logs reach the runservice; an executor killed
//! mid-task and restarted reports the task failed with a reason.

use std::collections::BTreeMap;
use std::time::Duration;

use agola_common::Shutdown;
use agola_common::shutdown::ShutdownTrigger;
use agola_integration_tests::infra;
use agola_proto::common::v1 as pbc;
use agola_proto::runservice::v1 as pb;
use agola_runservice::types::*;
use futures::StreamExt;
use tokio::net::TcpListener;

use crate::common::{Api, create_and_start, serve, task, wait_run};

/// Starts an executor (local driver) on `data_dir` against `runservice_url`.
fn start_executor(
    runservice_url: &str,
    data_dir: &std::path::Path,
) -> (
    ShutdownTrigger,
    tokio::task::JoinHandle<agola_executor::Result<()>>,
) {
    start_executor_with(runservice_url, data_dir, agola_executor::DriverType::Local)
}

fn start_executor_with(
    runservice_url: &str,
    data_dir: &std::path::Path,
    driver: agola_executor::DriverType,
) -> (
    ShutdownTrigger,
    tokio::task::JoinHandle<agola_executor::Result<()>>,
) {
    let config = agola_executor::Config {
        data_dir: Some(data_dir.to_owned()),
        runservice_url: runservice_url.to_owned(),
        toolbox_path: Some(infra::toolbox_dir()),
        driver: agola_executor::config::DriverConfig {
            kind: driver,
            socket: (driver == agola_executor::DriverType::Docker).then(infra::docker_socket),
            pull_policy: agola_executor::PullPolicy::IfNotPresent,
        },
        active_tasks_limit: 4,
        ..Default::default()
    };
    let (stop, shutdown) = Shutdown::new();
    let handle = tokio::spawn(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        agola_executor::serve(config, listener, shutdown).await
    });
    (stop, handle)
}

fn run_step(name: &str, command: &str) -> Step {
    Step::Run {
        name: name.into(),
        command: command.into(),
        environment: BTreeMap::new(),
        working_dir: String::new(),
        shell: String::new(),
        tty: false,
    }
}

fn with_steps(mut t: RunConfigTask, steps: Vec<Step>) -> RunConfigTask {
    t.steps = steps;
    t.working_dir = "~/project".into();
    t
}

async fn log_text(api: &mut Api, run_id: &str, task_id: &str, step: i32) -> String {
    let mut stream = api
        .get_logs(pb::GetLogsRequest {
            run_id: run_id.to_owned(),
            task_id: task_id.to_owned(),
            setup: false,
            step: Some(step),
            follow: false,
        })
        .await
        .expect("get logs")
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("log chunk").data);
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn finished(run: &pbc::Run) -> bool {
    run.phase == pbc::RunPhase::Finished as i32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_executor_runs_a_dag_with_workspace_cache_and_failure_branch() {
    dag_with_workspace_cache_and_failure_branch(agola_executor::DriverType::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_executor_runs_a_dag_with_workspace_cache_and_failure_branch() {
    let _ = infra::busybox_image();
    dag_with_workspace_cache_and_failure_branch(agola_executor::DriverType::Docker).await;
}

async fn dag_with_workspace_cache_and_failure_branch(driver: agola_executor::DriverType) {
    let mut s = serve(60).await;
    let exec_dir = tempfile::tempdir().expect("tempdir");
    let (stop_exec, exec) = start_executor_with(&s.url, exec_dir.path(), driver);
    let cache_key = infra::unique_name("k");

    let build = with_steps(
        task("build", &[]),
        vec![
            run_step(
                "make",
                "echo hello > out.txt; mkdir -p d/e; echo deep > d/e/f; echo built; pwd",
            ),
            Step::SaveToWorkspace {
                contents: vec![SaveContent {
                    source_dir: ".".into(),
                    dest_dir: ".".into(),
                    paths: vec!["out.txt".into(), "d/**".into()],
                }],
            },
            Step::SaveCache {
                key: format!("{cache_key}-{{{{ md5sum \"out.txt\" }}}}"),
                contents: vec![SaveContent {
                    source_dir: ".".into(),
                    dest_dir: ".".into(),
                    paths: vec!["out.txt".into()],
                }],
            },
        ],
    );
    let test = with_steps(
        task("test", &[&build.id]),
        vec![
            Step::RestoreWorkspace {
                dest_dir: ".".into(),
            },
            run_step(
                "check",
                "cat out.txt d/e/f; test \"$(cat out.txt)\" = hello",
            ),
            Step::RestoreCache {
                keys: vec![format!("{cache_key}-")],
                dest_dir: "cached".into(),
            },
            run_step("cached", "cat cached/out.txt"),
        ],
    );
    let fail = with_steps(
        task("fail", &[]),
        vec![
            run_step("boom", "echo before; exit 3"),
            run_step("never", "true"),
        ],
    );
    let mut recover = with_steps(
        task("recover", &[&fail.id]),
        vec![run_step("r", "echo recovered")],
    );
    for d in recover.depends.values_mut() {
        d.conditions = vec![DependCondition::OnFailure];
    }
    let mut skipped = with_steps(task("skipped", &[&build.id]), vec![run_step("s", "true")]);
    for d in skipped.depends.values_mut() {
        d.conditions = vec![DependCondition::OnFailure];
    }

    // Saves the same cache key after `build` did: the cache step says it exists.
    let again = with_steps(
        task("again", &[&build.id]),
        vec![
            run_step("make", "echo hello > out.txt"),
            Step::SaveCache {
                key: format!("{cache_key}-{{{{ md5sum \"out.txt\" }}}}"),
                contents: vec![],
            },
        ],
    );

    let tasks = vec![
        build.clone(),
        test.clone(),
        fail.clone(),
        recover.clone(),
        skipped.clone(),
        again.clone(),
    ];
    let run = create_and_start(&mut s.api, &tasks).await;
    let run = wait_run(
        &mut s.api,
        &run.id,
        "finished",
        Duration::from_secs(90),
        finished,
    )
    .await;
    let status = |id: &str| run.tasks[id].status;
    assert_eq!(run.result, pbc::RunResult::Failed as i32, "{run:?}");
    assert_eq!(
        status(&build.id),
        pbc::RunTaskStatus::Success as i32,
        "{run:?}"
    );
    assert_eq!(
        status(&test.id),
        pbc::RunTaskStatus::Success as i32,
        "{run:?}"
    );
    assert_eq!(status(&fail.id), pbc::RunTaskStatus::Failed as i32);
    assert_eq!(status(&recover.id), pbc::RunTaskStatus::Success as i32);
    assert_eq!(status(&skipped.id), pbc::RunTaskStatus::Skipped as i32);
    assert_eq!(status(&again.id), pbc::RunTaskStatus::Success as i32);
    let fail_task = &run.tasks[&fail.id];
    assert_eq!(fail_task.steps[0].exit_status, Some(3));
    assert_eq!(
        fail_task.steps[1].phase,
        pbc::ExecutorTaskPhase::Notstarted as i32
    );

    let make = log_text(&mut s.api, &run.id, &build.id, 0).await;
    assert!(make.contains("built"), "{make}");
    assert!(make.contains("/project"), "working dir: {make}");
    let check = log_text(&mut s.api, &run.id, &test.id, 1).await;
    assert_eq!(check, "hello\ndeep\n");
    let cached = log_text(&mut s.api, &run.id, &test.id, 3).await;
    assert_eq!(cached, "hello\n");
    let boom = log_text(&mut s.api, &run.id, &fail.id, 0).await;
    assert_eq!(boom, "before\n");

    let saved = log_text(&mut s.api, &run.id, &again.id, 1).await;
    assert!(saved.contains("already exists"), "{saved}");

    // The archiver moves the finished run out of KV; a restart from the failed tasks keeps
    // the succeeded ones (same ids, same data); deleting the first run then removes only the
    // data no run references any more.
    wait_run(
        &mut s.api,
        &run.id,
        "archived",
        Duration::from_secs(30),
        |r| r.archived,
    )
    .await;
    let restarted = s
        .api
        .recreate_run(pb::RecreateRunRequest {
            run_id: run.id.clone(),
            from_start: false,
            ..Default::default()
        })
        .await
        .expect("restart from failed")
        .into_inner()
        .run
        .expect("run");
    assert!(restarted.tasks.contains_key(&build.id), "build is kept");
    assert!(!restarted.tasks.contains_key(&fail.id), "fail is renewed");
    s.api
        .delete_run(pb::DeleteRunRequest {
            run_id: run.id.clone(),
        })
        .await
        .expect("delete the archived run");
    let gone = s
        .api
        .get_run(pb::GetRunRequest {
            run_id: run.id.clone(),
            change_groups: vec![],
        })
        .await
        .expect_err("deleted");
    assert_eq!(gone.code(), tonic::Code::NotFound);
    let ost = s._dir.path().join("ost").join("data");
    assert!(
        ost.join(format!("logs/{}/data/steps/0.log", build.id))
            .exists(),
        "the kept task's log is still referenced by the restarted run"
    );
    assert!(
        ost.join(format!("workspacearchives/{}/data/1.tar", build.id))
            .exists(),
        "the kept task's workspace archive is still referenced"
    );
    assert!(
        !ost.join(format!("logs/{}/data/steps/0.log", fail.id))
            .exists(),
        "the failed task's log belonged only to the deleted run"
    );
    assert!(
        !ost.join(format!("logs/{}/runs/{}", fail.id, run.id))
            .exists(),
        "its marker is gone"
    );

    stop_exec.trigger();
    exec.await.expect("join").expect("executor ends cleanly");
    s.stop.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_killed_mid_task_reports_the_task_failed_after_restart() {
    let mut s = serve(600).await;
    let exec_dir = tempfile::tempdir().expect("tempdir");
    let pidfile = exec_dir.path().join("step.pid");
    let (stop1, exec1) = start_executor(&s.url, exec_dir.path());
    let long = with_steps(
        task("long", &[]),
        vec![run_step(
            "sleep",
            &format!("echo $$ > {}; echo started; sleep 60", pidfile.display()),
        )],
    );
    let run = create_and_start(&mut s.api, std::slice::from_ref(&long)).await;
    wait_run(
        &mut s.api,
        &run.id,
        "the step running",
        Duration::from_secs(30),
        |r| r.tasks[&long.id].steps[0].phase == pbc::ExecutorTaskPhase::Running as i32,
    )
    .await;
    // Kill: the executor's future is dropped with no graceful stop (like kill -9 of the
    // process, the host processes of its pod stay behind).
    exec1.abort();
    let _ = exec1.await;
    drop(stop1);

    let (stop2, exec2) = start_executor(&s.url, exec_dir.path());
    let run = wait_run(
        &mut s.api,
        &run.id,
        "finished",
        Duration::from_secs(60),
        finished,
    )
    .await;
    let t = &run.tasks[&long.id];
    assert_eq!(t.status, pbc::RunTaskStatus::Failed as i32, "{run:?}");
    assert_eq!(
        t.fail_error,
        "executor restarted while the task was running"
    );
    assert_eq!(t.steps[0].phase, pbc::ExecutorTaskPhase::Failed as i32);
    // The restarted executor removed the orphan pod, killing its processes.
    agola_integration_tests::wait_until("the orphan pod removed", Duration::from_secs(30), || {
        let pods = exec_dir.path().join("pods");
        async move {
            std::fs::read_dir(&pods)
                .map(|d| d.count() == 0)
                .unwrap_or(true)
                .then_some(())
        }
    })
    .await
    .expect("pods removed");
    let pid = std::fs::read_to_string(&pidfile).expect("pid file");
    let stat = format!("/proc/{}/stat", pid.trim());
    agola_integration_tests::wait_until("the orphan step killed", Duration::from_secs(30), || {
        let stat = stat.clone();
        async move {
            // Gone, or a zombie waiting to be reaped by this test process.
            match std::fs::read_to_string(&stat) {
                Err(_) => Some(()),
                Ok(s) => s
                    .rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
                    .then_some(()),
            }
        }
    })
    .await
    .expect("orphan step killed");
    stop2.trigger();
    exec2.await.expect("join").expect("executor ends cleanly");
    s.stop.trigger();
}

//! Executors and their tasks over the embedded KV and posix storage: spec data, the hub's
//! registration, assignments, status reports, stale dynamic siblings, the ET cleaner and the
//! liveness checker.

use std::collections::BTreeMap;
use std::time::Duration;

use agola_runservice::create::CreateRunRequest;
use agola_runservice::executors::{self, Down, Hub};
use agola_runservice::runs::Runs;
use agola_runservice::types::*;
use tokio::sync::mpsc;

mod common;

use common::executor;

struct Env {
    runs: Runs,
    hub: Hub,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let (runs, dir) = common::embedded_runs().await;
    Env {
        hub: Hub::new(runs.clone()),
        runs,
        _dir: dir,
    }
}

/// A task with environment `A=task`, `B=task` and the given steps.
fn task(name: &str, parents: &[&str], steps: Vec<Step>) -> RunConfigTask {
    let mut t = common::task(name, parents);
    t.environment = [
        ("A".to_owned(), "task".to_owned()),
        ("B".to_owned(), "task".to_owned()),
    ]
    .into();
    t.steps = steps;
    t
}

fn save() -> Step {
    Step::SaveToWorkspace {
        contents: vec![SaveContent {
            source_dir: ".".into(),
            dest_dir: ".".into(),
            paths: vec!["**".into()],
        }],
    }
}

fn run_step() -> Step {
    Step::Run {
        name: "s".into(),
        command: "true".into(),
        environment: BTreeMap::new(),
        working_dir: String::new(),
        shell: String::new(),
        tty: false,
    }
}

fn now() -> Time {
    chrono::Utc::now()
}

async fn running_run(e: &Env, tasks: Vec<RunConfigTask>) -> (Run, RunConfig) {
    let mut req = CreateRunRequest {
        name: "r".into(),
        group: "/project/proj1/branch/main".into(),
        tasks,
        ..Default::default()
    };
    req.static_environment.insert("B".into(), "static".into());
    req.environment.insert("C".into(), "env".into());
    let (run, rc) = e.runs.create_run(req, now()).await.expect("create");
    let run = e
        .runs
        .change_phase(&run.id, RunPhase::Running, None, now())
        .await
        .expect("start");
    (run, rc)
}

async fn next(rx: &mut mpsc::Receiver<Down>) -> Down {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("message in time")
        .expect("stream open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_data_merges_env_and_orders_workspace_operations() {
    let e = env().await;
    let (mut run, rc) = running_run(
        &e,
        vec![
            task("b-root", &[], vec![save()]),
            task("a-root", &[], vec![run_step(), save()]),
            task("mid", &["a-root", "b-root"], vec![save()]),
            task("leaf", &["mid"], vec![run_step()]),
        ],
    )
    .await;
    // Every ancestor saved successfully and its archive is stored, except b-root's archive
    // which was not fetched yet.
    for (id, ok) in [("id-a-root", true), ("id-b-root", false), ("id-mid", true)] {
        let t = run.tasks.get_mut(id).expect("task");
        t.status = RunTaskStatus::Success;
        for s in &mut t.steps {
            s.phase = ExecutorTaskPhase::Success;
        }
        for p in &mut t.workspace_archives_phase {
            *p = if ok {
                FetchPhase::Finished
            } else {
                FetchPhase::Notstarted
            };
        }
    }
    let spec = executors::spec_data(&run, &rc, "id-leaf").expect("spec");
    assert_eq!(spec.task_name, "leaf");
    assert_eq!(spec.environment["A"], "task");
    assert_eq!(spec.environment["B"], "static", "static env over task env");
    assert_eq!(spec.environment["C"], "env");
    assert_eq!(spec.cache_prefix, "proj1");
    let ops: Vec<(String, usize)> = spec
        .workspace_operations
        .iter()
        .map(|o| (o.task_id.clone(), o.step))
        .collect();
    assert_eq!(
        ops,
        vec![("id-a-root".to_owned(), 1), ("id-mid".to_owned(), 0)],
        "ancestors in (level, name) order; archives not stored are left out"
    );
    assert!(executors::spec_data(&run, &rc, "missing").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_assign_report_and_finish() {
    let e = env().await;
    let (tx, mut rx) = mpsc::channel(16);
    e.hub
        .register(executor("e1", "e1", false, &["e1"]), tx, now())
        .await
        .expect("register");
    assert_eq!(next(&mut rx).await, Down::Registered);
    assert!(matches!(next(&mut rx).await, Down::TaskSync(tasks, _) if tasks.is_empty()));
    let (run, _) = running_run(&e, vec![task("a", &[], vec![run_step()])]).await;
    e.hub
        .schedule(&run.id, now(), Duration::from_secs(60))
        .await
        .expect("schedule");
    let (et, _) = e
        .runs
        .store()
        .get_executor_task("id-a")
        .await
        .expect("get")
        .expect("dispatched");
    e.hub.push_task(&et).await.expect("push");
    let Down::Task(pushed, spec) = next(&mut rx).await else {
        panic!("expected an assignment");
    };
    assert_eq!(pushed.id, "id-a");
    assert_eq!(spec.steps.len(), 1);
    // running, then success
    let mut status = et.status.clone();
    status.phase = ExecutorTaskPhase::Running;
    let to_schedule = e
        .hub
        .task_status("e1", "id-a", status.clone(), now())
        .await
        .expect("report");
    assert_eq!(to_schedule.as_deref(), Some(run.id.as_str()));
    let (cur, _) = e
        .runs
        .store()
        .get_run(&run.id)
        .await
        .expect("get")
        .expect("run");
    assert_eq!(cur.tasks["id-a"].status, RunTaskStatus::Running);
    status.phase = ExecutorTaskPhase::Success;
    status.steps[0].phase = ExecutorTaskPhase::Success;
    status.steps[0].exit_status = Some(0);
    e.hub
        .task_status("e1", "id-a", status.clone(), now())
        .await
        .expect("report");
    let (cur, _) = e
        .runs
        .store()
        .get_run(&run.id)
        .await
        .expect("get")
        .expect("run");
    assert_eq!(cur.tasks["id-a"].status, RunTaskStatus::Success);
    assert_eq!(cur.tasks["id-a"].steps[0].exit_status, Some(0));
    // A finished ET is final: a late `running` report is answered with a stop.
    status.phase = ExecutorTaskPhase::Running;
    assert_eq!(
        e.hub
            .task_status("e1", "id-a", status.clone(), now())
            .await
            .expect("report"),
        None
    );
    assert_eq!(next(&mut rx).await, Down::StopTask("id-a".into()));
    // A report for an ET that does not exist is answered with task_removed.
    e.hub
        .task_status("e1", "gone", status, now())
        .await
        .expect("report");
    assert_eq!(next(&mut rx).await, Down::TaskRemoved("gone".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_dynamic_siblings_are_removed_on_heartbeat() {
    let e = env().await;
    let store = e.runs.store();
    store
        .put_executor(&executor("old", "k8s", true, &["old"]))
        .await
        .expect("put");
    store
        .put_executor(&executor("static", "k8s", false, &[]))
        .await
        .expect("put");
    store
        .put_executor(&executor("other-group", "docker", true, &[]))
        .await
        .expect("put");
    e.hub
        .heartbeat(executor("new", "k8s", true, &["new"]), now())
        .await
        .expect("heartbeat");
    let mut ids: Vec<String> = store
        .list_executors()
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.id)
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["new", "other-group", "static"]);
    let (tx, _rx) = mpsc::channel(4);
    let err = e
        .hub
        .register(executor("", "g", false, &[]), tx, now())
        .await
        .expect_err("no id");
    assert!(err.to_string().contains("executor id"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_and_deleted_executors_fail_their_tasks_with_a_reason() {
    let e = env().await;
    let store = e.runs.store();
    let mut stale = executor("e1", "e1", false, &["e1"]);
    stale.last_status_update_time = now() - chrono::Duration::seconds(120);
    store.put_executor(&stale).await.expect("put");
    store
        .put_executor(&executor("e2", "e2", false, &["e2"]))
        .await
        .expect("put");
    let (run, rc) = running_run(&e, vec![task("a", &[], vec![run_step()])]).await;
    // Dispatch to the stale executor directly (as an earlier pass would have).
    let et = agola_runservice::scheduler::new_executor_task(&run, &rc.tasks["id-a"], "e1");
    assert!(store.create_executor_task(&et).await.expect("create"));
    let start = now() - chrono::Duration::seconds(300);
    let touched = e
        .hub
        .check_liveness(now(), start, Duration::from_secs(60))
        .await
        .expect("liveness");
    assert_eq!(touched, vec![run.id.clone()]);
    let (et, _) = store
        .get_executor_task("id-a")
        .await
        .expect("get")
        .expect("et");
    assert_eq!(et.status.phase, ExecutorTaskPhase::Failed);
    assert!(
        et.status
            .fail_error
            .starts_with("executor lost: no heartbeat since"),
        "{}",
        et.status.fail_error
    );
    assert!(
        store
            .list_executors()
            .await
            .expect("list")
            .iter()
            .all(|x| x.id != "e1")
    );
    let (cur, _) = store.get_run(&run.id).await.expect("get").expect("run");
    assert_eq!(cur.tasks["id-a"].status, RunTaskStatus::Failed);
    // Counted from the checker's own start, a control-plane outage does not kill everyone.
    let mut e3 = executor("e3", "e3", false, &[]);
    e3.last_status_update_time = now() - chrono::Duration::seconds(120);
    store.put_executor(&e3).await.expect("put");
    e.hub
        .check_liveness(
            now(),
            now() - chrono::Duration::seconds(10),
            Duration::from_secs(60),
        )
        .await
        .expect("liveness");
    assert!(
        store
            .list_executors()
            .await
            .expect("list")
            .iter()
            .any(|x| x.id == "e3")
    );
    // Deleted executor: the cleaner fails its unfinished tasks.
    let (run2, rc2) = running_run(&e, vec![task("b", &[], vec![run_step()])]).await;
    let et2 = agola_runservice::scheduler::new_executor_task(&run2, &rc2.tasks["id-b"], "e2");
    assert!(store.create_executor_task(&et2).await.expect("create"));
    store.delete_executor("e2").await.expect("delete");
    let touched = e.hub.clean_tasks(now()).await.expect("clean");
    assert!(touched.contains(&run2.id));
    let (et2, _) = store
        .get_executor_task("id-b")
        .await
        .expect("get")
        .expect("et");
    assert_eq!(et2.status.fail_error, "executor deleted");
}

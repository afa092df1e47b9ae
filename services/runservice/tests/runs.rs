//! Run operations over the embedded KV and posix object storage: counters and run configs in
//! the datamanager, reads, phase changes, stop, approvals, restart.

use agola_runservice::create::{CreateRunRequest, RecreateRequest};
use agola_runservice::runs::{RunError, Runs};
use agola_runservice::types::*;

mod common;

struct Env {
    runs: Runs,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let (runs, dir) = common::embedded_runs().await;
    Env { runs, _dir: dir }
}

fn task(name: &str) -> RunConfigTask {
    common::task(name, &[])
}

fn req(group: &str, tasks: Vec<RunConfigTask>) -> CreateRunRequest {
    CreateRunRequest {
        name: "r".into(),
        group: group.into(),
        tasks,
        ..Default::default()
    }
}

fn now() -> Time {
    chrono::Utc::now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_and_counters_per_root_group() {
    let e = env().await;
    let (r1, rc1) = e
        .runs
        .create_run(req("/project/p1/branch/main", vec![task("a")]), now())
        .await
        .expect("create");
    let (r2, _) = e
        .runs
        .create_run(req("/project/p1/branch/dev", vec![task("a")]), now())
        .await
        .expect("create");
    let (r3, _) = e
        .runs
        .create_run(req("/project/p2/branch/main", vec![task("a")]), now())
        .await
        .expect("create");
    assert_eq!((r1.counter, r2.counter, r3.counter), (1, 2, 1));
    assert!(r2.id > r1.id, "ids sort in creation order");
    assert_eq!(r1.phase, RunPhase::Queued);
    let (got, got_rc) = e.runs.get_run(&r1.id).await.expect("get");
    assert_eq!((got, got_rc), (r1, rc1));
    assert!(matches!(
        e.runs.get_run("nope").await,
        Err(RunError::NotFound(_))
    ));
    assert!(matches!(
        e.runs
            .create_run(req("relative", vec![task("a")]), now())
            .await,
        Err(RunError::BadRequest(_))
    ));
    // A setup error run: no tasks, terminal.
    let mut bad = req("/project/p1/branch/main", vec![]);
    bad.setup_errors = vec!["config.yml: no runs".into()];
    let (run, rc) = e
        .runs
        .create_run(bad, now())
        .await
        .expect("setup error run");
    assert_eq!(run.phase, RunPhase::Setuperror);
    assert!(run.tasks.is_empty());
    assert_eq!(rc.setup_errors, vec!["config.yml: no runs".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creations_in_one_project_get_distinct_consecutive_counters() {
    let e = env().await;
    let mut handles = Vec::new();
    for _ in 0..20 {
        let runs = e.runs.clone();
        handles.push(tokio::spawn(async move {
            runs.create_run(req("/project/p/branch/main", vec![task("a")]), now())
                .await
                .expect("every creation succeeds")
                .0
                .counter
        }));
    }
    let mut counters = Vec::new();
    for h in handles {
        counters.push(h.await.expect("join"));
    }
    counters.sort();
    assert_eq!(counters, (1..=20).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phase_changes_stop_and_approvals() {
    let e = env().await;
    let mut approval = task("b");
    approval.needs_approval = true;
    let (run, _) = e
        .runs
        .create_run(
            req("/project/p/branch/main", vec![task("a"), approval]),
            now(),
        )
        .await
        .expect("create");
    // stop only when running
    assert!(matches!(
        e.runs.stop(&run.id, now()).await,
        Err(RunError::BadRequest(_))
    ));
    // the scheduler starts it with the run group's token; a second scheduler with the same
    // (now stale) token cannot start another change
    let group = format!("changegroup-{}", run.group);
    let token = e.runs.kv_token(&[group]).await.expect("token");
    let running = e
        .runs
        .change_phase(&run.id, RunPhase::Running, Some(&token), now())
        .await
        .expect("start");
    assert_eq!(running.phase, RunPhase::Running);
    assert!(running.start_time.is_some());
    let (other, _) = e
        .runs
        .create_run(req("/project/p/branch/main", vec![task("a")]), now())
        .await
        .expect("create");
    let err = e
        .runs
        .change_phase(&other.id, RunPhase::Running, Some(&token), now())
        .await
        .expect_err("stale group token");
    assert!(matches!(err, RunError::Concurrency(_)), "{err}");
    // other transitions are bad requests
    assert!(matches!(
        e.runs
            .change_phase(&run.id, RunPhase::Cancelled, None, now())
            .await,
        Err(RunError::BadRequest(_))
    ));
    let cancelled = e
        .runs
        .change_phase(&other.id, RunPhase::Cancelled, None, now())
        .await
        .expect("cancel a queued run");
    assert_eq!(cancelled.phase, RunPhase::Cancelled);
    // approvals
    assert!(matches!(
        e.runs.approve_task(&run.id, "id-b", None, now()).await,
        Err(RunError::BadRequest(_))
    ));
    let store = e.runs.store();
    let (cur, rev) = store.get_run(&run.id).await.expect("get").expect("run");
    let mut waiting = cur.clone();
    waiting.tasks.get_mut("id-b").expect("b").waiting_approval = true;
    store
        .save_run(&waiting, &cur, rev, now(), vec![], vec![])
        .await
        .expect("save");
    let annotated = e
        .runs
        .set_task_annotations(
            &run.id,
            "id-b",
            [("approvers".to_owned(), "[\"u1\"]".to_owned())].into(),
            None,
            now(),
        )
        .await
        .expect("annotations");
    assert_eq!(annotated.tasks["id-b"].annotations["approvers"], "[\"u1\"]");
    let approved = e
        .runs
        .approve_task(&run.id, "id-b", None, now())
        .await
        .expect("approve");
    assert!(approved.tasks["id-b"].approved);
    assert!(!approved.tasks["id-b"].waiting_approval);
    assert!(matches!(
        e.runs.approve_task(&run.id, "id-b", None, now()).await,
        Err(RunError::BadRequest(_))
    ));
    // stop clears waiting approvals
    let stopped = e.runs.stop(&run.id, now()).await.expect("stop");
    assert!(stopped.stop);
    assert!(matches!(
        e.runs.approve_task(&run.id, "missing", None, now()).await,
        Err(RunError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_creates_a_new_run_with_the_next_counter() {
    let e = env().await;
    let (run, _) = e
        .runs
        .create_run(req("/project/p/branch/main", vec![task("a")]), now())
        .await
        .expect("create");
    let err = e
        .runs
        .recreate_run(&run.id, RecreateRequest::default(), now())
        .await
        .expect_err("a queued run cannot restart");
    assert!(matches!(err, RunError::NotRestartable(_)));
    e.runs
        .change_phase(&run.id, RunPhase::Cancelled, None, now())
        .await
        .expect("cancel");
    let (new_run, new_rc) = e
        .runs
        .recreate_run(
            &run.id,
            RecreateRequest {
                from_start: true,
                environment: None,
            },
            now(),
        )
        .await
        .expect("restart");
    assert_ne!(new_run.id, run.id);
    assert_eq!(new_run.counter, 2);
    assert_eq!(new_run.phase, RunPhase::Queued);
    assert!(
        !new_rc.tasks.contains_key("id-a"),
        "from start renews every id"
    );
    let (again, _) = e.runs.get_run(&new_run.id).await.expect("get");
    assert_eq!(again.id, new_run.id);
}

//! The live store and scheduling passes against the embedded KV and the real etcd that
//! `scripts/test.sh` starts: a diamond DAG runs to success through `schedule_run` with a
//! fake executor, events replay without gap or duplicate, and concurrent scheduling passes
//! (two runservice instances) never dispatch a task twice.

use std::sync::Arc;
use std::time::Duration;

use agola_kv::embedded::EmbeddedKv;
use agola_kv::etcd::EtcdKv;
use agola_kv::{Kv, Prefixed};
use agola_runservice::create::{self, CreateRunRequest};
use agola_runservice::store::{Store, StoreError};
use agola_runservice::types::*;
use futures::StreamExt;

mod common;

/// A task with one `restore_workspace` step.
fn task(name: &str, parents: &[&str]) -> RunConfigTask {
    let mut t = common::task(name, parents);
    t.steps = vec![Step::RestoreWorkspace {
        dest_dir: ".".into(),
    }];
    t
}

fn executor(id: &str) -> Executor {
    common::executor(id, id, false, &[])
}

async fn embedded() -> (Arc<dyn Kv>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let kv = EmbeddedKv::open(dir.path().join("kv")).await.expect("kv");
    (Arc::new(Prefixed::new(Arc::new(kv), "runservice/")), dir)
}

async fn etcd() -> Arc<dyn Kv> {
    etcd_pair().await.0
}

/// Two connections on one fresh namespace: two runservice instances.
async fn etcd_pair() -> (Arc<dyn Kv>, Arc<dyn Kv>) {
    let endpoints: Vec<String> = std::env::var("AGOLA_TEST_ETCD_ENDPOINTS")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| panic!("AGOLA_TEST_ETCD_ENDPOINTS is not set: run scripts/test.sh"))
        .split(',')
        .map(str::to_owned)
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let prefix = format!("test/rs-{}-{nanos}/runservice/", std::process::id());
    let a = EtcdKv::connect(&endpoints).await.expect("etcd");
    let b = EtcdKv::connect(&endpoints).await.expect("etcd");
    (
        Arc::new(Prefixed::new(Arc::new(a), prefix.clone())),
        Arc::new(Prefixed::new(Arc::new(b), prefix)),
    )
}

async fn queued_diamond(store: &Store) -> (Run, RunConfig) {
    let id = store.next_run_id().await.expect("id");
    let (run, rc) = create::new_run(
        &id,
        1,
        CreateRunRequest {
            name: "diamond".into(),
            group: "/project/p/branch/main".into(),
            tasks: vec![
                task("a", &[]),
                task("b", &["a"]),
                task("c", &["a"]),
                task("d", &["b", "c"]),
            ],
            ..Default::default()
        },
        chrono::Utc::now(),
    )
    .expect("run");
    store
        .create_run(&run, chrono::Utc::now())
        .await
        .expect("create");
    (run, rc)
}

async fn start(store: &Store, id: &str) {
    let (run, rev) = store.get_run(id).await.expect("get").expect("run");
    let mut next = run.clone();
    next.phase = RunPhase::Running;
    next.start_time = Some(chrono::Utc::now());
    store
        .save_run(&next, &run, rev, chrono::Utc::now(), vec![], vec![])
        .await
        .expect("start");
}

/// What the executor and the fetcher would do: finish every ET, report it, then store
/// "logs" (mark fetch phases done) and delete the ET.
async fn fake_executor_round(store: &Store) -> Vec<String> {
    let mut done = Vec::new();
    for (et, _) in store.list_executor_tasks().await.expect("ets") {
        let mut status = et.status.clone();
        status.phase = ExecutorTaskPhase::Success;
        for s in &mut status.steps {
            s.phase = ExecutorTaskPhase::Success;
            s.exit_status = Some(0);
        }
        store
            .update_executor_task_status(&et.id, status)
            .await
            .expect("report")
            .expect("et exists");
        store
            .handle_executor_task_update(&et.id, chrono::Utc::now())
            .await
            .expect("handle");
        // Fetcher stand-in.
        loop {
            let (run, rev) = store
                .get_run(&et.spec.run_id)
                .await
                .expect("get")
                .expect("run");
            let mut next = run.clone();
            next.tasks
                .get_mut(&et.id)
                .expect("task")
                .finish_fetch_phases();
            match store
                .save_run(&next, &run, rev, chrono::Utc::now(), vec![], vec![])
                .await
            {
                Ok(_) => break,
                Err(StoreError::Concurrency(_)) => continue,
                Err(e) => panic!("{e}"),
            }
        }
        let (_, rev) = store
            .get_executor_task(&et.id)
            .await
            .expect("get")
            .expect("et");
        store
            .delete_executor_task(&et.id, rev)
            .await
            .expect("delete");
        done.push(et.id);
    }
    done
}

async fn diamond_runs_to_success(kv: Arc<dyn Kv>) {
    let store = Store::new(kv);
    store.put_executor(&executor("e1")).await.expect("executor");
    let (run, rc) = queued_diamond(&store).await;
    let mut events = store.watch_events(None).await.expect("watch");
    start(&store, &run.id).await;
    let mut order = Vec::new();
    for _ in 0..10 {
        store
            .schedule_run(&run.id, &rc, chrono::Utc::now(), Duration::from_secs(60))
            .await
            .expect("schedule");
        let (cur, _) = store.get_run(&run.id).await.expect("get").expect("run");
        if cur.phase == RunPhase::Finished {
            break;
        }
        order.extend(fake_executor_round(&store).await);
    }
    let (done, _) = store.get_run(&run.id).await.expect("get").expect("run");
    assert_eq!(
        (done.phase, done.result),
        (RunPhase::Finished, RunResult::Success)
    );
    assert_eq!(order.first().map(String::as_str), Some("id-a"));
    assert_eq!(order.last().map(String::as_str), Some("id-d"));
    // Live events: running first, finished/success last (the result may be set in the same
    // pass that finishes the run), one per phase or result change.
    let mut seen = Vec::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("event in time")
            .expect("open")
            .expect("ok");
        let finished = ev.phase == RunPhase::Finished;
        seen.push((ev.phase, ev.result, ev.sequence));
        if finished {
            break;
        }
    }
    assert_eq!(
        (seen[0].0, seen[0].1),
        (RunPhase::Running, RunResult::Unknown)
    );
    let last = seen.last().expect("events");
    assert_eq!((last.0, last.1), (RunPhase::Finished, RunResult::Success));
    assert!(
        seen.windows(2)
            .all(|w| (w[0].0, w[0].1) != (w[1].0, w[1].1))
    );
    // Replay after the first live event: exactly the later ones, then live.
    let mut replay = store.watch_events(Some(&seen[0].2)).await.expect("replay");
    for want in &seen[1..] {
        let ev = tokio::time::timeout(Duration::from_secs(10), replay.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("ok");
        assert_eq!(ev.sequence, want.2);
    }
    // Retention keeps the newest event only: a replay from the beginning is truncated, one
    // from the newest is not.
    let removed = store
        .clean_events(chrono::Utc::now(), chrono::TimeDelta::hours(24), 1)
        .await
        .expect("clean events");
    assert!(removed >= seen.len() - 1, "removed {removed}");
    assert!(store.events_truncated("").await.expect("truncated"));
    assert!(
        !store
            .events_truncated(&last.2)
            .await
            .expect("not truncated")
    );
    // Age-based: everything is younger than a day, nothing more goes.
    let again = store
        .clean_events(chrono::Utc::now(), chrono::TimeDelta::hours(24), 100_000)
        .await
        .expect("clean events");
    assert_eq!(again, 0);
}

async fn concurrent_passes_never_dispatch_twice(kv_a: Arc<dyn Kv>, kv_b: Arc<dyn Kv>) {
    let a = Store::new(kv_a);
    let b = Store::new(kv_b);
    a.put_executor(&executor("e1")).await.expect("executor");
    let id = a.next_run_id().await.expect("id");
    let tasks: Vec<RunConfigTask> = (0..8).map(|i| task(&format!("t{i}"), &[])).collect();
    let (run, rc) = create::new_run(
        &id,
        1,
        CreateRunRequest {
            name: "wide".into(),
            group: "/project/p/branch/main".into(),
            tasks,
            ..Default::default()
        },
        chrono::Utc::now(),
    )
    .expect("run");
    a.create_run(&run, chrono::Utc::now())
        .await
        .expect("create");
    start(&a, &id).await;
    let mut handles = Vec::new();
    for i in 0..6 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let rc = rc.clone();
        let id = id.clone();
        handles.push(tokio::spawn(async move {
            store
                .schedule_run(&id, &rc, chrono::Utc::now(), Duration::from_secs(60))
                .await
                .expect("schedule")
                .created
        }));
    }
    let mut created = Vec::new();
    for h in handles {
        created.extend(h.await.expect("join"));
    }
    created.sort();
    let before = created.len();
    created.dedup();
    assert_eq!(before, created.len(), "a task was dispatched twice");
    assert_eq!(created.len(), 8, "every task dispatched exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_diamond_runs_to_success() {
    let (kv, _dir) = embedded().await;
    diamond_runs_to_success(kv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_diamond_runs_to_success() {
    diamond_runs_to_success(etcd().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_concurrent_passes_never_dispatch_twice() {
    let (kv, _dir) = embedded().await;
    concurrent_passes_never_dispatch_twice(kv.clone(), kv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_two_instances_never_dispatch_twice() {
    let (a, b) = etcd_pair().await;
    concurrent_passes_never_dispatch_twice(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_run_save_is_a_concurrency_error() {
    let (kv, _dir) = embedded().await;
    let store = Store::new(kv);
    let (run, _) = queued_diamond(&store).await;
    let (cur, rev) = store.get_run(&run.id).await.expect("get").expect("run");
    let mut next = cur.clone();
    next.stop = true;
    store
        .save_run(&next, &cur, rev, chrono::Utc::now(), vec![], vec![])
        .await
        .expect("fresh save");
    let mut other = cur.clone();
    other.annotations.insert("x".into(), "y".into());
    let err = store
        .save_run(&other, &cur, rev, chrono::Utc::now(), vec![], vec![])
        .await
        .expect_err("stale");
    assert!(matches!(err, StoreError::Concurrency(_)), "{err}");
    assert!(matches!(
        store.create_run(&run, chrono::Utc::now()).await,
        Err(StoreError::AlreadyExists(_))
    ));
}

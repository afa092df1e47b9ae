//! Table-driven tests of the pure scheduler (spec 90 §1) and run building (§2).

use std::collections::BTreeMap;
use std::time::Duration;

use agola_runservice::create::{self, BuildError, CreateRunRequest, RecreateRequest};
use agola_runservice::scheduler::{self, NoExecutor, PlanInput};
use agola_runservice::types::*;
use chrono::TimeZone;

fn now() -> Time {
    chrono::Utc
        .with_ymd_and_hms(2026, 1, 1, 12, 0, 0)
        .single()
        .expect("time")
}

/// A task whose id is its name, with one run step and a busybox container.
fn task(name: &str) -> RunConfigTask {
    RunConfigTask {
        id: name.to_owned(),
        name: name.to_owned(),
        runtime: Runtime {
            arch: String::new(),
            containers: vec![Container {
                image: "busybox".into(),
                ..Default::default()
            }],
        },
        steps: vec![Step::Run {
            name: "s".into(),
            command: "true".into(),
            environment: BTreeMap::new(),
            working_dir: String::new(),
            shell: String::new(),
            tty: false,
        }],
        min_approvers: 1,
        ..Default::default()
    }
}

fn dep(mut t: RunConfigTask, parent: &str, conditions: &[DependCondition]) -> RunConfigTask {
    t.depends.insert(
        parent.to_owned(),
        RunConfigTaskDepend {
            task_id: parent.to_owned(),
            conditions: conditions.to_vec(),
        },
    );
    t
}

fn running(tasks: Vec<RunConfigTask>) -> (Run, RunConfig) {
    let (mut run, rc) = create::new_run(
        "run1",
        1,
        CreateRunRequest {
            name: "r".into(),
            group: "/project/p/branch/main".into(),
            tasks,
            ..Default::default()
        },
        now(),
    )
    .expect("valid request");
    assert_eq!(rc.setup_errors, Vec::<String>::new());
    run.phase = RunPhase::Running;
    (run, rc)
}

fn set(run: &mut Run, id: &str, status: RunTaskStatus) {
    let t = run.tasks.get_mut(id).expect("task");
    t.status = status;
    if status.is_finished() {
        t.finish_fetch_phases();
    }
}

fn status(run: &Run, id: &str) -> RunTaskStatus {
    run.tasks[id].status
}

fn no_ets() -> BTreeMap<String, ExecutorTask> {
    BTreeMap::new()
}

fn et_for(run: &Run, rc: &RunConfig, id: &str) -> BTreeMap<String, ExecutorTask> {
    let et = scheduler::new_executor_task(run, &rc.tasks[id], "e1");
    [(id.to_owned(), et)].into()
}

use DependCondition::{OnFailure, OnSkipped, OnSuccess};
use RunTaskStatus::{Cancelled, Failed, Notstarted, Skipped, Stopped, Success};

#[test]
fn skip_propagates_down_the_whole_chain_in_one_pass() {
    let mut a = task("a");
    a.skip = true;
    let (run, rc) = running(vec![
        a,
        dep(task("b"), "a", &[]),
        dep(task("c"), "b", &[]),
        dep(task("d"), "c", &[]),
    ]);
    assert_eq!(status(&run, "a"), Skipped);
    let next = scheduler::advance_run_tasks(&run, &rc, &no_ets());
    for id in ["b", "c", "d"] {
        assert_eq!(status(&next, id), Skipped, "{id}");
    }
}

#[test]
fn condition_table() {
    // (parent statuses, child conditions per parent, expected child status, runnable)
    type Case = (
        &'static [RunTaskStatus],
        &'static [DependCondition],
        RunTaskStatus,
        bool,
    );
    let cases: &[Case] = &[
        (&[Skipped, Skipped], &[], Skipped, false), // 2. all parents skipped
        (&[Skipped, Success], &[], Skipped, false), // 3. AND across parents
        (&[Failed], &[], Skipped, false),           // 4. failed, default condition
        (&[Failed], &[OnFailure], Notstarted, true), // 5. on_failure runs
        (&[Success], &[OnFailure], Skipped, false), // 6. success, only on_failure
        (&[Skipped], &[OnSkipped], Notstarted, true), // 7. on_skipped
        (&[Success], &[OnSuccess, OnSkipped], Notstarted, true), // 8. OR within a parent
        (&[Skipped], &[OnSuccess, OnSkipped], Notstarted, true),
        (
            &[Cancelled],
            &[OnSuccess, OnFailure, OnSkipped],
            Skipped,
            false,
        ), // 9.
        (
            &[Stopped],
            &[OnSuccess, OnFailure, OnSkipped],
            Skipped,
            false,
        ),
        (&[Success, Success], &[], Notstarted, true),
    ];
    for (i, (parents, conds, want, runnable)) in cases.iter().enumerate() {
        let mut tasks = Vec::new();
        let mut child = task("z");
        for (n, _) in parents.iter().enumerate() {
            let p = format!("p{n}");
            tasks.push(task(&p));
            child = dep(child, &p, conds);
        }
        tasks.push(child);
        let (mut run, rc) = running(tasks);
        for (n, s) in parents.iter().enumerate() {
            set(&mut run, &format!("p{n}"), *s);
        }
        let next = scheduler::advance_run_tasks(&run, &rc, &no_ets());
        assert_eq!(status(&next, "z"), *want, "case {i}");
        let to_run = scheduler::tasks_to_run(&next, &rc, &no_ets());
        assert_eq!(to_run.contains(&"z".to_owned()), *runnable, "case {i}");
    }
}

#[test]
fn approval_only_when_not_skipped() {
    let mut child = dep(task("c"), "a", &[]);
    child.needs_approval = true;
    let (mut run, rc) = running(vec![task("a"), child]);
    set(&mut run, "a", Success);
    let next = scheduler::advance_run_tasks(&run, &rc, &no_ets());
    assert!(next.tasks["c"].waiting_approval);
    assert_eq!(status(&next, "c"), Notstarted);
    assert!(
        scheduler::tasks_to_run(&next, &rc, &no_ets()).is_empty(),
        "not before approval"
    );
    let mut approved = next.clone();
    let t = approved.tasks.get_mut("c").expect("c");
    t.waiting_approval = false;
    t.approved = true;
    assert_eq!(
        scheduler::tasks_to_run(&approved, &rc, &no_ets()),
        vec!["c".to_owned()]
    );
    // Non-matching: skipped, not waiting.
    set(&mut run, "a", Failed);
    let next = scheduler::advance_run_tasks(&run, &rc, &no_ets());
    assert_eq!(status(&next, "c"), Skipped);
    assert!(!next.tasks["c"].waiting_approval);
}

#[test]
fn result_set_cancels_roots_without_et_only() {
    let (mut run, rc) = running(vec![
        task("a"),
        task("b"),
        task("c"),
        dep(task("d"), "a", &[OnFailure]),
    ]);
    set(&mut run, "a", Failed);
    run.result = RunResult::Failed;
    let ets = et_for(&run, &rc, "b");
    let next = scheduler::advance_run_tasks(&run, &rc, &ets);
    assert_eq!(status(&next, "b"), Notstarted, "root with an ET unchanged");
    assert_eq!(status(&next, "c"), Cancelled, "root without ET cancelled");
    assert!(
        next.tasks["c"].fetch_done(),
        "nothing to fetch for a cancelled task"
    );
    assert_eq!(
        status(&next, "d"),
        Notstarted,
        "children of started roots still evaluated"
    );
    assert_eq!(
        scheduler::tasks_to_run(&next, &rc, &ets),
        vec!["d".to_owned()]
    );
}

#[test]
fn stop_skips_not_started_tasks_without_et() {
    let (mut run, rc) = running(vec![task("a"), task("b"), dep(task("c"), "a", &[])]);
    run.stop = true;
    let ets = et_for(&run, &rc, "a");
    let next = scheduler::advance_run_tasks(&run, &rc, &ets);
    assert_eq!(status(&next, "a"), Notstarted);
    assert_eq!(status(&next, "b"), Skipped);
    assert_eq!(status(&next, "c"), Skipped);
    let plan = scheduler::plan(PlanInput {
        run: &run,
        rc: &rc,
        ets: &ets,
        executors: &[],
        executor_load: &BTreeMap::new(),
        now: now(),
        alive_timeout: Duration::from_secs(60),
    });
    assert_eq!(plan.stop, vec!["a".to_owned()], "scheduled ETs get stop");
    assert_eq!(plan.run.result, RunResult::Stopped);
    assert!(plan.create.is_empty());
}

#[test]
fn children_wait_for_archives() {
    let (mut run, rc) = running(vec![task("a"), dep(task("b"), "a", &[])]);
    let t = run.tasks.get_mut("a").expect("a");
    t.status = Success;
    t.workspace_archives = vec![0];
    t.workspace_archives_phase = vec![FetchPhase::Notstarted];
    assert!(scheduler::tasks_to_run(&run, &rc, &no_ets()).is_empty());
    let same = scheduler::advance_run_tasks(&run, &rc, &no_ets());
    assert_eq!(status(&same, "b"), Notstarted);
    for phase in [FetchPhase::Finished, FetchPhase::Lost] {
        run.tasks.get_mut("a").expect("a").workspace_archives_phase = vec![phase];
        assert_eq!(
            scheduler::tasks_to_run(&run, &rc, &no_ets()),
            vec!["b".to_owned()]
        );
    }
}

#[test]
fn tasks_to_run_returns_roots_and_not_skipped() {
    let mut s = task("s");
    s.skip = true;
    let (run, rc) = running(vec![task("a"), task("b"), s, dep(task("c"), "a", &[])]);
    assert_eq!(
        scheduler::tasks_to_run(&run, &rc, &no_ets()),
        vec!["a".to_owned(), "b".to_owned()]
    );
    // A parent skipped in the same pass excludes its child unless on_skipped.
    let mut skip_me = task("x");
    skip_me.skip = true;
    let (run, rc) = running(vec![
        skip_me,
        dep(task("y"), "x", &[]),
        dep(task("z"), "x", &[OnSkipped]),
    ]);
    let next = scheduler::advance_run_tasks(&run, &rc, &no_ets());
    assert_eq!(
        scheduler::tasks_to_run(&next, &rc, &no_ets()),
        vec!["z".to_owned()]
    );
}

fn executor(id: &str, limit: u32, age_secs: i64) -> Executor {
    Executor {
        id: id.to_owned(),
        listen_url: String::new(),
        archs: vec!["amd64".into()],
        labels: BTreeMap::new(),
        allow_privileged_containers: false,
        active_tasks_limit: limit,
        active_tasks: 0,
        dynamic: false,
        executor_group: id.to_owned(),
        siblings_executors: vec![id.to_owned()],
        last_status_update_time: now() - chrono::Duration::seconds(age_secs),
    }
}

#[test]
fn choose_executor_table() {
    let t = task("t");
    let alive = Duration::from_secs(60);
    let load = |pairs: &[(&str, u32)]| -> BTreeMap<String, u32> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    };
    // capacity
    let e = [executor("e1", 2, 0)];
    assert!(scheduler::choose_executor(&e, &t, &load(&[("e1", 1)]), now(), alive).is_ok());
    assert_eq!(
        scheduler::choose_executor(&e, &t, &load(&[("e1", 2)]), now(), alive).err(),
        Some(NoExecutor::Capacity)
    );
    let unlimited = [executor("e1", 0, 0)];
    assert!(scheduler::choose_executor(&unlimited, &t, &load(&[("e1", 99)]), now(), alive).is_ok());
    let mut busy = executor("e1", 2, 0);
    busy.active_tasks = 2;
    assert_eq!(
        scheduler::choose_executor(&[busy], &t, &load(&[]), now(), alive).err(),
        Some(NoExecutor::Capacity),
        "reported active tasks above the ET count are respected"
    );
    // alive
    assert!(
        scheduler::choose_executor(&[executor("e1", 0, 59)], &t, &load(&[]), now(), alive).is_ok()
    );
    assert_eq!(
        scheduler::choose_executor(&[executor("e1", 0, 61)], &t, &load(&[]), now(), alive).err(),
        Some(NoExecutor::NoneAlive)
    );
    // arch
    let mut arm = task("arm");
    arm.runtime.arch = "arm64".into();
    assert_eq!(
        scheduler::choose_executor(&[executor("e1", 0, 0)], &arm, &load(&[]), now(), alive).err(),
        Some(NoExecutor::Arch)
    );
    let mut multi = executor("multi", 0, 0);
    multi.archs = vec!["amd64".into(), "arm64".into()];
    assert_eq!(
        scheduler::choose_executor(
            &[executor("e1", 0, 0), multi],
            &arm,
            &load(&[]),
            now(),
            alive
        )
        .map(|e| e.id.clone()),
        Ok("multi".to_owned())
    );
    // privileged
    let mut p = task("p");
    p.runtime.containers[0].privileged = true;
    assert_eq!(
        scheduler::choose_executor(&[executor("e1", 0, 0)], &p, &load(&[]), now(), alive).err(),
        Some(NoExecutor::Privileged)
    );
    let mut allowed = executor("e2", 0, 0);
    allowed.allow_privileged_containers = true;
    assert!(scheduler::choose_executor(&[allowed], &p, &load(&[]), now(), alive).is_ok());
    // least loaded wins, ties by id
    let es = [
        executor("b", 5, 0),
        executor("a", 5, 0),
        executor("c", 5, 0),
    ];
    let pick = |l: &BTreeMap<String, u32>| {
        scheduler::choose_executor(&es, &t, l, now(), alive).map(|e| e.id.clone())
    };
    assert_eq!(pick(&load(&[])), Ok("a".into()));
    assert_eq!(pick(&load(&[("a", 2), ("b", 1), ("c", 1)])), Ok("b".into()));
}

#[test]
fn plan_counts_ets_created_earlier_in_the_pass() {
    let (run, rc) = running(vec![task("a"), task("b"), task("c")]);
    let executors = [executor("e1", 2, 0)];
    let plan = scheduler::plan(PlanInput {
        run: &run,
        rc: &rc,
        ets: &no_ets(),
        executors: &executors,
        executor_load: &BTreeMap::new(),
        now: now(),
        alive_timeout: Duration::from_secs(60),
    });
    assert_eq!(plan.create.len(), 2, "the limit holds within one pass");
    assert_eq!(plan.blocked, Some(("c".to_owned(), NoExecutor::Capacity)));
    let two = [executor("e1", 2, 0), executor("e2", 2, 0)];
    let plan = scheduler::plan(PlanInput {
        run: &run,
        rc: &rc,
        ets: &no_ets(),
        executors: &two,
        executor_load: &BTreeMap::new(),
        now: now(),
        alive_timeout: Duration::from_secs(60),
    });
    let placed: Vec<&str> = plan
        .create
        .iter()
        .map(|et| et.spec.executor_id.as_str())
        .collect();
    assert_eq!(placed, vec!["e1", "e2", "e1"], "load is spread");
}

#[test]
fn advance_run_result_rules_and_finish() {
    let mut ignored = task("i");
    ignored.ignore_failure = true;
    let (mut run, rc) = running(vec![task("a"), ignored]);
    set(&mut run, "i", Failed);
    scheduler::advance_run(&mut run, &rc, &no_ets(), now());
    assert_eq!(
        run.result,
        RunResult::Unknown,
        "ignored failure does not fail the run"
    );
    set(&mut run, "a", Success);
    let ets = et_for(&run, &rc, "a");
    scheduler::advance_run(&mut run, &rc, &ets, now());
    assert_eq!(run.result, RunResult::Success);
    assert_eq!(
        run.phase,
        RunPhase::Running,
        "not finished while an ET exists"
    );
    scheduler::advance_run(&mut run, &rc, &no_ets(), now());
    assert_eq!(run.phase, RunPhase::Finished);
    assert_eq!(run.end_time, Some(now()));
    // failed before success before stopped
    let (mut run, rc) = running(vec![task("a"), task("b")]);
    set(&mut run, "a", Failed);
    set(&mut run, "b", Success);
    run.stop = true;
    scheduler::advance_run(&mut run, &rc, &no_ets(), now());
    assert_eq!(run.result, RunResult::Failed);
    let (mut run, rc) = running(vec![task("a"), task("b")]);
    set(&mut run, "a", Success);
    run.stop = true;
    scheduler::advance_run(&mut run, &rc, &no_ets(), now());
    assert_eq!(run.result, RunResult::Stopped);
    // The result never changes once set.
    set(&mut run, "b", Failed);
    scheduler::advance_run(&mut run, &rc, &no_ets(), now());
    assert_eq!(run.result, RunResult::Stopped);
    // A terminal run marks not-started tasks' fetch phases finished.
    let (mut run, rc) = running(vec![task("a")]);
    run.phase = RunPhase::Cancelled;
    scheduler::advance_run(&mut run, &rc, &no_ets(), now());
    assert!(run.tasks["a"].fetch_done());
}

#[test]
fn diamond_dag_runs_to_success_through_plans() {
    let (mut run, rc) = running(vec![
        task("a"),
        dep(task("b"), "a", &[]),
        dep(task("c"), "a", &[]),
        dep(dep(task("d"), "b", &[]), "c", &[]),
    ]);
    let executors = [executor("e1", 0, 0)];
    let mut ets: BTreeMap<String, ExecutorTask> = BTreeMap::new();
    let mut order = Vec::new();
    for _ in 0..10 {
        let plan = scheduler::plan(PlanInput {
            run: &run,
            rc: &rc,
            ets: &ets,
            executors: &executors,
            executor_load: &BTreeMap::new(),
            now: now(),
            alive_timeout: Duration::from_secs(60),
        });
        run = plan.run;
        if run.phase == RunPhase::Finished {
            break;
        }
        // The fake executor finishes every created ET; the fetcher then deletes it.
        for mut et in plan.create {
            order.push(et.id.clone());
            et.status.phase = ExecutorTaskPhase::Success;
            scheduler::update_run_task_status(&mut run, &et).expect("allowed");
            run.tasks
                .get_mut(&et.id)
                .expect("task")
                .finish_fetch_phases();
            ets.remove(&et.id);
        }
    }
    assert_eq!(run.phase, RunPhase::Finished);
    assert_eq!(run.result, RunResult::Success);
    assert_eq!(order, vec!["a", "b", "c", "d"]);
}

#[test]
fn executor_status_transition_table() {
    use ExecutorTaskPhase as P;
    let cases: &[(RunTaskStatus, P, bool)] = &[
        (Notstarted, P::Notstarted, true),
        (Notstarted, P::Running, true),
        (Notstarted, P::Success, true), // updates can be lost: direct to finished
        (Notstarted, P::Cancelled, true),
        (RunTaskStatus::Running, P::Success, true),
        (RunTaskStatus::Running, P::Failed, true),
        (RunTaskStatus::Running, P::Stopped, true),
        (RunTaskStatus::Running, P::Cancelled, false),
        (RunTaskStatus::Running, P::Notstarted, false),
        (Success, P::Running, false),
        (Success, P::Failed, false),
        (Failed, P::Failed, true),
        (Cancelled, P::Running, false),
    ];
    for (from, to, ok) in cases {
        let (mut run, rc) = running(vec![task("a")]);
        set(&mut run, "a", *from);
        let mut et = scheduler::new_executor_task(&run, &rc.tasks["a"], "e1");
        et.status.phase = *to;
        et.status.steps[0].exit_status = Some(3);
        let res = scheduler::update_run_task_status(&mut run, &et);
        assert_eq!(res.is_ok(), *ok, "{from:?} -> {to:?}");
        if *ok {
            assert_eq!(run.tasks["a"].steps[0].exit_status, Some(3));
        } else {
            assert_eq!(status(&run, "a"), *from, "ignored");
        }
    }
}

#[test]
fn cycles_and_redundant_edges_become_setup_errors() {
    let (run, rc) = create::new_run(
        "r",
        1,
        CreateRunRequest {
            name: "r".into(),
            group: "/project/p/branch/main".into(),
            tasks: vec![dep(task("a"), "b", &[]), dep(task("b"), "a", &[])],
            ..Default::default()
        },
        now(),
    )
    .expect("built");
    assert_eq!(run.phase, RunPhase::Setuperror);
    assert!(run.tasks.is_empty() && rc.tasks.is_empty());
    assert!(
        rc.setup_errors[0].contains("cycle"),
        "{:?}",
        rc.setup_errors
    );
    let (run, rc) = create::new_run(
        "r",
        1,
        CreateRunRequest {
            name: "r".into(),
            group: "/project/p/branch/main".into(),
            tasks: vec![
                task("a"),
                dep(task("b"), "a", &[]),
                dep(dep(task("c"), "b", &[]), "a", &[]),
            ],
            ..Default::default()
        },
        now(),
    )
    .expect("built");
    assert_eq!(run.phase, RunPhase::Setuperror);
    assert!(
        rc.setup_errors[0].contains("redundant"),
        "{:?}",
        rc.setup_errors
    );
    let err = create::new_run("r", 1, CreateRunRequest::default(), now()).expect_err("bad group");
    assert!(matches!(err, BuildError::BadRequest(_)));
    // levels
    let (_, rc) = running(vec![
        task("a"),
        dep(task("b"), "a", &[]),
        dep(dep(task("c"), "b", &[]), "x", &[]),
        task("x"),
    ]);
    assert_eq!(
        rc.tasks
            .values()
            .map(|t| (t.name.as_str(), t.level))
            .collect::<Vec<_>>(),
        vec![("a", 0), ("b", 1), ("c", 2), ("x", 0)]
    );
}

#[test]
fn recreate_run_keeps_successes_and_renews_descendants() {
    let (mut run, mut rc) = running(vec![
        task("a"),
        dep(task("b"), "a", &[]),
        dep(task("c"), "b", &[]),
        task("d"),
    ]);
    rc.environment.insert("E".into(), "old".into());
    rc.static_environment.insert("S".into(), "kept".into());
    set(&mut run, "a", Success);
    set(&mut run, "b", Failed);
    set(&mut run, "c", Skipped);
    set(&mut run, "d", Success);
    run.result = RunResult::Failed;
    run.phase = RunPhase::Finished;
    let mut n = 0;
    let next_id = || {
        n += 1;
        format!("new{n}")
    };
    let (new_run, new_rc) = create::recreate_run(
        &run,
        &rc,
        "run2",
        2,
        RecreateRequest {
            from_start: false,
            environment: Some([("E".to_owned(), "new".to_owned())].into()),
        },
        now(),
        next_id,
    )
    .expect("restartable");
    let ids: Vec<&str> = new_rc.tasks.keys().map(String::as_str).collect();
    assert_eq!(ids, vec!["a", "d", "new1", "new2"]);
    let c = new_rc.tasks.values().find(|t| t.name == "c").expect("c");
    let b = new_rc.tasks.values().find(|t| t.name == "b").expect("b");
    assert!(c.depends.contains_key(&b.id), "depends rewritten");
    assert_eq!(b.depends["a"].task_id, "a");
    assert_eq!(new_run.tasks["a"].status, Success, "kept state");
    assert_eq!(new_run.tasks[&b.id].status, Notstarted);
    assert_eq!(new_rc.environment["E"], "new");
    assert_eq!(new_rc.static_environment["S"], "kept");
    assert_eq!(
        (new_run.phase, new_run.result, new_run.counter),
        (RunPhase::Queued, RunResult::Unknown, 2)
    );
    assert_eq!(new_run.end_time, None);
    // from start: every id new
    let mut m = 0;
    let (_, all_new) = create::recreate_run(
        &run,
        &rc,
        "run3",
        3,
        RecreateRequest {
            from_start: true,
            environment: None,
        },
        now(),
        || {
            m += 1;
            format!("n{m}")
        },
    )
    .expect("restartable");
    assert!(all_new.tasks.keys().all(|k| k.starts_with('n')));
    assert_eq!(all_new.environment["E"], "old");
    // a success task with a lost archive: only from scratch
    let t = run.tasks.get_mut("a").expect("a");
    t.workspace_archives = vec![0];
    t.workspace_archives_phase = vec![FetchPhase::Lost];
    let err = create::recreate_run(
        &run,
        &rc,
        "run4",
        4,
        RecreateRequest::default(),
        now(),
        || "x".into(),
    )
    .expect_err("lost archive");
    assert!(matches!(err, BuildError::NotRestartable(_)));
    // a running run cannot restart
    run.phase = RunPhase::Running;
    assert!(
        create::recreate_run(
            &run,
            &rc,
            "run5",
            5,
            RecreateRequest {
                from_start: true,
                environment: None
            },
            now(),
            || "x".into()
        )
        .is_err()
    );
}

/// Random DAGs and parent outcomes: one level-ordered pass equals a naive fixed point
/// computed by repeating passes in a random task order, whatever the order.
#[test]
fn one_pass_reaches_the_fixed_point_for_random_dags() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for case in 0..300 {
        let n = 2 + rnd(9) as usize;
        let mut tasks: Vec<RunConfigTask> = Vec::new();
        for i in 0..n {
            let mut t = task(&format!("t{i}"));
            t.skip = rnd(6) == 0;
            // Only edges to lower indexes: acyclic; redundant edges are avoided by construction
            // (one parent at most per task, plus an optional independent root parent).
            if i > 0 && rnd(3) != 0 {
                let p = rnd(i as u64) as usize;
                let conds = match rnd(4) {
                    0 => vec![],
                    1 => vec![OnFailure],
                    2 => vec![OnSkipped],
                    _ => vec![OnSuccess, OnSkipped],
                };
                t = dep(t, &format!("t{p}"), &conds);
            }
            tasks.push(t);
        }
        let (mut run, rc) = running(tasks);
        // Finish some roots with random outcomes.
        for ct in rc.tasks.values() {
            if ct.depends.is_empty() && !ct.skip {
                let s = [Success, Failed, Skipped, Notstarted][rnd(4) as usize];
                if s != Notstarted {
                    set(&mut run, &ct.id, s);
                }
            }
        }
        let one = scheduler::advance_run_tasks(&run, &rc, &no_ets());
        let again = scheduler::advance_run_tasks(&one, &rc, &no_ets());
        assert_eq!(one, again, "case {case}: one pass is the fixed point");
        // Naive reference: repeat single-task evaluations in random order until stable.
        let mut naive = run.clone();
        loop {
            let mut ids: Vec<String> = rc.tasks.keys().cloned().collect();
            for i in (1..ids.len()).rev() {
                ids.swap(i, rnd(i as u64 + 1) as usize);
            }
            let before = naive.clone();
            for id in ids {
                // Evaluate only `id` against the current state.
                let ct = &rc.tasks[&id];
                if naive.tasks[&id].status == Notstarted
                    && ct
                        .depends
                        .keys()
                        .all(|p| naive.tasks[p].status.is_finished())
                    && !scheduler::conditions_match(&naive, ct)
                {
                    set(&mut naive, &id, Skipped);
                }
            }
            if naive == before {
                break;
            }
        }
        assert_eq!(
            one.tasks
                .iter()
                .map(|(k, t)| (k.clone(), t.status))
                .collect::<Vec<_>>(),
            naive
                .tasks
                .iter()
                .map(|(k, t)| (k.clone(), t.status))
                .collect::<Vec<_>>(),
            "case {case}"
        );
    }
}

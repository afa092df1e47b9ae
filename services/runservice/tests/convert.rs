//! Proto ↔ domain conversions: round trips, and bad wire data rejected with a clear error.

use std::collections::BTreeMap;

use agola_proto::common::v1 as pb;
use agola_runservice::convert;
use agola_runservice::types::*;

fn full_task() -> RunConfigTask {
    RunConfigTask {
        level: 0,
        id: "t1".into(),
        name: "build".into(),
        depends: [(
            "t0".to_owned(),
            RunConfigTaskDepend {
                task_id: "t0".into(),
                conditions: vec![DependCondition::OnFailure, DependCondition::OnSkipped],
            },
        )]
        .into(),
        runtime: Runtime {
            arch: "arm64".into(),
            containers: vec![
                Container {
                    image: "busybox".into(),
                    environment: [("K".to_owned(), "V".to_owned())].into(),
                    user: "1000".into(),
                    privileged: true,
                    entrypoint: "/bin/sh -c".into(),
                    volumes: vec![Volume {
                        path: "/tmp".into(),
                        tmpfs_size: Some(512 * 1024 * 1024),
                    }],
                },
                Container {
                    image: "postgres".into(),
                    ..Default::default()
                },
            ],
        },
        environment: [("E".to_owned(), "1".to_owned())].into(),
        working_dir: "~/src".into(),
        shell: "/bin/bash -e".into(),
        user: "root".into(),
        steps: vec![
            Step::Run {
                name: "compile".into(),
                command: "make".into(),
                environment: BTreeMap::new(),
                working_dir: "sub".into(),
                shell: String::new(),
                tty: false,
            },
            Step::SaveToWorkspace {
                contents: vec![SaveContent {
                    source_dir: ".".into(),
                    dest_dir: "/out".into(),
                    paths: vec!["bin/**".into()],
                }],
            },
            Step::RestoreWorkspace {
                dest_dir: ".".into(),
            },
            Step::SaveCache {
                key: "deps-{{ md5sum \"go.sum\" }}".into(),
                contents: vec![],
            },
            Step::RestoreCache {
                keys: vec!["deps-".into()],
                dest_dir: ".".into(),
            },
        ],
        ignore_failure: true,
        needs_approval: true,
        min_approvers: 2,
        skip: false,
    }
}

#[test]
fn run_config_task_round_trips() {
    let t = full_task();
    let back = convert::run_config_task_from_pb(convert::run_config_task_to_pb(&t)).expect("valid");
    assert_eq!(back, t);
}

#[test]
fn bad_tasks_are_rejected_naming_the_problem() {
    type Mutation = Box<dyn Fn(&mut pb::RunConfigTask)>;
    let cases: Vec<(Mutation, &str)> = vec![
        (Box::new(|t| t.id.clear()), "id is required"),
        (Box::new(|t| t.name.clear()), "name is required"),
        (Box::new(|t| t.runtime = None), "runtime is required"),
        (
            Box::new(|t| t.runtime.as_mut().expect("rt").containers.clear()),
            "at least one container",
        ),
        (
            Box::new(|t| t.runtime.as_mut().expect("rt").arch = 99),
            "unknown arch",
        ),
        (
            Box::new(|t| t.runtime.as_mut().expect("rt").containers[0].volumes[0].tmpfs = None),
            "only tmpfs volumes",
        ),
        (
            Box::new(|t| t.runtime.as_mut().expect("rt").containers[0].image.clear()),
            "image is required",
        ),
        (Box::new(|t| t.steps[0].step = None), "no step type"),
        (
            Box::new(|t| {
                if let Some(pb::step::Step::Run(r)) = t.steps[0].step.as_mut() {
                    r.command.clear();
                }
            }),
            "command is required",
        ),
        (
            Box::new(|t| t.depends.get_mut("t0").expect("dep").conditions = vec![42]),
            "invalid condition",
        ),
    ];
    for (mutate, want) in cases {
        let mut pb_task = convert::run_config_task_to_pb(&full_task());
        mutate(&mut pb_task);
        let err = convert::run_config_task_from_pb(pb_task).expect_err(want);
        assert!(
            err.to_string().contains(want),
            "{err} should mention {want:?}"
        );
    }
}

#[test]
fn executor_and_status_conversions() {
    let now = chrono::Utc::now();
    let e = pb::Executor {
        id: "e1".into(),
        archs: vec![pb::Arch::Amd64 as i32, pb::Arch::Arm64 as i32],
        active_tasks_limit: 2,
        executor_group: "e1".into(),
        ..Default::default()
    };
    let d = convert::executor_from_pb(e, now).expect("valid");
    assert_eq!(d.archs, vec!["amd64", "arm64"]);
    assert_eq!(d.last_status_update_time, now);
    let back = convert::executor_to_pb(&d);
    assert_eq!(back.archs.len(), 2);
    assert!(convert::executor_from_pb(pb::Executor::default(), now).is_err());
    let bad_arch = pb::Executor {
        id: "e".into(),
        archs: vec![77],
        ..Default::default()
    };
    assert!(convert::executor_from_pb(bad_arch, now).is_err());

    let status = ExecutorTaskStatus {
        phase: ExecutorTaskPhase::Running,
        fail_error: String::new(),
        setup_step: ExecutorTaskStepStatus {
            phase: ExecutorTaskPhase::Success,
            start_time: Some(now),
            end_time: Some(now),
            exit_status: None,
        },
        steps: vec![ExecutorTaskStepStatus {
            phase: ExecutorTaskPhase::Running,
            start_time: Some(now),
            end_time: None,
            exit_status: None,
        }],
        start_time: Some(now),
        end_time: None,
    };
    let wire = convert::task_status_to_pb_status("t", &status);
    assert_eq!(
        convert::task_status_from_pb(wire.clone(), Some(1)).expect("valid"),
        status
    );
    let err = convert::task_status_from_pb(wire.clone(), Some(3)).expect_err("step count");
    assert!(err.to_string().contains("3"), "{err}");
    let mut bad_phase = wire;
    bad_phase.phase = 0;
    assert!(convert::task_status_from_pb(bad_phase, None).is_err());
}

//! Every accepted form of spec 60 §8.3 and the values it normalises to.

use std::collections::BTreeMap;

use agola_config::*;

use crate::{one_task, parse_ok, the_task};

fn lit(s: &str) -> Value {
    Value::Literal(s.into())
}

fn var(s: &str) -> Value {
    Value::FromVariable(s.into())
}

#[test]
fn values_are_strings_or_from_variable() {
    let t = the_task(&one_task(
        "environment:\n  A: plain\n  B: {from_variable: b_var}\n  C: 8080\n  D: true\n  E: ''\n  F: \"0x10\"",
    ));
    let want: BTreeMap<String, Value> = [
        ("A", lit("plain")),
        ("B", var("b_var")),
        // numbers and booleans are read as the text written
        ("C", lit("8080")),
        ("D", lit("true")),
        ("E", lit("")),
        ("F", lit("0x10")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(t.environment, want);
}

/// Expected dependencies: task name and conditions.
type Deps = Vec<(&'static str, Vec<DependCondition>)>;

#[test]
fn depends_forms() {
    let yaml = "runs:\n  - name: r\n    tasks:\n      - {name: a, runtime: {containers: [{image: x}]}}\n      - {name: b, runtime: {containers: [{image: x}]}}\n      - {name: c, runtime: {containers: [{image: x}]}}\n      - {name: task, runtime: {containers: [{image: x}]}}\n      - name: d\n        runtime: {containers: [{image: x}]}\n        depends:\n";
    let cases: Vec<(&str, Deps)> = vec![
        (
            "          - a",
            vec![("a", vec![DependCondition::OnSuccess])],
        ),
        (
            "          - {task: a, conditions: [on_failure, on_skipped]}",
            vec![(
                "a",
                vec![DependCondition::OnFailure, DependCondition::OnSkipped],
            )],
        ),
        (
            "          - {task: a}",
            vec![("a", vec![DependCondition::OnSuccess])],
        ),
        (
            "          - {task: a, conditions: on_skipped}",
            vec![("a", vec![DependCondition::OnSkipped])],
        ),
        (
            "          - a: [on_success, on_skipped]",
            vec![(
                "a",
                vec![DependCondition::OnSuccess, DependCondition::OnSkipped],
            )],
        ),
        (
            "          - a:",
            vec![("a", vec![DependCondition::OnSuccess])],
        ),
        (
            "          - a: on_failure",
            vec![("a", vec![DependCondition::OnFailure])],
        ),
        (
            // duplicated conditions collapse
            "          - a: [on_failure, on_failure]",
            vec![("a", vec![DependCondition::OnFailure])],
        ),
        (
            // `task` holding conditions is the short form for a task named "task"
            "          - task: [on_failure]",
            vec![("task", vec![DependCondition::OnFailure])],
        ),
        (
            "          - a\n          - {task: b, conditions: [on_failure]}\n          - c: [on_skipped]",
            vec![
                ("a", vec![DependCondition::OnSuccess]),
                ("b", vec![DependCondition::OnFailure]),
                ("c", vec![DependCondition::OnSkipped]),
            ],
        ),
    ];
    for (depends, want) in cases {
        let config = parse_ok(&format!("{yaml}{depends}\n"));
        let got: Vec<(String, Vec<DependCondition>)> = config.runs[0].tasks[4]
            .depends
            .iter()
            .map(|d| (d.task.clone(), d.conditions.clone()))
            .collect();
        let want: Vec<(String, Vec<DependCondition>)> =
            want.into_iter().map(|(t, c)| (t.to_owned(), c)).collect();
        assert_eq!(got, want, "{depends}");
    }
    // a single string is one dependency
    let config = parse_ok(&yaml.replace("depends:\n", "depends: a\n"));
    assert_eq!(config.runs[0].tasks[4].depends[0].task, "a");
}

fn run(name: &str, command: &str) -> ConfigStep {
    ConfigStep::Run(ConfigRunStep {
        name: name.into(),
        command: command.into(),
        ..Default::default()
    })
}

#[test]
fn step_forms() {
    let cases: Vec<(&str, ConfigStep)> = vec![
        ("- {type: run, command: make}", run("make", "make")),
        ("- run: make", run("make", "make")),
        ("- run: {command: make, name: build}", run("build", "make")),
        (
            "- run:\n    name: multi\n    command: |\n      a\n      b",
            run("multi", "a\nb\n"),
        ),
        (
            // a literal block of one line is not multi-line
            "- run:\n    command: |\n      make test",
            run("make test", "make test\n"),
        ),
        (
            "- type: run\n  command: x\n  environment: {A: {from_variable: v}}\n  working_dir: /w\n  shell: /bin/bash\n  tty: false",
            ConfigStep::Run(ConfigRunStep {
                name: "x".into(),
                command: "x".into(),
                environment: [("A".to_owned(), var("v"))].into_iter().collect(),
                working_dir: Some("/w".into()),
                shell: Some("/bin/bash".into()),
                tty: Some(false),
            }),
        ),
        ("- clone:", ConfigStep::Clone(CloneStep::default())),
        ("- clone", ConfigStep::Clone(CloneStep::default())),
        ("- {type: clone}", ConfigStep::Clone(CloneStep::default())),
        (
            "- clone: {depth: 3, recurse_submodules: true}",
            ConfigStep::Clone(CloneStep {
                depth: Some(3),
                recurse_submodules: true,
            }),
        ),
        (
            "- {type: clone, depth: 1}",
            ConfigStep::Clone(CloneStep {
                depth: Some(1),
                recurse_submodules: false,
            }),
        ),
        (
            "- save_to_workspace: {contents: [{source_dir: s, dest_dir: d, paths: [a, 'b/**']}]}",
            ConfigStep::SaveToWorkspace(SaveToWorkspaceStep {
                contents: vec![SaveContent {
                    source_dir: "s".into(),
                    dest_dir: "d".into(),
                    paths: vec!["a".into(), "b/**".into()],
                }],
            }),
        ),
        (
            "- {type: restore_workspace, dest_dir: ., name: restore}",
            ConfigStep::RestoreWorkspace(RestoreWorkspaceStep {
                dest_dir: ".".into(),
            }),
        ),
        (
            "- save_cache: {key: k, contents: [{source_dir: s}]}",
            ConfigStep::SaveCache(ConfigSaveCacheStep {
                key: "k".into(),
                contents: vec![SaveContent {
                    source_dir: "s".into(),
                    dest_dir: String::new(),
                    paths: vec!["**".into()],
                }],
            }),
        ),
        (
            "- restore_cache: {keys: k1, dest_dir: d}",
            ConfigStep::RestoreCache(RestoreCacheStep {
                keys: vec!["k1".into()],
                dest_dir: "d".into(),
            }),
        ),
        (
            "- {type: restore_cache, keys: [k1, k2]}",
            ConfigStep::RestoreCache(RestoreCacheStep {
                keys: vec!["k1".into(), "k2".into()],
                dest_dir: String::new(),
            }),
        ),
    ];
    for (steps, want) in cases {
        let t = the_task(&one_task(&format!("steps:\n{steps}")));
        assert_eq!(t.steps, vec![want], "{steps}");
    }
}

#[test]
fn run_step_names_are_cut_to_100_characters() {
    let long = "x".repeat(150);
    let t = the_task(&one_task(&format!("steps: [{{run: {long}}}]")));
    let ConfigStep::Run(r) = &t.steps[0] else {
        panic!("run step")
    };
    assert_eq!(r.name.chars().count(), 100);
    assert_eq!(r.command, long);
}

#[test]
fn when_forms() {
    let cases: Vec<(&str, When)> = vec![
        (
            "when: {branch: main}",
            When {
                branch: Some(WhenConditions {
                    include: vec!["main".into()],
                    exclude: vec![],
                }),
                ..Default::default()
            },
        ),
        (
            "when: {tag: [v1, '/^v2/']}",
            When {
                tag: Some(WhenConditions {
                    include: vec!["v1".into(), "/^v2/".into()],
                    exclude: vec![],
                }),
                ..Default::default()
            },
        ),
        (
            "when:\n  ref: {include: '#refs/pull/.*#', exclude: [refs/pull/1/head]}",
            When {
                git_ref: Some(WhenConditions {
                    include: vec!["#refs/pull/.*#".into()],
                    exclude: vec!["refs/pull/1/head".into()],
                }),
                ..Default::default()
            },
        ),
        (
            "when: {branch: {exclude: wip}}",
            When {
                branch: Some(WhenConditions {
                    include: vec![],
                    exclude: vec!["wip".into()],
                }),
                ..Default::default()
            },
        ),
    ];
    for (yaml, want) in cases {
        assert_eq!(the_task(&one_task(yaml)).when, Some(want), "{yaml}");
    }
    assert_eq!(the_task(&one_task("")).when, None);
}

#[test]
fn approval_forms() {
    let cases = [
        ("approval: true", true, 1),
        ("approval: false", false, 1),
        ("approval: 3", true, 3),
        ("approval: {min_approvers: 2}", true, 2),
        ("", false, 1),
    ];
    for (yaml, required, min) in cases {
        let a = the_task(&one_task(yaml)).approval;
        assert_eq!((a.required, a.min_approvers), (required, min), "{yaml}");
    }
}

#[test]
fn task_scalars() {
    let t = the_task(&one_task(
        "working_dir: /src\nshell: /bin/bash -e\nuser: builder\nignore_failure: true",
    ));
    assert_eq!(t.working_dir.as_deref(), Some("/src"));
    assert_eq!(t.shell.as_deref(), Some("/bin/bash -e"));
    assert_eq!(t.user.as_deref(), Some("builder"));
    assert!(t.ignore_failure);
    let t = the_task(&one_task(""));
    assert_eq!((t.working_dir, t.shell, t.user), (None, None, None));
    assert!(!t.ignore_failure);
}

#[test]
fn runtime_and_containers() {
    let yaml = "runs:\n  - name: r\n    tasks:\n      - name: t\n        runtime:\n          type: pod\n          arch: 386\n          containers:\n            - image: main:1\n              environment: {A: a, B: {from_variable: b}}\n              user: root\n              privileged: true\n              entrypoint: /bin/sh -c 'sleep 1'\n              volumes:\n                - {path: /a, tmpfs: {size: 512Mi}}\n                - {path: /b, tmpfs: {size: 1048576}}\n                - {path: /c, tmpfs: {}}\n                - {path: /d, tmpfs: {size: 1.5Gi}}\n            - image: svc\n";
    let t = parse_ok(yaml).runs[0].tasks[0].clone();
    assert_eq!(t.runtime.runtime_type, RuntimeType::Pod);
    assert_eq!(t.runtime.arch, Some(Arch::I386));
    let c = &t.runtime.containers[0];
    assert_eq!(c.image, "main:1");
    assert_eq!(c.environment["B"], var("b"));
    assert_eq!(c.user.as_deref(), Some("root"));
    assert!(c.privileged);
    assert_eq!(c.entrypoint.as_deref(), Some("/bin/sh -c 'sleep 1'"));
    let sizes: Vec<Option<u64>> = c.volumes.iter().map(|v| v.tmpfs.size).collect();
    assert_eq!(
        sizes,
        vec![Some(512 << 20), Some(1 << 20), None, Some(3 << 29)]
    );
    assert_eq!(t.runtime.containers[1].image, "svc");
    assert!(!t.runtime.containers[1].privileged);
    for arch in ["amd64", "arm", "arm64", "'386'"] {
        let t = the_task(&one_task("").replace(
            "runtime: {containers",
            &format!("runtime: {{arch: {arch}, containers"),
        ));
        assert!(t.runtime.arch.is_some(), "{arch}");
    }
}

#[test]
fn registry_auth_at_every_level() {
    let yaml = "docker_registries_auth:\n  g.io: {username: gu, password: {from_variable: gp}}\nruns:\n  - name: r\n    docker_registries_auth:\n      r.io: {type: encodedauth, auth: {from_variable: ra}}\n    tasks:\n      - name: t\n        runtime: {containers: [{image: alpine}]}\n        docker_registries_auth:\n          t.io: {type: basic, username: tu, password: tp}\n";
    let config = parse_ok(yaml);
    assert_eq!(
        config.docker_registries_auth["g.io"],
        RegistryAuth {
            auth_type: DockerRegistryAuthType::Basic,
            username: lit("gu"),
            password: var("gp"),
            auth: Value::default(),
        }
    );
    assert_eq!(
        config.runs[0].docker_registries_auth["r.io"],
        RegistryAuth {
            auth_type: DockerRegistryAuthType::EncodedAuth,
            auth: var("ra"),
            ..Default::default()
        }
    );
    assert_eq!(
        config.runs[0].tasks[0].docker_registries_auth["t.io"].username,
        lit("tu")
    );
}

#[test]
fn yaml_anchors_and_merge_keys() {
    let yaml = "runs:\n  - name: r\n    tasks:\n      - &base\n        name: a\n        runtime: &rt {containers: [{image: alpine}]}\n        environment: {X: '1'}\n      - <<: *base\n        name: b\n        runtime: *rt\n";
    let config = parse_ok(yaml);
    let b = &config.runs[0].tasks[1];
    assert_eq!(b.name, "b");
    assert_eq!(b.environment["X"], lit("1"));
    assert_eq!(b.runtime.containers[0].image, "alpine");
}

#[test]
fn version_is_optional() {
    assert_eq!(parse_ok(&one_task("")).version, None);
    let with = format!("version: v0\n{}", one_task(""));
    assert_eq!(parse_ok(&with).version.as_deref(), Some("v0"));
}

#[test]
fn commit_messages_can_skip_ci() {
    assert!(commit_message_skips_ci("fix typo [ci skip]"));
    assert!(commit_message_skips_ci("[ci skip]\n\nbody"));
    assert!(!commit_message_skips_ci("fix ci skip"));
    assert!(!commit_message_skips_ci("[skip ci]"));
}

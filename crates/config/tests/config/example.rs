//! The representative example of spec 60 §8.5, in all four formats.

use std::collections::BTreeMap;

use agola_config::*;

use crate::{fixture, normalize, seq_ids};

fn variables() -> BTreeMap<String, String> {
    [("registry_password", "s3cret"), ("api_token", "tok")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn generate(format: ConfigFormat, ctx: &RefContext) -> Vec<RunConfig> {
    let config = parse_config(format, &fixture(format), ctx)
        .unwrap_or_else(|e| panic!("{format} example must parse: {e}"));
    let setup = RunSetup {
        ctx: ctx.clone(),
        variables: variables(),
        group: "/project/p1/branch/main".into(),
        ..Default::default()
    };
    generate_run_configs_with(&config, &setup, &mut seq_ids())
}

#[test]
fn all_formats_give_the_same_run_config() {
    let ctxs = [
        RefContext::branch("main", "abc"),
        RefContext::branch("release-1", "abc"),
        RefContext::tag("v2", "abc"),
        RefContext::pull_request("12", "refs/pull/12/head", "abc"),
    ];
    for ctx in &ctxs {
        let yaml = generate(ConfigFormat::Yaml, ctx);
        assert_eq!(yaml.len(), 1, "{ctx:?}");
        for format in [
            ConfigFormat::Json,
            ConfigFormat::Jsonnet,
            ConfigFormat::Starlark,
        ] {
            assert_eq!(generate(format, ctx), yaml, "{format} differs for {ctx:?}");
        }
    }
}

#[test]
fn random_ids_compare_equal_once_normalized() {
    let ctx = RefContext::branch("main", "abc");
    let setup = RunSetup {
        ctx: ctx.clone(),
        variables: variables(),
        ..Default::default()
    };
    let mut normalized = Vec::new();
    for format in ConfigFormat::LOOKUP_ORDER {
        let config = parse_config(format, &fixture(format), &ctx).expect("example parses");
        let rcs = generate_run_configs(&config, &setup);
        for t in rcs[0].tasks.values() {
            assert!(uuid_like(&t.id), "{}", t.id);
        }
        normalized.push(normalize(&rcs[0]));
    }
    assert!(normalized.windows(2).all(|w| w[0] == w[1]));
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|&c| c == '-').count() == 4
}

#[test]
fn run_when_decides_which_runs_are_created() {
    let cases = [
        (RefContext::branch("feature", "a"), false),
        (RefContext::branch("release-legacy", "a"), false),
        (RefContext::branch("main", "a"), true),
        (RefContext::branch("release-1", "a"), true),
        (RefContext::tag("v2", "a"), true),
        (RefContext::tag("2.0", "a"), false),
        (
            RefContext::pull_request("12", "refs/pull/12/head", "a"),
            true,
        ),
        (
            RefContext::pull_request("12", "refs/pull/12/merge", "a"),
            false,
        ),
    ];
    for (ctx, created) in cases {
        let runs = generate(ConfigFormat::Yaml, &ctx);
        assert_eq!(runs.len(), usize::from(created), "{ctx:?}");
    }
}

#[test]
fn deploy_is_skipped_off_main() {
    let cases = [
        (RefContext::branch("main", "a"), false),
        (RefContext::branch("release-1", "a"), true),
        (RefContext::tag("v2", "a"), true),
        (RefContext::pull_request("7", "refs/pull/7/head", "a"), true),
    ];
    for (ctx, skipped) in cases {
        let runs = generate(ConfigFormat::Yaml, &ctx);
        let rc = &runs[0];
        assert_eq!(
            rc.task_by_name("deploy").map(|t| t.skip),
            Some(skipped),
            "{ctx:?}"
        );
        for other in ["build", "integration", "report-build-failure"] {
            assert_eq!(rc.task_by_name(other).map(|t| t.skip), Some(false));
        }
    }
}

#[test]
fn generated_tasks_carry_every_field() {
    let runs = generate(ConfigFormat::Yaml, &RefContext::branch("main", "abc"));
    let rc = &runs[0];
    assert_eq!(rc.name, "build-and-ship");
    assert_eq!(rc.group, "/project/p1/branch/main");
    assert!(rc.setup_errors.is_empty());
    let task = |n: &str| rc.task_by_name(n).expect("task exists");
    let (build, integration, report, deploy) = (
        task("build"),
        task("integration"),
        task("report-build-failure"),
        task("deploy"),
    );

    // levels and depends
    assert_eq!(
        [build.level, integration.level, report.level, deploy.level],
        [0, 1, 1, 2]
    );
    assert!(build.depends.is_empty());
    assert_eq!(
        integration.depends[&build.id],
        RunConfigTaskDepend {
            task_id: build.id.clone(),
            conditions: vec![DependCondition::OnSuccess]
        }
    );
    assert_eq!(
        report.depends[&build.id].conditions,
        vec![DependCondition::OnFailure]
    );
    assert_eq!(
        deploy.depends[&integration.id].conditions,
        vec![DependCondition::OnSuccess, DependCondition::OnSkipped]
    );

    // runtime
    assert_eq!(build.runtime.runtime_type, RuntimeType::Pod);
    assert_eq!(build.runtime.arch, Some(Arch::Amd64));
    assert_eq!(build.runtime.containers.len(), 2);
    assert_eq!(build.runtime.containers[0].image, "rust:1.85");
    assert_eq!(
        build.runtime.containers[0].environment["CARGO_TERM_COLOR"],
        "never"
    );
    assert_eq!(
        build.runtime.containers[1].volumes,
        vec![Volume {
            path: "/var/lib/postgresql/data".into(),
            tmpfs: TmpfsVolume {
                size: Some(512 * 1024 * 1024)
            }
        }]
    );
    assert_eq!(integration.runtime.arch, None);
    assert!(integration.runtime.containers[0].privileged);
    assert_eq!(
        integration.runtime.containers[0].entrypoint,
        "dockerd --bip 172.18.0.1/16"
    );

    // defaults, environment and variables
    assert_eq!(build.working_dir, "~/project");
    assert_eq!(build.shell, "/bin/sh -e");
    assert_eq!(build.environment["API_TOKEN"], "tok");
    assert_eq!(build.variable_refs.environment["API_TOKEN"], "api_token");
    let auth = &build.docker_registries_auth["registry.example.com"];
    assert_eq!(auth.auth_type, DockerRegistryAuthType::Basic);
    assert_eq!(
        (auth.username.as_str(), auth.password.as_str()),
        ("ci-bot", "s3cret")
    );
    assert_eq!(
        build.variable_refs.docker_registries_auth["registry.example.com"].password,
        "registry_password"
    );
    // the global registry auth reaches every task
    assert_eq!(deploy.docker_registries_auth.len(), 1);

    // flags
    assert!(integration.ignore_failure && !build.ignore_failure);
    assert!(deploy.needs_approval && deploy.min_approvers == 2);
    assert!(!build.needs_approval && build.min_approvers == 1);

    // steps
    assert_eq!(build.steps.len(), 6);
    let Step::Run(clone) = &build.steps[0] else {
        panic!("clone is a run step")
    };
    assert_eq!(clone.name, CLONE_STEP_NAME);
    assert!(
        clone
            .command
            .contains("git clone --depth 50 \"$AGOLA_REPOSITORY_URL\" .")
    );
    assert_eq!(
        build.steps[1],
        Step::RestoreCache(RestoreCacheStep {
            keys: vec![
                "cargo-{{ sha256sum \"Cargo.lock\" }}".into(),
                "cargo-".into()
            ],
            dest_dir: "~/.cargo/registry".into()
        })
    );
    let Step::Run(cargo_build) = &build.steps[2] else {
        panic!("run step")
    };
    assert_eq!(
        (
            cargo_build.name.as_str(),
            cargo_build.command.as_str(),
            cargo_build.tty
        ),
        ("cargo build --release", "cargo build --release", true)
    );
    let Step::Run(unit) = &build.steps[3] else {
        panic!("run step")
    };
    assert_eq!(
        (unit.name.as_str(), unit.command.as_str(), unit.tty),
        ("unit tests", "cargo test\n", false)
    );
    assert_eq!(
        build.steps[4],
        Step::SaveCache(SaveCacheStep {
            key: "cargo-{{ sha256sum \"Cargo.lock\" }}".into(),
            contents: vec![SaveContent {
                source_dir: "~/.cargo/registry".into(),
                dest_dir: String::new(),
                paths: vec!["**".into()]
            }]
        })
    );
    assert_eq!(
        build.steps[5],
        Step::SaveToWorkspace(SaveToWorkspaceStep {
            contents: vec![SaveContent {
                source_dir: "./target/release".into(),
                dest_dir: "/bin/".into(),
                paths: vec!["app".into()]
            }]
        })
    );
    assert_eq!(
        deploy.steps[0],
        Step::RestoreWorkspace(RestoreWorkspaceStep {
            dest_dir: "/srv".into()
        })
    );
}

#[test]
fn run_config_json_shape_follows_the_model() {
    let runs = generate(ConfigFormat::Yaml, &RefContext::branch("main", "abc"));
    let json = serde_json::to_value(&runs[0]).expect("serializes");
    let build = json["tasks"]
        .as_object()
        .and_then(|t| t.values().find(|t| t["name"] == "build"))
        .expect("build task");
    assert_eq!(build["runtime"]["type"], "pod");
    assert_eq!(build["runtime"]["arch"], "amd64");
    assert_eq!(build["steps"][0]["type"], "run");
    assert_eq!(build["steps"][1]["type"], "restore_cache");
    assert_eq!(build["steps"][5]["type"], "save_to_workspace");
    assert_eq!(
        build["docker_registries_auth"]["registry.example.com"]["type"],
        "basic"
    );
    assert_eq!(build["min_approvers"], 1);
    let deploy = json["tasks"]
        .as_object()
        .and_then(|t| t.values().find(|t| t["name"] == "deploy"))
        .expect("deploy task");
    let dep = deploy["depends"]
        .as_object()
        .and_then(|d| d.values().next())
        .expect("a depend");
    assert_eq!(
        dep["conditions"],
        serde_json::json!(["on_success", "on_skipped"])
    );
    // and back
    let back: RunConfig = serde_json::from_value(json).expect("deserializes");
    assert_eq!(back, runs[0]);
}

#[test]
fn missing_variables_leave_values_unset() {
    let ctx = RefContext::branch("main", "abc");
    let config = parse_config(ConfigFormat::Yaml, &fixture(ConfigFormat::Yaml), &ctx)
        .expect("example parses");
    let setup = RunSetup {
        ctx,
        ..Default::default()
    };
    let rc = &generate_run_configs(&config, &setup)[0];
    let build = rc.task_by_name("build").expect("build");
    assert!(!build.environment.contains_key("API_TOKEN"));
    assert_eq!(build.variable_refs.environment["API_TOKEN"], "api_token");
    let auth = &build.docker_registries_auth["registry.example.com"];
    assert_eq!(
        (auth.username.as_str(), auth.password.as_str()),
        ("ci-bot", "")
    );
}

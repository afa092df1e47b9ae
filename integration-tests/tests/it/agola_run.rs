//! `agola run` end to end, in-process (the same code as the binary): the shipped examples on
//! both drivers, the JSON report, approvals, exit codes, setup errors and variables.

use std::path::{Path, PathBuf};

use agola::run::{DriverChoice, OutputFormat, RunArgs, execute};
use agola_integration_tests::infra;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn args(dir: PathBuf, driver: DriverChoice) -> RunArgs {
    RunArgs {
        dir,
        data_dir: None,
        driver,
        branch: None,
        tag: None,
        git_ref: None,
        vars: vec![],
        var_file: None,
        approve: vec![],
        approve_all: false,
        output: OutputFormat::Json,
        parallelism: None,
        toolbox_path: Some(infra::toolbox_dir()),
    }
}

fn task<'a>(report: &'a serde_json::Value, run: usize, name: &str) -> &'a serde_json::Value {
    &report["runs"][run]["tasks"][name]
}

async fn dag_with_approval(driver: DriverChoice) {
    if driver == DriverChoice::Docker {
        // Fails loudly when the daemon or the image is missing.
        let _ = infra::docker_socket();
        let _ = infra::busybox_image();
    }
    let mut a = args(examples().join("dag"), driver);
    a.approve_all = true;
    let out = execute(a).await.expect("agola run");
    assert_eq!(out.code, 0, "{:#}", out.report);
    let r = &out.report;
    assert_eq!(r["runs"][0]["name"], "dag");
    assert_eq!(r["runs"][0]["phase"], "finished");
    assert_eq!(r["runs"][0]["result"], "success");
    for t in ["build", "test", "lint", "deploy"] {
        assert_eq!(task(r, 0, t)["status"], "success", "{t}: {r:#}");
    }
    assert_eq!(task(r, 0, "notify-failure")["status"], "skipped");
    assert_eq!(task(r, 0, "deploy")["approved"], true);
    let steps = task(r, 0, "build")["steps"].as_array().expect("steps");
    assert_eq!(steps[0]["name"], "clone");
    assert!(steps.iter().all(|s| s["phase"] == "success"), "{steps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dag_example_runs_green_on_the_local_driver() {
    dag_with_approval(DriverChoice::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dag_example_runs_green_on_the_docker_driver() {
    dag_with_approval(DriverChoice::Docker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hello_example_runs_green_on_the_docker_driver() {
    let _ = infra::docker_socket();
    let out = execute(args(examples().join("hello"), DriverChoice::Docker))
        .await
        .expect("agola run");
    assert_eq!(out.code, 0, "{:#}", out.report);
    assert_eq!(task(&out.report, 0, "hello")["status"], "success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unapproved_task_stops_the_run_and_is_reported() {
    let out = execute(args(examples().join("dag"), DriverChoice::Local))
        .await
        .expect("agola run");
    assert_eq!(out.code, 1, "{:#}", out.report);
    let r = &out.report;
    assert_eq!(r["runs"][0]["result"], "stopped");
    assert_eq!(r["runs"][0]["stopped_waiting_approval"][0], "deploy");
    assert_eq!(task(r, 0, "test")["status"], "success");
    assert_eq!(task(r, 0, "deploy")["approved"], false);
}

fn repo(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join(".agola")).expect("mkdir");
    std::fs::write(dir.path().join(".agola/config.yml"), config).expect("write");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_error_is_a_setup_error_with_exit_code_2() {
    let dir = repo(
        "version: v0\nruns:\n  - name: broken\n    tasks:\n      - name: t\n        steps: [ { run: true } ]\n",
    );
    let out = execute(args(dir.path().to_owned(), DriverChoice::Local))
        .await
        .expect("agola run");
    assert_eq!(out.code, 2, "{:#}", out.report);
    let run = &out.report["runs"][0];
    assert_eq!(run["phase"], "setuperror");
    let errors = run["setup_errors"].as_array().expect("errors");
    assert!(!errors.is_empty());
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap_or("").contains("runtime")),
        "the error names what is wrong: {errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_failures_and_when_conditions() {
    let dir = repo(
        r#"version: v0
runs:
  - name: vars
    tasks:
      - name: greet
        runtime: { containers: [ { image: busybox } ] }
        environment: { WHO: { from_variable: who } }
        steps: [ { run: 'test "$WHO" = world' } ]
      - name: fails
        runtime: { containers: [ { image: busybox } ] }
        steps: [ { run: 'exit 7' }, { run: 'true' } ]
  - name: only-on-tags
    when: { tag: '#.*#' }
    tasks:
      - name: t
        runtime: { containers: [ { image: busybox } ] }
        steps: [ { run: 'true' } ]
"#,
    );
    let mut a = args(dir.path().to_owned(), DriverChoice::Local);
    a.vars = vec!["who=world".into()];
    let out = execute(a).await.expect("agola run");
    let r = &out.report;
    assert_eq!(out.code, 1, "{r:#}");
    assert_eq!(
        r["runs"].as_array().map(Vec::len),
        Some(1),
        "the tag-only run is not created"
    );
    assert_eq!(task(r, 0, "greet")["status"], "success", "{r:#}");
    assert_eq!(task(r, 0, "fails")["status"], "failed");
    assert_eq!(task(r, 0, "fails")["steps"][0]["exit_status"], 7);
    assert_eq!(task(r, 0, "fails")["steps"][1]["phase"], "notstarted");
}

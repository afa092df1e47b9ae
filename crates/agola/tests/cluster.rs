//! A distributed cluster on real etcd and S3: two runservice instances as separate `agola
//! serve` processes (one also runs the scheduler) sharing one KV prefix and one bucket, and
//! two executors (local driver) that know both runservices, one connected to each. A DAG
//! runs with every task executed exactly once; the runservice instance without the
//! scheduler is killed with SIGKILL mid-run, and the run still finishes with success (the
//! executor connected to it fails over to the other instance and re-reports its tasks).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use agola_common::poll::wait_until;

use agola_common::Shutdown;
use agola_proto::common::v1 as pbc;
use agola_proto::runservice::v1 as pb;
use agola_proto::runservice::v1::run_service_client::RunServiceClient;

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the suite with scripts/test.sh (it starts etcd, an S3 server and dockerd)")
    })
}

/// An `agola serve` child process, killed on drop.
struct Serve {
    child: Child,
    runservice_url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Starts `agola serve --components <components>` and waits for its runservice listener.
fn serve(config: &Path, components: &str) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agola"))
        .args(["serve", "--components", components, "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn agola serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let line = strip_ansi(&line);
            if line.contains("listening")
                && line.contains("component=\"runservice\"")
                && let Some(addr) = line.split("addr=").nth(1)
            {
                let _ = tx.send(addr.trim().to_owned());
            }
            // Keep draining so the child never blocks on a full pipe.
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("agola serve did not report its runservice listener");
    Serve {
        child,
        runservice_url: format!("http://{addr}"),
    }
}

fn write_config(dir: &Path, name: &str, prefix: &str, bucket: &str) -> std::path::PathBuf {
    let etcd: Vec<String> = required("AGOLA_TEST_ETCD_ENDPOINTS")
        .split(',')
        .map(|e| format!("\"{e}\""))
        .collect();
    let config = format!(
        r#"id: cluster
dataDir: {data}
kv:
  type: etcd
  endpoints: [{etcd}]
  prefix: "{prefix}/"
objectStorage:
  type: s3
  endpoint: "{s3}"
  bucket: "{bucket}"
  accessKey: "{ak}"
  secretAccessKey: "{sk}"
runservice:
  listenAddress: 127.0.0.1:0
  scheduleIntervalMs: 200
  executorDeadTimeoutSecs: 60
scheduler:
  listenAddress: 127.0.0.1:0
  intervalMs: 200
"#,
        data = dir.join(name).display(),
        etcd = etcd.join(", "),
        s3 = required("AGOLA_TEST_S3_ENDPOINT"),
        ak = required("AGOLA_TEST_S3_ACCESS_KEY"),
        sk = required("AGOLA_TEST_S3_SECRET_KEY"),
    );
    let path = dir.join(format!("{name}.yml"));
    std::fs::write(&path, config).expect("write config");
    path
}

fn task(name: &str, parents: &[&str], marks: &Path) -> pbc::RunConfigTask {
    let command = format!("echo ran >> {}/{name}; sleep 1", marks.display());
    pbc::RunConfigTask {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_owned(),
        runtime: Some(pbc::Runtime {
            r#type: pbc::RuntimeType::Pod as i32,
            arch: pbc::Arch::Unspecified as i32,
            containers: vec![pbc::Container {
                image: "busybox".into(),
                ..Default::default()
            }],
        }),
        working_dir: "~/project".into(),
        steps: vec![pbc::Step {
            step: Some(pbc::step::Step::Run(pbc::RunStep {
                name: "mark".into(),
                command,
                tty: Some(false),
                ..Default::default()
            })),
        }],
        min_approvers: 1,
        depends: parents
            .iter()
            .map(|p| {
                (
                    (*p).to_owned(),
                    pbc::RunConfigTaskDepend {
                        task_id: (*p).to_owned(),
                        conditions: vec![],
                    },
                )
            })
            .collect(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dag_survives_the_kill_of_one_runservice_instance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("cluster-{unique}");
    let bucket = format!("cluster-{}", &unique[..12]);
    // B (scheduler + runservice) first: it initializes the shared datamanager.
    let b = serve(
        &write_config(dir.path(), "b", &prefix, &bucket),
        "runservice,scheduler",
    );
    let a = serve(
        &write_config(dir.path(), "a", &prefix, &bucket),
        "runservice",
    );
    // e1's stream goes to A first, e2's to B first; both fail over to the other instance.
    let a_first = format!("{},{}", a.runservice_url, b.runservice_url);
    let b_first = format!("{},{}", b.runservice_url, a.runservice_url);

    // Two executors that know both runservice instances.
    let marks = dir.path().join("marks");
    std::fs::create_dir_all(&marks).expect("marks dir");
    let mut executors = Vec::new();
    for (name, urls) in [("e1", &a_first), ("e2", &b_first)] {
        let config = agola_executor::Config {
            data_dir: Some(dir.path().join(name)),
            runservice_url: urls.clone(),
            toolbox_path: Some(required("AGOLA_TEST_TOOLBOX_DIR").into()),
            driver: agola_executor::config::DriverConfig {
                kind: agola_executor::DriverType::Local,
                ..Default::default()
            },
            active_tasks_limit: 2,
            ..Default::default()
        };
        let (stop, shutdown) = Shutdown::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let handle = tokio::spawn(agola_executor::serve(config, listener, shutdown));
        executors.push((stop, handle));
    }

    let channel = agola_common::grpc::connect(&b.runservice_url, None).expect("channel");
    let mut api = RunServiceClient::new(channel);
    // Both executors registered.
    wait_until("both executors registered", Duration::from_secs(60), || {
        let mut api = api.clone();
        async move {
            let n = api
                .list_executors(pb::ListExecutorsRequest {})
                .await
                .map(|r| r.into_inner().executors.len())
                .unwrap_or(0);
            (n == 2).then_some(())
        }
    })
    .await
    .expect("executors");

    // a -> (b, c, d) -> e -> f
    let ta = task("a", &[], &marks);
    let tb = task("b", &[&ta.id], &marks);
    let tc = task("c", &[&ta.id], &marks);
    let td = task("d", &[&ta.id], &marks);
    let te = task("e", &[&tb.id, &tc.id, &td.id], &marks);
    let tf = task("f", &[&te.id], &marks);
    let tasks = vec![ta, tb, tc, td, te, tf];
    let run = api
        .create_run(pb::CreateRunRequest {
            run_config_tasks: tasks.clone(),
            name: "cluster".into(),
            group: format!("/project/{unique}/branch/main"),
            ..Default::default()
        })
        .await
        .expect("create run")
        .into_inner()
        .run
        .expect("run");

    // Kill runservice A once the middle level runs.
    let get = |api: &mut RunServiceClient<_>| {
        let id = run.id.clone();
        let mut api = api.clone();
        async move {
            api.get_run(pb::GetRunRequest {
                run_id: id,
                change_groups: vec![],
            })
            .await
            .ok()
            .and_then(|r| r.into_inner().run)
        }
    };
    wait_until("the middle level running", Duration::from_secs(60), || {
        let r = get(&mut api.clone());
        let root = tasks[0].id.clone();
        async move {
            let r = r.await?;
            let running = r
                .tasks
                .values()
                .any(|t| t.status == pbc::RunTaskStatus::Running as i32);
            (running && r.tasks[&root].status == pbc::RunTaskStatus::Success as i32).then_some(())
        }
    })
    .await
    .expect("the middle level ran");
    drop(a); // SIGKILL

    let finished = wait_until(
        "the run finished after the kill",
        Duration::from_secs(120),
        || {
            let r = get(&mut api.clone());
            async move {
                r.await
                    .filter(|r| r.phase == pbc::RunPhase::Finished as i32)
            }
        },
    )
    .await
    .expect("finished");
    assert_eq!(
        finished.result,
        pbc::RunResult::Success as i32,
        "{finished:?}"
    );
    for t in &tasks {
        let ran = std::fs::read_to_string(marks.join(&t.name)).unwrap_or_default();
        assert_eq!(
            ran.lines().count(),
            1,
            "task {} ran {} times",
            t.name,
            ran.lines().count()
        );
    }
    for (stop, handle) in executors {
        stop.trigger();
        let _ = handle.await;
    }
    drop(b);
}

//! The docker driver against the real dockerd that `scripts/test.sh` (or
//! `scripts/dev-infra.sh`) starts, with the local busybox image and the static toolbox it
//! builds. Every test uses fresh random executor ids, so the tests run in parallel on one
//! daemon; each removes its pods, and a drop guard removes whatever a failed test left behind.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use agola_executor::driver::docker::{DockerDriver, DockerDriverConfig, PullPolicy};
use agola_executor::driver::{
    Arch, ContainerConfig, Driver, ExecConfig, Pod, PodConfig, TOOLBOX_BIN, TOOLBOX_DIR,
    TmpfsVolume,
};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder,
};
use tokio::io::{AsyncWrite, AsyncWriteExt};

fn required(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: run the tests through scripts/test.sh, or start dockerd with \
             `eval \"$(scripts/dev-infra.sh)\"` first"
        )
    })
}

fn socket() -> String {
    required("AGOLA_TEST_DOCKER_SOCKET")
}

fn busybox() -> String {
    required("AGOLA_TEST_BUSYBOX_IMAGE")
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A clonable in-memory sink for exec output and setup logs.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Buf {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("buf lock")).into_owned()
    }
}

impl AsyncWrite for Buf {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.lock().expect("buf lock").extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// One test's drivers; removes every docker object of its executors when dropped.
struct TestEnv {
    executor_ids: Mutex<Vec<String>>,
    docker: bollard::Docker,
}

impl TestEnv {
    async fn new() -> TestEnv {
        let docker =
            bollard::Docker::connect_with_unix(&socket(), 120, bollard::API_DEFAULT_VERSION)
                .expect("docker client")
                .negotiate_version()
                .await
                .expect("negotiate docker api version");
        TestEnv {
            executor_ids: Mutex::new(Vec::new()),
            docker,
        }
    }

    fn config(&self, pull_policy: PullPolicy) -> DockerDriverConfig {
        let executor_id = new_id();
        self.executor_ids
            .lock()
            .expect("ids lock")
            .push(executor_id.clone());
        DockerDriverConfig {
            executor_id,
            toolbox_dir: required("AGOLA_TEST_TOOLBOX_DIR").into(),
            init_image: busybox(),
            pull_policy,
            socket: Some(socket()),
        }
    }

    /// A driver with a fresh executor id, set up.
    async fn driver_with(&self, config: DockerDriverConfig) -> DockerDriver {
        let driver = DockerDriver::new(config).await.expect("connect the driver");
        driver.setup().await.expect("driver setup");
        driver
    }

    async fn driver(&self) -> DockerDriver {
        self.driver_with(self.config(PullPolicy::IfNotPresent))
            .await
    }

    /// The containers (including init containers) and volumes docker holds for an executor.
    async fn leftovers(&self, executor_id: &str) -> (Vec<String>, Vec<String>) {
        leftovers(&self.docker, executor_id).await
    }

    /// The id of a pod's container with the given index.
    async fn container_id(&self, pod_id: &str, index: usize) -> String {
        let filters = HashMap::from([(
            "label",
            vec![
                format!("agola.io/podid={pod_id}"),
                format!("agola.io/containerindex={index}"),
            ],
        )]);
        self.docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .expect("list containers")
            .into_iter()
            .find_map(|c| c.id)
            .expect("the pod container exists")
    }

    async fn force_remove(&self, container_id: &str) {
        self.docker
            .remove_container(
                container_id,
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await
            .expect("remove container");
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let ids = std::mem::take(&mut *self.executor_ids.lock().unwrap_or_else(|e| e.into_inner()));
        if ids.is_empty() {
            return;
        }
        let docker = self.docker.clone();
        // Drop cannot await: clean up on a thread with its own runtime
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            rt.block_on(remove_everything_of(&docker, &ids));
        });
        let _ = cleanup.join();
    }
}

/// Removes every container and volume labelled with one of the executor ids.
async fn remove_everything_of(docker: &bollard::Docker, executor_ids: &[String]) {
    for id in executor_ids {
        let (containers, volumes) = leftovers(docker, id).await;
        for c in containers {
            let _ = docker
                .remove_container(
                    &c,
                    Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                )
                .await;
        }
        for v in volumes {
            let _ = docker
                .remove_volume(&v, None::<bollard::query_parameters::RemoveVolumeOptions>)
                .await;
        }
    }
}

/// The containers (including init containers) and volumes docker holds for an executor.
async fn leftovers(docker: &bollard::Docker, executor_id: &str) -> (Vec<String>, Vec<String>) {
    let filters = HashMap::from([("label", vec![format!("agola.io/executorid={executor_id}")])]);
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .expect("list containers")
        .into_iter()
        .filter_map(|c| c.id)
        .collect();
    let volumes = docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .expect("list volumes")
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.name)
        .collect();
    (containers, volumes)
}

fn main_container() -> ContainerConfig {
    ContainerConfig {
        image: busybox(),
        cmd: vec![TOOLBOX_BIN.to_string(), "sleeper".to_string()],
        ..Default::default()
    }
}

fn pod_config(containers: Vec<ContainerConfig>) -> PodConfig {
    PodConfig {
        id: new_id(),
        task_id: new_id(),
        containers,
        arch: Arch::host().expect("a known host arch"),
        init_volume_dir: TOOLBOX_DIR.to_string(),
        docker_registries_auth: BTreeMap::new(),
    }
}

async fn new_pod(driver: &DockerDriver, config: PodConfig) -> (Box<dyn Pod>, String) {
    let mut log = Buf::default();
    let pod = driver
        .new_pod(config, &mut log)
        .await
        .unwrap_or_else(|e| panic!("new pod: {e}\nsetup log:\n{}", log.text()));
    (pod, log.text())
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

fn exec_config(cmd: &[&str]) -> (ExecConfig, Buf, Buf) {
    let (stdout, stderr) = (Buf::default(), Buf::default());
    let config = ExecConfig {
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::new(),
        working_dir: String::new(),
        user: String::new(),
        attach_stdin: false,
        stdout: Box::new(stdout.clone()),
        stderr: Some(Box::new(stderr.clone())),
        tty: false,
    };
    (config, stdout, stderr)
}

async fn run_config(pod: &dyn Pod, config: ExecConfig, stdout: Buf, stderr: Buf) -> Output {
    let exec = pod.exec(config).await.expect("start exec");
    let code = tokio::time::timeout(Duration::from_secs(60), exec.wait())
        .await
        .expect("exec ends within a minute")
        .expect("exec exit code");
    Output {
        code,
        stdout: stdout.text(),
        stderr: stderr.text(),
    }
}

/// Runs a command in container 0 with separate stdout and stderr, no stdin, no tty.
async fn run(pod: &dyn Pod, cmd: &[&str]) -> Output {
    let (config, stdout, stderr) = exec_config(cmd);
    run_config(pod, config, stdout, stderr).await
}

/// Polls `check` until it returns true; panics naming `what` after `timeout`.
async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let polled = agola_common::poll::wait_until(what, timeout, || {
        let fut = check();
        async move { fut.await.then_some(()) }
    })
    .await;
    if let Err(e) = polled {
        panic!("{e}");
    }
}

#[tokio::test]
async fn one_container_pod_runs_commands_through_the_toolbox() {
    let env = TestEnv::new().await;
    let driver = env.driver().await;
    let config = pod_config(vec![main_container()]);
    let (pod_id, task_id) = (config.id.clone(), config.task_id.clone());
    let (pod, log) = new_pod(&driver, config).await;
    assert!(log.contains("creating container 0"), "setup log: {log}");
    assert!(log.contains("using local image"), "setup log: {log}");
    assert_eq!(pod.id(), pod_id);
    assert_eq!(pod.task_id(), task_id);

    // the toolbox is executable and its volume read-only
    let out = run(pod.as_ref(), &["test", "-x", TOOLBOX_BIN]).await;
    assert_eq!(out.code, 0, "toolbox not executable: {}", out.stderr);
    let out = run(pod.as_ref(), &["touch", "/mnt/agola/x"]).await;
    assert_ne!(out.code, 0, "the toolbox volume is writable");

    // env and working dir through the toolbox, as the executor runs every step
    let out = run(
        pod.as_ref(),
        &[
            TOOLBOX_BIN,
            "exec",
            "-e",
            r#"{"A":"b"}"#,
            "-w",
            "/tmp",
            "--",
            "sh",
            "-c",
            "echo $A; pwd",
        ],
    )
    .await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "b\n/tmp\n"),
        "stderr: {}",
        out.stderr
    );

    // env, working dir and user of the docker exec itself
    let (mut config, stdout, stderr) = exec_config(&["sh", "-c", "echo $X; pwd; id -u"]);
    config.env = BTreeMap::from([("X".to_string(), "y z".to_string())]);
    config.working_dir = "/etc".to_string();
    config.user = "1234".to_string();
    let out = run_config(pod.as_ref(), config, stdout, stderr).await;
    assert_eq!(out.stdout, "y z\n/etc\n1234\n", "stderr: {}", out.stderr);

    // exit codes
    let out = run(pod.as_ref(), &["sh", "-c", "exit 3"]).await;
    assert_eq!(out.code, 3);
    let out = run(pod.as_ref(), &["/no/such/command"]).await;
    assert_ne!(out.code, 0);
    let out = run(pod.as_ref(), &["sh", "-c", "kill -9 $$"]).await;
    assert_eq!(out.code, 128 + 9, "a killed exec reports 128 + the signal");

    // stdout and stderr apart, or both to stdout without a stderr sink
    let out = run(pod.as_ref(), &["sh", "-c", "echo out; echo err >&2"]).await;
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("out\n", "err\n")
    );
    let (mut config, stdout, stderr) = exec_config(&["sh", "-c", "echo out; echo err >&2"]);
    config.stderr = None;
    let out = run_config(pod.as_ref(), config, stdout, stderr).await;
    assert!(
        out.stdout.contains("out\n") && out.stdout.contains("err\n"),
        "stdout: {}",
        out.stdout
    );

    // a tty
    let (mut config, stdout, stderr) = exec_config(&["tty"]);
    config.tty = true;
    let out = run_config(pod.as_ref(), config, stdout, stderr).await;
    assert!(out.stdout.starts_with("/dev/pts/"), "tty: {}", out.stdout);

    let pods = driver.get_pods(false).await.expect("get pods");
    let listed: Vec<(&str, &str, &str)> = pods
        .iter()
        .map(|p| (p.id(), p.task_id(), p.executor_id()))
        .collect();
    let executor_id = driver.executor_group().await.expect("group");
    assert_eq!(
        listed,
        vec![(pod_id.as_str(), task_id.as_str(), executor_id.as_str())]
    );

    pod.remove().await.expect("remove pod");
    assert!(driver.get_pods(false).await.expect("get pods").is_empty());
    assert_eq!(env.leftovers(&executor_id).await, (vec![], vec![]));
}

#[tokio::test]
async fn stdin_is_piped_to_the_command() {
    let env = TestEnv::new().await;
    let driver = env.driver().await;
    let (pod, _) = new_pod(&driver, pod_config(vec![main_container()])).await;

    // closed with shutdown
    let (mut config, stdout, _) = exec_config(&["cat"]);
    config.attach_stdin = true;
    let mut exec = pod.exec(config).await.expect("start exec");
    let mut stdin = exec.take_stdin().expect("stdin attached");
    assert!(exec.take_stdin().is_none(), "stdin is handed out once");
    stdin
        .write_all(b"hello\nworld\n")
        .await
        .expect("write stdin");
    stdin.shutdown().await.expect("close stdin");
    let code = tokio::time::timeout(Duration::from_secs(60), exec.wait())
        .await
        .expect("cat ends once stdin is closed")
        .expect("exit code");
    assert_eq!((code, stdout.text().as_str()), (0, "hello\nworld\n"));

    // dropped without shutdown: still EOF for the command
    let (mut config, stdout, _) = exec_config(&["wc", "-c"]);
    config.attach_stdin = true;
    let mut exec = pod.exec(config).await.expect("start exec");
    let mut stdin = exec.take_stdin().expect("stdin attached");
    let data = vec![b'x'; 300_000];
    stdin.write_all(&data).await.expect("write stdin");
    stdin.flush().await.expect("flush stdin");
    drop(stdin);
    let code = tokio::time::timeout(Duration::from_secs(60), exec.wait())
        .await
        .expect("wc ends once stdin is dropped")
        .expect("exit code");
    assert_eq!((code, stdout.text().trim()), (0, "300000"));

    // attached but never taken: wait closes it
    let (mut config, stdout, _) = exec_config(&["cat"]);
    config.attach_stdin = true;
    let exec = pod.exec(config).await.expect("start exec");
    let code = tokio::time::timeout(Duration::from_secs(60), exec.wait())
        .await
        .expect("cat ends when its untaken stdin is closed")
        .expect("exit code");
    assert_eq!((code, stdout.text().as_str()), (0, ""));

    pod.remove().await.expect("remove pod");
}

#[tokio::test]
async fn service_containers_share_the_main_container_network() {
    let env = TestEnv::new().await;
    let driver = env.driver().await;
    let service = ContainerConfig {
        image: busybox(),
        cmd: vec![
            "sh".to_string(),
            "-c".to_string(),
            "echo hi | nc -l -p 8080".to_string(),
        ],
        ..Default::default()
    };
    let (pod, log) = new_pod(&driver, pod_config(vec![main_container(), service])).await;
    assert!(log.contains("creating container 1"), "setup log: {log}");

    // the listener starts on its own schedule: retry until it answers on localhost
    let pod = pod.as_ref();
    wait_until(
        "the service answering on localhost:8080",
        Duration::from_secs(30),
        || async {
            let out = run(pod, &["sh", "-c", "nc 127.0.0.1 8080 </dev/null"]).await;
            out.code == 0 && out.stdout == "hi\n"
        },
    )
    .await;
    pod.remove().await.expect("remove pod");
}

#[tokio::test]
async fn get_pods_drops_a_pod_whose_main_container_was_removed() {
    let env = TestEnv::new().await;
    let driver = env.driver().await;
    let two = || {
        let mut service = main_container();
        service.cmd = vec!["sleep".to_string(), "600".to_string()];
        vec![main_container(), service]
    };
    let headless = pod_config(two());
    let headless_id = headless.id.clone();
    let (headless_pod, _) = new_pod(&driver, headless).await;
    let tailless = pod_config(two());
    let tailless_id = tailless.id.clone();
    let (tailless_pod, _) = new_pod(&driver, tailless).await;

    let mut ids: Vec<String> = driver
        .get_pods(false)
        .await
        .expect("get pods")
        .iter()
        .map(|p| p.id().to_string())
        .collect();
    ids.sort();
    let mut both = vec![headless_id.clone(), tailless_id.clone()];
    both.sort();
    assert_eq!(ids, both);

    env.force_remove(&env.container_id(&headless_id, 0).await)
        .await;
    env.force_remove(&env.container_id(&tailless_id, 1).await)
        .await;

    // without container 0 the pod is gone (spec 30 §6.1); a pod missing a service container
    // is still listed, so the pods cleaner can remove it
    let pods = driver.get_pods(false).await.expect("get pods");
    let ids: Vec<&str> = pods.iter().map(|p| p.id()).collect();
    assert_eq!(ids, vec![tailless_id.as_str()]);
    for pod in &pods {
        pod.remove().await.expect("remove listed pod");
    }
    assert!(driver.get_pods(false).await.expect("get pods").is_empty());

    // the headless pod can still be removed through the handle new_pod returned
    headless_pod.remove().await.expect("remove headless pod");
    tailless_pod
        .remove()
        .await
        .expect("remove tailless pod again");
    let executor_id = driver.executor_group().await.expect("group");
    assert_eq!(env.leftovers(&executor_id).await, (vec![], vec![]));
}

#[tokio::test]
async fn tmpfs_volumes_carry_their_sizes() {
    let env = TestEnv::new().await;
    let driver = env.driver().await;
    let mut main = main_container();
    main.volumes = vec![
        TmpfsVolume {
            path: "/tmp/sized".to_string(),
            size: Some(1024 * 1024),
        },
        TmpfsVolume {
            path: "/tmp/unsized".to_string(),
            size: None,
        },
    ];
    let (pod, _) = new_pod(&driver, pod_config(vec![main])).await;

    let mounts = run(pod.as_ref(), &["cat", "/proc/mounts"]).await.stdout;
    let mount = |path: &str| {
        mounts
            .lines()
            .find(|l| l.split(' ').nth(1) == Some(path))
            .unwrap_or_else(|| panic!("{path} not mounted: {mounts}"))
            .to_string()
    };
    let sized = mount("/tmp/sized");
    assert!(sized.starts_with("tmpfs "), "{sized}");
    assert!(sized.contains("size=1024k"), "{sized}");
    assert!(mount("/tmp/unsized").starts_with("tmpfs "));

    let df = run(pod.as_ref(), &["df", "-k", "/tmp/sized"]).await.stdout;
    let total = df
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_string();
    assert_eq!(total, "1024", "df: {df}");

    pod.remove().await.expect("remove pod");
}

#[tokio::test]
async fn pods_of_other_executors_are_listed_only_with_all() {
    let env = TestEnv::new().await;
    let mine = env.driver().await;
    let other = env.driver().await;
    let (my_pod, _) = new_pod(&mine, pod_config(vec![main_container()])).await;
    let (other_pod, _) = new_pod(&other, pod_config(vec![main_container()])).await;

    let own: Vec<String> = mine
        .get_pods(false)
        .await
        .expect("get pods")
        .iter()
        .map(|p| p.id().to_string())
        .collect();
    assert_eq!(own, vec![my_pod.id().to_string()]);

    // other tests run pods on the same daemon: look only at these two
    let other_executor = other.executor_group().await.expect("group");
    let all = mine.get_pods(true).await.expect("get all pods");
    let seen: Vec<(&str, &str)> = all
        .iter()
        .filter(|p| p.id() == my_pod.id() || p.id() == other_pod.id())
        .map(|p| (p.id(), p.executor_id()))
        .collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.contains(&(other_pod.id(), other_executor.as_str())));

    my_pod.remove().await.expect("remove pod");
    other_pod.remove().await.expect("remove pod");
}

#[tokio::test]
async fn stop_ends_a_running_exec() {
    let env = TestEnv::new().await;
    let driver = env.driver().await;
    let (pod, _) = new_pod(&driver, pod_config(vec![main_container()])).await;

    // a sleep the shell waits for, so the exec is surely running when the pod stops
    let (config, stdout, _) = exec_config(&["sh", "-c", "echo started; sleep 600 & wait"]);
    let exec = pod.exec(config).await.expect("start exec");
    wait_until("the exec to run", Duration::from_secs(30), || {
        let stdout = stdout.clone();
        async move { stdout.text().contains("started") }
    })
    .await;
    let waiter = tokio::spawn(exec.wait());
    pod.stop().await.expect("stop pod");
    let ended = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("wait returns once the pod is stopped")
        .expect("wait task");
    // killed with the container: 128 + the signal
    assert!(matches!(ended, Ok(code) if code > 128), "{ended:?}");

    pod.stop().await.expect("stopping again is fine");
    pod.remove().await.expect("remove pod");
}

#[tokio::test]
async fn remove_is_idempotent() {
    let env = TestEnv::new().await;
    let driver = env.driver().await;
    let (pod, _) = new_pod(&driver, pod_config(vec![main_container()])).await;
    let listed = driver.get_pods(false).await.expect("get pods");
    assert_eq!(listed.len(), 1);

    pod.remove().await.expect("remove pod");
    pod.remove().await.expect("remove again");
    listed[0]
        .remove()
        .await
        .expect("remove through a listed handle");
    pod.stop().await.expect("stop a removed pod");
    let executor_id = driver.executor_group().await.expect("group");
    assert_eq!(env.leftovers(&executor_id).await, (vec![], vec![]));
}

#[tokio::test]
async fn a_failed_pod_creation_leaves_nothing_behind() {
    let env = TestEnv::new().await;
    let driver = env.driver().await;
    let executor_id = driver.executor_group().await.expect("group");

    // container 1 cannot start: container 0, the volume and the init container already exist
    let broken = ContainerConfig {
        image: busybox(),
        cmd: vec!["/no/such/entrypoint".to_string()],
        ..Default::default()
    };
    let mut log = Buf::default();
    let err = match driver
        .new_pod(pod_config(vec![main_container(), broken]), &mut log)
        .await
    {
        Ok(_) => panic!("a pod with a broken container was created"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("start container 1"), "{err}");
    assert!(
        log.text().contains("creating container 1"),
        "{}",
        log.text()
    );
    assert_eq!(env.leftovers(&executor_id).await, (vec![], vec![]));
    assert!(driver.get_pods(false).await.expect("get pods").is_empty());
}

#[tokio::test]
async fn always_pulls_task_images() {
    let env = TestEnv::new().await;
    let driver = env.driver_with(env.config(PullPolicy::Always)).await;
    let executor_id = driver.executor_group().await.expect("group");

    // no registry answers here, so Always must fail even for an image present locally: a cached
    // private image is usable only with the registry's consent
    let mut log = Buf::default();
    let result = driver
        .new_pod(pod_config(vec![main_container()]), &mut log)
        .await;
    let Err(err) = result else {
        panic!("Always used the local image without pulling");
    };
    assert!(err.to_string().contains("pull image"), "{err}");
    assert!(
        log.text().contains(&format!("pulling image {}", busybox())),
        "{}",
        log.text()
    );

    let mut main = main_container();
    main.image = "127.0.0.1:1/agola/nope:1".to_string();
    let mut config = pod_config(vec![main]);
    config.docker_registries_auth = BTreeMap::from([(
        "127.0.0.1:1".to_string(),
        agola_executor::driver::RegistryAuth {
            username: "u".to_string(),
            password: "p".to_string(),
        },
    )]);
    let result = driver.new_pod(config, &mut Buf::default()).await;
    assert!(result.is_err(), "pulled from a closed port");
    assert_eq!(env.leftovers(&executor_id).await, (vec![], vec![]));
}

#[tokio::test]
async fn setup_uses_a_local_init_image_and_rejects_a_missing_one() {
    let env = TestEnv::new().await;
    // `latest` is pulled to follow it; with no registry the local image is kept
    let driver = env.driver().await;
    assert_eq!(
        driver.archs().await.expect("archs"),
        vec![Arch::host().expect("host arch")]
    );
    let id = driver.executor_group().await.expect("group");
    assert_eq!(driver.get_executors().await.expect("executors"), vec![id]);
    assert!(!driver.dynamic());

    let mut config = env.config(PullPolicy::IfNotPresent);
    config.init_image = format!("local/agola-missing-{}:1", new_id());
    let driver = DockerDriver::new(config).await.expect("connect");
    assert!(
        driver.setup().await.is_err(),
        "setup accepted a missing init image"
    );
}

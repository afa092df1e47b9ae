//! Docker driver (spec 30 §6.1), on bollard.
//!
//! A pod is one docker container per task container, all labelled `agola.io/*` so that several
//! executors can share one daemon (each lists only its own `agola.io/executorid`). Container 0
//! mounts a per-pod **toolbox volume** read-only at the init volume dir (`/mnt/agola`); the
//! volume is filled through a throw-away init container that is created, never started, and
//! removed. The other containers join container 0's network namespace, so they reach each other
//! on localhost. Every docker object a pod owns carries the pod's labels, so a pod can be found
//! and removed from the labels alone after an executor restart.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, ContainerSummary, HostConfig, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateImageOptionsBuilder, ListContainersOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures::StreamExt;
use serde::Deserialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::{
    Arch, ContainerConfig, ContainerExec, Driver, DriverError, DriverResult, ExecConfig, Pod,
    PodConfig, RegistryAuth, TOOLBOX_DIR, toolbox_binary,
};

const LABEL_AGOLA: &str = "agola.io/agola";
const LABEL_EXECUTOR_ID: &str = "agola.io/executorid";
const LABEL_POD_ID: &str = "agola.io/podid";
const LABEL_TASK_ID: &str = "agola.io/taskid";
const LABEL_CONTAINER_INDEX: &str = "agola.io/containerindex";
/// Marks a pod's init container. It deliberately lacks `agola.io/agola`, so `get_pods` never
/// mistakes it for a pod container; it lives only while `new_pod` fills the toolbox volume.
const LABEL_INIT: &str = "agola.io/init";

/// Name of the toolbox inside the toolbox volume ([`super::TOOLBOX_BIN`] in container 0).
const TOOLBOX_FILE: &str = "agola-toolbox";
/// Grace period of `stop` before docker kills a container: the toolbox sleeper exits at once on
/// SIGTERM, and a stopped pod is about to be removed, so service containers get no long shutdown.
const STOP_TIMEOUT_SECS: i32 = 2;
/// Timeout of one docker API request until its response headers (bollard's default).
const REQUEST_TIMEOUT_SECS: u64 = 120;
/// How often `wait` asks docker whether an exec whose output already ended has exited, and for
/// how long: docker records the exit code just after it closes the output stream.
const EXEC_EXIT_POLL: Duration = Duration::from_millis(50);
const EXEC_EXIT_DEADLINE: Duration = Duration::from_secs(30);

/// When task images are pulled (spec 30 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Pull every time with the registry's credentials, so a private image cached on the host is
    /// usable only by tasks that have credentials for it (`agola serve`).
    #[default]
    Always,
    /// Use a local image when present, pull otherwise (`agola run`, hosts without a registry).
    IfNotPresent,
}

/// Configuration of the docker driver.
#[derive(Debug, Clone)]
pub struct DockerDriverConfig {
    /// This executor's id, put on every pod container (`agola.io/executorid`).
    pub executor_id: String,
    /// Directory holding `agola-toolbox-linux-<arch>`.
    pub toolbox_dir: PathBuf,
    /// Image of the throw-away container that fills each pod's toolbox volume.
    pub init_image: String,
    pub pull_policy: PullPolicy,
    /// Path of the daemon's unix socket; None = bollard's local default (`DOCKER_HOST` when it
    /// is a `unix://` address, else `/var/run/docker.sock`).
    pub socket: Option<String>,
}

/// The docker driver.
pub struct DockerDriver {
    docker: Docker,
    config: DockerDriverConfig,
}

impl std::fmt::Debug for DockerDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerDriver")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl DockerDriver {
    /// Connects to the daemon and negotiates the API version (Debian's docker.io speaks 1.41,
    /// older than bollard's default).
    pub async fn new(config: DockerDriverConfig) -> DriverResult<DockerDriver> {
        let docker = match &config.socket {
            Some(socket) => Docker::connect_with_unix(
                socket,
                REQUEST_TIMEOUT_SECS,
                bollard::API_DEFAULT_VERSION,
            ),
            None => Docker::connect_with_local_defaults(),
        }
        .map_err(engine("connect to docker"))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(engine("negotiate the docker api version"))?;
        Ok(DockerDriver { docker, config })
    }

    fn labels(&self, config: &PodConfig) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_AGOLA.to_string(), "true".to_string()),
            (
                LABEL_EXECUTOR_ID.to_string(),
                self.config.executor_id.clone(),
            ),
            (LABEL_POD_ID.to_string(), config.id.clone()),
            (LABEL_TASK_ID.to_string(), config.task_id.clone()),
        ])
    }

    /// Whether the image is in the local store.
    async fn image_present(&self, image: &str) -> DriverResult<bool> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(engine(format!("inspect image {image}"))(e)),
        }
    }

    async fn pull(&self, image: &str, auth: Option<&RegistryAuth>) -> DriverResult<()> {
        let reference = PullReference::parse(image);
        let mut options = CreateImageOptionsBuilder::default().from_image(&reference.from_image);
        if let Some(tag) = &reference.tag {
            options = options.tag(tag);
        }
        let credentials = auth.map(|auth| DockerCredentials {
            username: Some(auth.username.clone()),
            password: Some(auth.password.clone()),
            serveraddress: Some(registry_host(image).to_string()),
            ..Default::default()
        });
        let mut progress = self
            .docker
            .create_image(Some(options.build()), None, credentials);
        // the progress messages are not worth a setup log line each; an error ends the stream
        while let Some(item) = progress.next().await {
            item.map_err(engine(format!("pull image {image}")))?;
        }
        Ok(())
    }

    /// Makes a task image available according to the pull policy.
    async fn ensure_task_image(
        &self,
        image: &str,
        auths: &BTreeMap<String, RegistryAuth>,
        setup_log: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> DriverResult<()> {
        if self.config.pull_policy == PullPolicy::IfNotPresent && self.image_present(image).await? {
            return log(setup_log, &format!("using local image {image}")).await;
        }
        log(setup_log, &format!("pulling image {image}")).await?;
        self.pull(image, auths.get(registry_host(image))).await
    }

    /// Creates the pod's toolbox volume and copies the toolbox for `arch` into it through a
    /// throw-away init container; returns the volume name.
    async fn create_toolbox_volume(
        &self,
        config: &PodConfig,
        mount_dir: &str,
        created: &mut Created,
    ) -> DriverResult<String> {
        let toolbox = toolbox_binary(&self.config.toolbox_dir, config.arch)?;
        let toolbox_tar = toolbox_tar(&toolbox).await?;

        // an anonymous name: pod ids are chosen by the executor and need not fit docker's name
        // charset; the labels find the volume again
        let volume = self
            .docker
            .create_volume(VolumeCreateRequest {
                labels: Some(self.labels(config)),
                ..Default::default()
            })
            .await
            .map_err(engine("create the toolbox volume"))?;
        created.volume = Some(volume.name.clone());

        let mut init_labels = self.labels(config);
        init_labels.remove(LABEL_AGOLA);
        init_labels.insert(LABEL_INIT.to_string(), "true".to_string());
        let init = self
            .docker
            .create_container(
                None,
                ContainerCreateBody {
                    image: Some(self.config.init_image.clone()),
                    // never started, but docker refuses to create a container without a command
                    // and the init image need not have one
                    cmd: Some(vec!["true".to_string()]),
                    labels: Some(init_labels),
                    host_config: Some(HostConfig {
                        binds: Some(vec![format!("{}:{mount_dir}", volume.name)]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
            .await
            .map_err(engine(format!(
                "create the init container from {}",
                self.config.init_image
            )))?;
        created.init_container = Some(init.id.clone());

        // docker mounts the volumes of a created container for archive uploads, so the init
        // container never needs to run
        self.docker
            .upload_to_container(
                &init.id,
                Some(
                    UploadToContainerOptionsBuilder::default()
                        .path(mount_dir)
                        .build(),
                ),
                bollard::body_full(toolbox_tar.into()),
            )
            .await
            .map_err(engine("copy the toolbox into the toolbox volume"))?;
        remove_container(&self.docker, &init.id).await?;
        created.init_container = None;
        Ok(volume.name)
    }

    async fn create_pod(
        &self,
        config: &PodConfig,
        setup_log: &mut (dyn AsyncWrite + Send + Unpin),
        created: &mut Created,
    ) -> DriverResult<DockerPod> {
        if config.containers.is_empty() {
            return Err(DriverError::Unsupported("a pod needs a container".into()));
        }
        // images first: a failing pull then leaves nothing to clean up
        let mut images: Vec<&str> = Vec::new();
        for c in &config.containers {
            if !images.contains(&c.image.as_str()) {
                images.push(&c.image);
            }
        }
        for image in images {
            self.ensure_task_image(image, &config.docker_registries_auth, setup_log)
                .await?;
        }
        // the init image was checked by setup, but may have been removed since
        if !self.image_present(&self.config.init_image).await? {
            log(
                setup_log,
                &format!("pulling image {}", self.config.init_image),
            )
            .await?;
            self.pull(&self.config.init_image, None).await?;
        }

        let mount_dir = if config.init_volume_dir.is_empty() {
            TOOLBOX_DIR
        } else {
            &config.init_volume_dir
        };
        log(setup_log, "creating toolbox volume").await?;
        let volume = self
            .create_toolbox_volume(config, mount_dir, created)
            .await?;

        for (index, container) in config.containers.iter().enumerate() {
            log(setup_log, &format!("creating container {index}")).await?;
            let mut labels = self.labels(config);
            labels.insert(LABEL_CONTAINER_INDEX.to_string(), index.to_string());
            let host_config = if index == 0 {
                HostConfig {
                    binds: Some(vec![format!("{volume}:{mount_dir}:ro")]),
                    ..host_config(container)
                }
            } else {
                HostConfig {
                    network_mode: created
                        .containers
                        .first()
                        .map(|id| format!("container:{id}")),
                    ..host_config(container)
                }
            };
            let body = ContainerCreateBody {
                image: Some(container.image.clone()),
                // the command replaces the image's entrypoint (and so its cmd too): container 0
                // must run exactly the toolbox sleeper or the task's entrypoint
                entrypoint: (!container.cmd.is_empty()).then(|| container.cmd.clone()),
                env: Some(
                    container
                        .env
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect(),
                ),
                user: (!container.user.is_empty()).then(|| container.user.clone()),
                // a tty keeps images whose default command is an interactive shell running, as
                // in Agola
                tty: Some(true),
                labels: Some(labels),
                host_config: Some(host_config),
                ..Default::default()
            };
            let id = self
                .docker
                .create_container(None, body)
                .await
                .map_err(engine(format!(
                    "create container {index} ({})",
                    container.image
                )))?
                .id;
            created.containers.push(id.clone());
            // started one by one: the others join container 0's network namespace, which exists
            // only once it runs
            self.docker
                .start_container(
                    &id,
                    None::<bollard::query_parameters::StartContainerOptions>,
                )
                .await
                .map_err(engine(format!(
                    "start container {index} ({})",
                    container.image
                )))?;
        }
        Ok(DockerPod {
            docker: self.docker.clone(),
            ids: PodIds {
                id: config.id.clone(),
                executor_id: self.config.executor_id.clone(),
                task_id: config.task_id.clone(),
                containers: created.containers.clone(),
            },
        })
    }
}

fn host_config(container: &ContainerConfig) -> HostConfig {
    let tmpfs: HashMap<String, String> = container
        .volumes
        .iter()
        .map(|v| {
            let options = v.size.map(|s| format!("size={s}")).unwrap_or_default();
            (v.path.clone(), options)
        })
        .collect();
    HostConfig {
        privileged: Some(container.privileged),
        tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
        ..Default::default()
    }
}

/// What `new_pod` created so far, removed again when it fails.
#[derive(Default)]
struct Created {
    containers: Vec<String>,
    init_container: Option<String>,
    volume: Option<String>,
}

impl Created {
    async fn rollback(&self, docker: &Docker) {
        let ids = self.containers.iter().rev().chain(&self.init_container);
        for id in ids {
            if let Err(e) = remove_container(docker, id).await {
                tracing::warn!(container = %id, error = %e, "cannot remove a container of a failed pod");
            }
        }
        if let Some(volume) = &self.volume
            && let Err(e) = remove_volume(docker, volume).await
        {
            tracing::warn!(%volume, error = %e, "cannot remove the volume of a failed pod");
        }
    }
}

#[async_trait]
impl Driver for DockerDriver {
    async fn setup(&self) -> DriverResult<()> {
        self.docker
            .ping()
            .await
            .map_err(engine("docker daemon does not answer"))?;
        let image = &self.config.init_image;
        let present = self.image_present(image).await?;
        if present && !PullReference::parse(image).is_latest() {
            return Ok(());
        }
        match self.pull(image, None).await {
            Ok(()) => Ok(()),
            // `latest` is re-pulled to follow it, but a host without registry access keeps
            // working with the image it has
            Err(e) if present => {
                tracing::warn!(%image, error = %e, "cannot pull the init image, using the local one");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn new_pod(
        &self,
        config: PodConfig,
        setup_log: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> DriverResult<Box<dyn Pod>> {
        let mut created = Created::default();
        match self.create_pod(&config, setup_log, &mut created).await {
            Ok(pod) => Ok(Box::new(pod)),
            Err(e) => {
                created.rollback(&self.docker).await;
                Err(e)
            }
        }
    }

    async fn get_pods(&self, all: bool) -> DriverResult<Vec<Box<dyn Pod>>> {
        let mut label_filters = vec![format!("{LABEL_AGOLA}=true")];
        if !all {
            label_filters.push(format!("{LABEL_EXECUTOR_ID}={}", self.config.executor_id));
        }
        let filters = HashMap::from([("label", label_filters)]);
        let containers = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(engine("list containers"))?;
        Ok(group_pods(containers)
            .into_iter()
            .map(|ids| {
                Box::new(DockerPod {
                    docker: self.docker.clone(),
                    ids,
                }) as Box<dyn Pod>
            })
            .collect())
    }

    async fn executor_group(&self) -> DriverResult<String> {
        Ok(self.config.executor_id.clone())
    }

    async fn get_executors(&self) -> DriverResult<Vec<String>> {
        Ok(vec![self.config.executor_id.clone()])
    }

    async fn archs(&self) -> DriverResult<Vec<Arch>> {
        Arch::host().map(|a| vec![a]).ok_or_else(|| {
            DriverError::Unsupported(format!(
                "unknown host architecture {}",
                std::env::consts::ARCH
            ))
        })
    }
}

/// Groups listed containers into pods (spec 30 §6.1): a pod whose containers miss a label, have
/// a bad or duplicate index, or have no container 0 (deleted underneath) is left out.
fn group_pods(containers: Vec<ContainerSummary>) -> Vec<PodIds> {
    struct Group {
        executor_id: String,
        task_id: String,
        containers: BTreeMap<u32, String>,
        valid: bool,
    }
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for c in containers {
        let labels = c.labels.unwrap_or_default();
        // without a pod id a container belongs to no pod
        let Some(pod_id) = labels.get(LABEL_POD_ID) else {
            continue;
        };
        let executor_id = labels.get(LABEL_EXECUTOR_ID);
        let task_id = labels.get(LABEL_TASK_ID);
        let index = labels
            .get(LABEL_CONTAINER_INDEX)
            .and_then(|i| i.parse::<u32>().ok());
        let group = groups.entry(pod_id.clone()).or_insert_with(|| Group {
            executor_id: executor_id.cloned().unwrap_or_default(),
            task_id: task_id.cloned().unwrap_or_default(),
            containers: BTreeMap::new(),
            valid: true,
        });
        match (executor_id, task_id, index, c.id) {
            (Some(e), Some(t), Some(i), Some(id))
                if *e == group.executor_id
                    && *t == group.task_id
                    && !group.containers.contains_key(&i) =>
            {
                group.containers.insert(i, id);
            }
            _ => group.valid = false,
        }
    }
    groups
        .into_iter()
        .filter(|(_, g)| g.valid && g.containers.contains_key(&0))
        .map(|(id, g)| PodIds {
            id,
            executor_id: g.executor_id,
            task_id: g.task_id,
            containers: g.containers.into_values().collect(),
        })
        .collect()
}

/// What identifies a pod and its docker containers.
#[derive(Debug)]
struct PodIds {
    id: String,
    executor_id: String,
    task_id: String,
    /// Container ids ordered by index.
    containers: Vec<String>,
}

/// A pod of the docker driver.
struct DockerPod {
    docker: Docker,
    ids: PodIds,
}

#[async_trait]
impl Pod for DockerPod {
    fn id(&self) -> &str {
        &self.ids.id
    }

    fn executor_id(&self) -> &str {
        &self.ids.executor_id
    }

    fn task_id(&self) -> &str {
        &self.ids.task_id
    }

    async fn stop(&self) -> DriverResult<()> {
        // concurrently, so a pod stops in one grace period rather than one per container
        let stops = self.ids.containers.iter().map(|id| async move {
            let options = StopContainerOptionsBuilder::default()
                .t(STOP_TIMEOUT_SECS)
                .build();
            // an already stopped container answers 304, which bollard treats as success
            match self.docker.stop_container(id, Some(options)).await {
                Ok(()) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(engine(format!("stop container {id}"))(e)),
            }
        });
        futures::future::join_all(stops)
            .await
            .into_iter()
            .collect::<DriverResult<Vec<()>>>()?;
        Ok(())
    }

    async fn remove(&self) -> DriverResult<()> {
        // the known containers plus any other labelled with this pod (created before a crash)
        let filters = HashMap::from([(
            "label",
            vec![
                format!("{LABEL_EXECUTOR_ID}={}", self.ids.executor_id),
                format!("{LABEL_POD_ID}={}", self.ids.id),
            ],
        )]);
        let listed = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(engine("list the pod's containers"))?;
        let mut ids: Vec<String> = self.ids.containers.iter().rev().cloned().collect();
        for id in listed.into_iter().filter_map(|c| c.id) {
            if !ids.contains(&id) {
                ids.insert(0, id);
            }
        }
        for id in &ids {
            remove_container(&self.docker, id).await?;
        }
        let volumes = self
            .docker
            .list_volumes(Some(
                ListVolumesOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(engine("list the pod's volumes"))?;
        for volume in volumes.volumes.unwrap_or_default() {
            remove_volume(&self.docker, &volume.name).await?;
        }
        Ok(())
    }

    async fn exec(&self, config: ExecConfig) -> DriverResult<Box<dyn ContainerExec>> {
        let container = self.ids.containers.first().ok_or_else(|| {
            DriverError::NotFound(format!("pod {} has no container", self.ids.id))
        })?;
        let ExecConfig {
            cmd,
            env,
            working_dir,
            user,
            attach_stdin,
            stdout,
            stderr,
            tty,
        } = config;
        let options = CreateExecOptions {
            attach_stdin: Some(attach_stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(tty),
            env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            cmd: Some(cmd),
            user: (!user.is_empty()).then_some(user),
            working_dir: (!working_dir.is_empty()).then_some(working_dir),
            ..Default::default()
        };
        let exec_id = self
            .docker
            .create_exec(container, options)
            .await
            .map_err(engine(format!("create exec in pod {}", self.ids.id)))?
            .id;
        let started = self
            .docker
            .start_exec(
                &exec_id,
                Some(StartExecOptions {
                    detach: false,
                    tty,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(engine(format!("start exec in pod {}", self.ids.id)))?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(DriverError::Engine(format!(
                "docker started exec {exec_id} detached although it was asked to attach"
            )));
        };
        let copier = tokio::spawn(copy_output(output, stdout, stderr, tty));
        Ok(Box::new(DockerExec {
            docker: self.docker.clone(),
            exec_id,
            stdin: attach_stdin.then(|| ExecStdin {
                inner: Some(input),
                shut_down: false,
            }),
            copier,
        }))
    }
}

type OutputStream =
    Pin<Box<dyn futures::Stream<Item = Result<LogOutput, BollardError>> + Send + 'static>>;

/// Copies an exec's output to the sinks until docker ends the stream (the command exited, or
/// the container stopped). A failing sink stops receiving but the stream is still drained, so
/// the command never blocks on a full pipe. The sinks are shut down at the end, even after an
/// error; the first error is returned.
///
/// With a tty docker sends raw bytes, which bollard tells from multiplexed frames by the first
/// byte of each read (0..=2 is a frame header): terminal output starting a read with such a
/// control byte could be misread. Steps that carry binary data (archives) run without a tty.
async fn copy_output(
    mut output: OutputStream,
    mut stdout: Box<dyn AsyncWrite + Send + Unpin>,
    mut stderr: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    tty: bool,
) -> DriverResult<()> {
    if tty {
        // a tty merges both streams in docker already
        stderr = None;
    }
    let mut error: Option<DriverError> = None;
    while let Some(item) = output.next().await {
        let item = match item {
            Ok(item) => item,
            Err(e) => {
                error = Some(engine("read exec output")(e));
                break;
            }
        };
        let (sink, message) = match item {
            LogOutput::StdErr { message } => match stderr.as_mut() {
                Some(s) => (s, message),
                None => (&mut stdout, message),
            },
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                (&mut stdout, message)
            }
            LogOutput::StdIn { .. } => continue,
        };
        if error.is_none()
            && let Err(e) = sink.write_all(&message).await
        {
            error = Some(DriverError::io("write exec output", e));
        }
    }
    for sink in std::iter::once(&mut stdout).chain(stderr.as_mut()) {
        // shut down, not only flushed: a reader on the other end of a pipe sees the end
        if let Err(e) = sink.shutdown().await
            && error.is_none()
        {
            error = Some(DriverError::io("close exec output", e));
        }
    }
    error.map_or(Ok(()), Err)
}

/// The stdin of an exec. Dropping it without `shutdown` still sends EOF (in a spawned task):
/// a forgotten shutdown would otherwise leave the command waiting for input forever.
struct ExecStdin {
    inner: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    shut_down: bool,
}

impl ExecStdin {
    fn inner(&mut self) -> std::io::Result<&mut Pin<Box<dyn AsyncWrite + Send>>> {
        self.inner
            .as_mut()
            .ok_or_else(|| std::io::Error::other("exec stdin already closed"))
    }
}

impl AsyncWrite for ExecStdin {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut().inner() {
            Ok(w) => w.as_mut().poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut().inner() {
            Ok(w) => w.as_mut().poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let result = match this.inner() {
            Ok(w) => w.as_mut().poll_shutdown(cx),
            Err(e) => return Poll::Ready(Err(e)),
        };
        if result.is_ready() {
            this.shut_down = true;
        }
        result
    }
}

impl Drop for ExecStdin {
    fn drop(&mut self) {
        if self.shut_down {
            return;
        }
        if let (Some(mut w), Ok(rt)) = (self.inner.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(async move {
                let _ = w.shutdown().await;
            });
        }
    }
}

/// A running exec of the docker driver.
struct DockerExec {
    docker: Docker,
    exec_id: String,
    stdin: Option<ExecStdin>,
    copier: JoinHandle<DriverResult<()>>,
}

#[async_trait]
impl ContainerExec for DockerExec {
    fn take_stdin(&mut self) -> Option<Box<dyn AsyncWrite + Send + Unpin>> {
        self.stdin
            .take()
            .map(|s| Box::new(s) as Box<dyn AsyncWrite + Send + Unpin>)
    }

    async fn wait(self: Box<Self>) -> DriverResult<i32> {
        let DockerExec {
            docker,
            exec_id,
            stdin,
            copier,
        } = *self;
        // an untaken stdin is closed, or a command reading it would never end
        drop(stdin);
        // docker ends the output stream when the command exits (giving a background process
        // that holds the pipe 2 s) and when the container stops, so this does not hang
        copier
            .await
            .map_err(|e| DriverError::Engine(format!("exec output copier failed: {e}")))??;
        let deadline = tokio::time::Instant::now() + EXEC_EXIT_DEADLINE;
        loop {
            let info = docker
                .inspect_exec(&exec_id)
                .await
                .map_err(engine(format!("inspect exec {exec_id}")))?;
            if info.running != Some(true) {
                let code = info.exit_code.ok_or_else(|| {
                    DriverError::Engine(format!("exec {exec_id} ended without an exit code"))
                })?;
                return i32::try_from(code).map_err(|_| {
                    DriverError::Engine(format!("exec {exec_id} exit code {code} out of range"))
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DriverError::Engine(format!(
                    "exec {exec_id} output ended but docker still reports it running"
                )));
            }
            tokio::time::sleep(EXEC_EXIT_POLL).await;
        }
    }
}

/// Builds the tar docker extracts into the toolbox volume: one executable `agola-toolbox`.
async fn toolbox_tar(path: &std::path::Path) -> DriverResult<Vec<u8>> {
    let data = tokio::fs::read(path)
        .await
        .map_err(|e| DriverError::io(format!("read toolbox {}", path.display()), e))?;
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o755);
    header.set_entry_type(tar::EntryType::Regular);
    let mut builder = tar::Builder::new(Vec::with_capacity(data.len() + 2048));
    builder
        .append_data(&mut header, TOOLBOX_FILE, data.as_slice())
        .and_then(|()| builder.into_inner())
        .map_err(|e| DriverError::io("build the toolbox archive", e))
}

async fn log(setup_log: &mut (dyn AsyncWrite + Send + Unpin), line: &str) -> DriverResult<()> {
    setup_log
        .write_all(format!("{line}\n").as_bytes())
        .await
        .map_err(|e| DriverError::io("write the setup log", e))?;
    setup_log
        .flush()
        .await
        .map_err(|e| DriverError::io("write the setup log", e))
}

/// Force-removes a container; one already gone is fine.
async fn remove_container(docker: &Docker, id: &str) -> DriverResult<()> {
    let options = RemoveContainerOptionsBuilder::default().force(true).build();
    match docker.remove_container(id, Some(options)).await {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(engine(format!("remove container {id}"))(e)),
    }
}

/// Removes a volume; one already gone is fine.
async fn remove_volume(docker: &Docker, name: &str) -> DriverResult<()> {
    match docker
        .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(engine(format!("remove volume {name}"))(e)),
    }
}

fn is_not_found(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Maps a bollard error: docker's 404 to NotFound, anything else to Engine, with context.
fn engine(context: impl Into<String>) -> impl FnOnce(BollardError) -> DriverError {
    let context = context.into();
    move |e| {
        if is_not_found(&e) {
            DriverError::NotFound(format!("{context}: {e}"))
        } else {
            DriverError::Engine(format!("{context}: {e}"))
        }
    }
}

/// An image reference split the way the docker pull API wants it: without an explicit tag the
/// API pulls **every** tag, so a bare name gets `latest`.
#[derive(Debug, PartialEq, Eq)]
struct PullReference {
    from_image: String,
    /// None when `from_image` carries a digest.
    tag: Option<String>,
}

impl PullReference {
    fn parse(image: &str) -> PullReference {
        if image.contains('@') {
            return PullReference {
                from_image: image.to_string(),
                tag: None,
            };
        }
        // a colon after the last slash separates the tag; one before it is a registry port
        let name_start = image.rfind('/').map_or(0, |i| i + 1);
        match image[name_start..].rfind(':') {
            Some(i) => PullReference {
                from_image: image[..name_start + i].to_string(),
                tag: Some(image[name_start + i + 1..].to_string()),
            },
            None => PullReference {
                from_image: image.to_string(),
                tag: Some("latest".to_string()),
            },
        }
    }

    fn is_latest(&self) -> bool {
        self.tag.as_deref() == Some("latest")
    }
}

/// The registry host of an image reference, as docker decides it: the first path component
/// when it looks like a host (has a dot or a port, or is `localhost`), else Docker Hub
/// (`docker.io`).
fn registry_host(image: &str) -> &str {
    let name = image.split('@').next().unwrap_or(image);
    match name.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            match first {
                "index.docker.io" | "registry-1.docker.io" => "docker.io",
                host => host,
            }
        }
        _ => "docker.io",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_reference_gets_a_tag() {
        let p = |s| PullReference::parse(s);
        assert_eq!(
            p("busybox"),
            PullReference {
                from_image: "busybox".into(),
                tag: Some("latest".into())
            }
        );
        assert_eq!(
            p("localhost:5000/a/b:1.2"),
            PullReference {
                from_image: "localhost:5000/a/b".into(),
                tag: Some("1.2".into())
            }
        );
        assert_eq!(
            p("localhost:5000/a/b"),
            PullReference {
                from_image: "localhost:5000/a/b".into(),
                tag: Some("latest".into())
            }
        );
        assert_eq!(p("busybox@sha256:abc").tag, None);
        assert!(p("busybox").is_latest());
        assert!(p("local/busybox:latest").is_latest());
        assert!(!p("busybox:stable").is_latest());
        assert!(!p("busybox@sha256:abc").is_latest());
    }

    #[test]
    fn registry_hosts() {
        assert_eq!(registry_host("busybox"), "docker.io");
        assert_eq!(registry_host("library/busybox:1"), "docker.io");
        assert_eq!(
            registry_host("index.docker.io/library/busybox"),
            "docker.io"
        );
        assert_eq!(registry_host("quay.io/a/b:1"), "quay.io");
        assert_eq!(registry_host("localhost/a"), "localhost");
        assert_eq!(registry_host("127.0.0.1:5000/a@sha256:x"), "127.0.0.1:5000");
        assert_eq!(registry_host("local/busybox:latest"), "docker.io");
    }

    #[test]
    fn pull_policy_names() {
        #[derive(Deserialize)]
        struct C {
            p: PullPolicy,
        }
        let parse = |s: &str| {
            serde_json::from_str::<C>(&format!(r#"{{"p":"{s}"}}"#))
                .map(|c| c.p)
                .ok()
        };
        assert_eq!(parse("always"), Some(PullPolicy::Always));
        assert_eq!(parse("ifnotpresent"), Some(PullPolicy::IfNotPresent));
        assert_eq!(parse("IfNotPresent"), None);
    }

    #[test]
    fn pods_are_grouped_by_id_and_ordered_by_index() {
        let c = |id: &str, pod: &str, index: Option<&str>| ContainerSummary {
            id: Some(id.into()),
            labels: Some(
                [
                    (LABEL_AGOLA, "true"),
                    (LABEL_EXECUTOR_ID, "e"),
                    (LABEL_POD_ID, pod),
                    (LABEL_TASK_ID, "t"),
                ]
                .into_iter()
                .chain(index.map(|i| (LABEL_CONTAINER_INDEX, i)))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ),
            ..Default::default()
        };
        let pods = group_pods(vec![
            c("a1", "a", Some("1")),
            c("a0", "a", Some("0")),
            // no container 0
            c("b1", "b", Some("1")),
            // a container without its index
            c("c0", "c", Some("0")),
            c("c1", "c", None),
            // duplicate index
            c("d0", "d", Some("0")),
            c("d0bis", "d", Some("0")),
            c("e0", "e", Some("0")),
        ]);
        let got: Vec<(&str, Vec<&str>)> = pods
            .iter()
            .map(|p| {
                (
                    p.id.as_str(),
                    p.containers.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(got, vec![("a", vec!["a0", "a1"]), ("e", vec!["e0"])]);
    }
}

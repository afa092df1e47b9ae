//! The local driver (spec 30 §6.3): a pod is a directory `<dataDir>/pods/<podID>/` and its
//! commands are host processes, with no isolation. It is what `agola run` uses on a machine
//! with no container engine.
//!
//! - `pod.json` in the pod dir records the owner executor and task, so pods survive an
//!   executor restart and can be listed and removed.
//! - `HOME` is `<pod dir>/home` (so `~/project` lands inside the pod) and `TMPDIR` is
//!   `<pod dir>/tmp` (so the toolbox's `createfile` writes inside it); the rest of the
//!   environment is not inherited from the executor except `PATH`, so a step sees the same
//!   variables whatever the executor was started with.
//! - `/mnt/agola/agola-toolbox` in a command is mapped to the host toolbox binary; its
//!   `expanddir`, `mkdir` and `createfile` subcommands run in-process with the toolbox
//!   library (same semantics, `~` = the pod's home), which saves a process spawn each.
//! - Each exec runs in its own process group, recorded in `<pod dir>/pgids` while it runs, so
//!   a restarted executor can still kill the processes of a pod it finds on disk; `stop`
//!   sends SIGTERM to every group of the pod and SIGKILL 10 s later.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::{
    Arch, ContainerExec, Driver, DriverError, DriverResult, ExecConfig, Pod, PodConfig,
    TOOLBOX_BIN, toolbox_binary,
};

/// How long `stop` waits after SIGTERM before SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(10);
/// How long an exec waits, after its process ended, for the output pipes to close (a
/// background child may keep them open forever).
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// Config of the local driver.
#[derive(Debug, Clone)]
pub struct LocalDriverConfig {
    pub executor_id: String,
    /// The executor data dir; pods live in `<data_dir>/pods`.
    pub data_dir: PathBuf,
    /// Directory holding `agola-toolbox-linux-<arch>`.
    pub toolbox_dir: PathBuf,
}

/// The local driver.
pub struct LocalDriver {
    config: LocalDriverConfig,
    arch: Arch,
    toolbox: PathBuf,
    /// Process groups of live execs, per pod id (shared with the pods handed out).
    groups: Arc<Mutex<BTreeMap<String, Vec<i32>>>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PodFile {
    executor_id: String,
    task_id: String,
}

impl LocalDriver {
    /// Creates the driver; fails when the host arch is unknown or the toolbox is missing.
    pub fn new(config: LocalDriverConfig) -> DriverResult<LocalDriver> {
        let arch = Arch::host().ok_or_else(|| {
            DriverError::Unsupported(format!(
                "unsupported host architecture {}",
                std::env::consts::ARCH
            ))
        })?;
        let toolbox = toolbox_binary(&config.toolbox_dir, arch)?;
        Ok(LocalDriver {
            config,
            arch,
            toolbox,
            groups: Arc::default(),
        })
    }

    fn pods_dir(&self) -> PathBuf {
        self.config.data_dir.join("pods")
    }

    fn pod(&self, id: String, file: PodFile) -> LocalPod {
        LocalPod {
            dir: self.pods_dir().join(&id),
            id,
            executor_id: file.executor_id,
            task_id: file.task_id,
            env: BTreeMap::new(),
            toolbox: self.toolbox.clone(),
            groups: self.groups.clone(),
        }
    }
}

async fn write_line(log: &mut (dyn AsyncWrite + Send + Unpin), line: &str) -> DriverResult<()> {
    log.write_all(format!("{line}\n").as_bytes())
        .await
        .map_err(|e| DriverError::io("writing the setup log", e))
}

#[async_trait]
impl Driver for LocalDriver {
    async fn setup(&self) -> DriverResult<()> {
        tokio::fs::create_dir_all(self.pods_dir())
            .await
            .map_err(|e| DriverError::io(format!("creating {}", self.pods_dir().display()), e))
    }

    async fn new_pod(
        &self,
        config: PodConfig,
        setup_log: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> DriverResult<Box<dyn Pod>> {
        if config.containers.len() > 1 {
            return Err(DriverError::Unsupported(
                "service containers are not supported by the local driver".into(),
            ));
        }
        if config.arch != self.arch {
            return Err(DriverError::Unsupported(format!(
                "the local driver runs {} tasks, not {}",
                self.arch.as_str(),
                config.arch.as_str()
            )));
        }
        let main = config.containers.first().cloned().unwrap_or_default();
        write_line(
            setup_log,
            "local driver: steps run as host processes, with no isolation",
        )
        .await?;
        if !main.image.is_empty() {
            write_line(
                setup_log,
                &format!(
                    "warning: image {:?} ignored by the local driver",
                    main.image
                ),
            )
            .await?;
        }
        for v in &main.volumes {
            write_line(
                setup_log,
                &format!(
                    "warning: tmpfs volume {} ignored by the local driver",
                    v.path
                ),
            )
            .await?;
        }
        if !main.user.is_empty() {
            write_line(
                setup_log,
                &format!("warning: user {:?} ignored by the local driver", main.user),
            )
            .await?;
        }
        let mut pod = self.pod(
            config.id.clone(),
            PodFile {
                executor_id: self.config.executor_id.clone(),
                task_id: config.task_id.clone(),
            },
        );
        pod.env = main.env;
        for sub in ["home", "tmp"] {
            let d = pod.dir.join(sub);
            tokio::fs::create_dir_all(&d)
                .await
                .map_err(|e| DriverError::io(format!("creating {}", d.display()), e))?;
        }
        let file = serde_json::to_vec(&PodFile {
            executor_id: pod.executor_id.clone(),
            task_id: pod.task_id.clone(),
        })
        .map_err(|e| DriverError::Engine(e.to_string()))?;
        let path = pod.dir.join("pod.json");
        tokio::fs::write(&path, file)
            .await
            .map_err(|e| DriverError::io(format!("writing {}", path.display()), e))?;
        write_line(
            setup_log,
            &format!("pod {} created in {}", pod.id, pod.dir.display()),
        )
        .await?;
        Ok(Box::new(pod))
    }

    async fn get_pods(&self, all: bool) -> DriverResult<Vec<Box<dyn Pod>>> {
        let dir = self.pods_dir();
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(DriverError::io(format!("listing {}", dir.display()), e)),
        };
        let mut pods: Vec<Box<dyn Pod>> = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| DriverError::io(format!("listing {}", dir.display()), e))?
        {
            let Some(id) = entry.file_name().to_str().map(String::from) else {
                continue;
            };
            // A pod dir without a readable pod.json is a half-created pod: ignore it (the
            // pods cleaner of a later version may remove it; it holds no process).
            let Ok(raw) = tokio::fs::read(entry.path().join("pod.json")).await else {
                continue;
            };
            let Ok(file) = serde_json::from_slice::<PodFile>(&raw) else {
                continue;
            };
            if !all && file.executor_id != self.config.executor_id {
                continue;
            }
            pods.push(Box::new(self.pod(id, file)));
        }
        Ok(pods)
    }

    async fn executor_group(&self) -> DriverResult<String> {
        Ok(self.config.executor_id.clone())
    }

    async fn get_executors(&self) -> DriverResult<Vec<String>> {
        Ok(vec![self.config.executor_id.clone()])
    }

    async fn archs(&self) -> DriverResult<Vec<Arch>> {
        Ok(vec![self.arch])
    }
}

/// A local pod.
pub struct LocalPod {
    id: String,
    executor_id: String,
    task_id: String,
    dir: PathBuf,
    /// Container 0's environment (only known for pods created by this process).
    env: BTreeMap<String, String>,
    toolbox: PathBuf,
    groups: Arc<Mutex<BTreeMap<String, Vec<i32>>>>,
}

impl LocalPod {
    fn live_groups(&self) -> Vec<i32> {
        let mut groups = self
            .groups
            .lock()
            .map(|g| g.get(&self.id).cloned().unwrap_or_default())
            .unwrap_or_default();
        for pgid in read_pgids(&self.dir) {
            if !groups.contains(&pgid) {
                groups.push(pgid);
            }
        }
        groups
    }

    fn signal_all(&self, signal: Signal) {
        for pgid in self.live_groups() {
            // ESRCH: the group is already gone, which is what we want.
            let _ = killpg(Pid::from_raw(pgid), signal);
        }
    }

    fn forget_group(groups: &Mutex<BTreeMap<String, Vec<i32>>>, pod: &str, dir: &Path, pgid: i32) {
        if let Ok(mut g) = groups.lock() {
            if let Some(list) = g.get_mut(pod) {
                list.retain(|p| *p != pgid);
                if list.is_empty() {
                    g.remove(pod);
                }
            }
            let left: Vec<i32> = read_pgids(dir).into_iter().filter(|p| *p != pgid).collect();
            write_pgids(dir, &left);
        }
    }

    /// The host program and arguments for `cmd`: the in-pod toolbox path is mapped to the
    /// host toolbox.
    fn host_command(&self, cmd: &[String]) -> DriverResult<Command> {
        let (prog, args) = cmd
            .split_first()
            .ok_or_else(|| DriverError::Unsupported("empty command".into()))?;
        let program: &Path = if prog == TOOLBOX_BIN {
            &self.toolbox
        } else {
            Path::new(prog)
        };
        let mut command = Command::new(program);
        command.args(args);
        Ok(command)
    }
}

#[async_trait]
impl Pod for LocalPod {
    fn id(&self) -> &str {
        &self.id
    }

    fn executor_id(&self) -> &str {
        &self.executor_id
    }

    fn task_id(&self) -> &str {
        &self.task_id
    }

    fn ignores_user(&self) -> bool {
        true
    }

    async fn stop(&self) -> DriverResult<()> {
        self.signal_all(Signal::SIGTERM);
        let groups = self.groups.clone();
        let id = self.id.clone();
        let dir = self.dir.clone();
        if !self.live_groups().is_empty() {
            // SIGKILL whatever ignored SIGTERM once the grace period is over.
            tokio::spawn(async move {
                tokio::time::sleep(KILL_GRACE).await;
                let mut left = groups
                    .lock()
                    .map(|g| g.get(&id).cloned().unwrap_or_default())
                    .unwrap_or_default();
                left.extend(read_pgids(&dir));
                for pgid in left {
                    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
                }
            });
        }
        Ok(())
    }

    async fn remove(&self) -> DriverResult<()> {
        self.signal_all(Signal::SIGKILL);
        match tokio::fs::remove_dir_all(&self.dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(DriverError::io(
                format!("removing {}", self.dir.display()),
                e,
            )),
        }
    }

    async fn exec(&self, config: ExecConfig) -> DriverResult<Box<dyn ContainerExec>> {
        let config = match self.in_process(config) {
            Ok(exec) => return Ok(exec),
            Err(config) => *config,
        };
        let mut command = self.host_command(&config.cmd)?;
        let home = self.dir.join("home");
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("TMPDIR", self.dir.join("tmp"))
            .envs(&self.env)
            .envs(&config.env)
            .current_dir(if config.working_dir.is_empty() {
                home
            } else {
                PathBuf::from(&config.working_dir)
            })
            .stdin(if config.attach_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        let mut child = command
            .spawn()
            .map_err(|e| DriverError::io(format!("starting {:?}", config.cmd.first()), e))?;
        let pgid = child.id().map(|p| p as i32);
        if let Some(pgid) = pgid
            && let Ok(mut g) = self.groups.lock()
        {
            g.entry(self.id.clone()).or_default().push(pgid);
            let mut all = read_pgids(&self.dir);
            all.push(pgid);
            write_pgids(&self.dir, &all);
        }
        let stdin = child
            .stdin
            .take()
            .map(|s| Box::new(s) as Box<dyn AsyncWrite + Send + Unpin>);
        let mut stdout_sink = config.stdout;
        let mut copiers = Vec::new();
        // stdout and stderr go to one sink unless a separate stderr sink is given; with one
        // sink, writes are serialized through a shared writer.
        match config.stderr {
            Some(mut err_sink) => {
                if let Some(mut out) = child.stdout.take() {
                    copiers.push(tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut out, &mut stdout_sink).await;
                        let _ = stdout_sink.flush().await;
                    }));
                }
                if let Some(mut err) = child.stderr.take() {
                    copiers.push(tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut err, &mut err_sink).await;
                        let _ = err_sink.flush().await;
                    }));
                }
            }
            None => {
                let sink = Arc::new(tokio::sync::Mutex::new(stdout_sink));
                if let Some(out) = child.stdout.take() {
                    copiers.push(spawn_shared_copy(out, sink.clone()));
                }
                if let Some(err) = child.stderr.take() {
                    copiers.push(spawn_shared_copy(err, sink));
                }
            }
        }
        Ok(Box::new(LocalExec {
            child,
            stdin,
            copiers,
            pgid,
            pod: self.id.clone(),
            dir: self.dir.clone(),
            groups: self.groups.clone(),
        }))
    }
}

impl LocalPod {
    /// `~` = the pod's home; relative paths against the exec's working dir (else the home).
    fn expand(&self, dir: &str, working_dir: &str) -> Result<PathBuf, String> {
        let home = self.dir.join("home");
        let expanded =
            agola_toolbox::paths::expand_tilde_with(Path::new(dir), &|user| match user {
                None => Ok(home.clone()),
                Some(u) => Err(agola_toolbox::Error::InvalidInput(format!(
                    "~{u}: other users' homes are unknown to the local driver"
                ))),
            })
            .map_err(|e| e.to_string())?;
        let base = if working_dir.is_empty() {
            home.clone()
        } else {
            PathBuf::from(working_dir)
        };
        Ok(agola_toolbox::paths::absolute_from(&base, &expanded))
    }

    /// Runs the toolbox's file subcommands in-process; gives the config back for anything
    /// else.
    fn in_process(&self, config: ExecConfig) -> Result<Box<dyn ContainerExec>, Box<ExecConfig>> {
        let Some((prog, args)) = config.cmd.split_first() else {
            return Err(Box::new(config));
        };
        let Some((sub, args)) = args.split_first().filter(|_| prog == TOOLBOX_BIN) else {
            return Err(Box::new(config));
        };
        let mut stdin: Option<Box<dyn AsyncWrite + Send + Unpin>> = None;
        let work: WorkFuture = match sub.as_str() {
            "expanddir" => {
                let res = match args {
                    [dir] => self
                        .expand(dir, &config.working_dir)
                        .map(|p| p.into_os_string().into_encoded_bytes()),
                    _ => Err("usage: expanddir DIR".into()),
                };
                Box::pin(async move { res })
            }
            "mkdir" => {
                let res = args
                    .iter()
                    .map(|d| {
                        let p = self.expand(d, &config.working_dir)?;
                        std::fs::create_dir_all(&p)
                            .map_err(|e| format!("mkdir {}: {e}", p.display()))
                    })
                    .collect::<Result<Vec<()>, String>>()
                    .map(|_| Vec::new());
                Box::pin(async move { res })
            }
            "createfile" if args.is_empty() => {
                let path = self
                    .dir
                    .join("tmp")
                    .join(format!("agola-{}", uuid::Uuid::new_v4()));
                let (writer, reader) = tokio::io::duplex(64 * 1024);
                stdin = Some(Box::new(writer));
                Box::pin(create_file(path, reader))
            }
            _ => return Err(Box::new(config)),
        };
        Ok(Box::new(InProcessExec {
            stdin,
            work,
            stdout: config.stdout,
            stderr: config.stderr,
        }))
    }
}

type WorkFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<u8>, String>> + Send>>;

/// `createfile`: stdin into a new file; the output is its path.
async fn create_file(path: PathBuf, mut input: tokio::io::DuplexStream) -> Result<Vec<u8>, String> {
    let mut content = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut input, &mut content)
        .await
        .map_err(|e| format!("reading stdin: {e}"))?;
    tokio::fs::write(&path, content)
        .await
        .map_err(|e| format!("createfile {}: {e}", path.display()))?;
    Ok(path.into_os_string().into_encoded_bytes())
}

/// A toolbox subcommand run in-process: output (or the error) goes to the sinks as the
/// toolbox binary would print it; exit code 0 or 1.
struct InProcessExec {
    stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    work: WorkFuture,
    stdout: Box<dyn AsyncWrite + Send + Unpin>,
    stderr: Option<Box<dyn AsyncWrite + Send + Unpin>>,
}

#[async_trait]
impl ContainerExec for InProcessExec {
    fn take_stdin(&mut self) -> Option<Box<dyn AsyncWrite + Send + Unpin>> {
        self.stdin.take()
    }

    async fn wait(mut self: Box<Self>) -> DriverResult<i32> {
        // An untaken stdin is closed, so `createfile` sees end of input.
        self.stdin = None;
        let this = *self;
        let mut stdout = this.stdout;
        let code = match this.work.await {
            Ok(out) => {
                let _ = stdout.write_all(&out).await;
                0
            }
            Err(msg) => {
                let line = format!("agola-toolbox: {msg}\n");
                match this.stderr {
                    Some(mut e) => {
                        let _ = e.write_all(line.as_bytes()).await;
                        let _ = e.flush().await;
                    }
                    None => {
                        let _ = stdout.write_all(line.as_bytes()).await;
                    }
                }
                1
            }
        };
        let _ = stdout.flush().await;
        Ok(code)
    }
}

/// The process groups recorded in a pod dir.
fn read_pgids(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("pgids"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter(|p: &i32| *p > 1)
        .collect()
}

/// Records the live process groups of a pod (best effort: a missing record only means a
/// restarted executor cannot kill that group).
fn write_pgids(dir: &Path, pgids: &[i32]) {
    let text: String = pgids.iter().map(|p| format!("{p}\n")).collect();
    let tmp = dir.join("pgids.tmp");
    if std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, dir.join("pgids")))
        .is_err()
    {
        tracing::warn!(dir = %dir.display(), "cannot record the pod's process groups");
    }
}

/// Copies `from` into a sink shared with another stream, chunk by chunk.
fn spawn_shared_copy(
    mut from: impl tokio::io::AsyncRead + Send + Unpin + 'static,
    sink: Arc<tokio::sync::Mutex<Box<dyn AsyncWrite + Send + Unpin>>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut s = sink.lock().await;
                    if s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sink.lock().await.flush().await;
    })
}

struct LocalExec {
    child: Child,
    stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    copiers: Vec<JoinHandle<()>>,
    pgid: Option<i32>,
    pod: String,
    dir: PathBuf,
    groups: Arc<Mutex<BTreeMap<String, Vec<i32>>>>,
}

#[async_trait]
impl ContainerExec for LocalExec {
    fn take_stdin(&mut self) -> Option<Box<dyn AsyncWrite + Send + Unpin>> {
        self.stdin.take()
    }

    async fn wait(mut self: Box<Self>) -> DriverResult<i32> {
        // Drop an untaken stdin so the process sees EOF.
        self.stdin = None;
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| DriverError::io("waiting for a process", e))?;
        if let Some(pgid) = self.pgid {
            LocalPod::forget_group(&self.groups, &self.pod, &self.dir, pgid);
        }
        for copier in std::mem::take(&mut self.copiers) {
            let abort = copier.abort_handle();
            if tokio::time::timeout(OUTPUT_DRAIN, copier).await.is_err() {
                // A background process still holds the output open; stop reading it.
                abort.abort();
            }
        }
        use std::os::unix::process::ExitStatusExt;
        Ok(status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(-1))
    }
}

//! One task's setup and steps inside its pod (spec 30 §4.1). Every command runs on container
//! 0 through the toolbox at `/mnt/agola/agola-toolbox`; `run` commands are wrapped by
//! `toolbox exec` (environment, working dir, user), because neither older docker exec nor
//! kubernetes exec can set them.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use agola_proto::common::v1 as pbc;
use agola_proto::runservice::v1 as pb;
use base64::Engine as _;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::driver::{
    Arch, ContainerConfig, DriverError, ExecConfig, Pod, PodConfig, RegistryAuth, TOOLBOX_BIN,
    TOOLBOX_DIR, TmpfsVolume,
};
use crate::error::{Error, Result};
use crate::tasks::{self, Tasks};
use crate::upload::{LogKind, LogUpload};

const DEFAULT_SHELL: &str = "/bin/sh -e";
const DEFAULT_WORKING_DIR: &str = "~";
/// How long a stopped exec may take to end before the step is given up.
const STOP_WAIT: Duration = Duration::from_secs(30);
/// Cap of captured toolbox output (paths, renderings, error text).
const CAPTURE_LIMIT: usize = 1024 * 1024;

/// Result of one step.
pub struct StepOutcome {
    pub ok: bool,
    pub exit_status: Option<i32>,
}

/// An in-memory sink for small outputs.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn text(&self) -> String {
        let buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let room = CAPTURE_LIMIT.saturating_sub(buf.len());
        buf.extend_from_slice(&data[..data.len().min(room)]);
        Poll::Ready(Ok(data.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What feeds an exec's stdin.
enum Input {
    None,
    Bytes(Vec<u8>),
    /// A streamed archive from the runservice (workspace or cache).
    Archive(ChunkStream),
}

/// Data chunks of a workspace or cache download.
type ChunkStream =
    Pin<Box<dyn futures::Stream<Item = std::result::Result<Vec<u8>, tonic::Status>> + Send>>;

/// Waits for the first message of a download, so a NotFound is seen before anything is
/// piped into the toolbox; returns the data stream.
async fn first_then_rest<T: Send + 'static>(
    mut stream: tonic::Streaming<T>,
    data: fn(T) -> Vec<u8>,
) -> std::result::Result<ChunkStream, tonic::Status> {
    use futures::StreamExt;
    let first = stream.message().await?;
    let head = futures::stream::iter(first.map(|m| Ok(data(m))));
    Ok(Box::pin(head.chain(stream.map(move |r| r.map(data)))))
}

/// Runs one task's setup and steps.
pub struct TaskRunner {
    tasks: Arc<Tasks>,
    id: String,
    spec: pbc::ExecutorTaskSpec,
    cancel: CancellationToken,
    /// The task working dir, absolute (after setup).
    working_dir: String,
    /// User of the commands ("" = the container's).
    user: String,
    uploads: Vec<LogUpload>,
}

impl TaskRunner {
    pub fn new(
        tasks: Arc<Tasks>,
        id: String,
        spec: pbc::ExecutorTaskSpec,
        cancel: CancellationToken,
    ) -> TaskRunner {
        TaskRunner {
            tasks,
            id,
            spec,
            cancel,
            working_dir: String::new(),
            user: String::new(),
            uploads: Vec::new(),
        }
    }

    /// Signals the end of every log still being uploaded (the uploads finish in the
    /// background).
    pub async fn finish_logs(&mut self) {
        for u in self.uploads.drain(..) {
            // The join handle is dropped on purpose: the upload completes in the background.
            drop(u.finish());
        }
    }

    async fn open_log(&mut self, kind: LogKind) -> Result<tokio::fs::File> {
        let path = match kind {
            LogKind::Setup => tasks::setup_log_path(&self.tasks.data_dir, &self.id),
            LogKind::Step(i) => tasks::step_log_path(&self.tasks.data_dir, &self.id, i),
        };
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        self.uploads.push(LogUpload::start(
            self.tasks.runservice.clone(),
            self.id.clone(),
            kind,
            path,
        ));
        Ok(file)
    }

    /// Creates the pod and the working dir; the setup log says what happened.
    pub async fn setup(&mut self) -> Result<Box<dyn Pod>> {
        let mut log = self.open_log(LogKind::Setup).await?;
        let res = self.setup_inner(&mut log).await;
        if let Err(e) = &res {
            let _ = log
                .write_all(format!("setup failed: {e}\n").as_bytes())
                .await;
        }
        let _ = log.flush().await;
        drop(log);
        self.finish_logs().await;
        res
    }

    async fn setup_inner(&mut self, log: &mut tokio::fs::File) -> Result<Box<dyn Pod>> {
        for sub in ["steps", "archives"] {
            let d = tasks::task_dir(&self.tasks.data_dir, &self.id).join(sub);
            tokio::fs::create_dir_all(&d)
                .await
                .map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
        }
        if self.spec.containers.is_empty() {
            return Err(Error::BadRequest("the task has no container".into()));
        }
        let privileged = self.spec.privileged || self.spec.containers.iter().any(|c| c.privileged);
        if privileged && !self.tasks.allow_privileged {
            return Err(Error::BadRequest(
                "privileged containers are not allowed on this executor".into(),
            ));
        }
        let arch = self.pod_arch().await?;
        let config = PodConfig {
            id: uuid::Uuid::new_v4().to_string(),
            task_id: self.id.clone(),
            containers: self
                .spec
                .containers
                .iter()
                .enumerate()
                .map(|(i, c)| container_config(i, c))
                .collect(),
            arch,
            init_volume_dir: TOOLBOX_DIR.to_owned(),
            docker_registries_auth: registries_auth(&self.spec)?,
        };
        let pod = tokio::select! {
            pod = self.tasks.driver.new_pod(config, log) => pod?,
            _ = self.cancel.cancelled() => return Err(Error::BadRequest("stopped during setup".into())),
        };
        self.user = if pod.ignores_user() {
            String::new()
        } else if !self.spec.user.is_empty() {
            self.spec.user.clone()
        } else {
            self.spec.containers[0].user.clone()
        };
        let wd = if self.spec.working_dir.is_empty() {
            DEFAULT_WORKING_DIR.to_owned()
        } else {
            self.spec.working_dir.clone()
        };
        let res = async {
            let expanded = self.expand_dir(pod.as_ref(), &wd).await?;
            let (code, _, err) = self
                .capture(
                    pod.as_ref(),
                    vec![TOOLBOX_BIN.into(), "mkdir".into(), expanded.clone()],
                    "",
                    Input::None,
                )
                .await?;
            if code != 0 {
                return Err(Error::BadRequest(format!(
                    "cannot create working dir {expanded}: {err}"
                )));
            }
            log.write_all(format!("working dir {expanded}\n").as_bytes())
                .await
                .map_err(|e| Error::io("writing the setup log", e))?;
            Ok(expanded)
        }
        .await;
        match res {
            Ok(wd) => {
                self.working_dir = wd;
                Ok(pod)
            }
            Err(e) => {
                let _ = pod.remove().await;
                Err(e)
            }
        }
    }

    async fn pod_arch(&self) -> Result<Arch> {
        let archs = self.tasks.driver.archs().await?;
        let wanted = match pbc::Arch::try_from(self.spec.arch).unwrap_or(pbc::Arch::Unspecified) {
            pbc::Arch::Unspecified => None,
            pbc::Arch::Arch386 => Some(Arch::I386),
            pbc::Arch::Amd64 => Some(Arch::Amd64),
            pbc::Arch::Arm => Some(Arch::Arm),
            pbc::Arch::Arm64 => Some(Arch::Arm64),
        };
        match wanted {
            Some(a) if archs.contains(&a) => Ok(a),
            Some(a) => Err(Error::BadRequest(format!(
                "this executor cannot run {} tasks",
                a.as_str()
            ))),
            None => archs
                .first()
                .copied()
                .ok_or_else(|| Error::BadRequest("the driver reports no arch".into())),
        }
    }

    /// Runs a toolbox command (or any command) capturing stdout and stderr.
    async fn capture(
        &self,
        pod: &dyn Pod,
        cmd: Vec<String>,
        cwd: &str,
        input: Input,
    ) -> Result<(i32, String, String)> {
        let out = Capture::default();
        let err = Capture::default();
        let code = self
            .run_exec(
                pod,
                cmd,
                cwd,
                input,
                Box::new(out.clone()),
                Some(Box::new(err.clone())),
                false,
            )
            .await?;
        Ok((code, out.text(), err.text()))
    }

    /// Runs one exec in container 0 with the task environment; stops it if the task is
    /// cancelled.
    #[allow(clippy::too_many_arguments)]
    async fn run_exec(
        &self,
        pod: &dyn Pod,
        cmd: Vec<String>,
        cwd: &str,
        input: Input,
        stdout: Box<dyn AsyncWrite + Send + Unpin>,
        stderr: Option<Box<dyn AsyncWrite + Send + Unpin>>,
        tty: bool,
    ) -> Result<i32> {
        let attach_stdin = !matches!(input, Input::None);
        let mut exec = pod
            .exec(ExecConfig {
                cmd,
                env: self.spec.environment.clone().into_iter().collect(),
                working_dir: cwd.to_owned(),
                user: self.user.clone(),
                attach_stdin,
                stdout,
                stderr,
                tty,
            })
            .await?;
        let feeder = exec.take_stdin().map(|mut stdin| {
            tokio::spawn(async move {
                let res: std::result::Result<(), String> = async {
                    match input {
                        Input::None => {}
                        Input::Bytes(b) => stdin.write_all(&b).await.map_err(|e| e.to_string())?,
                        Input::Archive(mut stream) => {
                            use futures::StreamExt;
                            while let Some(chunk) = stream.next().await {
                                let chunk = chunk.map_err(|e| e.message().to_owned())?;
                                if stdin.write_all(&chunk).await.is_err() {
                                    // The command stopped reading; its exit code tells why.
                                    break;
                                }
                            }
                        }
                    }
                    let _ = stdin.shutdown().await;
                    Ok(())
                }
                .await;
                res
            })
        });
        let wait = exec.wait();
        tokio::pin!(wait);
        let code = tokio::select! {
            r = &mut wait => r?,
            _ = self.cancel.cancelled() => {
                let _ = pod.stop().await;
                match tokio::time::timeout(STOP_WAIT, &mut wait).await {
                    Ok(r) => r?,
                    Err(_) => return Err(DriverError::Engine("the command did not end after the pod was stopped".into()).into()),
                }
            }
        };
        if let Some(f) = feeder
            && let Ok(Err(e)) = f.await
        {
            return Err(Error::Runservice(format!("download interrupted: {e}")));
        }
        Ok(code)
    }

    /// `toolbox expanddir`: `~` expanded as the command user, made absolute.
    async fn expand_dir(&self, pod: &dyn Pod, dir: &str) -> Result<String> {
        let (code, out, err) = self
            .capture(
                pod,
                vec![TOOLBOX_BIN.into(), "expanddir".into(), dir.to_owned()],
                "",
                Input::None,
            )
            .await?;
        if code != 0 || out.is_empty() {
            return Err(Error::BadRequest(format!(
                "cannot expand dir {dir:?}: {}",
                err.trim()
            )));
        }
        Ok(out)
    }

    /// A step dir: empty = the task working dir; relative = against it; `~` expanded.
    async fn step_dir(&self, pod: &dyn Pod, dir: &str) -> Result<String> {
        if dir.is_empty() {
            return Ok(self.working_dir.clone());
        }
        if dir.starts_with('/') || dir.starts_with('~') {
            return self.expand_dir(pod, dir).await;
        }
        self.expand_dir(
            pod,
            &format!("{}/{dir}", self.working_dir.trim_end_matches('/')),
        )
        .await
    }

    /// Runs step `i`; its output goes to `steps/<i>.log`.
    pub async fn run_step(&mut self, pod: &dyn Pod, i: usize) -> StepOutcome {
        let mut log = match self.open_log(LogKind::Step(i)).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(task_id = %self.id, error = %e, "cannot open the step log");
                return StepOutcome {
                    ok: false,
                    exit_status: None,
                };
            }
        };
        let step = self.spec.steps.get(i).and_then(|s| s.step.clone());
        let res = match step {
            Some(pbc::step::Step::Run(s)) => self.run(pod, &s, &log).await,
            Some(pbc::step::Step::SaveToWorkspace(s)) => {
                self.save_to_workspace(pod, i, &s, &log).await
            }
            Some(pbc::step::Step::RestoreWorkspace(s)) => {
                self.restore_workspace(pod, &s, &mut log).await
            }
            Some(pbc::step::Step::SaveCache(s)) => self.save_cache(pod, i, &s, &mut log).await,
            Some(pbc::step::Step::RestoreCache(s)) => self.restore_cache(pod, &s, &mut log).await,
            None => Err(Error::BadRequest(format!("step {i} has no type"))),
        };
        let outcome = match res {
            Ok(code) => StepOutcome {
                ok: code == 0,
                exit_status: Some(code),
            },
            Err(e) => {
                let _ = log
                    .write_all(format!("\nstep failed: {e}\n").as_bytes())
                    .await;
                StepOutcome {
                    ok: false,
                    exit_status: None,
                }
            }
        };
        let _ = log.flush().await;
        drop(log);
        self.finish_logs().await;
        outcome
    }

    async fn log_sink(log: &tokio::fs::File) -> Result<Box<dyn AsyncWrite + Send + Unpin>> {
        let f = log
            .try_clone()
            .await
            .map_err(|e| Error::io("opening the step log", e))?;
        Ok(Box::new(f))
    }

    async fn run(&self, pod: &dyn Pod, s: &pbc::RunStep, log: &tokio::fs::File) -> Result<i32> {
        let (code, file, err) = self
            .capture(
                pod,
                vec![TOOLBOX_BIN.into(), "createfile".into()],
                "",
                Input::Bytes(s.command.clone().into_bytes()),
            )
            .await?;
        if code != 0 || file.is_empty() {
            return Err(Error::BadRequest(format!(
                "cannot write the step command: {}",
                err.trim()
            )));
        }
        let cwd = self.step_dir(pod, &s.working_dir).await?;
        let mut env: BTreeMap<String, String> = self.spec.environment.clone().into_iter().collect();
        env.extend(s.environment.clone());
        let shell = if !s.shell.is_empty() {
            s.shell.clone()
        } else if !self.spec.shell.is_empty() {
            self.spec.shell.clone()
        } else {
            DEFAULT_SHELL.to_owned()
        };
        let env_json = serde_json::to_string(&env).map_err(|e| Error::BadRequest(e.to_string()))?;
        let mut cmd = vec![
            TOOLBOX_BIN.to_owned(),
            "exec".into(),
            "-e".into(),
            env_json,
            "-w".into(),
            cwd.clone(),
        ];
        if !self.user.is_empty() {
            cmd.push("-u".into());
            cmd.push(self.user.clone());
        }
        cmd.push("--".into());
        cmd.extend(shell.split_whitespace().map(String::from));
        cmd.push(file);
        self.run_exec(
            pod,
            cmd,
            &cwd,
            Input::None,
            Self::log_sink(log).await?,
            None,
            s.tty.unwrap_or(true),
        )
        .await
    }

    fn archive_request(contents: &[pbc::SaveContent], default_all: bool) -> Result<Vec<u8>> {
        let infos: Vec<serde_json::Value> = contents
            .iter()
            .map(|c| {
                let paths = if c.paths.is_empty() && default_all { vec!["**".to_owned()] } else { c.paths.clone() };
                serde_json::json!({"source_dir": c.source_dir, "dest_dir": c.dest_dir, "paths": paths})
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({"archive_infos": infos, "out_file": ""}))
            .map_err(|e| Error::BadRequest(e.to_string()))
    }

    /// Archives `contents` with the toolbox into `out` (a local file).
    async fn archive_to(
        &self,
        pod: &dyn Pod,
        contents: &[pbc::SaveContent],
        default_all: bool,
        out: &std::path::Path,
        log: &tokio::fs::File,
    ) -> Result<i32> {
        let req = Self::archive_request(contents, default_all)?;
        let file = tokio::fs::File::create(out)
            .await
            .map_err(|e| Error::io(format!("creating {}", out.display()), e))?;
        self.run_exec(
            pod,
            vec![TOOLBOX_BIN.into(), "archive".into()],
            &self.working_dir,
            Input::Bytes(req),
            Box::new(file),
            Some(Self::log_sink(log).await?),
            false,
        )
        .await
    }

    async fn save_to_workspace(
        &self,
        pod: &dyn Pod,
        i: usize,
        s: &pbc::SaveToWorkspaceStep,
        log: &tokio::fs::File,
    ) -> Result<i32> {
        let out = tasks::archive_path(&self.tasks.data_dir, &self.id, i);
        self.archive_to(pod, &s.contents, false, &out, log).await
    }

    async fn unarchive(
        &self,
        pod: &dyn Pod,
        dest: &str,
        overwrite: bool,
        stream: ChunkStream,
        log: &tokio::fs::File,
    ) -> Result<i32> {
        let mut cmd = vec![
            TOOLBOX_BIN.to_owned(),
            "unarchive".into(),
            "--destdir".into(),
            dest.to_owned(),
        ];
        if overwrite {
            cmd.push("--overwrite".into());
        }
        self.run_exec(
            pod,
            cmd,
            &self.working_dir,
            Input::Archive(stream),
            Self::log_sink(log).await?,
            None,
            false,
        )
        .await
    }

    async fn restore_workspace(
        &self,
        pod: &dyn Pod,
        s: &pbc::RestoreWorkspaceStep,
        log: &mut tokio::fs::File,
    ) -> Result<i32> {
        let dest = self.step_dir(pod, &s.dest_dir).await?;
        for op in self.spec.workspace_operations.clone() {
            let req = pb::GetWorkspaceArchiveRequest {
                task_id: op.task_id.clone(),
                step: op.step,
            };
            let stream = match self
                .tasks
                .runservice
                .clone()
                .get_workspace_archive(req)
                .await
            {
                Ok(r) => {
                    first_then_rest(r.into_inner(), |m: pb::GetWorkspaceArchiveResponse| m.data)
                        .await
                }
                Err(st) => Err(st),
            };
            let stream = match stream {
                Ok(s) => s,
                Err(status) if status.code() == tonic::Code::NotFound => {
                    return Err(Error::NotFound(format!(
                        "workspace archive of task {} step {} not found",
                        op.task_id, op.step
                    )));
                }
                Err(status) => return Err(Error::Runservice(status.message().to_owned())),
            };
            let _ = log
                .write_all(
                    format!(
                        "restoring workspace of task {} step {} into {dest}\n",
                        op.task_id, op.step
                    )
                    .as_bytes(),
                )
                .await;
            let code = self
                .unarchive(pod, &dest, op.overwrite, stream, log)
                .await?;
            if code != 0 {
                return Ok(code);
            }
        }
        Ok(0)
    }

    async fn render_key(&self, pod: &dyn Pod, template: &str) -> Result<String> {
        let (code, out, err) = self
            .capture(
                pod,
                vec![TOOLBOX_BIN.into(), "template".into()],
                &self.working_dir,
                Input::Bytes(template.as_bytes().to_vec()),
            )
            .await?;
        if code != 0 {
            return Err(Error::BadRequest(format!(
                "cache key template {template:?}: {}",
                err.trim()
            )));
        }
        Ok(if self.spec.cache_prefix.is_empty() {
            out
        } else {
            format!("{}-{out}", self.spec.cache_prefix)
        })
    }

    async fn save_cache(
        &self,
        pod: &dyn Pod,
        i: usize,
        s: &pbc::SaveCacheStep,
        log: &mut tokio::fs::File,
    ) -> Result<i32> {
        let key = self.render_key(pod, &s.key).await?;
        let mut client = self.tasks.runservice.clone();
        match client
            .stat_cache(pb::StatCacheRequest {
                key: key.clone(),
                prefix: false,
            })
            .await
        {
            Ok(_) => {
                let _ = log
                    .write_all(format!("cache key {key:?} already exists\n").as_bytes())
                    .await;
                return Ok(0);
            }
            Err(st) if st.code() == tonic::Code::NotFound => {}
            Err(st) => return Err(Error::Runservice(st.message().to_owned())),
        }
        let out = tasks::task_dir(&self.tasks.data_dir, &self.id).join(format!("cache-{i}.tar"));
        let code = self.archive_to(pod, &s.contents, true, &out, log).await?;
        if code != 0 {
            let _ = tokio::fs::remove_file(&out).await;
            return Ok(code);
        }
        let res = put_cache(&mut client, &key, &out).await;
        let _ = tokio::fs::remove_file(&out).await;
        let already = res?;
        let msg = if already {
            format!("cache key {key:?} was saved by another task meanwhile\n")
        } else {
            format!("cache saved with key {key:?}\n")
        };
        let _ = log.write_all(msg.as_bytes()).await;
        Ok(0)
    }

    async fn restore_cache(
        &self,
        pod: &dyn Pod,
        s: &pbc::RestoreCacheStep,
        log: &mut tokio::fs::File,
    ) -> Result<i32> {
        let dest = self.step_dir(pod, &s.dest_dir).await?;
        for template in &s.keys {
            let key = self.render_key(pod, template).await?;
            let req = pb::GetCacheRequest {
                key: key.clone(),
                prefix: true,
            };
            let stream = match self.tasks.runservice.clone().get_cache(req).await {
                Ok(r) => first_then_rest(r.into_inner(), |m: pb::GetCacheResponse| m.data).await,
                Err(st) => Err(st),
            };
            match stream {
                Ok(stream) => {
                    let _ = log
                        .write_all(
                            format!("restoring cache with key prefix {key:?} into {dest}\n")
                                .as_bytes(),
                        )
                        .await;
                    return self.unarchive(pod, &dest, false, stream, log).await;
                }
                Err(st) if st.code() == tonic::Code::NotFound => {
                    let _ = log
                        .write_all(format!("no cache with key prefix {key:?}\n").as_bytes())
                        .await;
                }
                Err(st) => return Err(Error::Runservice(st.message().to_owned())),
            }
        }
        let _ = log.write_all(b"no cache restored\n").await;
        Ok(0)
    }
}

/// Streams a cache archive to the runservice; returns `already_existed`.
async fn put_cache(
    client: &mut crate::runservice::RunserviceClient,
    key: &str,
    path: &std::path::Path,
) -> Result<bool> {
    use tokio::io::AsyncReadExt;
    let size = tokio::fs::metadata(path)
        .await
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
        .len();
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::PutCacheRequest>(4);
    let header = pb::PutCacheRequest {
        payload: Some(pb::put_cache_request::Payload::Header(pb::PutCacheHeader {
            key: key.to_owned(),
            size: Some(size),
        })),
    };
    let _ = tx.send(header).await;
    let feeder = tokio::spawn(async move {
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            let n = file.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            let msg = pb::PutCacheRequest {
                payload: Some(pb::put_cache_request::Payload::Data(buf[..n].to_vec())),
            };
            if tx.send(msg).await.is_err() {
                return Ok(());
            }
        }
    });
    let resp = client
        .put_cache(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|st| Error::Runservice(format!("put cache: {}", st.message())))?;
    feeder
        .await
        .map_err(|e| Error::Runservice(e.to_string()))?
        .map_err(|e| Error::io("reading the cache archive", e))?;
    Ok(resp.into_inner().already_existed)
}

fn container_config(i: usize, c: &pbc::Container) -> ContainerConfig {
    let cmd: Vec<String> = if !c.entrypoint.trim().is_empty() {
        c.entrypoint.split_whitespace().map(String::from).collect()
    } else if i == 0 {
        vec![TOOLBOX_BIN.into(), "sleeper".into()]
    } else {
        vec![]
    };
    ContainerConfig {
        image: c.image.clone(),
        cmd,
        env: c.environment.clone().into_iter().collect(),
        user: c.user.clone(),
        privileged: c.privileged,
        volumes: c
            .volumes
            .iter()
            .filter_map(|v| {
                v.tmpfs.as_ref().map(|t| TmpfsVolume {
                    path: v.path.clone(),
                    size: t.size,
                })
            })
            .collect(),
    }
}

/// The registry host of an image reference (`docker.io` for Docker Hub).
pub fn registry_host(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_owned()
        }
        _ => "docker.io".to_owned(),
    }
}

/// Credentials for every container's registry (improvement over Agola, which authenticated
/// only the main container's registry).
fn registries_auth(spec: &pbc::ExecutorTaskSpec) -> Result<BTreeMap<String, RegistryAuth>> {
    let mut out = BTreeMap::new();
    for c in &spec.containers {
        let host = registry_host(&c.image);
        let Some(auth) = spec.docker_registries_auth.get(&host).or_else(|| {
            (host == "docker.io")
                .then(|| spec.docker_registries_auth.get("index.docker.io"))
                .flatten()
        }) else {
            continue;
        };
        let creds = match pbc::DockerRegistryAuthType::try_from(auth.r#type) {
            Ok(pbc::DockerRegistryAuthType::Encodedauth) => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(auth.auth.trim())
                    .map_err(|e| {
                        Error::BadRequest(format!("registry {host}: bad encoded auth: {e}"))
                    })?;
                let text = String::from_utf8(raw).map_err(|_| {
                    Error::BadRequest(format!("registry {host}: encoded auth is not UTF-8"))
                })?;
                let (u, p) = text.split_once(':').ok_or_else(|| {
                    Error::BadRequest(format!(
                        "registry {host}: encoded auth is not user:password"
                    ))
                })?;
                RegistryAuth {
                    username: u.to_owned(),
                    password: p.to_owned(),
                }
            }
            _ => RegistryAuth {
                username: auth.username.clone(),
                password: auth.password.clone(),
            },
        };
        out.insert(host, creds);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hosts() {
        assert_eq!(registry_host("busybox"), "docker.io");
        assert_eq!(registry_host("library/busybox:1"), "docker.io");
        assert_eq!(registry_host("quay.io/a/b"), "quay.io");
        assert_eq!(registry_host("localhost/x"), "localhost");
        assert_eq!(registry_host("reg:5000/x"), "reg:5000");
    }

    #[test]
    fn every_container_registry_gets_credentials() {
        let mut spec = pbc::ExecutorTaskSpec {
            containers: vec![
                pbc::Container {
                    image: "busybox".into(),
                    ..Default::default()
                },
                pbc::Container {
                    image: "quay.io/x/db".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        spec.docker_registries_auth.insert(
            "docker.io".into(),
            pbc::DockerRegistryAuth {
                r#type: pbc::DockerRegistryAuthType::Basic as i32,
                username: "u".into(),
                password: "p".into(),
                auth: String::new(),
            },
        );
        spec.docker_registries_auth.insert(
            "quay.io".into(),
            pbc::DockerRegistryAuth {
                r#type: pbc::DockerRegistryAuthType::Encodedauth as i32,
                auth: base64::engine::general_purpose::STANDARD.encode("q:s"),
                ..Default::default()
            },
        );
        let auth = registries_auth(&spec).expect("auth");
        assert_eq!(
            auth["docker.io"],
            RegistryAuth {
                username: "u".into(),
                password: "p".into()
            }
        );
        assert_eq!(
            auth["quay.io"],
            RegistryAuth {
                username: "q".into(),
                password: "s".into()
            }
        );
    }
}

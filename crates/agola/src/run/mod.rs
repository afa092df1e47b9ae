//! `agola run [DIR]`: runs a repository's pipeline with no server. The whole mesh
//! (runservice, scheduler, executor) starts in-process on loopback listeners, on embedded
//! defaults in a temporary (or `--data-dir`) directory, and the run goes through the same
//! gRPC APIs as on a server: the runs are created from the working tree's `.agola/config.*`,
//! started by the scheduler, executed by the executor, and followed through `RunService`.
//!
//! The clone step copies the working tree: it is uploaded once as a cache entry of the run's
//! private cache group and every clone step becomes a restore of that entry.

mod output;
mod worktree;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use agola_common::grpc::GrpcChannel;
use agola_config::{ConfigFormat, RefContext, RunSetup};
use agola_proto::common::v1 as pbc;
use agola_proto::runservice::v1 as pb;
use agola_proto::runservice::v1::run_service_client::RunServiceClient;
use anyhow::{Context, bail};
use tokio::net::TcpListener;

use crate::config::{Component, Config};

pub use output::OutputFormat;

/// Exit codes of `agola run`.
pub const EXIT_SUCCESS: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_SETUP_ERROR: u8 = 2;

/// Which driver runs the tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DriverChoice {
    /// Docker when a daemon answers, else local.
    Auto,
    Local,
    Docker,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Repository directory holding `.agola/config.*`.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Keep the state (KV, object storage, task data) here instead of a temporary directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Driver running the tasks.
    #[arg(long, value_enum, default_value = "auto")]
    pub driver: DriverChoice,
    /// Branch of the ref context (default: the checked-out branch, else `main`).
    #[arg(long, conflicts_with_all = ["tag", "git_ref"])]
    pub branch: Option<String>,
    /// Tag of the ref context.
    #[arg(long, conflicts_with = "git_ref")]
    pub tag: Option<String>,
    /// A raw git ref (`refs/...`) as the ref context.
    #[arg(long = "ref")]
    pub git_ref: Option<String>,
    /// A variable for `from_variable` values: NAME=VALUE (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// A YAML or JSON file of variables (a map of names to string values).
    #[arg(long)]
    pub var_file: Option<PathBuf>,
    /// Approve the named approval task (repeatable).
    #[arg(long = "approve", value_name = "TASK")]
    pub approve: Vec<String>,
    /// Approve every approval task.
    #[arg(long)]
    pub approve_all: bool,
    /// `text` (progress and summary) or `json` (one object at the end).
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
    /// Tasks run at once (default: the number of CPUs, at least 2).
    #[arg(long)]
    pub parallelism: Option<u32>,
    /// Directory holding `agola-toolbox-linux-<arch>` (default: `toolbox/` next to the agola
    /// binary or one level up, where scripts/build-toolbox.sh puts it).
    #[arg(long)]
    pub toolbox_path: Option<PathBuf>,
}

/// Parses `--var` and `--var-file` into a map (later values win; `--var` wins over the file).
fn variables(args: &RunArgs) -> anyhow::Result<BTreeMap<String, String>> {
    let mut vars = BTreeMap::new();
    if let Some(path) = &args.var_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--var-file {}", path.display()))?;
        let map: BTreeMap<String, serde_yaml_ng::Value> = serde_yaml_ng::from_str(&text)
            .with_context(|| {
                format!(
                    "--var-file {}: expected a map of names to values",
                    path.display()
                )
            })?;
        for (k, v) in map {
            let v = match v {
                serde_yaml_ng::Value::String(s) => s,
                serde_yaml_ng::Value::Number(n) => n.to_string(),
                serde_yaml_ng::Value::Bool(b) => b.to_string(),
                _ => bail!(
                    "--var-file {}: variable {k:?} must be a string, number or boolean",
                    path.display()
                ),
            };
            vars.insert(k, v);
        }
    }
    for v in &args.vars {
        let Some((name, value)) = v.split_once('=') else {
            bail!("--var {v:?}: expected NAME=VALUE");
        };
        if name.is_empty() {
            bail!("--var {v:?}: the name is empty");
        }
        vars.insert(name.to_owned(), value.to_owned());
    }
    Ok(vars)
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The ref context of the run: the flags, else the checked-out branch and commit.
fn ref_context(args: &RunArgs) -> RefContext {
    let sha = git(&args.dir, &["rev-parse", "HEAD"]).unwrap_or_default();
    if let Some(tag) = &args.tag {
        return RefContext::tag(tag.clone(), sha);
    }
    if let Some(r) = &args.git_ref {
        if let Some(b) = r.strip_prefix("refs/heads/") {
            return RefContext::branch(b, sha);
        }
        if let Some(t) = r.strip_prefix("refs/tags/") {
            return RefContext::tag(t, sha);
        }
        let mut ctx = RefContext::branch("", sha);
        ctx.git_ref = r.clone();
        return ctx;
    }
    let branch = args
        .branch
        .clone()
        .or_else(|| git(&args.dir, &["rev-parse", "--abbrev-ref", "HEAD"]).filter(|b| b != "HEAD"))
        .unwrap_or_else(|| "main".to_owned());
    RefContext::branch(branch, sha)
}

/// Does a Docker daemon answer on the default socket?
async fn docker_available() -> bool {
    let path = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(String::from))
        .unwrap_or_else(|| "/var/run/docker.sock".to_owned());
    tokio::net::UnixStream::connect(path).await.is_ok()
}

/// The in-process mesh.
struct Mesh {
    running: crate::serve::Running,
    runservice_url: String,
    _tmp: Option<tempfile::TempDir>,
}

async fn start_mesh(args: &RunArgs, driver: agola_executor::DriverType) -> anyhow::Result<Mesh> {
    let (data_dir, tmp) = match &args.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("--data-dir {}", d.display()))?;
            (d.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("agola-run-")
                .tempdir()
                .context("creating a temporary data dir")?;
            (t.path().to_owned(), Some(t))
        }
    };
    let serve_args = crate::cli::ServeArgs {
        config: None,
        components: "runservice,executor,scheduler".into(),
        data_dir: Some(data_dir),
        listen: None,
        admin_token: None,
    };
    let mut config = Config::load(&serve_args, std::env::vars())?;
    config.executor.driver.kind = driver;
    if let Some(p) = &args.toolbox_path {
        config.executor.toolbox_path = Some(p.clone());
    }
    // No registry may be reachable from a developer machine: use local images when present.
    config.executor.driver.pull_policy = agola_executor::PullPolicy::IfNotPresent;
    let parallelism = args.parallelism.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(2)
            .max(2)
    });
    config.executor.active_tasks_limit = parallelism;
    config.runservice.schedule_interval_ms = 100;
    config.scheduler.interval_ms = 100;
    let mut listeners = BTreeMap::new();
    for c in [
        Component::Runservice,
        Component::Executor,
        Component::Scheduler,
    ] {
        listeners.insert(
            c,
            TcpListener::bind("127.0.0.1:0")
                .await
                .context("binding a loopback listener")?,
        );
    }
    let runservice_url = format!("http://{}", listeners[&Component::Runservice].local_addr()?);
    let running = crate::serve::start(config, listeners)?;
    Ok(Mesh {
        running,
        runservice_url,
        _tmp: tmp,
    })
}

type Api = RunServiceClient<GrpcChannel>;

/// Waits until the runservice answers (bounded), or the mesh failed.
async fn wait_ready(api: &mut Api, mesh: &mut Mesh) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let probe = api
            .list_executors(pb::ListExecutorsRequest {})
            .await
            .map(|r| !r.into_inner().executors.is_empty());
        if let Ok(true) = probe {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the in-process services did not become ready in 30 s");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            e = mesh.running.failed() => return Err(e),
        }
    }
}

/// What a finished `agola run` produced.
#[derive(Debug)]
pub struct Outcome {
    /// The process exit code: 0 success, 1 failure, 2 setup error (the worst run).
    pub code: u8,
    /// The `--output json` document.
    pub report: serde_json::Value,
}

/// `agola run`: prints progress (text) or the report (json); returns the exit code.
pub async fn run(args: RunArgs) -> anyhow::Result<u8> {
    let format = args.output;
    let outcome = execute(args).await?;
    if format == OutputFormat::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&outcome.report).unwrap_or_else(|_| "{}".into())
        );
    }
    Ok(outcome.code)
}

/// Runs the pipeline; with `--output json` nothing is printed on stdout (the caller prints
/// the report).
pub async fn execute(args: RunArgs) -> anyhow::Result<Outcome> {
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("repository dir {}", args.dir.display()))?;
    let vars = variables(&args)?;
    let ctx = ref_context(&args);
    let (format, data): (ConfigFormat, Vec<u8>) = agola_config::read_config_dir(&dir)
        .with_context(|| format!("reading the pipeline config of {}", dir.display()))?;
    let config = agola_config::parse_config(format, &data, &ctx);

    let driver = match args.driver {
        DriverChoice::Local => agola_executor::DriverType::Local,
        DriverChoice::Docker => agola_executor::DriverType::Docker,
        DriverChoice::Auto => {
            if docker_available().await {
                agola_executor::DriverType::Docker
            } else {
                agola_executor::DriverType::Local
            }
        }
    };

    let worktree_key = format!("agola-worktree-{}", uuid::Uuid::new_v4());
    let ref_name = if !ctx.branch.is_empty() {
        format!("branch/{}", ctx.branch)
    } else if !ctx.tag.is_empty() {
        format!("tag/{}", ctx.tag)
    } else {
        "ref".to_owned()
    };
    let setup = RunSetup {
        ctx: ctx.clone(),
        variables: vars,
        group: format!("/project/agola-run/{ref_name}"),
        annotations: BTreeMap::new(),
        static_environment: agola_config::static_environment(
            &agola_config::GitSource {
                repository_url: dir.display().to_string(),
                ..Default::default()
            },
            &ctx,
        ),
        environment: BTreeMap::new(),
        cache_group: format!("agola-run-{}", worktree::dir_hash(&dir)),
    };
    let mut run_configs = agola_config::run_configs_for(config, &setup);
    if run_configs.is_empty() {
        bail!(
            "no run of {} matches the ref {} (every run's `when` excludes it)",
            dir.display(),
            ctx.git_ref
        );
    }
    let needs_worktree = worktree::replace_clone_steps(&mut run_configs, &worktree_key);

    let mut mesh = start_mesh(&args, driver).await?;
    let channel = agola_common::grpc::connect(&mesh.runservice_url, None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut api: Api = RunServiceClient::new(channel.clone());
    let result = async {
        wait_ready(&mut api, &mut mesh).await?;
        if needs_worktree {
            worktree::upload(channel.clone(), &dir, &setup.cache_group, &worktree_key).await?;
        }
        let mut runs = Vec::new();
        for rc in &run_configs {
            let created = api
                .create_run(pb::CreateRunRequest {
                    run_config_tasks: rc
                        .tasks
                        .values()
                        .map(agola_config::proto::run_config_task_to_pb)
                        .collect(),
                    name: rc.name.clone(),
                    group: rc.group.clone(),
                    setup_errors: rc.setup_errors.clone(),
                    static_environment: rc.static_environment.clone().into_iter().collect(),
                    environment: rc.environment.clone().into_iter().collect(),
                    annotations: rc.annotations.clone().into_iter().collect(),
                    cache_group: rc.cache_group.clone(),
                })
                .await
                .map_err(|s| anyhow::anyhow!("creating run {:?}: {}", rc.name, s.message()))?
                .into_inner();
            runs.push((
                created.run.context("the runservice returned no run")?,
                created
                    .run_config
                    .context("the runservice returned no run config")?,
            ));
        }
        let approvals = Approvals {
            all: args.approve_all,
            names: args.approve.iter().cloned().collect(),
        };
        follow(&mut api, runs, &approvals, args.output, driver).await
    }
    .await;
    if let Err(e) = mesh.running.stop().await {
        tracing::warn!(error = %e, "stopping the in-process services");
    }
    result
}

/// Which approval tasks `agola run` approves.
struct Approvals {
    all: bool,
    names: BTreeSet<String>,
}

/// Follows the runs to their end, printing progress; returns the exit code.
async fn follow(
    api: &mut Api,
    mut runs: Vec<(pbc::Run, pbc::RunConfig)>,
    approvals: &Approvals,
    format: OutputFormat,
    driver: agola_executor::DriverType,
) -> anyhow::Result<Outcome> {
    let mut out = output::Progress::new(format, api.clone());
    out.start(&runs, driver);
    let mut stopped_waiting: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    let mut interrupted = false;
    // When only approval-waiting tasks remain, the run is stopped once nothing changed for
    // this long (tasks may still become ready in between scheduler passes).
    let idle_limit = Duration::from_millis(1500);
    let mut idle_since: BTreeMap<String, (tokio::time::Instant, Vec<(String, i32)>)> =
        BTreeMap::new();
    loop {
        let mut all_done = true;
        for (run, rc) in runs.iter_mut() {
            let fresh = api
                .get_run(pb::GetRunRequest {
                    run_id: run.id.clone(),
                    change_groups: vec![],
                })
                .await
                .map_err(|s| anyhow::anyhow!("reading run {}: {}", run.id, s.message()))?
                .into_inner()
                .run
                .context("the runservice returned no run")?;
            out.update(&fresh, rc);
            *run = fresh;
            let phase = pbc::RunPhase::try_from(run.phase).unwrap_or(pbc::RunPhase::Unspecified);
            if matches!(
                phase,
                pbc::RunPhase::Finished | pbc::RunPhase::Setuperror | pbc::RunPhase::Cancelled
            ) {
                continue;
            }
            all_done = false;
            if run.stop {
                continue;
            }
            // Approvals.
            let mut waiting = Vec::new();
            for (id, t) in &run.tasks {
                if !t.waiting_approval || t.approved {
                    continue;
                }
                let name = rc.tasks.get(id).map(|c| c.name.clone()).unwrap_or_default();
                if approvals.all || approvals.names.contains(&name) {
                    api.run_task_action(pb::RunTaskActionRequest {
                        run_id: run.id.clone(),
                        task_id: id.clone(),
                        action_type: pb::RunTaskActionType::Approve as i32,
                        annotations: Default::default(),
                        change_groups_update_token: String::new(),
                    })
                    .await
                    .map_err(|s| anyhow::anyhow!("approving task {name}: {}", s.message()))?;
                    out.note(&format!("approved task {name}"));
                } else {
                    waiting.push(name);
                }
            }
            let running = run
                .tasks
                .values()
                .any(|t| t.status == pbc::RunTaskStatus::Running as i32);
            if !waiting.is_empty() && !running && phase == pbc::RunPhase::Running {
                // Sorted by task id: the map's iteration order differs between reads.
                let snapshot: Vec<(String, i32)> = run
                    .tasks
                    .iter()
                    .map(|(id, t)| (id.clone(), t.status))
                    .collect::<BTreeMap<_, _>>()
                    .into_iter()
                    .collect();
                let entry = idle_since
                    .entry(run.id.clone())
                    .or_insert_with(|| (tokio::time::Instant::now(), snapshot.clone()));
                if entry.1 != snapshot {
                    *entry = (tokio::time::Instant::now(), snapshot);
                } else if entry.0.elapsed() >= idle_limit {
                    waiting.sort();
                    out.note(&format!(
                        "run {}: only tasks waiting for approval remain ({}); stopping it (use --approve TASK or --approve-all)",
                        rc.name,
                        waiting.join(", ")
                    ));
                    stop_run(api, &run.id).await?;
                    stopped_waiting.insert(run.id.clone(), waiting);
                }
            } else {
                idle_since.remove(&run.id);
            }
        }
        if all_done {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            r = &mut ctrl_c, if !interrupted => {
                r.context("listening for Ctrl-C")?;
                interrupted = true;
                out.note("interrupted: stopping the runs");
                for (run, _) in &runs {
                    if run.phase == pbc::RunPhase::Running as i32 {
                        stop_run(api, &run.id).await?;
                    } else if run.phase == pbc::RunPhase::Queued as i32 {
                        let _ = api
                            .run_action(pb::RunActionRequest {
                                run_id: run.id.clone(),
                                action_type: pb::RunActionType::ChangePhase as i32,
                                phase: pbc::RunPhase::Cancelled as i32,
                                change_groups_update_token: String::new(),
                            })
                            .await;
                    }
                }
            }
        }
    }
    out.finish_logs().await;
    let code = runs
        .iter()
        .map(|(run, _)| {
            if run.phase == pbc::RunPhase::Setuperror as i32 {
                EXIT_SETUP_ERROR
            } else if run.result == pbc::RunResult::Success as i32 {
                EXIT_SUCCESS
            } else {
                EXIT_FAILED
            }
        })
        .max()
        .unwrap_or(EXIT_SUCCESS);
    out.summary(&runs, &stopped_waiting);
    Ok(Outcome {
        code,
        report: output::report(&runs, &stopped_waiting),
    })
}

async fn stop_run(api: &mut Api, run_id: &str) -> anyhow::Result<()> {
    api.run_action(pb::RunActionRequest {
        run_id: run_id.to_owned(),
        action_type: pb::RunActionType::Stop as i32,
        phase: pbc::RunPhase::Unspecified as i32,
        change_groups_update_token: String::new(),
    })
    .await
    .map_err(|s| anyhow::anyhow!("stopping run {run_id}: {}", s.message()))?;
    Ok(())
}

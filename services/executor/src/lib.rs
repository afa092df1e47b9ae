//! The executor: runs executor tasks through a driver (local processes, docker) and streams
//! their status and logs to the runservice (spec 30).
//!
//! Layout: `driver/` (the pod abstraction and its implementations), `tasks` (intake and the
//! task lifecycle), `steps` (setup and steps inside a pod, all through the toolbox),
//! `upload` (live log upload), `stream` (the runservice connection: registration,
//! heartbeats, reconnects), `service` (`ExecutorService`: logs and archives served from the
//! data dir).

pub mod config;
pub mod driver;
pub mod error;
pub mod runservice;
pub mod service;
pub mod steps;
pub mod stream;
pub mod tasks;
pub mod upload;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agola_common::Shutdown;
use agola_common::grpc::GrpcServer;
use tokio::net::TcpListener;

pub use config::{Config, DriverType, PullPolicy};
pub use error::{Error, Result};

use driver::Driver;

/// How often orphan pods are looked for.
const PODS_CLEANER_INTERVAL: Duration = Duration::from_secs(1);
/// On shutdown, how long running tasks get to report their stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Reads the executor id from `<data_dir>/id`, creating it on first start.
pub fn executor_id(data_dir: &Path) -> Result<String> {
    let path = data_dir.join("id");
    match std::fs::read_to_string(&path) {
        Ok(id) => {
            let id = id.trim().to_owned();
            if uuid::Uuid::parse_str(&id).is_err() {
                return Err(Error::Config(format!(
                    "{} does not hold an executor id (a UUID); remove it to get a new one",
                    path.display()
                )));
            }
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)
                .map_err(|e| Error::io(format!("creating {}", data_dir.display()), e))?;
            let id = uuid::Uuid::new_v4().to_string();
            let tmp = data_dir.join("id.tmp");
            std::fs::write(&tmp, &id)
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
            Ok(id)
        }
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// The URL the runservice uses to reach this executor: the advertised URL, else the
/// listener's address (its first non-loopback IP when bound to the wildcard address).
fn listen_url(config: &Config, addr: SocketAddr) -> String {
    if let Some(url) = config.advertise_url.as_deref().filter(|u| !u.is_empty()) {
        return url.to_owned();
    }
    let ip = if addr.ip().is_unspecified() {
        local_ip().unwrap_or(IpAddr::from([127, 0, 0, 1]))
    } else {
        addr.ip()
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// The IP of the interface holding the default route (no packet is sent: connecting a UDP
/// socket only picks the route).
fn local_ip() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("10.255.255.255:1").ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

/// The toolbox directory: configured, else `toolbox/` next to the running binary or one
/// level up (where `scripts/build-toolbox.sh` puts it: `$CARGO_TARGET_DIR/toolbox` beside
/// `$CARGO_TARGET_DIR/debug/agola`).
fn toolbox_dir(config: &Config) -> PathBuf {
    if let Some(p) = &config.toolbox_path {
        return p.clone();
    }
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let candidates: Vec<PathBuf> = exe_dir
        .iter()
        .flat_map(|d| [d.join("toolbox"), d.join("../toolbox")])
        .collect();
    candidates
        .iter()
        .find(|d| d.is_dir())
        .or(candidates.first())
        .cloned()
        .unwrap_or_else(|| PathBuf::from("toolbox"))
}

async fn local_driver(config: &Config, id: &str, data_dir: &Path) -> Result<Arc<dyn Driver>> {
    let d = driver::local::LocalDriver::new(driver::local::LocalDriverConfig {
        executor_id: id.to_owned(),
        data_dir: data_dir.to_owned(),
        toolbox_dir: toolbox_dir(config),
    })?;
    d.setup().await?;
    Ok(Arc::new(d))
}

/// The docker driver, once the daemon answered.
async fn docker_driver(config: &Config, id: &str) -> Result<Arc<dyn Driver>> {
    let d = driver::docker::DockerDriver::new(driver::docker::DockerDriverConfig {
        executor_id: id.to_owned(),
        toolbox_dir: toolbox_dir(config),
        init_image: config.init_image.clone(),
        pull_policy: config.driver.pull_policy,
        socket: config.driver.socket.clone().filter(|s| !s.is_empty()),
    })
    .await?;
    d.setup().await?;
    Ok(Arc::new(d))
}

async fn make_driver(config: &Config, id: &str, data_dir: &Path) -> Result<Arc<dyn Driver>> {
    let driver: Arc<dyn Driver> = match config.driver.kind {
        DriverType::Local => local_driver(config, id, data_dir).await?,
        DriverType::Docker => docker_driver(config, id).await?,
        DriverType::Auto => match docker_driver(config, id).await {
            Ok(d) => d,
            Err(e) => {
                tracing::info!(error = %e, "no docker daemon answers: using the local driver");
                local_driver(config, id, data_dir).await?
            }
        },
    };
    Ok(driver)
}

/// Serves the executor on `listener` until `shutdown` fires: connects to the runservice,
/// runs the tasks it is given and serves their logs and archives.
pub async fn serve(config: Config, listener: TcpListener, shutdown: Shutdown) -> Result<()> {
    let data_dir = config
        .data_dir
        .clone()
        .ok_or_else(|| Error::Config("dataDir is required".into()))?;
    if config.runservice_url.is_empty() {
        return Err(Error::Config("runserviceUrl is required".into()));
    }
    let id = executor_id(&data_dir)?;
    let driver = make_driver(&config, &id, &data_dir).await?;
    let runservice = runservice::client(&config.runservice_url, config.internal_token.as_deref())?;
    let tasks = tasks::Tasks::new(
        id.clone(),
        data_dir,
        config.active_tasks_limit,
        config.allow_privileged_containers,
        driver,
        runservice,
    );
    tasks.load().await?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("reading the listener address", e))?;
    let identity = stream::Identity {
        listen_url: listen_url(&config, addr),
        labels: config.labels.clone(),
        allow_privileged: config.allow_privileged_containers,
        active_tasks_limit: config.active_tasks_limit,
    };
    tracing::info!(executor = %id, addr = %addr, url = %identity.listen_url, "executor serving");

    // The stream outlives the server by the shutdown grace, so stopped tasks are reported.
    let (stream_stop, stream_shutdown) = Shutdown::new();
    // The stream goes to the first runservice URL that answers, in the configured order (the
    // other calls are balanced over every instance).
    let stream_clients = config
        .runservice_url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| runservice::client(u, config.internal_token.as_deref()))
        .collect::<Result<Vec<_>>>()?;
    let stream_task = tokio::spawn(stream::run(
        tasks.clone(),
        stream_clients,
        identity,
        stream_shutdown,
    ));
    let cleaner_tasks = tasks.clone();
    let cleaner_shutdown = shutdown.clone();
    let cleaner = tokio::spawn(async move {
        loop {
            cleaner_tasks.clean_pods().await;
            tokio::select! {
                _ = tokio::time::sleep(PODS_CLEANER_INTERVAL) => {}
                _ = cleaner_shutdown.clone().wait() => return,
            }
        }
    });

    let server = GrpcServer::new(config.internal_token.as_deref())
        .add_service(
            agola_proto::executor::v1::executor_service_server::ExecutorServiceServer::new(
                service::Service {
                    tasks: tasks.clone(),
                },
            ),
        )
        .add_descriptor_set(agola_proto::FILE_DESCRIPTOR_SET)
        .serve(listener, shutdown.clone())
        .await
        .map_err(Error::Server);

    // Stop running tasks; they report `stopped` while the stream is still up if possible.
    for id in tasks.running_ids() {
        tasks.stop(&id);
    }
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    let mut changed = tasks.changed.subscribe();
    while tasks.active() > 0 && tokio::time::Instant::now() < deadline {
        let _ = tokio::time::timeout_at(deadline, changed.changed()).await;
    }
    cleaner.abort();
    stream_stop.trigger();
    let _ = stream_task.await;
    server
}

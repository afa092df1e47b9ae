//! The executor's side of the runservice stream (spec 30 §2, §3): register, heartbeat every
//! 2 s, handle assignments, stop orders, removals and syncs; reconnect with backoff (1 s
//! doubling to 30 s), re-registering and re-sending the status of every local task.

use std::sync::Arc;
use std::time::Duration;

use agola_common::Shutdown;
use agola_proto::common::v1 as pbc;
use agola_proto::runservice::v1 as pb;
use tokio::sync::mpsc;

use crate::driver::Arch;
use crate::runservice::RunserviceClient;
use crate::tasks::Tasks;

const HEARTBEAT: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Static facts of the executor, sent with each registration and heartbeat.
#[derive(Clone)]
pub struct Identity {
    pub listen_url: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub allow_privileged: bool,
    pub active_tasks_limit: u32,
}

fn arch_to_pb(a: Arch) -> pbc::Arch {
    match a {
        Arch::I386 => pbc::Arch::Arch386,
        Arch::Amd64 => pbc::Arch::Amd64,
        Arch::Arm => pbc::Arch::Arm,
        Arch::Arm64 => pbc::Arch::Arm64,
    }
}

/// The executor as reported now (archs, group and siblings from the driver).
async fn executor_pb(tasks: &Tasks, id: &Identity) -> pbc::Executor {
    let driver = &tasks.driver;
    let archs = driver.archs().await.unwrap_or_default();
    let group = driver
        .executor_group()
        .await
        .unwrap_or_else(|_| tasks.executor_id.clone());
    let mut siblings = driver
        .get_executors()
        .await
        .unwrap_or_else(|_| vec![tasks.executor_id.clone()]);
    // Siblings also include every executor still owning a pod (spec 30 §2).
    if let Ok(pods) = driver.get_pods(true).await {
        for p in pods {
            if !siblings.iter().any(|s| s == p.executor_id()) {
                siblings.push(p.executor_id().to_owned());
            }
        }
    }
    pbc::Executor {
        id: tasks.executor_id.clone(),
        listen_url: id.listen_url.clone(),
        archs: archs.into_iter().map(|a| arch_to_pb(a) as i32).collect(),
        labels: id.labels.clone().into_iter().collect(),
        allow_privileged_containers: id.allow_privileged,
        active_tasks_limit: id.active_tasks_limit,
        active_tasks: tasks.active(),
        dynamic: driver.dynamic(),
        executor_group: group,
        siblings_executors: siblings,
        last_status_update_time: None,
    }
}

/// Runs the stream until shutdown, reconnecting as needed: to the next runservice instance
/// of the list at once, with backoff once every instance failed in a row.
pub async fn run(
    tasks: Arc<Tasks>,
    clients: Vec<RunserviceClient>,
    identity: Identity,
    shutdown: Shutdown,
) {
    let mut backoff = Duration::from_secs(1);
    let mut next = 0usize;
    let mut failed_in_a_row = 0usize;
    loop {
        if shutdown.is_triggered() {
            return;
        }
        let Some(client) = clients.get(next % clients.len().max(1)) else {
            tracing::error!("no runservice url");
            return;
        };
        let started = tokio::time::Instant::now();
        match connect_once(&tasks, client, &identity, shutdown.clone()).await {
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %e, "runservice stream failed; reconnecting"),
        }
        next += 1;
        failed_in_a_row += 1;
        tasks.disconnected();
        if shutdown.is_triggered() {
            return;
        }
        // A stream that stayed up a while resets the backoff.
        if started.elapsed() > MAX_BACKOFF {
            backoff = Duration::from_secs(1);
            failed_in_a_row = 1;
        }
        if failed_in_a_row < clients.len() {
            // Another instance may answer: try it at once.
            continue;
        }
        failed_in_a_row = 0;
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.clone().wait() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn connect_once(
    tasks: &Arc<Tasks>,
    client: &RunserviceClient,
    identity: &Identity,
    shutdown: Shutdown,
) -> Result<(), String> {
    let (tx, rx) = mpsc::channel::<pb::ConnectRequest>(256);
    let register = pb::ConnectRequest {
        message: Some(pb::connect_request::Message::Register(
            pb::RegisterExecutor {
                executor: Some(executor_pb(tasks, identity).await),
            },
        )),
    };
    tx.send(register).await.map_err(|e| e.to_string())?;
    let mut down = client
        .clone()
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|e| format!("connect: {}", e.message()))?
        .into_inner();
    tracing::info!(executor = %tasks.executor_id, "connected to the runservice");
    tasks.connected(tx.clone()).await;
    let hb_tasks = tasks.clone();
    let hb_identity = identity.clone();
    let hb_tx = tx.clone();
    let heartbeat = tokio::spawn(async move {
        loop {
            tokio::time::sleep(HEARTBEAT).await;
            let msg = pb::ConnectRequest {
                message: Some(pb::connect_request::Message::Heartbeat(
                    pb::ExecutorHeartbeat {
                        executor: Some(executor_pb(&hb_tasks, &hb_identity).await),
                    },
                )),
            };
            if hb_tx.send(msg).await.is_err() {
                return;
            }
            // Running tasks' statuses every 2 s too (spec 30 §4.5).
            hb_tasks.resend_running().await;
        }
    });
    drop(tx);
    let result = loop {
        let msg = tokio::select! {
            m = down.message() => m,
            _ = shutdown.clone().wait() => break Ok(()),
        };
        match msg {
            Ok(Some(m)) => handle(tasks, m).await,
            Ok(None) => break Err("the runservice closed the stream".to_string()),
            Err(e) => break Err(e.message().to_owned()),
        }
    };
    heartbeat.abort();
    result
}

async fn handle(tasks: &Arc<Tasks>, msg: pb::ConnectResponse) {
    use pb::connect_response::Message;
    match msg.message {
        Some(Message::Registered(_)) => {}
        Some(Message::Task(et)) => tasks.update(et).await,
        Some(Message::StopTask(s)) => tasks.stop(&s.task_id),
        Some(Message::TaskRemoved(r)) => tasks.remove(&r.task_id).await,
        Some(Message::TaskSync(s)) => tasks.sync(s.tasks, s.generated_at).await,
        None => {}
    }
}

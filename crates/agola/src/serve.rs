//! `agola serve`: binds each selected component's listener and runs them until a signal.

use std::collections::{BTreeMap, BTreeSet};

use agola_common::Shutdown;
use agola_common::shutdown::ShutdownTrigger;
use anyhow::Context;
use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::config::{Component, Config};

/// Running components; dropping it stops them.
#[derive(Debug)]
pub struct Running {
    trigger: ShutdownTrigger,
    tasks: JoinSet<(Component, anyhow::Result<()>)>,
}

impl Running {
    /// Stops every component and waits for them to drain.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.trigger.trigger();
        let mut first_err = None;
        while let Some(res) = self.tasks.join_next().await {
            if let Err(e) = flatten(res)
                && first_err.is_none()
            {
                first_err = Some(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Resolves when a component stops by itself (which is always an error while serving).
    pub async fn failed(&mut self) -> anyhow::Error {
        match self.tasks.join_next().await {
            Some(res) => flatten(res)
                .err()
                .unwrap_or_else(|| anyhow::anyhow!("a component stopped without being asked to")),
            None => anyhow::anyhow!("no component is running"),
        }
    }
}

fn flatten(
    res: Result<(Component, anyhow::Result<()>), tokio::task::JoinError>,
) -> anyhow::Result<()> {
    match res {
        Ok((c, r)) => r.with_context(|| format!("{} stopped", c.name())),
        Err(e) => Err(anyhow::anyhow!("a component panicked: {e}")),
    }
}

/// Starts `components` on the given listeners (one per component).
pub fn start(
    config: Config,
    mut listeners: BTreeMap<Component, TcpListener>,
) -> anyhow::Result<Running> {
    let (trigger, shutdown) = Shutdown::new();
    let mut tasks = JoinSet::new();
    let token = Some(config.internal_auth.token.clone()).filter(|t| !t.is_empty());
    // Components in this process reach each other on the addresses actually bound.
    let mut config = config;
    if let Some(l) = listeners.get(&Component::Runservice) {
        let url = format!("http://{}", l.local_addr()?);
        if config.executor.runservice_url.is_empty() {
            config.executor.runservice_url.clone_from(&url);
        }
        if config.gateway.runservice_url.is_empty() {
            config.gateway.runservice_url.clone_from(&url);
        }
        config.scheduler.runservice_url = url;
    }
    if let Some(l) = listeners.get(&Component::Configstore)
        && config.gateway.configstore_url.is_empty()
    {
        config.gateway.configstore_url = format!("http://{}", l.local_addr()?);
    }
    for (component, listener) in std::mem::take(&mut listeners) {
        let fut = component_future(
            &config,
            component,
            listener,
            shutdown.clone(),
            token.clone(),
        );
        tasks.spawn(async move { (component, fut.await) });
    }
    Ok(Running { trigger, tasks })
}

fn component_future(
    config: &Config,
    component: Component,
    listener: TcpListener,
    shutdown: Shutdown,
    token: Option<String>,
) -> BoxFuture<'static, anyhow::Result<()>> {
    match component {
        Component::Gateway => {
            let mut cfg = config.gateway.clone();
            cfg.internal_token = token;
            Box::pin(async move { Ok(agola_gateway::serve(cfg, listener, shutdown).await?) })
        }
        Component::Configstore => {
            let mut cfg = config.configstore.clone();
            cfg.internal_token = token;
            cfg.data_dir.clone_from(&config.data_dir);
            cfg.kv = cfg.kv.or_else(|| Some(config.kv.clone()));
            cfg.object_storage = cfg
                .object_storage
                .or_else(|| Some(config.object_storage.clone()));
            Box::pin(async move { Ok(agola_configstore::serve(cfg, listener, shutdown).await?) })
        }
        Component::Runservice => {
            let mut cfg = config.runservice.clone();
            cfg.internal_token = token;
            cfg.data_dir.clone_from(&config.data_dir);
            cfg.kv = cfg.kv.or_else(|| Some(config.kv.clone()));
            cfg.object_storage = cfg
                .object_storage
                .or_else(|| Some(config.object_storage.clone()));
            Box::pin(async move { Ok(agola_runservice::serve(cfg, listener, shutdown).await?) })
        }
        Component::Executor => {
            let mut cfg = config.executor.clone();
            cfg.internal_token = token;
            if cfg.data_dir.is_none() {
                cfg.data_dir = Some(config.data_dir.join("executor"));
            }
            Box::pin(async move { Ok(agola_executor::serve(cfg, listener, shutdown).await?) })
        }
        Component::Scheduler => {
            let mut cfg = config.scheduler.clone();
            cfg.internal_token = token;
            Box::pin(async move { Ok(agola_scheduler::serve(cfg, listener, shutdown).await?) })
        }
        Component::Notification => {
            let mut cfg = config.notification.clone();
            cfg.internal_token = token;
            Box::pin(async move { Ok(agola_notification::serve(cfg, listener, shutdown).await?) })
        }
    }
}

/// `agola serve`: validate, bind, run until SIGINT/SIGTERM, then drain.
pub async fn run(config: Config, components: BTreeSet<Component>) -> anyhow::Result<()> {
    let _telemetry = agola_common::telemetry::init(&config.telemetry)?;
    config.validate(&components)?;
    let mut listeners = BTreeMap::new();
    for c in &components {
        let addr = config.listen_address(*c);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("{}: cannot listen on {addr}", c.name()))?;
        tracing::info!(component = c.name(), addr = %listener.local_addr()?, "listening");
        listeners.insert(*c, listener);
    }
    let mut running = start(config, listeners)?;
    tokio::select! {
        err = running.failed() => return Err(err),
        sig = shutdown_signal() => {
            sig?;
            tracing::info!("shutdown requested, draining");
        }
    }
    running.stop().await
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for ctrl-c"),
        _ = term.recv() => Ok(()),
    }
}

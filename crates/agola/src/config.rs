//! The configuration of the whole binary: one YAML file with a section per component.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use agola_common::config::{InternalAuthConfig, KvConfig, ObjectStorageConfig};
use agola_common::telemetry::TelemetryConfig;
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::cli::ServeArgs;

/// Variables the command line reads itself; the config loader must not treat them as paths.
const CLI_ENV: &[&str] = &["AGOLA_ADMIN_TOKEN", "AGOLA_CONFIG", "AGOLA_DATA_DIR"];

/// A component `agola serve` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    Gateway,
    Configstore,
    Runservice,
    Executor,
    Scheduler,
    Notification,
}

impl Component {
    pub const ALL: [Component; 6] = [
        Component::Gateway,
        Component::Configstore,
        Component::Runservice,
        Component::Executor,
        Component::Scheduler,
        Component::Notification,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Component::Gateway => "gateway",
            Component::Configstore => "configstore",
            Component::Runservice => "runservice",
            Component::Executor => "executor",
            Component::Scheduler => "scheduler",
            Component::Notification => "notification",
        }
    }

    /// Parses `all`, `all-base` or a comma-separated list of names.
    pub fn parse_list(list: &str) -> anyhow::Result<BTreeSet<Component>> {
        let mut out = BTreeSet::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item {
                "all" => out.extend(Component::ALL),
                "all-base" => out.extend(
                    Component::ALL
                        .into_iter()
                        .filter(|c| *c != Component::Executor),
                ),
                name => match Component::ALL.into_iter().find(|c| c.name() == name) {
                    Some(c) => {
                        out.insert(c);
                    }
                    None => bail!(
                        "unknown component {name:?}; expected all, all-base or a list of {}",
                        Component::ALL.map(Component::name).join(", ")
                    ),
                },
            }
        }
        if out.is_empty() {
            bail!("no component selected");
        }
        Ok(out)
    }
}

/// The whole binary's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// Installation id (≤ 20 characters), used to tell installations apart.
    pub id: String,
    /// Directory for every component's local state; default `./agola-data`.
    pub data_dir: PathBuf,
    pub kv: KvConfig,
    pub object_storage: ObjectStorageConfig,
    pub internal_auth: InternalAuthConfig,
    pub telemetry: TelemetryConfig,
    pub gateway: agola_gateway::Config,
    pub configstore: agola_configstore::Config,
    pub runservice: agola_runservice::Config,
    pub executor: agola_executor::Config,
    pub scheduler: agola_scheduler::Config,
    pub notification: agola_notification::Config,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            id: "agola".to_owned(),
            data_dir: PathBuf::from("agola-data"),
            kv: KvConfig::default(),
            object_storage: ObjectStorageConfig::default(),
            internal_auth: InternalAuthConfig::default(),
            telemetry: TelemetryConfig::default(),
            gateway: Default::default(),
            configstore: Default::default(),
            runservice: Default::default(),
            executor: Default::default(),
            scheduler: Default::default(),
            notification: Default::default(),
        }
    }
}

impl Config {
    /// Defaults < file < `AGOLA_*` env < flags, then validation.
    pub fn load(
        args: &ServeArgs,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let mut config: Config =
            agola_common::config::load(args.config.as_deref(), env, "AGOLA_", CLI_ENV)
                .context("loading configuration")?;
        if let Some(dir) = &args.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(listen) = args.listen {
            config.gateway.listen_address = listen;
        }
        if let Some(token) = &args.admin_token {
            config.gateway.admin_token = Some(token.clone());
        }
        Ok(config)
    }

    /// Checks what serde cannot: lengths, address clashes between selected components, and
    /// that an empty internal token is only used when everything runs in this process.
    pub fn validate(&self, components: &BTreeSet<Component>) -> anyhow::Result<()> {
        if self.id.is_empty() || self.id.len() > 20 {
            bail!("id must be 1 to 20 characters, got {:?}", self.id);
        }
        if !self
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            bail!("id {:?} may only contain letters, digits and '-'", self.id);
        }
        let mut seen: Vec<(SocketAddr, Component)> = Vec::new();
        for c in components {
            let addr = self.listen_address(*c);
            if addr.port() != 0
                && let Some((_, other)) = seen.iter().find(|(a, _)| *a == addr)
            {
                bail!(
                    "{} and {} both listen on {addr}; give each its own listenAddress",
                    other.name(),
                    c.name()
                );
            }
            seen.push((addr, *c));
        }
        if self.internal_auth.token.is_empty() && components.len() != Component::ALL.len() {
            tracing::warn!(
                "internalAuth.token is empty: internal APIs accept unauthenticated calls; set it when components run in separate processes"
            );
        }
        Ok(())
    }

    pub fn listen_address(&self, c: Component) -> SocketAddr {
        match c {
            Component::Gateway => self.gateway.listen_address,
            Component::Configstore => self.configstore.listen_address,
            Component::Runservice => self.runservice.listen_address,
            Component::Executor => self.executor.listen_address,
            Component::Scheduler => self.scheduler.listen_address,
            Component::Notification => self.notification.listen_address,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_lists() {
        assert_eq!(Component::parse_list("all").expect("all").len(), 6);
        let base = Component::parse_list("all-base").expect("all-base");
        assert_eq!(base.len(), 5);
        assert!(!base.contains(&Component::Executor));
        let some = Component::parse_list("gateway, runservice").expect("list");
        assert_eq!(
            some.into_iter().collect::<Vec<_>>(),
            vec![Component::Gateway, Component::Runservice]
        );
        let err = Component::parse_list("gateway,runsrvice").expect_err("typo");
        assert!(err.to_string().contains("runsrvice"));
        assert!(Component::parse_list(" , ").is_err());
    }

    #[test]
    fn address_clash_is_reported() {
        let mut c = Config::default();
        c.scheduler.listen_address = c.runservice.listen_address;
        let err = c
            .validate(&Component::parse_list("all").expect("all"))
            .expect_err("clash");
        assert!(err.to_string().contains("runservice"), "{err}");
        assert!(
            c.validate(&Component::parse_list("gateway").expect("gw"))
                .is_ok()
        );
    }

    #[test]
    fn long_id_is_rejected() {
        let c = Config {
            id: "x".repeat(21),
            ..Config::default()
        };
        assert!(c.validate(&[Component::Gateway].into()).is_err());
    }

    #[test]
    fn example_config_in_deploy_parses() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/agola.example.yml"
        );
        let args = ServeArgs {
            config: Some(PathBuf::from(path)),
            components: "all".into(),
            data_dir: None,
            listen: None,
            admin_token: None,
        };
        let c = Config::load(&args, Vec::new()).expect("example config must load");
        c.validate(&Component::parse_list("all").expect("all"))
            .expect("example config must validate");
    }
}

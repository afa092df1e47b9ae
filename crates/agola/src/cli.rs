//! Command-line interface.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Component, Config};

#[derive(Debug, Parser)]
#[command(
    name = "agola",
    version,
    about = "CI/CD engine: runs DAGs of tasks in containers"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the selected components in one process.
    Serve(ServeArgs),
    /// Run a repository's pipeline with no server (in-process services, embedded storage).
    Run(crate::run::RunArgs),
    /// Print the version.
    Version,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// YAML config file (sections per component; unknown keys are errors).
    #[arg(long, env = "AGOLA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Components to serve: a comma-separated list of gateway, configstore, runservice,
    /// executor, scheduler, notification; or `all`, or `all-base` (all but the executor).
    #[arg(long, default_value = "all")]
    pub components: String,
    /// Directory holding every component's state (embedded KV, posix object storage, ...).
    #[arg(long, env = "AGOLA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Gateway listen address (REST, gRPC and gRPC-web).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Admin token of the public API.
    #[arg(long, env = "AGOLA_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

impl Cli {
    /// Runs the command; returns the process exit code.
    pub async fn run(self) -> anyhow::Result<u8> {
        match self.command {
            Command::Version => {
                println!("agola {}", env!("CARGO_PKG_VERSION"));
                Ok(0)
            }
            Command::Serve(args) => {
                let components = Component::parse_list(&args.components)?;
                let config = Config::load(&args, std::env::vars())?;
                crate::serve::run(config, components).await?;
                Ok(0)
            }
            Command::Run(args) => {
                // Services log warnings only: the terminal shows the run's progress.
                let telemetry = agola_common::telemetry::TelemetryConfig {
                    log_filter: "warn".into(),
                    ..Default::default()
                };
                let _telemetry = agola_common::telemetry::init(&telemetry)?;
                crate::run::run(args).await
            }
        }
    }
}

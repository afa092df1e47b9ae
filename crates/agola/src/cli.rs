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
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Version => {
                println!("agola {}", env!("CARGO_PKG_VERSION"));
                Ok(())
            }
            Command::Serve(args) => {
                let components = Component::parse_list(&args.components)?;
                let config = Config::load(&args, std::env::vars())?;
                crate::serve::run(config, components).await
            }
        }
    }
}

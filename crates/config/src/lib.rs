//! Pipeline config handling for agola: reads a repository's `.agola/config.{star,jsonnet,json,yml}`
//! (spec 60 §8), validates it with errors that name the run, task, step and source position,
//! and turns it into the run configs the runservice executes (spec 60 §10, 10 §3-§5). It also
//! resolves project variables along the project-group tree (spec 60 §9). A pure library: no
//! I/O besides reading the config directory, no async, no services.
//!
//! Typical use by the gateway:
//!
//! ```
//! use agola_config::{ConfigFormat, RefContext, RunSetup, parse_config, run_configs_for};
//!
//! let yaml = br#"
//! runs:
//!   - name: build
//!     tasks:
//!       - name: test
//!         runtime: { containers: [ { image: alpine } ] }
//!         steps: [ { run: echo hello } ]
//! "#;
//! let setup = RunSetup { ctx: RefContext::branch("main", "abc123"), ..Default::default() };
//! let config = parse_config(ConfigFormat::Yaml, yaml, &setup.ctx);
//! let runs = run_configs_for(config, &setup);
//! assert_eq!(runs.len(), 1);
//! assert_eq!(runs[0].tasks.len(), 1);
//! ```

mod config;
mod context;
mod decode;
mod error;
mod generate;
mod node;
pub mod proto;
mod runconfig;
mod source;
mod validate;
mod variables;
mod when;

use std::path::Path;

pub use config::{
    Approval, CloneStep, Config, ConfigContainer, ConfigDepend, ConfigRun, ConfigRunStep,
    ConfigRuntime, ConfigSaveCacheStep, ConfigStep, ConfigTask, RegistryAuth, Value,
};
pub use context::{RefContext, RefType, commit_message_skips_ci};
pub use decode::{MAX_NAME_LEN, parse_quantity};
pub use error::{ConfigError, Error, Ident, Result};
pub use generate::{
    DEFAULT_SHELL, DEFAULT_WORKING_DIR, GitSource, RunSetup, clone_script, generate_run_configs,
    generate_run_configs_with, generate_tasks, git_host_port, merge_registries_auth,
    setup_error_run_config, static_environment,
};
pub use node::Position;
pub use runconfig::{
    Arch, CLONE_STEP_NAME, Container, DependCondition, DockerRegistryAuth, DockerRegistryAuthType,
    DockerRegistryAuthVariableRefs, RestoreCacheStep, RestoreWorkspaceStep, RunConfig,
    RunConfigTask, RunConfigTaskDepend, RunStep, Runtime, RuntimeType, SETUP_ERROR_RUN_NAME,
    SaveCacheStep, SaveContent, SaveToWorkspaceStep, Step, TmpfsVolume, VariableRefs, Volume,
};
pub use source::{CONFIG_DIR, ConfigFormat, EvalLimits, MAX_CONFIG_SIZE, read_config_dir};
pub use variables::{
    Secret, Variable, VariableValue, resolve_project_variables, resolve_variables,
    variables_allowed,
};
pub use when::{Pattern, When, WhenConditions, pattern_matches, validate_pattern, when_matches};

/// Evaluates (Jsonnet, Starlark), parses and validates a config. Every problem found is
/// returned in [`Error::Invalid`], not only the first.
pub fn parse_config(format: ConfigFormat, data: &[u8], ctx: &RefContext) -> Result<Config> {
    parse_config_with_limits(format, data, ctx, &EvalLimits::default())
}

/// [`parse_config`] with explicit bounds on Jsonnet and Starlark evaluation.
pub fn parse_config_with_limits(
    format: ConfigFormat,
    data: &[u8],
    ctx: &RefContext,
    limits: &EvalLimits,
) -> Result<Config> {
    let root = source::evaluate(format, data, ctx, limits)?;
    let mut d = decode::Decoder::default();
    let config = decode::decode_config(&mut d, &root);
    // also on a partly decoded config: users see every problem in one go
    validate::validate_config(&mut d, &config);
    if d.errors.is_empty() {
        Ok(config)
    } else {
        Err(Error::Invalid(d.errors))
    }
}

/// Reads and parses the config of a repository checked out at `repo_dir`.
pub fn load_config(repo_dir: &Path, ctx: &RefContext) -> Result<Config> {
    let (format, data) = read_config_dir(repo_dir)?;
    parse_config(format, &data, ctx)
}

/// The run configs to create for a parse result: one per config run whose `when` matches, or
/// the single "Setup Error" run carrying the messages of a failed parse.
pub fn run_configs_for(config: Result<Config>, setup: &RunSetup) -> Vec<RunConfig> {
    match config {
        Ok(c) => generate_run_configs(&c, setup),
        Err(e) => vec![setup_error_run_config(e.setup_errors(), setup)],
    }
}

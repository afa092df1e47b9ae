//! Run config generation (spec 60 §10): one [`RunConfig`] per config run whose `when` matches,
//! with new task ids, resolved variables, expanded clone steps, merged registry credentials and
//! the defaults of spec 60 §8.3.

use std::collections::BTreeMap;

use crate::config::{Config, ConfigRun, ConfigStep, ConfigTask, RegistryAuth, Value};
use crate::context::RefContext;
use crate::runconfig::{
    CLONE_STEP_NAME, Container, DockerRegistryAuth, DockerRegistryAuthVariableRefs, RunConfig,
    RunConfigTask, RunConfigTaskDepend, RunStep, Runtime, SETUP_ERROR_RUN_NAME, SaveCacheStep,
    Step, VariableRefs,
};
use crate::validate::RunGraph;
use crate::when::when_matches;

pub const DEFAULT_WORKING_DIR: &str = "~/project";
pub const DEFAULT_SHELL: &str = "/bin/sh -e";

/// Everything about a run besides its config: the ref, resolved variables, and the fields the
/// gateway sets on every run config it creates.
#[derive(Debug, Clone, Default)]
pub struct RunSetup {
    pub ctx: RefContext,
    /// Resolved variables (spec 60 §9) for `from_variable` values.
    pub variables: BTreeMap<String, String>,
    pub group: String,
    pub annotations: BTreeMap<String, String>,
    /// `CI`, the `AGOLA_*` git variables, the ssh key: see [`static_environment`].
    pub static_environment: BTreeMap<String, String>,
    pub environment: BTreeMap<String, String>,
    pub cache_group: String,
}

/// The run created instead of the configured runs when the config has errors: named
/// "Setup Error", with the messages and no tasks.
pub fn setup_error_run_config(errors: Vec<String>, setup: &RunSetup) -> RunConfig {
    RunConfig {
        name: SETUP_ERROR_RUN_NAME.to_owned(),
        setup_errors: errors,
        ..base_run_config(setup)
    }
}

fn base_run_config(setup: &RunSetup) -> RunConfig {
    RunConfig {
        id: String::new(),
        name: String::new(),
        group: setup.group.clone(),
        setup_errors: Vec::new(),
        annotations: setup.annotations.clone(),
        static_environment: setup.static_environment.clone(),
        environment: setup.environment.clone(),
        tasks: BTreeMap::new(),
        cache_group: setup.cache_group.clone(),
    }
}

/// Run configs of every config run whose `when` matches the ref, with random UUID task ids.
pub fn generate_run_configs(config: &Config, setup: &RunSetup) -> Vec<RunConfig> {
    generate_run_configs_with(config, setup, &mut || uuid::Uuid::new_v4().to_string())
}

/// Like [`generate_run_configs`] with a caller-chosen id generator (deterministic tests).
pub fn generate_run_configs_with(
    config: &Config,
    setup: &RunSetup,
    new_id: &mut dyn FnMut() -> String,
) -> Vec<RunConfig> {
    config
        .runs
        .iter()
        .filter(|run| when_matches(run.when.as_ref(), &setup.ctx))
        .map(|run| RunConfig {
            name: run.name.clone(),
            tasks: generate_tasks(config, run, &setup.ctx, &setup.variables, new_id),
            ..base_run_config(setup)
        })
        .collect()
}

/// The tasks of one config run, keyed by their new ids. The config must be valid (as returned
/// by [`crate::parse_config`]); dependencies on unknown tasks are dropped.
pub fn generate_tasks(
    config: &Config,
    run: &ConfigRun,
    ctx: &RefContext,
    variables: &BTreeMap<String, String>,
    new_id: &mut dyn FnMut() -> String,
) -> BTreeMap<String, RunConfigTask> {
    let ids: Vec<String> = run.tasks.iter().map(|_| new_id()).collect();
    let by_name: BTreeMap<&str, &str> = run
        .tasks
        .iter()
        .zip(&ids)
        .map(|(t, id)| (t.name.as_str(), id.as_str()))
        .collect();
    let levels = RunGraph::new(run)
        .levels()
        .unwrap_or_else(|| vec![0; run.tasks.len()]);
    run.tasks
        .iter()
        .zip(&ids)
        .zip(levels)
        .map(|((task, id), level)| {
            let rct = generate_task(config, run, task, id, level, &by_name, ctx, variables);
            (id.clone(), rct)
        })
        .collect()
}

/// Resolves values, recording which ones came from variables. A missing variable leaves the
/// env var unset.
fn resolve_env(
    env: &BTreeMap<String, Value>,
    variables: &BTreeMap<String, String>,
    refs: &mut BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in env {
        match v {
            Value::Literal(s) => {
                out.insert(k.clone(), s.clone());
            }
            Value::FromVariable(var) => {
                refs.insert(k.clone(), var.clone());
                if let Some(val) = variables.get(var) {
                    out.insert(k.clone(), val.clone());
                }
            }
        }
    }
    out
}

/// A credential field: a missing variable leaves it empty.
fn resolve_field(v: &Value, variables: &BTreeMap<String, String>, var_ref: &mut String) -> String {
    match v {
        Value::Literal(s) => s.clone(),
        Value::FromVariable(var) => {
            var_ref.clone_from(var);
            variables.get(var).cloned().unwrap_or_default()
        }
    }
}

/// Registry credentials merged global < run < task: a later level replaces the whole entry of
/// a registry it names.
pub fn merge_registries_auth(
    levels: &[&BTreeMap<String, RegistryAuth>],
) -> BTreeMap<String, RegistryAuth> {
    let mut out = BTreeMap::new();
    for level in levels {
        for (host, auth) in level.iter() {
            out.insert(host.clone(), auth.clone());
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn generate_task(
    config: &Config,
    run: &ConfigRun,
    task: &ConfigTask,
    id: &str,
    level: u32,
    by_name: &BTreeMap<&str, &str>,
    ctx: &RefContext,
    variables: &BTreeMap<String, String>,
) -> RunConfigTask {
    let mut refs = VariableRefs::default();

    let depends = task
        .depends
        .iter()
        .filter_map(|d| {
            let parent = *by_name.get(d.task.as_str())?;
            Some((
                parent.to_owned(),
                RunConfigTaskDepend {
                    task_id: parent.to_owned(),
                    conditions: d.conditions.clone(),
                },
            ))
        })
        .collect();

    let containers = task
        .runtime
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut c_refs = BTreeMap::new();
            let environment = resolve_env(&c.environment, variables, &mut c_refs);
            if !c_refs.is_empty() {
                refs.container_environment
                    .insert(u32::try_from(i).unwrap_or(u32::MAX), c_refs);
            }
            Container {
                image: c.image.clone(),
                environment,
                user: c.user.clone().unwrap_or_default(),
                privileged: c.privileged,
                entrypoint: c.entrypoint.clone().unwrap_or_default(),
                volumes: c.volumes.clone(),
            }
        })
        .collect();

    let environment = resolve_env(&task.environment, variables, &mut refs.environment);

    let steps = task
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| match s {
            ConfigStep::Clone(c) => Step::Run(RunStep {
                name: CLONE_STEP_NAME.to_owned(),
                command: clone_script(c.depth, c.recurse_submodules),
                environment: BTreeMap::new(),
                working_dir: String::new(),
                shell: String::new(),
                tty: true,
            }),
            ConfigStep::Run(r) => {
                let mut s_refs = BTreeMap::new();
                let environment = resolve_env(&r.environment, variables, &mut s_refs);
                if !s_refs.is_empty() {
                    refs.step_environment
                        .insert(u32::try_from(i).unwrap_or(u32::MAX), s_refs);
                }
                Step::Run(RunStep {
                    name: r.name.clone(),
                    command: r.command.clone(),
                    environment,
                    working_dir: r.working_dir.clone().unwrap_or_default(),
                    shell: r.shell.clone().unwrap_or_default(),
                    tty: r.tty.unwrap_or(true),
                })
            }
            ConfigStep::SaveToWorkspace(s) => Step::SaveToWorkspace(s.clone()),
            ConfigStep::RestoreWorkspace(s) => Step::RestoreWorkspace(s.clone()),
            ConfigStep::SaveCache(s) => Step::SaveCache(SaveCacheStep {
                key: s.key.clone(),
                contents: s.contents.clone(),
            }),
            ConfigStep::RestoreCache(s) => Step::RestoreCache(s.clone()),
        })
        .collect();

    let merged = merge_registries_auth(&[
        &config.docker_registries_auth,
        &run.docker_registries_auth,
        &task.docker_registries_auth,
    ]);
    let docker_registries_auth = merged
        .into_iter()
        .map(|(host, a)| {
            let mut r = DockerRegistryAuthVariableRefs::default();
            let auth = DockerRegistryAuth {
                auth_type: a.auth_type,
                username: resolve_field(&a.username, variables, &mut r.username),
                password: resolve_field(&a.password, variables, &mut r.password),
                auth: resolve_field(&a.auth, variables, &mut r.auth),
            };
            if r != DockerRegistryAuthVariableRefs::default() {
                refs.docker_registries_auth.insert(host.clone(), r);
            }
            (host, auth)
        })
        .collect();

    RunConfigTask {
        level,
        id: id.to_owned(),
        name: task.name.clone(),
        depends,
        runtime: Runtime {
            runtime_type: task.runtime.runtime_type,
            arch: task.runtime.arch,
            containers,
        },
        environment,
        working_dir: task
            .working_dir
            .clone()
            .unwrap_or_else(|| DEFAULT_WORKING_DIR.to_owned()),
        shell: task
            .shell
            .clone()
            .unwrap_or_else(|| DEFAULT_SHELL.to_owned()),
        user: task.user.clone().unwrap_or_default(),
        steps,
        ignore_failure: task.ignore_failure,
        needs_approval: task.approval.required,
        min_approvers: task.approval.min_approvers.max(1),
        skip: !when_matches(task.when.as_ref(), ctx),
        docker_registries_auth,
        variable_refs: refs,
    }
}

/// The script of the clone step (spec 10 §5). It runs under `/bin/sh -e`, so it is POSIX sh.
/// Tracing starts only after the key is written so the key never reaches the step log.
pub fn clone_script(depth: Option<u32>, recurse_submodules: bool) -> String {
    let depth_opt = depth.map(|d| format!(" --depth {d}")).unwrap_or_default();
    let recurse_opt = if recurse_submodules {
        " --recurse-submodules"
    } else {
        ""
    };
    let mut s = String::from(
        r#"mkdir -p ~/.ssh
chmod 700 ~/.ssh
touch ~/.ssh/id_rsa
chmod 600 ~/.ssh/id_rsa

# the repository deploy key
cat > ~/.ssh/id_rsa <<EOF
$AGOLA_SSHPRIVKEY
EOF

# the git server host key, when known
if [ -n "$AGOLA_SSHHOSTKEY" ]; then
	cat >> ~/.ssh/known_hosts <<EOF
$AGOLA_SSHHOSTKEY
EOF
	chmod 600 ~/.ssh/known_hosts
fi

cat > ~/.ssh/config <<EOF
Host $AGOLA_GIT_HOST
	HostName $AGOLA_GIT_HOST
	Port $AGOLA_GIT_PORT
	IdentityFile ~/.ssh/id_rsa
	PasswordAuthentication no
EOF
if [ "$AGOLA_SKIPSSHHOSTKEYCHECK" = "1" ]; then
	cat >> ~/.ssh/config <<EOF
	StrictHostKeyChecking no
	UserKnownHostsFile /dev/null
EOF
fi
chmod 600 ~/.ssh/config

set -x
"#,
    );
    s.push_str(&format!(
        "git clone{depth_opt}{recurse_opt} \"$AGOLA_REPOSITORY_URL\" .\n"
    ));
    s.push_str(&format!("git fetch{depth_opt} origin \"$AGOLA_GIT_REF\"\n"));
    s.push_str(
        r#"if [ -n "$AGOLA_GIT_COMMITSHA" ]; then
	git checkout "$AGOLA_GIT_COMMITSHA"
else
	git checkout FETCH_HEAD
fi
"#,
    );
    if recurse_submodules {
        // the clone checked out the default branch's submodules; follow the checked-out commit
        s.push_str(&format!(
            "git submodule update --init --recursive{depth_opt}\n"
        ));
    }
    s
}

/// How the repository of a run is reached, for [`static_environment`].
#[derive(Debug, Clone, Default)]
pub struct GitSource {
    /// Clone URL (ssh, scp-like or http(s)).
    pub repository_url: String,
    pub ssh_private_key: String,
    /// Known-hosts line of the git server; empty = unknown.
    pub ssh_host_key: String,
    pub skip_ssh_host_key_check: bool,
}

/// The static environment of a run (spec 60 §7 step 3): `CI=true` and the `AGOLA_*` git
/// variables, `AGOLA_SSHHOSTKEY` and `AGOLA_SKIPSSHHOSTKEYCHECK=1` only when they apply.
pub fn static_environment(source: &GitSource, ctx: &RefContext) -> BTreeMap<String, String> {
    let (host, port) = git_host_port(&source.repository_url).unwrap_or_default();
    let mut env: BTreeMap<String, String> = [
        ("CI", "true"),
        ("AGOLA_SSHPRIVKEY", source.ssh_private_key.as_str()),
        ("AGOLA_REPOSITORY_URL", source.repository_url.as_str()),
        ("AGOLA_GIT_HOST", host.as_str()),
        ("AGOLA_GIT_PORT", port.as_str()),
        ("AGOLA_GIT_BRANCH", ctx.branch.as_str()),
        ("AGOLA_GIT_TAG", ctx.tag.as_str()),
        ("AGOLA_PULL_REQUEST_ID", ctx.pull_request_id.as_str()),
        ("AGOLA_GIT_REF_TYPE", ctx.ref_type.as_str()),
        ("AGOLA_GIT_REF", ctx.git_ref.as_str()),
        ("AGOLA_GIT_COMMITSHA", ctx.commit_sha.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if !source.ssh_host_key.is_empty() {
        env.insert("AGOLA_SSHHOSTKEY".to_owned(), source.ssh_host_key.clone());
    }
    if source.skip_ssh_host_key_check {
        env.insert("AGOLA_SKIPSSHHOSTKEYCHECK".to_owned(), "1".to_owned());
    }
    env
}

/// Host and port of a git URL: `scheme://[user@]host[:port]/path` (default port of the scheme)
/// or scp-like `[user@]host:path` (port 22).
pub fn git_host_port(url: &str) -> Option<(String, String)> {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority = rest.split('/').next().unwrap_or(rest);
        let hostport = authority.rsplit('@').next().unwrap_or(authority);
        let default_port = match scheme {
            "ssh" | "git+ssh" | "ssh+git" => "22",
            "http" => "80",
            "https" => "443",
            "git" => "9418",
            _ => return None,
        };
        // bracketed IPv6 literals keep their colons
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']')?;
            (h, after.strip_prefix(':').unwrap_or(""))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, p),
                None => (hostport, ""),
            }
        };
        if host.is_empty() {
            return None;
        }
        let port = if port.is_empty() { default_port } else { port };
        return Some((host.to_owned(), port.to_owned()));
    }
    // scp-like: user@host:path
    let (hostpart, _) = url.split_once(':')?;
    let host = hostpart.rsplit('@').next().unwrap_or(hostpart);
    if host.is_empty() || host.contains('/') {
        return None;
    }
    Some((host.to_owned(), "22".to_owned()))
}

//! `POST /projects/{ref}/createrun` (spec 60 §7, manual trigger): fetch the commit of a plain
//! git repository project with the `git` CLI into a temporary directory, read and evaluate its
//! `.agola/config.*`, resolve the variables along the project-group tree and create one run per
//! matching config run in the runservice (a config error creates the "Setup Error" run).

use std::collections::BTreeMap;
use std::path::Path;

use agola_common::ApiError;
use agola_config::{GitSource, RefContext, RunSetup};
use agola_proto::common::v1 as pbc;
use agola_proto::common::v1::{ParentType, RemoteRepositoryConfigType};
use agola_proto::configstore::v1 as cs;
use agola_proto::gateway::v1 as pb;
use agola_proto::runservice::v1 as rs;

use crate::auth::{Access, Caller};
use crate::backends::Backends;
use crate::projects::project_with;
use crate::runs::{project_group, run_view};

/// Which ref to build: exactly one of branch, tag, ref, with an optional commit.
#[derive(Debug, Clone, Default)]
pub struct RefRequest {
    pub branch: String,
    pub tag: String,
    pub git_ref: String,
    pub commit_sha: String,
}

/// Escapes a ref name for a run group path element.
pub fn escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Longest a git command (fetch of a big repository included) may take.
const GIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

async fn git(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Result<String, ApiError> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // kill_on_drop ends a git that outlives the timeout.
    let out = tokio::time::timeout(GIT_TIMEOUT, cmd.output())
        .await
        .map_err(|_| ApiError::unavailable(format!("git {args:?} timed out")))?
        .map_err(|e| ApiError::internal(format!("running git: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(ApiError::bad_request(format!(
            "git {}: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Fetches `refspec` (and `commit_sha` if given) from `url` into `dir`; returns the commit sha
/// and its message.
async fn fetch(
    dir: &Path,
    project: &cs::Project,
    refspec: &str,
    commit_sha: &str,
) -> Result<(String, String), ApiError> {
    let mut env = Vec::new();
    if !project.ssh_private_key.is_empty() {
        let key = dir.join(".agola-ssh-key");
        write_private(&key, &project.ssh_private_key)?;
        let check = if project.skip_ssh_host_key_check {
            " -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
        } else {
            ""
        };
        env.push((
            "GIT_SSH_COMMAND",
            format!("ssh -i {} -o IdentitiesOnly=yes{check}", key.display()),
        ));
    }
    let repo = dir.join("repo");
    std::fs::create_dir(&repo).map_err(|e| ApiError::internal(format!("temp dir: {e}")))?;
    git(&repo, &["init", "-q"], &env).await?;
    let url = project.repository_url.as_str();
    if commit_sha.is_empty() {
        git(
            &repo,
            &["fetch", "-q", "--depth", "1", "--", url, refspec],
            &env,
        )
        .await?;
    } else {
        git(&repo, &["fetch", "-q", "--", url, refspec], &env).await?;
    }
    let target = if commit_sha.is_empty() {
        "FETCH_HEAD"
    } else {
        commit_sha
    };
    git(&repo, &["checkout", "-q", "--detach", target], &env).await?;
    let sha = git(&repo, &["rev-parse", "HEAD"], &env).await?;
    let message = git(&repo, &["log", "-1", "--format=%B"], &env).await?;
    Ok((sha, message))
}

fn write_private(path: &Path, data: &str) -> Result<(), ApiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| ApiError::internal(format!("writing the ssh key: {e}")))?;
    f.write_all(data.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .map_err(|e| ApiError::internal(format!("writing the ssh key: {e}")))
}

fn when_from_pb(w: &pbc::When) -> agola_config::When {
    let c = |c: &Option<pbc::WhenConditions>| {
        c.as_ref().map(|c| agola_config::WhenConditions {
            include: c.include.clone(),
            exclude: c.exclude.clone(),
        })
    };
    agola_config::When {
        branch: c(&w.branch),
        tag: c(&w.tag),
        git_ref: c(&w.r#ref),
    }
}

/// The ref context of a full ref (`refs/heads/…`, `refs/tags/…`, anything else).
pub fn ref_context(git_ref: &str, sha: String) -> RefContext {
    if let Some(branch) = git_ref.strip_prefix("refs/heads/") {
        RefContext::branch(branch, sha)
    } else if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
        RefContext::tag(tag, sha)
    } else {
        let mut ctx = RefContext::branch("", sha);
        ctx.git_ref = git_ref.to_owned();
        ctx
    }
}

/// The project's variables resolved for `ctx` (spec 60 §9).
pub async fn variables(
    b: &Backends,
    project: &cs::Project,
    ctx: &RefContext,
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut client = b.cs()?;
    let vars = client
        .list_variables(cs::ListVariablesRequest {
            parent_type: ParentType::Project.into(),
            parent_ref: project.id.clone(),
            tree: true,
        })
        .await?
        .into_inner()
        .variables;
    let secrets = client
        .list_secrets(cs::ListSecretsRequest {
            parent_type: ParentType::Project.into(),
            parent_ref: project.id.clone(),
            tree: true,
        })
        .await?
        .into_inner()
        .secrets;
    let vars: Vec<agola_config::Variable> = vars
        .into_iter()
        .map(|v| agola_config::Variable {
            name: v.name,
            parent_path: v.parent_path,
            values: v
                .values
                .into_iter()
                .map(|val| agola_config::VariableValue {
                    secret_name: val.secret_name,
                    secret_var: val.secret_var,
                    when: val.when.as_ref().map(when_from_pb),
                })
                .collect(),
        })
        .collect();
    let secrets: Vec<agola_config::Secret> = secrets
        .into_iter()
        .map(|s| agola_config::Secret {
            name: s.name,
            parent_path: s.parent_path,
            data: s.data.into_iter().collect(),
        })
        .collect();
    Ok(agola_config::resolve_project_variables(
        &vars,
        &secrets,
        ctx,
        false,
        project.pass_vars_to_forked_pr,
    ))
}

/// Creates the runs of `project_ref` at the requested ref (members).
pub async fn create(
    b: &Backends,
    caller: &Caller,
    project_ref: &str,
    req: RefRequest,
) -> Result<Vec<pb::Run>, ApiError> {
    let given = [&req.branch, &req.tag, &req.git_ref]
        .iter()
        .filter(|s| !s.is_empty())
        .count();
    if given != 1 {
        return Err(ApiError::bad_request(
            "give exactly one of branch, tag and ref",
        ));
    }
    let project = project_with(b, caller, project_ref, Access::Member).await?;
    if project.remote_repository_config_type() != RemoteRepositoryConfigType::Manual {
        return Err(ApiError::bad_request(
            "creating runs of remote-source projects is not supported yet",
        ));
    }
    let (refspec, sub) = if !req.branch.is_empty() {
        (
            format!("refs/heads/{}", req.branch),
            format!("branch/{}", escape(&req.branch)),
        )
    } else if !req.tag.is_empty() {
        (
            format!("refs/tags/{}", req.tag),
            format!("tag/{}", escape(&req.tag)),
        )
    } else {
        (req.git_ref.clone(), format!("ref/{}", escape(&req.git_ref)))
    };
    let tmp = tempfile::tempdir().map_err(|e| ApiError::internal(format!("temp dir: {e}")))?;
    let (sha, message) = fetch(tmp.path(), &project, &refspec, &req.commit_sha).await?;
    if agola_config::commit_message_skips_ci(&message) {
        return Ok(Vec::new());
    }
    let ctx = if !req.branch.is_empty() {
        RefContext::branch(req.branch.clone(), sha)
    } else if !req.tag.is_empty() {
        RefContext::tag(req.tag.clone(), sha)
    } else {
        ref_context(&req.git_ref, sha)
    };
    let repo = tmp.path().join("repo");
    let config = agola_config::read_config_dir(&repo)
        .and_then(|(format, data)| agola_config::parse_config(format, &data, &ctx));
    let setup = RunSetup {
        variables: variables(b, &project, &ctx).await?,
        group: format!("{}/{sub}", project_group(&project.id)),
        annotations: BTreeMap::from([
            ("run_creation_trigger".to_owned(), "manual".to_owned()),
            ("project_id".to_owned(), project.id.clone()),
            ("ref".to_owned(), ctx.git_ref.clone()),
            ("commit_sha".to_owned(), ctx.commit_sha.clone()),
        ]),
        static_environment: agola_config::static_environment(
            &GitSource {
                repository_url: project.repository_url.clone(),
                ssh_private_key: project.ssh_private_key.clone(),
                ssh_host_key: project.ssh_host_key.clone(),
                skip_ssh_host_key_check: project.skip_ssh_host_key_check,
            },
            &ctx,
        ),
        environment: BTreeMap::new(),
        cache_group: String::new(),
        ctx,
    };
    let mut client = b.rs()?;
    let mut out = Vec::new();
    for rc in agola_config::run_configs_for(config, &setup) {
        let res = client
            .create_run(rs::CreateRunRequest {
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
            .await?
            .into_inner();
        let run = res
            .run
            .ok_or_else(|| ApiError::internal("runservice answered no run"))?;
        out.push(run_view(&run, res.run_config.as_ref(), rc.setup_errors));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_keeps_one_path_element() {
        assert_eq!(escape("main"), "main");
        assert_eq!(escape("feature/x y"), "feature%2Fx%20y");
        assert_eq!(escape("v1.2-rc_1~"), "v1.2-rc_1~");
    }

    #[test]
    fn ref_contexts() {
        let b = ref_context("refs/heads/dev", "s".into());
        assert_eq!((b.branch.as_str(), b.tag.as_str()), ("dev", ""));
        let t = ref_context("refs/tags/v1", "s".into());
        assert_eq!((t.branch.as_str(), t.tag.as_str()), ("", "v1"));
        let p = ref_context("refs/pull/3/head", "s".into());
        assert_eq!(p.git_ref, "refs/pull/3/head");
    }
}

//! `exec`: runs a step command with the step's environment, working directory and user, then
//! replaces the toolbox process with it (so signals and the exit status are the command's own).
//!
//! Needed because neither older `docker exec` nor Kubernetes exec can set env or cwd, and
//! Kubernetes exec cannot set the user.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use nix::unistd::{Gid, Uid, getegid, geteuid, setgid, setgroups, setuid};

use crate::user::{ExecUser, read_group, read_passwd, resolve_user};
use crate::{Error, Result};

/// Parsed `exec` arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOptions {
    /// Variables overlaid on the inherited environment.
    pub env: BTreeMap<String, String>,
    pub working_dir: Option<PathBuf>,
    /// `name|uid[:group|gid]`; empty or absent means the current user.
    pub user: Option<String>,
    pub command: Vec<OsString>,
}

/// Parses the `-e` JSON object of string values, rejecting names a process env cannot hold.
pub fn parse_env_json(json: &str) -> Result<BTreeMap<String, String>> {
    if json.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let env: BTreeMap<String, String> = serde_json::from_str(json).map_err(|e| {
        Error::InvalidInput(format!(
            "invalid -e environment: expected a JSON object of strings: {e}"
        ))
    })?;
    for (k, v) in &env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(Error::InvalidInput(format!(
                "invalid environment variable name {k:?}"
            )));
        }
        if v.contains('\0') {
            return Err(Error::InvalidInput(format!(
                "environment variable {k:?} contains a NUL byte"
            )));
        }
    }
    Ok(env)
}

/// Switches to `user` (when running as root) or checks that we already are that user.
/// Returns the home to export when the identity changed.
fn switch_user(spec: &str, target: &ExecUser) -> Result<Option<String>> {
    let euid = geteuid();
    if euid.is_root() {
        let groups: Vec<Gid> = target.groups.iter().map(|g| Gid::from_raw(*g)).collect();
        setgroups(&groups).map_err(|e| {
            Error::PermissionDenied(format!("cannot set the groups of user {spec:?}: {e}"))
        })?;
        setgid(Gid::from_raw(target.gid)).map_err(|e| {
            Error::PermissionDenied(format!(
                "cannot switch to group {} for {spec:?}: {e}",
                target.gid
            ))
        })?;
        setuid(Uid::from_raw(target.uid)).map_err(|e| {
            Error::PermissionDenied(format!(
                "cannot switch to user {spec:?} (uid {}): {e}",
                target.uid
            ))
        })?;
        // as Docker does: a user without a passwd entry gets HOME=/
        return Ok(Some(target.home.clone().unwrap_or_else(|| "/".to_string())));
    }
    let same_group = !target.group_given || getegid().as_raw() == target.gid;
    if euid.as_raw() == target.uid && same_group {
        return Ok(None);
    }
    Err(Error::PermissionDenied(format!(
        "cannot run as user {spec:?} (uid {}, gid {}): the toolbox runs as uid {} (gid {}), not root, and cannot switch user",
        target.uid,
        target.gid,
        euid.as_raw(),
        getegid().as_raw()
    )))
}

/// Prepares the process state and execs the command. Returns only on failure.
pub fn run(opts: &ExecOptions) -> Result<Infallible> {
    let Some((program, args)) = opts.command.split_first() else {
        return Err(Error::Usage("exec: missing command after --".into()));
    };
    let mut home = None;
    if let Some(spec) = opts.user.as_deref().filter(|u| !u.is_empty()) {
        let target = resolve_user(spec, &read_passwd(), &read_group())?;
        home = switch_user(spec, &target)?;
    }
    if let Some(dir) = &opts.working_dir {
        std::env::set_current_dir(dir).map_err(|e| {
            Error::io(
                format!("cannot change working directory to {}", dir.display()),
                e,
            )
        })?;
    }
    let mut cmd = Command::new(program);
    cmd.args(args);
    if let Some(home) = home.filter(|_| !opts.env.contains_key("HOME")) {
        cmd.env("HOME", home);
    }
    cmd.envs(&opts.env);
    let err = cmd.exec();
    Err(Error::Exec {
        command: program.to_string_lossy().into_owned(),
        source: err,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_json_parsing() {
        let env = parse_env_json(r#"{"A":"1","PATH":"/bin"}"#).expect("parse");
        assert_eq!(env.get("A").map(String::as_str), Some("1"));
        assert!(parse_env_json("").expect("empty").is_empty());
        assert!(parse_env_json("{}").expect("empty").is_empty());
        assert!(parse_env_json(r#"{"A":1}"#).is_err());
        assert!(parse_env_json(r#"["A"]"#).is_err());
        assert!(parse_env_json(r#"{"A=B":"x"}"#).is_err());
        assert!(parse_env_json(r#"{"":"x"}"#).is_err());
        assert!(parse_env_json(r#"{"A":"x\u0000y"}"#).is_err());
    }
}

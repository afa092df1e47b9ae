//! Users and groups as the container sees them: `/etc/passwd` and `/etc/group` are parsed
//! directly (no NSS), because the toolbox is a static binary running in an arbitrary image.
//! Resolution follows Docker's `--user` rules: `name|uid[:group|gid]`.

use std::fs;

use crate::{Error, Result};

/// Path of the container's user database.
pub const PASSWD_PATH: &str = "/etc/passwd";
/// Path of the container's group database.
pub const GROUP_PATH: &str = "/etc/group";

/// One line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// One line of `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// The identity a command runs as after `exec -u`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    /// Primary group.
    pub gid: u32,
    /// Supplementary groups (primary group first, then the groups listing the user as member).
    pub groups: Vec<u32>,
    /// Home directory from passwd, when the user is known there.
    pub home: Option<String>,
    /// Whether the spec named a group explicitly.
    pub group_given: bool,
}

/// Parses `/etc/passwd` content; malformed lines and comments are skipped.
pub fn parse_passwd(content: &str) -> Vec<PasswdEntry> {
    content
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 6 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
            })
        })
        .collect()
}

/// Parses `/etc/group` content; malformed lines and comments are skipped.
pub fn parse_group(content: &str) -> Vec<GroupEntry> {
    content
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Reads and parses the container's `/etc/passwd`; a missing or unreadable file is empty.
pub fn read_passwd() -> Vec<PasswdEntry> {
    fs::read_to_string(PASSWD_PATH)
        .map(|c| parse_passwd(&c))
        .unwrap_or_default()
}

/// Reads and parses the container's `/etc/group`; a missing or unreadable file is empty.
pub fn read_group() -> Vec<GroupEntry> {
    fs::read_to_string(GROUP_PATH)
        .map(|c| parse_group(&c))
        .unwrap_or_default()
}

fn parse_id(s: &str) -> Option<u32> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// Resolves a user spec `user[:group]` where each part is a name or a numeric id.
///
/// A name is looked up first; a numeric value not found as a name is an id. A numeric uid
/// unknown to passwd gets gid 0, as with Docker. Unknown names are errors naming them.
pub fn resolve_user(spec: &str, passwd: &[PasswdEntry], groups: &[GroupEntry]) -> Result<ExecUser> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user_part.is_empty() {
        return Err(Error::InvalidInput(format!(
            "invalid user {spec:?}: empty user name"
        )));
    }
    let entry = passwd
        .iter()
        .find(|p| p.name == user_part)
        .or_else(|| parse_id(user_part).and_then(|uid| passwd.iter().find(|p| p.uid == uid)));
    let (uid, mut gid, home, name) = match (entry, parse_id(user_part)) {
        (Some(p), _) => (p.uid, p.gid, Some(p.home.clone()), Some(p.name.as_str())),
        (None, Some(uid)) => (uid, 0, None, None),
        (None, None) => {
            return Err(Error::InvalidInput(format!(
                "user {user_part:?} not found in {PASSWD_PATH}"
            )));
        }
    };
    let group_given = group_part.is_some();
    if let Some(g) = group_part {
        if g.is_empty() {
            return Err(Error::InvalidInput(format!(
                "invalid user {spec:?}: empty group name"
            )));
        }
        gid = match (groups.iter().find(|e| e.name == g), parse_id(g)) {
            (Some(e), _) => e.gid,
            (None, Some(id)) => id,
            (None, None) => {
                return Err(Error::InvalidInput(format!(
                    "group {g:?} not found in {GROUP_PATH}"
                )));
            }
        };
    }
    let mut supplementary = vec![gid];
    if let Some(name) = name {
        for g in groups
            .iter()
            .filter(|g| g.members.iter().any(|m| m == name))
        {
            if !supplementary.contains(&g.gid) {
                supplementary.push(g.gid);
            }
        }
    }
    Ok(ExecUser {
        uid,
        gid,
        groups: supplementary,
        home,
        group_given,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # comment\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        broken line\n\
        builder:x:1000:1000:Builder,,,:/home/builder:/bin/bash\n\
        1234:x:2000:2000::/home/numeric:/bin/sh\n";
    const GROUP: &str = "root:x:0:\n\
        docker:x:999:builder,other\n\
        builder:x:1000:\n\
        wheel:x:10:root, builder\n\
        bad\n";

    fn resolve(spec: &str) -> Result<ExecUser> {
        resolve_user(spec, &parse_passwd(PASSWD), &parse_group(GROUP))
    }

    #[test]
    fn parses_passwd_skipping_bad_lines() {
        let p = parse_passwd(PASSWD);
        assert_eq!(p.len(), 4);
        assert_eq!(
            p[2],
            PasswdEntry {
                name: "builder".into(),
                uid: 1000,
                gid: 1000,
                home: "/home/builder".into()
            }
        );
    }

    #[test]
    fn parses_group_members() {
        let g = parse_group(GROUP);
        assert_eq!(g.len(), 4);
        assert_eq!(g[1].members, vec!["builder", "other"]);
        assert_eq!(g[3].members, vec!["root", "builder"]);
        assert!(g[0].members.is_empty());
    }

    #[test]
    fn resolves_name_with_supplementary_groups() {
        let u = resolve("builder").expect("resolve");
        assert_eq!(u.uid, 1000);
        assert_eq!(u.gid, 1000);
        assert_eq!(u.groups, vec![1000, 999, 10]);
        assert_eq!(u.home.as_deref(), Some("/home/builder"));
        assert!(!u.group_given);
    }

    #[test]
    fn resolves_numeric_uid_known_and_unknown() {
        let u = resolve("1000").expect("resolve");
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.home.as_deref(), Some("/home/builder"));
        let u = resolve("4242").expect("resolve");
        assert_eq!((u.uid, u.gid), (4242, 0));
        assert_eq!(u.groups, vec![0]);
        assert_eq!(u.home, None);
    }

    #[test]
    fn numeric_name_is_looked_up_as_name_first() {
        let u = resolve("1234").expect("resolve");
        assert_eq!(u.uid, 2000);
    }

    #[test]
    fn resolves_group_part() {
        let u = resolve("builder:docker").expect("resolve");
        assert_eq!((u.uid, u.gid), (1000, 999));
        assert!(u.group_given);
        let u = resolve("4242:4343").expect("resolve");
        assert_eq!((u.uid, u.gid, u.groups.clone()), (4242, 4343, vec![4343]));
        let u = resolve("root:0").expect("resolve");
        assert_eq!((u.uid, u.gid), (0, 0));
    }

    #[test]
    fn unknown_names_are_errors_naming_them() {
        let err = resolve("nobody-here")
            .expect_err("unknown user")
            .to_string();
        assert!(err.contains("\"nobody-here\""), "{err}");
        let err = resolve("builder:nogroup")
            .expect_err("unknown group")
            .to_string();
        assert!(err.contains("\"nogroup\""), "{err}");
        assert!(resolve("").is_err());
        assert!(resolve(":0").is_err());
        assert!(resolve("0:").is_err());
        assert!(resolve("99999999999").is_err());
    }
}

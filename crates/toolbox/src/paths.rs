//! Path helpers shared by the subcommands: `~` expansion as the container user and lexical
//! absolutisation (like Go's `filepath.Abs`, which the executor's callers expect).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use crate::error::IoContext;
use crate::user::{PASSWD_PATH, read_passwd};
use crate::{Error, Result};

/// Home directory of the current user: `$HOME` when set and non-empty, else the passwd entry of
/// the real uid.
pub fn home_dir() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    let uid = nix::unistd::getuid().as_raw();
    read_passwd()
        .into_iter()
        .find(|p| p.uid == uid)
        .map(|p| PathBuf::from(p.home))
        .ok_or_else(|| {
            Error::InvalidInput(format!(
                "cannot find the home directory: HOME is not set and uid {uid} is not in {PASSWD_PATH}"
            ))
        })
}

/// Home directory of a named user from the container's passwd.
pub fn user_home(name: &str) -> Result<PathBuf> {
    read_passwd()
        .into_iter()
        .find(|p| p.name == name)
        .map(|p| PathBuf::from(p.home))
        .ok_or_else(|| Error::InvalidInput(format!("user {name:?} not found in {PASSWD_PATH}")))
}

/// Expands a leading `~` (current user) or `~name` (a passwd user) in `path`. `lookup` gets
/// `None` for the current user and `Some(name)` for `~name`; it is called only when needed.
pub fn expand_tilde_with(
    path: &Path,
    lookup: &dyn Fn(Option<&str>) -> Result<PathBuf>,
) -> Result<PathBuf> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.first() != Some(&b'~') {
        return Ok(path.to_path_buf());
    }
    let (head, rest) = match bytes.iter().position(|b| *b == b'/') {
        Some(i) => (&bytes[1..i], &bytes[i + 1..]),
        None => (&bytes[1..], &b""[..]),
    };
    let home = if head.is_empty() {
        lookup(None)?
    } else {
        let name = std::str::from_utf8(head)
            .map_err(|_| Error::InvalidInput(format!("invalid user name in {path:?}")))?;
        lookup(Some(name))?
    };
    if rest.is_empty() {
        Ok(home)
    } else {
        Ok(home.join(OsStr::from_bytes(rest)))
    }
}

/// Expands `~` and `~name` using `$HOME` and the container's passwd.
pub fn expand_tilde(path: &Path) -> Result<PathBuf> {
    expand_tilde_with(path, &|name| match name {
        None => home_dir(),
        Some(n) => user_home(n),
    })
}

/// Lexically cleans an absolute path: removes `.`, empty components and resolves `..` against
/// the preceding component (`/..` stays `/`).
pub fn clean_absolute(path: &Path) -> PathBuf {
    let mut parts: Vec<&OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let mut out = OsString::from("/");
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push("/");
        }
        out.push(p);
    }
    PathBuf::from(OsString::from_vec(out.into_vec()))
}

/// Makes `path` absolute against `base` (when relative) and cleans it lexically.
pub fn absolute_from(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        clean_absolute(path)
    } else {
        clean_absolute(&base.join(path))
    }
}

/// Expands `~` and makes the result absolute against the current directory.
pub fn expand_dir(path: &Path) -> Result<PathBuf> {
    let expanded = expand_tilde(path)?;
    if expanded.is_absolute() {
        return Ok(clean_absolute(&expanded));
    }
    let cwd = std::env::current_dir().ctx(|| "cannot read the current directory")?;
    Ok(absolute_from(&cwd, &expanded))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: Option<&str>) -> Result<PathBuf> {
        match name {
            None => Ok(PathBuf::from("/home/me")),
            Some("other") => Ok(PathBuf::from("/srv/other")),
            Some(n) => Err(Error::InvalidInput(format!("user {n:?} not found"))),
        }
    }

    #[test]
    fn expands_tilde_forms() {
        let e = |p: &str| expand_tilde_with(Path::new(p), &lookup).expect("expand");
        assert_eq!(e("~"), PathBuf::from("/home/me"));
        assert_eq!(e("~/"), PathBuf::from("/home/me"));
        assert_eq!(e("~/project/x"), PathBuf::from("/home/me/project/x"));
        assert_eq!(e("~other/a"), PathBuf::from("/srv/other/a"));
        assert_eq!(e("/abs/~"), PathBuf::from("/abs/~"));
        assert_eq!(e("rel/path"), PathBuf::from("rel/path"));
        assert!(expand_tilde_with(Path::new("~ghost"), &lookup).is_err());
    }

    #[test]
    fn cleans_and_absolutises() {
        assert_eq!(
            clean_absolute(Path::new("/a/./b//c/../d/")),
            PathBuf::from("/a/b/d")
        );
        assert_eq!(clean_absolute(Path::new("/../..")), PathBuf::from("/"));
        assert_eq!(
            absolute_from(Path::new("/work"), Path::new("x/../y")),
            PathBuf::from("/work/y")
        );
        assert_eq!(
            absolute_from(Path::new("/work"), Path::new("/abs")),
            PathBuf::from("/abs")
        );
    }
}

//! Key rules shared by every backend, so a key valid on one is valid on all.

use crate::{Error, Result};

/// The longest key, in bytes (S3's own limit).
pub const MAX_PATH_LEN: usize = 1024;

/// Checks an object path and returns its normalized form (one leading `/` trimmed).
///
/// A valid path is non-empty, at most [`MAX_PATH_LEN`] bytes, without NUL and without empty,
/// `.` or `..` segments (so `a//b`, `a/` and `a/../b` are rejected): such keys would alias or
/// escape on a filesystem and behave differently on S3.
pub fn normalize_path(path: &str) -> Result<&str> {
    let p = path.strip_prefix('/').unwrap_or(path);
    if p.is_empty() {
        return Err(Error::invalid_path(path, "path is empty"));
    }
    check_common(path, p)?;
    check_segments(path, p)?;
    Ok(p)
}

/// Checks a listing prefix and returns its normalized form (one leading `/` trimmed).
///
/// A prefix is a plain string prefix, so it may be empty and may end in `/` or in the middle of
/// a segment; the complete segments it names (everything up to its last `/`) follow the path
/// rules, which also keeps a posix walk inside its data directory.
pub(crate) fn normalize_prefix(prefix: &str) -> Result<&str> {
    let p = prefix.strip_prefix('/').unwrap_or(prefix);
    check_common(prefix, p)?;
    if let Some(idx) = p.rfind('/') {
        check_segments(prefix, &p[..idx])?;
    }
    Ok(p)
}

/// A `start_after` bound, normalized like keys; an empty one is no bound at all.
pub(crate) fn normalize_start_after(start_after: Option<&str>) -> Option<String> {
    start_after
        .map(|s| s.strip_prefix('/').unwrap_or(s))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn check_common(original: &str, p: &str) -> Result<()> {
    if p.len() > MAX_PATH_LEN {
        return Err(Error::invalid_path(
            original,
            format!("path is longer than {MAX_PATH_LEN} bytes"),
        ));
    }
    if p.contains('\0') {
        return Err(Error::invalid_path(original, "path contains a NUL byte"));
    }
    Ok(())
}

fn check_segments(original: &str, p: &str) -> Result<()> {
    for segment in p.split('/') {
        match segment {
            "" => return Err(Error::invalid_path(original, "path has an empty segment")),
            "." | ".." => {
                return Err(Error::invalid_path(
                    original,
                    format!("path has a {segment:?} segment"),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_paths() {
        assert_eq!(normalize_path("a").ok(), Some("a"));
        assert_eq!(normalize_path("/a/b.c/d").ok(), Some("a/b.c/d"));
        assert_eq!(normalize_path("a/..b/c.").ok(), Some("a/..b/c."));
        let max = "x".repeat(MAX_PATH_LEN);
        assert!(normalize_path(&max).is_ok());
        assert!(normalize_path(&format!("/{max}")).is_ok());
    }

    #[test]
    fn invalid_paths() {
        let long = "x".repeat(MAX_PATH_LEN + 1);
        for (p, reason) in [
            ("", "empty"),
            ("/", "empty"),
            ("//a", "empty segment"),
            ("a//b", "empty segment"),
            ("a/", "empty segment"),
            ("a/./b", "\".\""),
            ("..", "\"..\""),
            ("a/../b", "\"..\""),
            ("a\0b", "NUL"),
            (long.as_str(), "longer than 1024"),
        ] {
            match normalize_path(p) {
                Err(Error::InvalidPath { reason: r, .. }) => {
                    assert!(r.contains(reason), "{p:?}: {r}")
                }
                other => panic!("{p:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn prefixes() {
        for ok in ["", "/", "a", "a/", "a/b", "a/b/", "a/.", "a/..x", "a/b-"] {
            assert!(normalize_prefix(ok).is_ok(), "{ok:?}");
        }
        for bad in ["a//", "../", "a/../b", "./a", "a\0", "//"] {
            assert!(normalize_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
